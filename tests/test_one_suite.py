"""One suite: the project has one epoch loop, one mini-batch training loop and one evaluation loop (suite/trainer.py),
and an optimiser steps only inside a network's updateWeights. Read from the source (an AST walk of every project
module), so that a paper that grows a loop of its own fails here; the walk itself is checked on planted code."""
import ast
import os
import textwrap

from test_shape import ROOT, project_modules

LOOPS = 'suite/trainer.py'                     # the one module allowed to iterate over mini-batches and epochs
OPTIMISERS = {'opt', 'optimizer', 'optimiser'}


def _source(module):
    path = os.path.join(ROOT, *module.split('.'))
    path = os.path.join(path, '__init__.py') if os.path.isdir(path) else path + '.py'
    return os.path.relpath(path, ROOT), open(path).read()


def _call_name(node):
    """'distributed.shards' for distributed.shards(…), 'progress' for progress(…), else None."""
    f = node.func
    if isinstance(f, ast.Name):
        return f.id
    if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
        return f'{f.value.id}.{f.attr}'
    return None


def offences(path, source):
    """(path:line, what) of every loop over mini-batches or epochs and every optimiser step outside its place."""
    tree, out = ast.parse(source), []

    class Walker(ast.NodeVisitor):
        def __init__(self):
            self.functions = []

        def visit_FunctionDef(self, node):
            self.functions.append(node.name)
            self.generic_visit(node)
            self.functions.pop()

        def visit_For(self, node):
            calls = {_call_name(c) for c in ast.walk(node.iter) if isinstance(c, ast.Call)}
            target = node.target.id if isinstance(node.target, ast.Name) else ''
            # a training or evaluation pass over mini-batches shards them across torchrun ranks
            if path != LOOPS and (calls & {'distributed.shards', 'shards'} or target == 'epoch'):
                out.append((f'{path}:{node.lineno}', 'a loop over mini-batches or epochs'))
            self.generic_visit(node)

        def visit_Call(self, node):
            f = node.func
            if (isinstance(f, ast.Attribute) and f.attr == 'step' and not node.args
                    and isinstance(f.value, (ast.Name, ast.Attribute))
                    and (f.value.id if isinstance(f.value, ast.Name) else f.value.attr) in OPTIMISERS
                    and 'updateWeights' not in self.functions):
                out.append((f'{path}:{node.lineno}', 'an optimiser step outside updateWeights'))
            self.generic_visit(node)
    Walker().visit(tree)
    return out


def test_one_loop_and_updates_through_update_weights():
    found = []
    for m in project_modules():
        found += offences(*_source(m))
    assert found == [], found


def test_the_walk_finds_planted_loops():
    planted = textwrap.dedent('''
        def train_epoch(chain, opt, batches):
            for x, label, own in distributed.shards(trainer.progress(batches, 'train')):
                opt.step()
        def run(n):
            for epoch in range(1, n + 1):
                pass
        class Net:
            def updateWeights(self, optimizer):
                optimizer.step()
        ''')
    found = [what for _, what in offences('papers/planted.py', planted)]
    assert found == ['a loop over mini-batches or epochs', 'an optimiser step outside updateWeights',
                     'a loop over mini-batches or epochs']
    assert offences(LOOPS, planted) == [('suite/trainer.py:4', 'an optimiser step outside updateWeights')]

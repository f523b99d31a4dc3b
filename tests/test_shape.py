"""One shape under every paper: a training mini-batch of each paper goes through the network's design-card methods
(forward free → forward nudged → computeGradients → updateWeights), every module imports alone, the costs' closed
forms match autograd, and an error current δ nudges as −β⟨δ, s_out⟩."""
import os
import subprocess
import sys

import pytest
import torch

from ep import estimators
from conftest import run_main
from netClasses import EPNet, CrossEntropy, EPdisc, ErrorCurrent, SquaredError
from papers.laborieux2021.nets import P_CNN

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ('forward', 'computeGradients', 'updateWeights')


def _classes(cls):
    yield cls
    for sub in cls.__subclasses__():
        yield from _classes(sub)


@pytest.fixture
def calls(monkeypatch):
    """Records, in order, every call of the three methods on any EPNet (wherever a subclass defines them)."""
    log = []
    for cls in set(_classes(EPNet)):
        for name in METHODS:
            if name not in cls.__dict__:
                continue
            orig = cls.__dict__[name]

            def spy(self, *a, _orig=orig, _name=name, **kw):
                if _name == 'forward':
                    beta = kw.get('beta', a[3] if len(a) > 3 else 0.0)
                    nudged = isinstance(beta, (tuple, list)) or (torch.is_tensor(beta) or beta != 0.0)
                    log.append('forward nudged' if nudged else 'forward free')
                else:
                    log.append(_name)
                return _orig(self, *a, **kw)
            monkeypatch.setattr(cls, name, spy)
    return log


MNIST = ['--dry-run', '--seed', '0']
PAPERS = {
    'ernoult2019': ['--action', 'train', '--discrete', '--size_tab', '10', '16', '784', '--lr_tab', '0.1', '0.1',
                    '--dataset', 'mnist5k'],
    'laborieux2021': ['--model', 'MLP', '--task', 'mnist5k', '--archi', '784', '16', '10', '--lrs', '0.1', '0.1',
                      '--thirdphase'],
    'eplcanet': ['--model', 'EPLCACNN', '--task', 'mnist5k', '--channels', '4', '4', '8', '--kernels', '5', '5',
                 '--paddings', '0', '0', '0', '--strides', '1', '1', '1', '--lrs', '0.05', '0.05', '0.02', '--pools',
                 'imm', '--betas', '0.0', '0.2', '--softmax', '--loss', 'cel', '--lca_iters', '2', '--thirdphase'],
    'laydevant2021': ['--archi', 'fc', '--layersList', '784', '16', '10', '--gamma', '1e-5', '1e-4',
                      '--gradThreshold', '5e-7', '5e-7', '--lrBias', '0.025', '0.05', '--dataset', 'mnist5k'],
    'hopfield_resnet': ['--network', 'hopfieldresnet13', '--width', '0.03125', '--dataset', 'mnist5k'],
}


@pytest.mark.parametrize('paper', list(PAPERS))
def test_a_training_minibatch_goes_through_the_network_methods(paper, calls, tmp_path):
    code, folder = run_main(PAPERS[paper] + MNIST + ['--results-dir', str(tmp_path)])
    assert code == 0 and folder
    # the dry run trains one mini-batch: the first calls are that mini-batch, in the design card's order
    assert calls[:4] == ['forward free', 'forward nudged', 'computeGradients', 'updateWeights'], calls[:8]
    assert calls.count('computeGradients') == 1 and calls.count('updateWeights') == 1


def test_cep_and_bptt_minibatches_go_through_the_network_methods(calls, tmp_path):
    base = PAPERS['laborieux2021'][:-1] + MNIST + ['--T1', '6', '--T2', '3']
    assert run_main(base + ['--alg', 'CEP', '--results-dir', str(tmp_path / 'cep')])[0] == 0
    # CEP: the free phase, then per nudged step one forward step, its estimate and its update
    assert calls[:7] == ['forward free'] + ['forward nudged', 'computeGradients', 'updateWeights'] * 2, calls[:8]
    calls.clear()
    assert run_main(base + ['--alg', 'BPTT', '--results-dir', str(tmp_path / 'bptt')])[0] == 0
    assert calls[:3] == ['forward free', 'forward free', 'updateWeights'], calls[:6]


# One interpreter loads the third-party packages once, then forks a child per project module, which imports that
# module alone: no other project module is loaded before it (what a fresh `python -c "import m"` checks, 39 × ~3 s of
# importing torch again). Prints the modules that fail.
_IMPORT_ALONE = r"""
import importlib, os, sys, traceback
import matplotlib, numpy, pandas, torch
torch.set_num_threads(1)
failed = []
for m in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(m)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    if os.waitpid(pid, 0)[1] != 0:
        failed.append(m)
print(' '.join(failed))
"""


def _import_alone(mods):
    """The modules of `mods` that do not import alone, and the children's tracebacks."""
    if hasattr(os, 'fork'):
        r = subprocess.run([sys.executable, '-c', _IMPORT_ALONE, *mods], cwd=ROOT, capture_output=True, text=True)
        return r.stdout.split(), r.stderr[-4000:]
    bad = [m for m in mods if subprocess.run([sys.executable, '-c', f'import {m}'], cwd=ROOT).returncode]
    return bad, ''


PACKAGES = ('suite', 'ep', 'analog', 'papers')


def project_modules():
    """The dotted names of the project's modules: the root's (but the scripts named with a dash) and every module
    of its packages."""
    for f in os.listdir(ROOT):
        if f.endswith('.py') and '-' not in f:
            yield f[:-3]
    for pkg in PACKAGES:
        for folder, _, files in os.walk(os.path.join(ROOT, pkg)):
            dotted = os.path.relpath(folder, ROOT).replace(os.sep, '.')
            for f in files:
                if f.endswith('.py'):
                    yield dotted if f == '__init__.py' else f'{dotted}.{f[:-3]}'


def test_every_module_imports_alone():
    """Each project module imports with no other project module loaded before it (no cycle hidden by import order);
    the check itself fails on a module that cannot import."""
    mods = sorted(project_modules())
    assert {'main', 'suite.trainer', 'ep.estimators', 'analog', 'papers.nest2024.nets'} <= set(mods)
    bad, err = _import_alone(mods)
    assert bad == [], f'{bad} do not import alone:\n{err}'
    assert _import_alone(['netClasses', 'no_such_module_here'])[0] == ['no_such_module_here']


# ---------------------------------------------------------------------------------------------------------------
# Costs

@pytest.mark.parametrize('cost', [SquaredError(), CrossEntropy(), ErrorCurrent()], ids=lambda c: type(c).__name__)
def test_cost_gradient_is_autograd_of_the_cost(cost):
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(5, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.softmax(torch.randn(5, 7, generator=gen, dtype=torch.float64), 1)
    (g,) = torch.autograd.grad(cost(z, y).sum(), z)
    torch.testing.assert_close(cost.grad(z.detach(), y), g, rtol=1e-12, atol=1e-14)


def test_error_current_nudges_with_minus_beta_delta():
    """With ℓ = ⟨δ, s_out⟩ the nudged step adds −β δ to the output (EPdisc: s_0 ← σ(∂Φ/∂s_0) − β δ), the closed form
    agrees with autograd of Φ for a readout net nudged by δ, and a one-sided EP estimate with δ = ∂L/∂s_out equals
    the one with the squared error's target (the same force)."""
    torch.manual_seed(0)
    net = EPdisc([4, 6, 5], 8, 3, 0.1, 'tanh').double()
    x = torch.rand(3, 5, dtype=torch.float64)
    s = [torch.rand(3, 4, dtype=torch.float64), torch.rand(3, 6, dtype=torch.float64)]
    delta = torch.randn(3, 4, dtype=torch.float64)
    free = net.stepper(s, net.drive(x))
    y = s[0] - delta                                   # ½||s_0 − y||² has ∂ℓ/∂s_0 = δ here
    sq = net.stepper(s, net.drive(x), y, 0.3)
    net.criterion = ErrorCurrent()
    cur = net.stepper(s, net.drive(x), delta, 0.3)
    torch.testing.assert_close(cur[0], free[0] - 0.3 * delta)
    torch.testing.assert_close(cur[0], sq[0])

    cnn = P_CNN(8, 1, [3], [3], [1], [1], 'm', [6, 4], 5, 2, 0.1, 'tanh', 'cel', softmax=True).double()
    cnn.criterion = ErrorCurrent()
    xs = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    st = [torch.rand(3, *sh, dtype=torch.float64) for sh in cnn.state_shapes()]
    closed = cnn.stepper(st, cnn.drive(xs), delta, 0.4)
    oracle = cnn.stepper_autograd(xs, st, delta, 0.4)
    for a, b in zip(closed, oracle):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_estimators_are_the_functional_forms():
    """estimators.Symmetric(β) and netFunctions.ep_step(…, 'symmetric') write the same .grad."""
    import netFunctions as nf
    torch.manual_seed(0)
    net = EPdisc([4, 6, 5], 8, 3, 0.1, 'tanh').double()
    x, y = torch.rand(3, 5, dtype=torch.float64), net.target(torch.tensor([0, 1, 3]))
    estimators.Symmetric(0.2, 8, 3)(net, x, y)
    g = [p.grad.clone() for p in net.parameters()]
    net.zero_grad(set_to_none=True)
    nf.ep_step(net, x, y, 0.2, 'symmetric', 8, 3)
    for a, p in zip(g, net.parameters()):
        assert torch.equal(a, p.grad)

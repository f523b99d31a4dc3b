"""One checkpoint format for every paper, written and read by one helper.

A checkpoint is a dict of state dicts, never a pickled module:

    format      CHECKPOINT_FORMAT (absent: written before the format had a number; such files keep loading)
    epoch       the epochs done;  history: the metrics rows of those epochs (fit's rows)
    model       net.state_dict();  optimizer, scheduler: their state_dict() (None where the run has none)
    generator   the state of the run's torch.Generator (mini-batch order, random-sign β), if it has one
    torch_rng   torch's global random state (dropout-free nets draw from it for initial weights and noise)
    config      the run's configuration (its RunConfig's fields, as plain values)
    …           what a paper adds (e.g. `best`, the best test accuracy so far)

`save` writes it atomically (a crash never leaves half a file); `restore` loads it into the model, optimiser,
scheduler and generator of a resumed run, with one-line errors naming the file (never a traceback). Reading any
suite file (`load`) goes through the same one-line errors.
"""
import dataclasses
import os
import pickle
import zipfile

import torch

from suite import rundir
from suite.cli import UsageError

CHECKPOINT_FORMAT = 2
# keys of the binary-EP checkpoints written before the one format (checkpoint.pt of an S-k folder)
LEGACY_KEYS = {'model_state_dict': 'model', 'rows': 'history'}


def plain(config):
    """The run configuration as plain values (numbers, strings, lists, dicts; anything else as its repr)."""
    if config is None:
        return None
    items = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    return {k: v if isinstance(v, (int, float, str, bool, list, tuple, dict, type(None))) else repr(v)
            for k, v in items.items()}


def state(model, optimizer, epoch, history, scheduler=None, generator=None, config=None, **extra):
    """The checkpoint dict of a run after `epoch` epochs (see the module docstring)."""
    return {'format': CHECKPOINT_FORMAT, 'epoch': epoch, 'history': history, 'model': model.state_dict(),
            'optimizer': optimizer.state_dict() if optimizer is not None else None,
            'scheduler': scheduler.state_dict() if scheduler is not None else None,
            'generator': generator.get_state() if generator is not None else None,
            'torch_rng': torch.get_rng_state(), 'config': plain(config), **extra}


def _upgrade(ck):
    """A checkpoint of an earlier layout in today's keys: the binary-EP checkpoint.pt named the model
    `model_state_dict`, the rows `rows`, and kept the flip rule's momenta and α learning rates at the top level."""
    if not isinstance(ck, dict):
        return ck
    ck = {LEGACY_KEYS.get(k, k): v for k, v in ck.items()}
    if 'optimizer' not in ck and 'momentum' in ck:
        ck['optimizer'] = {k: ck.pop(k) for k in ('momentum', 'lr_alpha', 'lr_alpha_initial') if k in ck}
    return ck


def save(path, model, optimizer, epoch, history, **kw):
    """Write the checkpoint of `state` to `path`, atomically."""
    rundir.save(state(model, optimizer, epoch, history, **kw), path)


def save_epoch(folder, ck, history, best):
    """A run's checkpoints after an epoch (and before the first, `history` empty): the state `ck` to checkpoint.tar,
    and to best_checkpoint.tar when the last epoch's test accuracy beats `best`. Returns (best, improved)."""
    rundir.save(ck, os.path.join(folder, 'checkpoint.tar'))
    if history and history[-1]['test_acc'] > best:
        rundir.save(ck, os.path.join(folder, 'best_checkpoint.tar'))
        return history[-1]['test_acc'], True
    return best, False


def restore(path, model, optimizer=None, scheduler=None, generator=None, what='a checkpoint of this suite',
            keys=()):
    """Load the checkpoint at `path` into a resumed run: the model's weights, the optimiser's state (under this
    command's hyperparameters, see load_optimizer), the scheduler, the generator and torch's random state.
    `keys`: what else the paper needs in it. Returns the checkpoint dict (its `epoch`, `history`, extras)."""
    ck = _upgrade(load(path, (), what))
    missing = [k for k in ('model', 'history', *keys) if not isinstance(ck, dict) or k not in ck]
    if missing:
        raise UsageError(f'{path}: not {what} (no {", ".join(missing)} in it)')
    if ck.get('format', CHECKPOINT_FORMAT) > CHECKPOINT_FORMAT:
        raise UsageError(f'{path}: written by a newer version of this suite (checkpoint format {ck["format"]}, this '
                         f'one reads up to {CHECKPOINT_FORMAT}); update the suite')
    load_state(model, ck['model'], path)
    if optimizer is not None and ck.get('optimizer') is not None:
        if hasattr(optimizer, 'param_groups'):
            load_optimizer(optimizer, ck['optimizer'], path)
        else:                                       # the binary nets' flip rule (Network_fc.BinaryOptimizer)
            optimizer.load_state_dict(ck['optimizer'])
    if scheduler is not None and ck.get('scheduler') is not None:
        scheduler.load_state_dict(ck['scheduler'])
    if generator is not None and ck.get('generator') is not None:
        generator.set_state(ck['generator'])
    if ck.get('torch_rng') is not None:
        torch.set_rng_state(ck['torch_rng'])
    return ck


UNREADABLE = (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, KeyError,
              AttributeError, ImportError, IndexError, TypeError)


def load(path, keys=(), what='a checkpoint of this suite', flag='--load-path'):
    """torch.load of a checkpoint dict holding `keys`; a missing, unreadable or foreign file is a UsageError."""
    if not os.path.isfile(path):
        raise UsageError(f'{flag}: no {os.path.basename(path)} in {os.path.dirname(path) or "."} (expected {what}; '
                         f'give the folder of a training run)' if flag == '--load-path' else
                         f'{flag} {path}: no such file (expected {what})')
    try:
        ck = torch.load(path, map_location='cpu', weights_only=False)
    except UNREADABLE as e:
        reason = _first(e, 1)
        raise UsageError(f'{path}: not a readable checkpoint ({reason}); expected {what}')
    missing = [k for k in keys if not isinstance(ck, dict) or k not in ck]
    if missing:
        raise UsageError(f'{path}: not {what} (no {", ".join(missing)} in it)')
    return ck


def _first(error, lines):
    """The first sentence of the first `lines` lines of an exception's text (or its type), on one line."""
    text = ' '.join(ln.strip() for ln in str(error).splitlines()[:lines] if ln.strip()) or type(error).__name__
    return text.split('. ')[0].rstrip('.')[:200]


def load_state(module, state, path, fix='give the flags of the run that made it, or another folder'):
    """module.load_state_dict, with a mismatch reported as a UsageError naming the file (and `fix`)."""
    try:
        module.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, TypeError) as e:
        raise UsageError(f'{path}: its weights do not fit the network of this command ({_first(e, 2)}); {fix}')


def load_optimizer(opt, state, path):
    """An optimiser's saved state (momenta, learning rates as scheduled), under this command's hyperparameters: a
    learning rate, weight decay or momentum that differs from the saved run's replaces it (a learning rate then
    restarts from its new value), while the same values keep the saved, possibly scheduled, state bit for bit."""
    fresh = [{k: v for k, v in g.items() if k != 'params'} for g in opt.param_groups]
    load_state(opt, state, path)
    for g, f in zip(opt.param_groups, fresh):
        base = 'initial_lr' if 'initial_lr' in f else 'lr'   # a scheduler keeps the base value in initial_lr
        if g.get(base) == f[base]:
            f = {k: v for k, v in f.items() if k not in ('lr', 'initial_lr')}
        g.update(f)



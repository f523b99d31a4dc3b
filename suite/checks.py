"""Value checks of the papers' flags (their check_args): each failure is a cli.UsageError, i.e. one line
'main.py: error: <flag> <value>: <what is wrong and the fix>' and exit code 2, raised before any folder is made."""
import math
import os

import analog as analog_sim
from suite import distributed
from suite.cli import UsageError, say

FLOAT32_MAX = 3.4028234663852886e38          # the weights are float32: a larger value overflows in the update


def _values(v):
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _show(v):
    return ' '.join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)


def count(flag, value, least=1, what='the value'):
    """An integer flag (or every entry of a list flag) of at least `least`; None (unset) passes."""
    if value is None:
        return
    subject = f'every value ({what})' if isinstance(value, (list, tuple)) else what
    for v in _values(value):
        if v < least:
            raise UsageError(f'{flag} {_show(value)}: {subject} must be at least {least}')


def real(flag, value, what='the value', lo=None, hi=None, above=None, below=None, nonzero=False, fix=''):
    """A float flag (or every entry of a list flag): finite, and within the given bounds; None (unset) passes."""
    if value is None:
        return
    many = isinstance(value, (list, tuple))
    subject = f'every value ({what})' if many else what
    tail = f'; {fix}' if fix else ''
    for v in _values(value):
        if not math.isfinite(v) or abs(v) > FLOAT32_MAX:
            raise UsageError(f'{flag} {_show(value)}: {subject} must be a finite number (within ±3.4e38, the '
                             f'float32 range){tail}')
        if nonzero and v == 0:
            raise UsageError(f'{flag} {_show(value)}: {subject} must be non-zero{tail}')
        for bad, rule in ((lo is not None and v < lo, f'at least {lo}'), (hi is not None and v > hi, f'at most {hi}'),
                          (above is not None and v <= above, f'greater than {above}'),
                          (below is not None and v >= below, f'smaller than {below}')):
            if bad:
                raise UsageError(f'{flag} {_show(value)}: {subject} must be {rule}{tail}')


def global_batch(flag, value):
    """The training mini-batch is the global one under torchrun: the number of ranks must divide it (each relaxes
    an equal shard)."""
    n = distributed.launched()
    if n > 1 and value % n:
        raise UsageError(f'{flag} {value}: the global mini-batch must be divisible by the {n} torchrun processes '
                         f'(each relaxes {flag} / {n} samples); give a multiple of {n}, or change --nproc_per_node')


def seed(value):
    """--seed: numpy and random take 0 … 2**32 − 1 (None: drawn)."""
    if value is not None and not 0 <= value < 2 ** 32:
        raise UsageError(f'--seed {value}: give a seed between 0 and {2 ** 32 - 1} (or none: one is drawn)')


def switch(flag, value):
    """A 0/1 integer flag."""
    if value not in (0, 1):
        raise UsageError(f'{flag} {value}: give 0 (off) or 1 (on)')


def load_path(args, fresh='a fresh network'):
    """The run folder of --load-path (None without one): a folder that does not exist is a usage error, except in a
    dry run, which says so and goes on with `fresh`."""
    folder = args.load_path or None
    if folder and not os.path.isdir(folder):
        if not args.dry_run:
            raise UsageError(f'--load-path {folder}: no such run folder')
        say(f'dry run: --load-path {folder} does not exist; using {fresh}')
        folder = None
    return folder


def analog(args):
    """--analog / --analog-tau / --analog-preset (Ernoult 2019, Laborieux 2021, EPLCANet): sets args.rpu, the device
    configuration of the weights (analog.rpu_config), or None for FP SGD."""
    args.rpu = None
    tt_flags = (('--analog-fast-lr', args.analog_fast_lr), ('--analog-reads', args.analog_reads))
    if args.analog in (None, 'FP SGD'):
        for flag, v in (('--analog-tau', args.analog_tau), ('--analog-preset', args.analog_preset)) + tt_flags:
            if v is not None:
                raise UsageError(f'{flag} {v}: a setting of the analog devices; give it with --analog "Analog SGD" or '
                                 f'--analog "TT-v1", or drop it')
        return
    for flag, v in tt_flags:
        if v is not None and args.analog != 'TT-v1':
            raise UsageError(f'{flag} {v}: a setting of Tiki-Taka; give it with --analog "TT-v1", or drop it')
    if args.analog_tau is None:
        raise UsageError(f'--analog {args.analog} needs --analog-tau τ, the devices\' dynamic-range radius (e.g. '
                         f'--analog-tau 0.6)')
    real('--analog-tau', args.analog_tau, 'the dynamic-range radius τ', above=0, fix='e.g. --analog-tau 0.6')
    real('--analog-fast-lr', args.analog_fast_lr, 'the learning rate of A', lo=0)
    count('--analog-reads', args.analog_reads, 1, 'the number of columns read per transfer')
    args.analog_preset = args.analog_preset or 'S4'
    tt = {k: v for k, v in (('fast_lr', args.analog_fast_lr), ('n_reads_per_transfer', args.analog_reads))
          if v is not None}
    try:
        args.rpu = analog_sim.rpu_config(args.analog, args.analog_tau, args.analog_preset, **tt)
    except ValueError as e:
        raise UsageError(f'--analog {args.analog} --analog-tau {args.analog_tau}: {e}')


def analog_items(cfg):
    """The hyperparameters.txt lines of the analog devices (none for FP SGD)."""
    if cfg.rpu is None:
        return []
    return [('analog', cfg.analog), ('analog tau', cfg.analog_tau), ('analog preset', cfg.analog_preset),
            ('analog fast lr (TT-v1)', cfg.rpu.fast_lr), ('analog reads per transfer (TT-v1)',
                                                            cfg.rpu.n_reads_per_transfer),
            ('analog configuration', cfg.rpu)]


def relaxation(args, why_not_async=None, why_not_tol=None):
    """--tol (finite, > 0), --tol-every (≥ 1, with --tol; 10 by default) and --schedule: `why_not_async` says why the
    selected network cannot run --schedule async, `why_not_tol` why the action has no free phase to stop (None: it
    can, it has)."""
    if why_not_tol:
        for flag, v in (('--tol', args.tol), ('--tol-every', args.tol_every)):
            if v is not None:
                raise UsageError(f'{flag} {v}: {why_not_tol}; drop it')
    real('--tol', args.tol, 'the tolerance ε on the relative change of the state', above=0,
         fix='e.g. --tol 1e-4, or drop it for a fixed number of steps')
    count('--tol-every', args.tol_every, 1, 'the number of steps between two checks of --tol')
    if args.tol_every is not None and args.tol is None:
        raise UsageError(f'--tol-every {args.tol_every}: the interval between checks of --tol; give --tol too, or '
                         f'drop it')
    args.tol_every = 10 if args.tol_every is None else args.tol_every
    if args.schedule != 'sync' and why_not_async:
        raise UsageError(f'--schedule {args.schedule}: {why_not_async}; drop it (or give --schedule sync)')


def relaxation_items(cfg):
    """The hyperparameters.txt lines of --tol and of an asynchronous --schedule (none for the default relaxation)."""
    items = [('tol', cfg.tol), ('tol every', cfg.tol_every)] if cfg.tol is not None else []
    return items + ([('schedule', cfg.schedule)] if cfg.schedule != 'sync' else [])

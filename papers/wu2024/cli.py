"""Wu et al. 2024's command lines: one parser per entry script (its original flags and the suite's), every check
of the flags before any data is read or folder made, the frozen Config they resolve to, and `main`, which runs a
script's command line (bad input: one line '<script>.py: error: …' and exit code 2)."""
import dataclasses
import glob
import math
import os
import sys

import torch

import analog
from papers.wu2024 import classify
from papers.wu2024 import figures
from papers.wu2024 import nets as wu_nets
from papers.wu2024 import toy
from suite import checks
from suite import distributed
from suite import trainer
from suite import commandline
from suite.cli import default_threads
from suite.entry import run as run_entry
from suite.cli import (RunConfig, SuiteParser, UsageError, finalise_suite_args, int_or_none, run_config, say)

NAME = 'wu2024'
# script → (kind, what it reproduces)
SCRIPTS = {
    'S1-SGD-diff-lr': ('toy', 'Fig. 1: digital SGD, Analog SGD and TT-v1 at four step sizes (least squares)'),
    'S2-dynamic-verification': ('toy', 'Fig. 3: digital, closed-form analog and simulated analog SGD per τ'),
    'S3.1-ablation-tau': ('toy', 'Fig. 4 left: Analog SGD error vs the dynamic-range radius τ'),
    'S3.2-ablation-sigma': ('toy', 'Fig. 4 middle: Analog SGD error vs the gradient-noise variance σ²'),
    'S3.3-ablation-init': ('toy', 'Fig. 4 right: Analog SGD error vs the initial point'),
    'S4.1-mnist-FCN': ('mnist', 'Fig. 5 left: FCN 784-256-128-10 on MNIST with FP SGD, Analog SGD or TT-v1'),
    'S4.2-mnist-CNN': ('mnist', 'Fig. 5 right: LeNet-like CNN on MNIST with FP SGD, Analog SGD or TT-v1'),
    'S4.1-plot-FCN': ('plot', 'Fig. 5 left: test accuracy of the S4.1 runs, averaged over repeats'),
    'S4.2-plot-CNN': ('plot', 'Fig. 5 right: test accuracy of the S4.2 runs, averaged over repeats'),
    'A12-resnet-finetune': ('resnet', 'Table 2: ResNet18/34/50 fine-tuned on CIFAR-10 with an analog last layer'),
    'S6-plot-distribution': ('distribution', 'Fig. 7: weight and saturation histograms of S4.1 checkpoints'),
}
PLOTTED = figures.PLOTTED


# ---------------------------------------------------------------------------------------------------------------
# Command line → typed, frozen configuration

def build_parser(script):
    kind, about = SCRIPTS[script]
    p = SuiteParser(prog=script + '.py', description=f'Wu et al. 2024, {about}.')
    g = p.add_argument_group('suite')
    g.add_argument('--dry-run', action='store_true',
                   help='a few steps / mini-batches on tiny or synthetic data, under <--results-dir>/dry-run/')
    g.add_argument('--seed', type=int_or_none, default=None, help='random seed (default: drawn and recorded)')
    g.add_argument('--results-dir', default='results', help='where result folders are created (default results/)')
    g.add_argument('--threads', type=int, default=None,
                   help='CPU threads of torch (default: 1 for the FCN and the toy problems, the idle CPUs for the CNN '
                        'and ResNets)')
    if kind in ('toy', 'mnist', 'resnet'):
        g.add_argument('--CUDA', type=int_or_none, default=None,
                       help='CUDA device index (default: GPU 0 when present, the CPU for S1-S3; an absent GPU runs on '
                            'the CPU with a warning)')
    if kind in ('mnist', 'resnet'):
        g.add_argument('--data-root', default='./data', help='folder holding the datasets (default ./data)')
        g.add_argument('--epochs', type=int, default=None,
                       help="training epochs, in all (default: the paper's; 1 in a dry run; with --load-path: the "
                            "total the resumed run reaches)")
        g.add_argument('--save-checkpoint', action='store_true', help='save the final model (model.pt, a state dict)')
        g.add_argument('--load-path', default='',
                       help=f"a run folder of {script}.py: training resumes it from its last checkpoint (checkpoint.tar, "
                            f"written after every epoch) and finishes the epochs it was asked for (--epochs given "
                            f"again sets a new total); the run's saved flags are the defaults, a flag given again "
                            f"overrides them")
        g.add_argument('--evaluate', action='store_true',
                       help='evaluate the model of --load-path (its last checkpoint) on the train and test splits: '
                            'loss and accuracy, printed and appended to its hyperparameters.txt; nothing is trained')
    if kind == 'mnist':
        g.add_argument('--SETTING', default='FP SGD', help="'FP SGD', 'Analog SGD' or 'TT-v1'")
        g.add_argument('--tau', type=float, default=0.6, help='dynamic-range radius τ of the devices (default 0.6)')
        g.add_argument('--dataset', default='mnist',
                       help='mnist (torchvision or the idx files under --data-root) or mnist5k (embedded digits)')
    if kind == 'resnet':
        g.add_argument('--model', default='Resnet18', help='Resnet18, Resnet34 or Resnet50')
        g.add_argument('-FFT', action='store_true', help='full fine-tuning (default: only the last layer learns)')
        g.add_argument('--optimizer', default='FP SGD', help="'FP SGD', 'Analog SGD' or 'TT-v1'")
        g.add_argument('--tau', type=float, default=0.8, help='dynamic-range radius τ of the devices (default 0.8)')
        g.add_argument('--weights', default=None,
                       help="torchvision's ImageNet weights of --model (a .pth file; default: looked up in torch's "
                            "hub cache and --data-root); 'none' starts from random weights")
    if kind == 'plot':
        g.add_argument('--runs', default=None,
                       help=f'folder searched for the runs\' metrics.csv (default <--results-dir>/analog/'
                            f'{PLOTTED.get(script, "")})')
    if kind == 'distribution':
        for setting, flag in figures.S6_FLAGS.items():
            g.add_argument(flag, default=None, help=f'model.pt (or its run folder) of the {setting} FCN (default: '
                                                    f'the newest one under <--results-dir>/analog/)')
        g.add_argument('--tau', type=float, default=0.7, help='τ of the Analog SGD and TT-v1 runs looked up (0.7)')
    return p


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(RunConfig):
    """A validated command line of one of the scripts (fields a script does not use keep their defaults)."""
    script: str                         # the entry point, e.g. 'S4.1-mnist-FCN'
    setting: str | None = None          # 'FP SGD' | 'Analog SGD' | 'TT-v1' (--SETTING, A12's --optimizer)
    tau: float | None = None            # τ of the devices (None for FP SGD)
    rpu: analog.RPU | None = None       # the devices and IO of the setting (None: FP SGD)
    save_checkpoint: bool = False
    dataset: str = 'mnist'
    epochs: int = 0
    batch_size: int = 0
    max_batches: int | None = None      # --dry-run: mini-batches per epoch
    model: str | None = None            # A12: Resnet18 | Resnet34 | Resnet50
    fft: bool = False                   # A12: every layer learns (else the head only)
    image_size: int = 0                 # A12: CIFAR-10 resized to this (224; 64 in a dry run)
    weights: str | None = None          # A12: ImageNet weights file (None: random weights)
    sources: list[str] = dataclasses.field(default_factory=list)   # plot scripts: the runs' metrics.csv files
    checkpoints: dict = dataclasses.field(default_factory=dict)    # S6: setting → model.pt (None: untrained)
    iterations: int | None = None       # S1-S3: --dry-run's cap of the iterations


def rpu_of(setting, tau, preset, flags):
    """analog.rpu_config, its ValueError (unknown setting, τ ≤ 0) as a usage error naming the flags."""
    try:
        return analog.rpu_config(setting, tau, preset)
    except ValueError as e:
        raise UsageError(f'{flags}: {e}')


def check_setting(flag, setting, tau, preset):
    """(setting, τ or None for FP SGD, RPU or None) of a --SETTING/--optimizer and --tau."""
    if setting not in analog.SETTINGS:
        raise UsageError(f"{flag} {setting!r}: choose one of {', '.join(repr(s) for s in analog.SETTINGS)}")
    checks.real('--tau', tau, 'the dynamic-range radius τ', above=0, fix='e.g. --tau=0.6')
    rpu = rpu_of(setting, tau, preset, f'{flag} {setting!r} --tau {tau}')
    return setting, (None if rpu is None else float(tau)), rpu


def validate(script, args, given):
    """Every check of the command line `given` (parsed: args), before any data is read or folder made; returns its
    Config."""
    kind = SCRIPTS[script][0]
    checks.seed(args.seed)
    device = getattr(args, 'CUDA', None)
    values = dict(script=script, action=kind, device=-1 if (kind == 'toy' and device is None) else device,
                  data_root=getattr(args, 'data_root', './data'), argv_given=given)
    if kind == 'toy':
        values['iterations'] = toy.DRY_ITERATIONS if args.dry_run else None
    elif kind in ('mnist', 'resnet'):
        values.update(validate_training(script, kind, args))
    elif kind == 'plot':
        values['sources'] = find_runs(script, args)
    else:
        checks.real('--tau', args.tau, 'the dynamic-range radius τ', above=0, fix='e.g. --tau=0.7')
        given = {s: getattr(args, figures.S6_FLAGS[s][2:]) for s in analog.SETTINGS}
        found = {s: find_checkpoint(s, figures.S6_FLAGS[s], given[s], args)          # the paths given are checked first
                 for s in sorted(given, key=lambda s: given[s] is None)}
        values['checkpoints'] = {s: found[s] for s in analog.SETTINGS}
    return run_config(Config, args, **values)


def validate_training(script, kind, args):
    checks.count('--epochs', args.epochs, 1, 'the number of epochs')
    default = classify.DRY_EPOCHS if args.dry_run else classify.MNIST_EPOCHS if kind == 'mnist' else \
        classify.RESNET_EPOCHS
    folder = run_folder(script, args)
    cap = dict(epochs=args.epochs or default, max_batches=classify.DRY_BATCHES if args.dry_run else None,
               resume=None if args.evaluate else folder, model_from=folder if args.evaluate else None)
    if kind == 'mnist':
        if args.dataset not in ('mnist', 'mnist5k'):
            raise UsageError(f'--dataset {args.dataset}: choose mnist or mnist5k (the embedded digits)')
        setting, tau, rpu = check_setting('--SETTING', args.SETTING, args.tau, 'S4')
        check_parallel('--SETTING', setting, classify.MNIST[script]['batch_size'])
        return dict(setting=setting, tau=tau, rpu=rpu, batch_size=classify.MNIST[script]['batch_size'], **cap)
    if args.model not in wu_nets.RESNETS:
        raise UsageError(f'--model {args.model}: choose {", ".join(wu_nets.RESNETS)}')
    setting, tau, rpu = check_setting('--optimizer', args.optimizer, args.tau, 'S5')
    check_parallel('--optimizer', setting, classify.DRY_RESNET_BATCH if args.dry_run else classify.RESNET_BATCH)
    return dict(setting=setting, tau=tau, rpu=rpu, fft=args.FFT, dataset='cifar10', weights=find_weights(args),
                batch_size=classify.DRY_RESNET_BATCH if args.dry_run else classify.RESNET_BATCH,
                image_size=classify.DRY_RESNET_SIZE if args.dry_run else classify.RESNET_SIZE, **cap)


def run_folder(script, args):
    """The --load-path folder (a run of this script: its hyperparameters.txt starts with its command line), or None;
    --evaluate needs one."""
    prog = script + '.py'
    if not args.load_path:
        if args.evaluate:
            raise UsageError(f'--evaluate needs --load-path <the folder of a {prog} run>')
        return None
    path = trainer.hyper_file_of(args.load_path) if os.path.isdir(args.load_path) else None
    if path is None:
        raise UsageError(f'--load-path {args.load_path}: no run folder there (no hyperparameters.txt); give the '
                         f'folder of a {prog} run')
    with open(path) as f:
        first = f.readline().split()
    if first[:2] != ['python', prog]:
        raise UsageError(f'--load-path {args.load_path}: not a run of {prog} (it is one of '
                         f'{" ".join(first[:2]) or "nothing known"}); give the folder of a {prog} run')
    return args.load_path


def check_parallel(flag, setting, batch_size):
    """torchrun: FP SGD only (an analog tile's pulse trains are built from its own samples' x and δ, so the ranks'
    tiles would drift apart), and a world size that divides the script's mini-batch."""
    if distributed.launched() > 1 and setting != 'FP SGD':
        raise UsageError(f'{flag} {setting}: analog tiles are not data parallel (each rank would pulse its own '
                         f'samples); run it as one process, or with {flag} "FP SGD" under torchrun')
    checks.global_batch('the mini-batch of this script', batch_size)


def find_weights(args):
    """The ImageNet weights file of --model: --weights, else torchvision's file name in torch's hub cache or in
    --data-root; None for random weights (--weights none, or a dry run without the file)."""
    name = wu_nets.TORCHVISION_WEIGHTS[args.model]
    if args.weights is not None:
        if args.weights.lower() == 'none':
            return None
        if not os.path.isfile(args.weights):
            raise UsageError(f'--weights {args.weights}: no such file; give torchvision\'s ImageNet weights of '
                             f'{args.model} ({name}), or --weights none to start from random weights')
        return args.weights
    places = [os.path.join(torch.hub.get_dir(), 'checkpoints'), args.data_root]
    for folder in places:
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    if args.dry_run:
        say(f'dry run: no {name} in {" or ".join(places)}; {args.model} starts from random weights')
        return None
    raise UsageError(f'--weights: no ImageNet weights of {args.model} ({name}) in {" or ".join(places)}, and '
                     f'nothing is downloaded here; put torchvision\'s {name} there or give --weights PATH (or '
                     f'--weights none to start from random weights)')


def find_runs(script, args):
    """metrics.csv of every run of the plotted script under --runs (an empty list: a dry run draws synthetic ones)."""
    root = args.runs or os.path.join(args.results_root, 'analog', PLOTTED[script])
    found = sorted(glob.glob(os.path.join(root, '**', 'metrics.csv'), recursive=True))
    if not found and not args.dry_run:
        raise UsageError(f'--runs {root}: no metrics.csv of a {PLOTTED[script]} run there; run the '
                         f'{PLOTTED[script]}.py commands first, or give --runs <folder of its runs>')
    return found


def find_checkpoint(setting, flag, given, args):
    """S6: the model.pt of `setting` given by its flag (a file or a run folder), else the newest one that S4.1 (and,
    for FP SGD, S4.2: the README saves that one with the CNN script) wrote with --save-checkpoint at --tau."""
    if given:
        path = os.path.join(given, 'model.pt') if os.path.isdir(given) else given
        if not os.path.isfile(path):
            raise UsageError(f'{flag} {given}: no such checkpoint; give the model.pt of a run made with '
                             f'--save-checkpoint (or its run folder)')
        return path
    scripts = ('S4.1-mnist-FCN', 'S4.2-mnist-CNN') if setting == 'FP SGD' else ('S4.1-mnist-FCN',)
    for s in scripts:
        for path in sorted(glob.glob(os.path.join(args.results_root, 'analog', s, '*', '*', 'model.pt')),
                           reverse=True):                       # newest first: <date>/<time> folders sort in time
            if run_matches(os.path.dirname(path), setting, args.tau, flag):
                return path
    tau = '' if setting == 'FP SGD' else f' --tau={args.tau:g}'
    if args.dry_run:
        say(f'dry run: no {setting}{tau} checkpoint under {args.results_root}/analog/; histograms of an untrained '
            f'FCN')
        return None
    raise UsageError(f'{flag}: no checkpoint of python S4.1-mnist-FCN.py --SETTING="{setting}"{tau} under '
                     f'{args.results_root}/analog/; run it with --save-checkpoint first, or give {flag} PATH')


def run_matches(folder, setting, tau, flag):
    path = os.path.join(folder, 'metrics.csv')
    if not os.path.isfile(path):
        return False
    row = figures.read_metrics(path, f'repair or remove that run folder, or give {flag} PATH').iloc[0]
    return row['setting'] == setting and (setting == 'FP SGD' or math.isclose(row['tau'], tau, rel_tol=1e-9))

# ---------------------------------------------------------------------------------------------------------------
# Entry point

def main(script, argv=None):
    """Run an entry script's command line (sys.argv[1:] by default); returns its result folder. Every fault ends in
    one line on stderr and an exit code (suite/entry.py; bad input: 2)."""
    given = sys.argv[1:] if argv is None else list(argv)
    return run_entry(script + '.py', given, lambda given: run_script(script, given), paper=NAME)


def run_script(script, given):
    args, argv = parse(script, given)
    finalise_suite_args(args)
    cfg = validate(script, args, given)
    default_threads(cfg.threads, SCRIPTS[script][0] in CONV_RUNS and script != 'S4.1-mnist-FCN', cfg.batch_size)
    return RUN[SCRIPTS[script][0]](cfg, argv)


def parse(script, given):
    """(args, argv) of a command line; for S4 and A12 with --load-path RUN, argv is the run's saved command lines
    followed by this one, so that the run's own flags are the defaults (suite.commandline.resolve, as for main.py's papers)."""
    parser = build_parser(script)
    if SCRIPTS[script][0] in ('mnist', 'resnet'):
        return commandline.resolve(given, parser)
    return parser.parse_args(given), list(given)


CONV_RUNS = ('mnist', 'resnet')                 # (S4.1's FCN is fully connected)
RUN = {'toy': toy.run, 'mnist': classify.mnist, 'resnet': classify.resnet, 'plot': figures.plot_runs,
       'distribution': figures.distribution}

"""Wu, Gokmen, Rasch & Chen, NeurIPS 2024, "Towards exact gradient-based training on analog in-memory computing":
the experiments of the paper's code, run by the hyphenated entry scripts at the repository root (`python
S1-SGD-diff-lr.py`, `python S4.1-mnist-FCN.py --SETTING="TT-v1" --tau=0.6 --CUDA=0`, …), each a few lines calling
`main(<script name>)`. The device simulator is analog.py, the networks netWu.py.

The update rules compared (spec §1-§2), element-wise, with g_k the stochastic gradient and τ the dynamic-range radius
of the asymmetric linear device (soft bounds ±τ):

    digital SGD:   W_{k+1} = W_k − α g_k
    Analog SGD:    W_{k+1} = W_k − α g_k − (α/τ) |g_k| ⊙ W_k                      (A-ALD, the closed-form dynamic)
    Tiki-Taka:     P receives the analog update of g_k at W̄ = W + γP; W receives read columns of P (transfer)

S1-S3 compare them on least squares f(W) = (c/N) Σ_n (⟨w, a_n⟩ + b − y_n)², y = A x* (+ bias), c = 1 (MSE) or ½
(MSE/2), full batch: the digital and closed-form curves are analog.ald_step with Gaussian gradient noise σ, the
simulated ones an AnalogLinear trained by AnalogSGD with the script's device preset (gradient noise through the
MVM's weight noise, as the original). The logged loss is f of the weights after each step, divided by the input
size; the final loss of a curve is the mean of its last 20 logged values. S4 trains MNIST nets, A12 fine-tunes
ResNets on CIFAR-10 with an analog last layer, the plot scripts summarise S4 runs, S6 histograms saved weights.

Every script writes results/analog/<script>/<date>/<time>/ (under <--results-dir>/dry-run/ with --dry-run):
hyperparameters.txt (its command line first), a CSV of every curve, the figure as PNG and PDF, and plotFunctions.py,
which redraws the figure when run there. Bad input is one line '<script>.py: error: …' and exit code 2, before any
folder is made.

Differences from the original scripts (spec §5):
- S3.1 is a real τ sweep (the original was a copy of S2): S2's problem and device preset, τ ∈ TAU_SWEEP.
- S1 adds Tiki-Taka (TT-v1, with γ = 0.4: see S1_TT) to digital and Analog SGD.
- A12 (the 2024 code's S5): the analog head (weight and bias) learns at lr and the backbone at lr/10; the original
  gave lr to "the last parameter" only, which with the toolkit's parameter order is the head's digital bias. It
  printed model.classifier[-1], which ResNets do not have (a crash), not reproduced. ImageNet weights come from a
  local file (nothing is downloaded).
- S4 writes test accuracy per epoch to metrics.csv (and TensorBoard event files when tensorboard imports); the plot
  scripts read metrics.csv. S6 reads the model.pt that S4 writes with --save-checkpoint (the original read paths S4
  never wrote). An absent GPU (--CUDA) runs on the CPU with a warning.
"""
import dataclasses
import glob
import math
import os
import sys

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

import analog
from suite import checks
from suite import data
from suite import distributed
from papers.wu2024 import nets as wu_nets
import plotFunctions
from suite import rundir
from suite import checkpoints
from suite import trainer
from suite.cli import (RunConfig, SuiteParser, UsageError, finalise_suite_args, int_or_none, pick_device, run_config, say,
                 seed_everything)

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
PLOTTED = {'S4.1-plot-FCN': 'S4.1-mnist-FCN', 'S4.2-plot-CNN': 'S4.2-mnist-CNN'}

# S4 (spec §5): epochs, batch size (train and test), learning rate, StepLR(35, 0.1), device preset
MNIST = {'S4.1-mnist-FCN': dict(net=wu_nets.FCN, batch_size=10), 'S4.2-mnist-CNN': dict(net=wu_nets.LeNet, batch_size=8)}
MNIST_EPOCHS, MNIST_LR, STEP, GAMMA = 80, 0.05, 35, 0.1
# A12 (spec §5, S5 row): CIFAR-10 resized to 224, ImageNet normalisation, batch 128, 100 epochs, StepLR(50, 0.1)
RESNET_EPOCHS, RESNET_BATCH, RESNET_STEP, RESNET_SIZE = 100, 128, 50, 224
RESNET_LR = {'FP SGD': 0.15, 'Analog SGD': 0.075, 'TT-v1': 0.075}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
DRY_EPOCHS, DRY_BATCHES, DRY_ITERATIONS, DRY_RESNET_BATCH, DRY_RESNET_SIZE = 1, 2, 20, 2, 64
S6_FLAGS = {'FP SGD': '--fp', 'Analog SGD': '--analog', 'TT-v1': '--tt'}


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
    g.add_argument('--threads', type=int, default=None, help='CPU threads of torch')
    if kind in ('toy', 'mnist', 'resnet'):
        g.add_argument('--CUDA', type=int_or_none, default=None,
                       help='CUDA device index (default: GPU 0 when present, the CPU for S1-S3; an absent GPU runs on '
                            'the CPU with a warning)')
    if kind in ('mnist', 'resnet'):
        g.add_argument('--data-root', default='./data', help='folder holding the datasets (default ./data)')
        g.add_argument('--epochs', type=int, default=None, help='training epochs (default: the paper\'s)')
        g.add_argument('--save-checkpoint', action='store_true', help='save the final model (model.pt, a state dict)')
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
        for setting, flag in S6_FLAGS.items():
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
        values['iterations'] = DRY_ITERATIONS if args.dry_run else None
    elif kind in ('mnist', 'resnet'):
        values.update(validate_training(script, kind, args))
    elif kind == 'plot':
        values['sources'] = find_runs(script, args)
    else:
        checks.real('--tau', args.tau, 'the dynamic-range radius τ', above=0, fix='e.g. --tau=0.7')
        given = {s: getattr(args, S6_FLAGS[s][2:]) for s in analog.SETTINGS}
        found = {s: find_checkpoint(s, S6_FLAGS[s], given[s], args)          # the paths given are checked first
                 for s in sorted(given, key=lambda s: given[s] is None)}
        values['checkpoints'] = {s: found[s] for s in analog.SETTINGS}
    return run_config(Config, args, **values)


def validate_training(script, kind, args):
    checks.count('--epochs', args.epochs, 1, 'the number of epochs')
    default = MNIST_EPOCHS if kind == 'mnist' else RESNET_EPOCHS
    cap = dict(epochs=DRY_EPOCHS if args.dry_run else (args.epochs or default),
               max_batches=DRY_BATCHES if args.dry_run else None)
    if kind == 'mnist':
        if args.dataset not in ('mnist', 'mnist5k'):
            raise UsageError(f'--dataset {args.dataset}: choose mnist or mnist5k (the embedded digits)')
        setting, tau, rpu = check_setting('--SETTING', args.SETTING, args.tau, 'S4')
        check_parallel('--SETTING', setting, MNIST[script]['batch_size'])
        return dict(setting=setting, tau=tau, rpu=rpu, batch_size=MNIST[script]['batch_size'], **cap)
    if args.model not in wu_nets.RESNETS:
        raise UsageError(f'--model {args.model}: choose {", ".join(wu_nets.RESNETS)}')
    setting, tau, rpu = check_setting('--optimizer', args.optimizer, args.tau, 'S5')
    check_parallel('--optimizer', setting, DRY_RESNET_BATCH if args.dry_run else RESNET_BATCH)
    return dict(setting=setting, tau=tau, rpu=rpu, fft=args.FFT, dataset='cifar10', weights=find_weights(args),
                batch_size=DRY_RESNET_BATCH if args.dry_run else RESNET_BATCH,
                image_size=DRY_RESNET_SIZE if args.dry_run else RESNET_SIZE, **cap)


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
            if run_matches(os.path.dirname(path), setting, args.tau):
                return path
    tau = '' if setting == 'FP SGD' else f' --tau={args.tau:g}'
    if args.dry_run:
        say(f'dry run: no {setting}{tau} checkpoint under {args.results_root}/analog/; histograms of an untrained '
            f'FCN')
        return None
    raise UsageError(f'{flag}: no checkpoint of python S4.1-mnist-FCN.py --SETTING="{setting}"{tau} under '
                     f'{args.results_root}/analog/; run it with --save-checkpoint first, or give {flag} PATH')


def run_matches(folder, setting, tau):
    path = os.path.join(folder, 'metrics.csv')
    if not os.path.isfile(path):
        return False
    row = pd.read_csv(path, nrows=1).iloc[0]
    return row['setting'] == setting and (setting == 'FP SGD' or math.isclose(row['tau'], tau, rel_tol=1e-9))


# ---------------------------------------------------------------------------------------------------------------
# Entry point

def main(script, argv=None):
    """Run an entry script's command line (sys.argv[1:] by default); returns its result folder. Bad input: one line
    on stderr and exit code 2."""
    prog = script + '.py'
    given = sys.argv[1:] if argv is None else list(argv)
    distributed.setup()                             # torchrun: join the process group (nothing for one process)
    try:
        args = build_parser(script).parse_args(given)
        finalise_suite_args(args)
        return RUN[SCRIPTS[script][0]](validate(script, args, given), given)
    except UsageError as e:
        print(f'{prog}: error: {e}', file=sys.stderr)
        raise SystemExit(2)
    except trainer.Stopped as e:
        print(f'{prog}: {e}', file=sys.stderr)
        raise SystemExit(e.code)
    except KeyboardInterrupt:
        print(f'{prog}: interrupted', file=sys.stderr)
        raise SystemExit(130)


def new_folder(cfg, argv, items, model=None):
    """results/analog/<script>/<date>/<time>/ with hyperparameters.txt (command line first) and plotFunctions.py."""
    folder = rundir.claim_time_dir(os.path.join(cfg.results_dir, 'analog', cfg.script))
    base = [('script', cfg.script), ('seed', cfg.seed), ('dry run', cfg.dry_run)]
    rundir.write_hyperparameters(folder, argv, base + list(items), prog=cfg.script + '.py')
    if model is not None:
        rundir.append_hyperparameters(folder, [str(model)])
    rundir.copy_plot_script(folder)
    return folder


# ---------------------------------------------------------------------------------------------------------------
# S1-S3: least squares, full batch

@dataclasses.dataclass(frozen=True)
class Toy:
    """A toy problem of spec §5: A = a_scale·N(0, 1) (N × D), x* = x_scale·N(0, I), y = A x* + bias."""
    D: int
    N: int
    x_scale: float
    a_scale: float
    half: bool                          # loss MSE/2 (else MSE)
    bias: float                         # a digital bias is learnt when non-zero (S3.3)
    iterations: int
    lrs: tuple
    taus: tuple
    sigmas: tuple                       # gradient-noise std σ (S3.2: one per variance σ²)
    preset: str                         # analog.rpu_config preset of the simulated curves
    ema: float                          # smoothing of the plotted curves


TAU_SWEEP = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
TOYS = {
    'S1-SGD-diff-lr': Toy(40, 100, 0.45, 1.0, False, 0.0, 2500, (0.2, 0.1, 0.05, 0.03), (3.0,),
                          (1e-2 / math.sqrt(40),), 'S1', 0.9),
    'S2-dynamic-verification': Toy(40, 100, 0.3, 0.5, True, 0.0, 2500, (0.03,), (1.0, 1.5, 2.0, 2.5), (0.1,), 'S2',
                                   0.8),
    'S3.1-ablation-tau': Toy(40, 100, 0.3, 0.5, True, 0.0, 2500, (0.03,), TAU_SWEEP, (0.1,), 'S3.1', 0.8),
    'S3.2-ablation-sigma': Toy(50, 100, 0.5, 1.0, True, 0.0, 200, (0.1,), (2.0,),
                               tuple(math.sqrt(v) for v in (1e-3, 1e-2, 1e-1, 1.0)), 'S3.2', 0.8),
    'S3.3-ablation-init': Toy(50, 100, 0.5, 1.0, False, 0.1, 50, (0.1,), (1.0,), (1e-2 / math.sqrt(50),), 'S3.3',
                              0.8),
}
# S1's Tiki-Taka (not in the original): the network sees W̄ = C + γA with γ = 0.4 (the paper's mixing, the 2025 code's
# value), A learns at fast_lr 0.1, one column transferred per step. With the 2024 scripts' γ = 0, A integrates the
# gradient without friction and C integrates A: an oscillator damped only by A's drift, which is negligible near the
# optimum (measured with γ = 0, fast_lr = α and every column transferred each step, the original's commented-out toy
# TT: final losses 12-34× above Analog SGD's).
S1_TT = dict(gamma=0.4, fast_lr=0.1)
S3_CONSTANTS = (1e3, 1e2, 1e1, 1.0, 1e-2)         # S3.3: constant initial weights (clipped by the devices)
S3_PRETRAIN = (10, 20, 30)                          # S3.3: iterations of digital GD before the analog run
FINAL_WINDOW = 20


def make_problem(toy, gen):
    A = toy.a_scale * torch.randn(toy.N, toy.D, generator=gen)
    x_star = toy.x_scale * torch.randn(toy.D, generator=gen)
    return A, A @ x_star + toy.bias


def toy_loss(toy, A, Y, W, b=0.0):
    """f(W, b) = (c/N) Σ_n (⟨w, a_n⟩ + b − y_n)², c = ½ (MSE/2) or 1; W is (1, D)."""
    return (A @ W[0] + b - Y).square().mean() * (0.5 if toy.half else 1.0)


def toy_grad(toy, A, Y, W, b=0.0):
    """(∂f/∂W, ∂f/∂b) = (2c/N) (Aᵀ r, Σ r), r = A w + b − y."""
    r = (A @ W[0] + b - Y) * ((1.0 if toy.half else 2.0) / toy.N)
    return (r @ A).unsqueeze(0), r.sum()


def dynamic(toy, A, Y, lr, tau, sigma, gen, W=None, b=0.0, iterations=None):
    """The closed-form dynamic (A-ALD) with gradient noise σ·ξ; τ = inf is digital SGD. The bias (S3.3) is digital.
    Returns (logged losses f/D, final W, final b)."""
    W = torch.zeros(1, toy.D) if W is None else W
    losses = torch.empty(iterations)
    for k in range(iterations):
        gW, gb = toy_grad(toy, A, Y, W, b)
        W = analog.ald_step(W, gW + sigma * torch.randn(W.shape, generator=gen), lr, tau)
        if toy.bias:
            b = b - lr * gb
        losses[k] = toy_loss(toy, A, Y, W, b)
    return losses / toy.D, W, b


def simulate(toy, A, Y, rpu, lr, iterations, W=None, b=0.0):
    """AnalogSGD on an AnalogLinear(D → 1) (pulsed per-sample updates of the device model), full batch.
    Returns (logged losses f/D, the layer)."""
    lin = nn.Linear(toy.D, 1, bias=bool(toy.bias))
    with torch.no_grad():
        lin.weight.copy_(torch.zeros(1, toy.D) if W is None else W)
        if toy.bias:
            lin.bias.fill_(float(b))
    layer = analog.convert(lin, rpu)
    opt = analog.AnalogSGD(layer.parameters(), lr=lr)
    losses = torch.empty(iterations)
    for k in range(iterations):
        opt.zero_grad(set_to_none=True)
        out = layer(A)[:, 0]
        ((out - Y).square().mean() * (0.5 if toy.half else 1.0)).backward()
        opt.step()
        with torch.no_grad():
            losses[k] = toy_loss(toy, A, Y, layer.visible_weight(), layer.bias if toy.bias else 0.0)
    return losses / toy.D, layer


def write_saturation(folder, rows):
    """saturation.csv: for each (labels, saturations) the max and mean |W|/bound and the fraction above 0.9, printed."""
    table = pd.DataFrame([{**labels, 'max_saturation': s.max().item(), 'mean_saturation': s.mean().item(),
                           'fraction_above_0.9': (s > 0.9).double().mean().item()} for labels, s in rows])
    rundir.write_csv(os.path.join(folder, 'saturation.csv'), table)
    for (labels, _), r in zip(rows, table.to_dict('records')):
        say(f'{", ".join(f"{k} {v}" for k, v in labels.items())}: saturation |W|/bound max {r["max_saturation"]:.3f}, '
            f'mean {r["mean_saturation"]:.3f}, {100 * r["fraction_above_0.9"]:.1f} % above 0.9')


def saturation(W, b_min, b_max):
    """|w| / (the bound on w's side), element-wise; 1 where that bound is 0 (a device whose drawn bound was clipped
    to 0 holds w = 0 at its bound)."""
    bound = torch.where(W >= 0, b_max, -b_min)
    return torch.where(bound > 0, W.abs() / bound.clamp(min=analog.TINY), torch.ones_like(W))


def s1_runs(toy, A, Y, gen, it):
    """Per step size: digital SGD (exact gradient + σ noise), Analog SGD and TT-v1 simulated (noise: w_noise = σ)."""
    runs = []
    tau, sigma = toy.taus[0], toy.sigmas[0]
    for lr in toy.lrs:
        runs.append((lr, 'digital', dynamic(toy, A, Y, lr, math.inf, sigma, gen, iterations=it)[0]))
        runs.append((lr, 'analog', simulate(toy, A, Y, analog.rpu_config('Analog SGD', tau, toy.preset,
                                                                         w_noise=sigma), lr, it)[0]))
        tt = analog.rpu_config('TT-v1', tau, toy.preset, w_noise=sigma, **S1_TT)
        runs.append((lr, 'tt', simulate(toy, A, Y, tt, lr, it)[0]))
    return 'lr', runs, []


def tau_runs(toy, A, Y, gen, it):
    """Per τ: digital SGD and the closed form with gradient noise σ, and the simulation with the weight noise
    σ / (mean singular value of A) that gives the same gradient noise (the original's noise correction); the
    saturation |W|/bound at the end of each analog curve."""
    lr, sigma = toy.lrs[0], toy.sigmas[0]
    kit_sigma = sigma / torch.linalg.svdvals(A).mean().item()
    digital = dynamic(toy, A, Y, lr, math.inf, sigma, gen, iterations=it)[0]
    runs, sat = [], []
    for tau in toy.taus:
        runs.append((tau, 'digital', digital))
        losses, W, _ = dynamic(toy, A, Y, lr, tau, sigma, gen, iterations=it)
        runs.append((tau, 'closed_form', losses))
        sat.append((tau, 'closed_form', W.abs() / tau))
        losses, layer = simulate(toy, A, Y, analog.rpu_config('Analog SGD', tau, toy.preset, w_noise=kit_sigma), lr,
                                 it)
        runs.append((tau, 'simulation', losses))
        sat.append((tau, 'simulation', saturation(layer.weights()['W'], *layer.bounds())))
    return 'tau', runs, sat


def sigma_runs(toy, A, Y, gen, it):
    """Per noise variance σ²: the simulation with weight noise σ in the forward and backward MVMs."""
    tau, lr = toy.taus[0], toy.lrs[0]
    return 'sigma2', [(round(s * s, 12), 'simulation',
                       simulate(toy, A, Y, analog.rpu_config('Analog SGD', tau, toy.preset, w_noise=s), lr, it)[0])
                      for s in toy.sigmas], []


def init_runs(toy, A, Y, gen, it):
    """The simulation from constant weights (clipped to the bounds by analog.convert) and from weights trained by
    digital GD (exact gradient) for a few iterations."""
    tau, lr, sigma = toy.taus[0], toy.lrs[0], toy.sigmas[0]
    rpu = analog.rpu_config('Analog SGD', tau, toy.preset, w_noise=sigma)
    starts = [(f'constant {c:g}', torch.full((1, toy.D), c), 0.0) for c in S3_CONSTANTS]
    for n in S3_PRETRAIN:
        _, W, b = dynamic(toy, A, Y, lr, math.inf, 0.0, gen, iterations=n)
        starts.append((f'digital GD {n} it', W, float(b)))
    return 'init', [(name, 'simulation', simulate(toy, A, Y, rpu, lr, it, W, b)[0]) for name, W, b in starts], []


TOY_RUNS = {'S1-SGD-diff-lr': s1_runs, 'S2-dynamic-verification': tau_runs, 'S3.1-ablation-tau': tau_runs,
            'S3.2-ablation-sigma': sigma_runs, 'S3.3-ablation-init': init_runs}


def toy(cfg, argv):
    """S1-S3: final_loss.csv (<key>, curve, final_loss), curves.csv (<key>, curve, iteration, loss), saturation.csv
    (S2, S3.1), the figure."""
    spec = TOYS[cfg.script]
    seed = seed_everything(cfg.seed)
    gen = torch.Generator().manual_seed(seed)
    it = min(spec.iterations, cfg.iterations or spec.iterations)
    items = [(f.name, getattr(spec, f.name)) for f in dataclasses.fields(spec)] + [('iterations run', it)]
    if TOY_RUNS[cfg.script] is s1_runs:
        items.append(('TT-v1 overrides', S1_TT))
    folder = trainer.open_run(lambda: new_folder(cfg, argv, items))
    A, Y = make_problem(spec, gen)
    key, runs, sat = TOY_RUNS[cfg.script](spec, A, Y, gen, it)
    final = pd.DataFrame([{key: v, 'curve': c, 'final_loss': l[-FINAL_WINDOW:].mean().item()} for v, c, l in runs])
    curves = pd.concat([pd.DataFrame({key: v, 'curve': c, 'iteration': range(1, len(l) + 1), 'loss': l.numpy()})
                        for v, c, l in runs])
    rundir.write_csv(os.path.join(folder, 'final_loss.csv'), final)
    rundir.write_csv(os.path.join(folder, 'curves.csv'), curves)
    for r in final.itertuples(index=False):
        say(f'{key} {r[0]}: {r.curve:12s} final loss {r.final_loss:.4e}')
    if sat:
        write_saturation(folder, [({key: v, 'curve': c}, s) for v, c, s in sat])
    plotFunctions.plot_folder(folder)
    return folder


# ---------------------------------------------------------------------------------------------------------------
# S4 and A12: classifiers trained with FP SGD, Analog SGD or TT-v1

def run_epoch_of(model, opt, loss_fn, train_b, test_b):
    """One epoch of training then testing: (mean train loss, train accuracy %, test loss, test accuracy %), one host
    read per pass."""
    model.train()
    dev = next(model.parameters()).device
    tot, seen = torch.zeros(2, device=dev, dtype=torch.float64), 0
    for x, y, own in distributed.shards(trainer.progress(train_b, 'train')):
        opt.zero_grad(set_to_none=True)
        out = model(x)
        loss = loss_fn(out, y)
        loss.backward()
        distributed.average_grads(model.parameters())    # torchrun: the gradient of the whole mini-batch
        opt.step()
        if own:
            tot += torch.stack([loss.detach().double() * len(y), (out.argmax(1) == y).sum().double()])
            seen += len(y)
    distributed.sync_buffers(model)                      # rank 0's BatchNorm running statistics everywhere
    train_loss, train_acc = mean_totals(tot, seen)
    test_loss, test_acc = evaluate(model, loss_fn, test_b)
    return dict(train_loss=train_loss, train_acc=100 * train_acc, test_loss=test_loss, test_acc=test_acc)


def evaluate(model, loss_fn, batches):
    """(mean loss, accuracy %) over the batches."""
    model.eval()
    dev = next(model.parameters()).device
    tot, seen = torch.zeros(2, device=dev, dtype=torch.float64), 0
    with torch.no_grad():
        for x, y, own in distributed.shards(batches):
            if own:
                out = model(x)
                tot += torch.stack([loss_fn(out, y).double() * len(y), (out.argmax(1) == y).sum().double()])
                seen += len(y)
    loss, acc = mean_totals(tot, seen)
    return loss, 100 * acc


def mean_totals(tot, seen):
    """tot / seen, both summed over the torchrun ranks (one host read)."""
    *tot, seen = trainer.totals(*tot, seen)
    return [v / max(seen, 1) for v in tot]


def arrays(model):
    """{layer: {'W'} or {'A', 'C'} (Tiki-Taka), with 'b_min', 'b_max' for analog layers} on the CPU: what S6 plots."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, (analog.AnalogLinear, analog.AnalogConv2d)):
            b_min, b_max = m.bounds()
            out[name] = {**{k: v.detach().cpu() for k, v in m.weights().items()}, 'b_min': b_min.detach().cpu(),
                         'b_max': b_max.detach().cpu()}
        elif isinstance(m, (nn.Linear, nn.Conv2d)):
            out[name] = {'W': m.weight.detach().cpu()}
    return out


def tensorboard(folder):
    """A TensorBoard writer into <folder>/tensorboard (the original plot scripts read 'Accuracy/test'), or None
    when tensorboard does not import."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:
        return None
    return SummaryWriter(os.path.join(folder, 'tensorboard'))


def fit_classifier(cfg, argv, model, opt, loss_fn, train_b, test_b, items, arch):
    """The epochs of S4 / A12 through the suite's trainer: StepLR per epoch, metrics.csv (epoch, setting, tau, train
    and test loss and accuracy, lr, seconds), TensorBoard scalars, model.pt with --save-checkpoint, the figure."""
    step = RESNET_STEP if cfg.script.startswith('A12') else STEP
    sched = torch.optim.lr_scheduler.StepLR(opt, step, GAMMA)
    items = [('SETTING', cfg.setting), ('tau', cfg.tau), ('rpu', cfg.rpu), ('epochs', cfg.epochs),
             ('batch size', cfg.batch_size), ('lr', [g['lr'] for g in opt.param_groups]),
             ('StepLR', (step, GAMMA)), ('device', next(model.parameters()).device)] + items
    folder = trainer.open_run(lambda: new_folder(cfg, argv, items, model))
    writer = tensorboard(folder) if distributed.is_main() else None     # rank 0 alone writes

    def run_epoch(epoch):
        row = dict(setting=cfg.setting, tau=cfg.tau, **run_epoch_of(model, opt, loss_fn, train_b, test_b),
                   lr=opt.param_groups[-1]['lr'])
        sched.step()
        if writer is not None:
            writer.add_scalar('Accuracy/test', row['test_acc'] / 100, epoch)
            writer.add_scalar('Loss/train', row['train_loss'], epoch)
        say(f'epoch {epoch}: train loss {row["train_loss"]:.4f}, train acc {row["train_acc"]:.2f} %, '
            f'test acc {row["test_acc"]:.2f} %')
        return row

    trainer.fit(folder, cfg.epochs, [], run_epoch, lambda history: None, model.parameters(), metrics='metrics.csv')
    if writer is not None:
        writer.close()
    if cfg.save_checkpoint:
        rundir.save({'model': model.state_dict(), 'arch': arch, 'setting': cfg.setting, 'tau': cfg.tau,
                      'arrays': arrays(model)}, os.path.join(folder, 'model.pt'))
    plotFunctions.plot_folder(folder)
    return folder


def mnist(cfg, argv):
    """S4.1 / S4.2: NLL of the log-softmax output, AnalogSGD (plain SGD for FP SGD) at lr 0.05, StepLR(35, 0.1)."""
    device = pick_device(cfg.device, '--CUDA', cfg.script + '.py')
    seed = seed_everything(cfg.seed)
    gen = torch.Generator().manual_seed(seed)
    splits = [data.load_or_synthetic(cfg.dataset, cfg.data_root, train, cfg.dry_run) for train in (True, False)]
    (xtr, ytr), (xte, yte) = splits
    model = analog.convert(MNIST[cfg.script]['net'](), cfg.rpu).to(device)
    opt = analog.AnalogSGD(model.parameters(), lr=MNIST_LR)
    train_b = data.Batches(xtr, ytr, cfg.batch_size, True, device=device, generator=gen, max_batches=cfg.max_batches)
    test_b = data.Batches(xte, yte, cfg.batch_size, device=device, max_batches=cfg.max_batches)
    return fit_classifier(cfg, argv, model, opt, F.nll_loss, train_b, test_b, [('dataset', cfg.dataset)],
                          MNIST[cfg.script]['net'].__name__)


def resnet_transform(train, size):
    """CIFAR-10 in [0, 1] → resized to size × size (bilinear), random horizontal and vertical flips (training), ImageNet
    normalisation; on the batch's device."""
    def f(x, generator=None):
        x = F.interpolate(x, size=size, mode='bilinear', align_corners=False)
        if train:
            for dim in (-1, -2):
                flip = (torch.rand(len(x), generator=generator) < 0.5).to(x.device).view(-1, 1, 1, 1)
                x = torch.where(flip, x.flip(dim), x)
        return data.normalize(x, IMAGENET_MEAN, IMAGENET_STD).to(x.device)
    return f


def resnet_model(cfg):
    """torchvision's (or netWu's) ResNet with the ImageNet weights of the file, its fc replaced by an analog
    Linear(num_ftrs → 10); without -FFT the backbone is frozen."""
    model, source = wu_nets.resnet(cfg.model)
    if cfg.weights:
        state = checkpoints.load(cfg.weights, (), f"torchvision's ImageNet weights of {cfg.model}", '--weights')
        checkpoints.load_state(model, state, cfg.weights, f"give torchvision's ImageNet weights of {cfg.model} "
                                                      f"({wu_nets.TORCHVISION_WEIGHTS[cfg.model]}) to --weights")
    if not cfg.fft:
        for p in model.parameters():
            p.requires_grad_(False)
    head = nn.Linear(model.fc.in_features, 10)
    model.fc = analog.convert(head, cfg.rpu)
    return model, source


def param_groups(model, lr):
    """The backbone's trainable parameters at lr/10 (none without -FFT), the whole head fc (its analog weights and
    digital bias) at lr. (The original gave lr to the optimizer's last parameter only: the head's bias.)"""
    body = [p for name, p in model.named_parameters() if not name.startswith('fc.') and p.requires_grad]
    return ([{'params': body, 'lr': lr / 10}] if body else []) + [{'params': list(model.fc.parameters()), 'lr': lr}]


def resnet(cfg, argv):
    """A12: cross-entropy, AnalogSGD with two groups (backbone lr/10, analog head lr), StepLR(50, 0.1)."""
    device = pick_device(cfg.device, '--CUDA', cfg.script + '.py')
    seed = seed_everything(cfg.seed)
    gen = torch.Generator().manual_seed(seed)
    n = 2 * DRY_RESNET_BATCH
    (xtr, ytr), (xte, yte) = [data.load_or_synthetic('cifar10', cfg.data_root, train, cfg.dry_run, n)
                              for train in (True, False)]
    model, source = resnet_model(cfg)
    model = model.to(device)
    opt = analog.AnalogSGD(param_groups(model, RESNET_LR[cfg.setting]), lr=RESNET_LR[cfg.setting])
    train_b = data.Batches(xtr, ytr, cfg.batch_size, True, device=device, generator=gen, max_batches=cfg.max_batches,
                           transform=resnet_transform(True, cfg.image_size))
    test_b = data.Batches(xte, yte, cfg.batch_size, device=device, max_batches=cfg.max_batches,
                          transform=resnet_transform(False, cfg.image_size))
    items = [('model', cfg.model), ('FFT', cfg.fft), ('network from', source), ('image size', cfg.image_size),
             ('ImageNet weights', cfg.weights or 'none (random)'), ('dataset', 'cifar10')]
    return fit_classifier(cfg, argv, model, opt, F.cross_entropy, train_b, test_b, items, cfg.model)


# ---------------------------------------------------------------------------------------------------------------
# S4.1-plot / S4.2-plot: test accuracy averaged over repeats

FINAL_EPOCHS = 5


def synthetic_runs(seed):
    """Dry run without S4 runs: two made-up 6-epoch runs per setting (said on stdout)."""
    g = torch.Generator().manual_seed(seed)
    frames = []
    for setting, tau, top in (('FP SGD', None, 97.5), ('Analog SGD', 0.6, 95.0), ('TT-v1', 0.6, 97.0)):
        for _ in range(2):
            acc = top - 10 * torch.exp(-torch.arange(6.0)) + 0.1 * torch.randn(6, generator=g)
            frames.append(pd.DataFrame({'epoch': range(1, 7), 'setting': setting, 'tau': tau, 'test_acc': acc}))
    say('dry run: no S4 runs found; summarising synthetic accuracy curves')
    return frames


def summarise(frames):
    """Per (setting, τ): the mean and std across repeats of test accuracy per epoch (runs cut to the shortest), and
    the final accuracy = mean over the last 5 epochs of the mean curve ± mean over them of the std across repeats."""
    curves, finals = [], []
    groups = {}
    for f in frames:
        tau = f['tau'].iloc[0]
        groups.setdefault((f['setting'].iloc[0], None if pd.isna(tau) else float(tau)), []).append(f)
    for (setting, tau), fs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0.0)):
        n = min(len(f) for f in fs)
        acc = torch.from_numpy(np.stack([f['test_acc'].to_numpy(dtype=np.float64)[:n] for f in fs]))
        mean, std = acc.mean(0), (acc.std(0) if len(fs) > 1 else torch.zeros(n, dtype=torch.float64))
        curves.append(pd.DataFrame({'setting': setting, 'tau': tau, 'epoch': range(1, n + 1), 'mean': mean.numpy(),
                                    'std': std.numpy(), 'repeats': len(fs)}))
        k = min(FINAL_EPOCHS, n)
        finals.append(dict(setting=setting, tau=tau, final_acc=mean[-k:].mean().item(),
                           final_std=std[-k:].mean().item(), repeats=len(fs), epochs=n))
    return pd.concat(curves), pd.DataFrame(finals)


def plot_runs(cfg, argv):
    frames = [pd.read_csv(p) for p in cfg.sources] or synthetic_runs(cfg.seed)
    folder = trainer.open_run(lambda: new_folder(cfg, argv, [('runs', len(frames)), ('metrics files', cfg.sources)]))
    curves, finals = summarise(frames)
    rundir.write_csv(os.path.join(folder, 'curves.csv'), curves)
    rundir.write_csv(os.path.join(folder, 'final_accuracy.csv'), finals)
    for r in finals.itertuples(index=False):
        tau = '' if pd.isna(r.tau) else f' τ={r.tau:g}'
        say(f'{r.setting}{tau}: final accuracy {r.final_acc:.2f} ± {r.final_std:.2f} % (mean of the last '
            f'{min(FINAL_EPOCHS, r.epochs)} epochs, {r.repeats} run(s))')
    plotFunctions.plot_folder(folder)
    return folder


# ---------------------------------------------------------------------------------------------------------------
# S6: weight and saturation distributions

HIST_BINS, HIST_RANGE = 400, (-1.0, 1.0)


def distribution_arrays(cfg, setting, path):
    """(weights, saturations or None) of a checkpoint, every layer flattened: FP SGD and Analog SGD their visible
    weights W, TT-v1 its slow array C; saturation |w|/bound of the analog ones. No checkpoint (dry run): a freshly
    converted FCN."""
    if path is None:
        rpu = analog.rpu_config(setting, cfg.tau, 'S4')
        layers = arrays(analog.convert(wu_nets.FCN(), rpu))
    else:
        layers = checkpoints.load(path, ('arrays',), 'a model.pt written with --save-checkpoint', S6_FLAGS[setting])[
            'arrays']
    key = 'C' if setting == 'TT-v1' else 'W'
    w = torch.cat([a[key].flatten() for a in layers.values()])
    if not all('b_max' in a for a in layers.values()):
        return w, None
    sat = torch.cat([saturation(a[key], a['b_min'], a['b_max']).flatten() for a in layers.values()])
    return w, sat


def histogram(values, setting, lo, hi):
    counts = torch.histc(values.double(), HIST_BINS, lo, hi)
    edges = torch.linspace(lo, hi, HIST_BINS + 1)
    return pd.DataFrame({'setting': setting, 'left': edges[:-1].numpy(), 'right': edges[1:].numpy(),
                         'count': counts.numpy()})


def distribution(cfg, argv):
    """weight_hist.csv, saturation_hist.csv (setting, left, right, count), saturation.csv (mean, max, fraction above
    0.9 per setting) and the figure."""
    got = {s: distribution_arrays(cfg, s, p) for s, p in cfg.checkpoints.items()}
    folder = trainer.open_run(lambda: new_folder(cfg, argv, [('tau', cfg.tau), ('checkpoints', cfg.checkpoints),
                                                             ('bins', HIST_BINS)]))
    weights = pd.concat([histogram(w, s, *HIST_RANGE) for s, (w, _) in got.items()])
    sats = [(s, v) for s, (_, v) in got.items() if v is not None]
    rundir.write_csv(os.path.join(folder, 'weight_hist.csv'), weights)
    rundir.write_csv(os.path.join(folder, 'saturation_hist.csv'), pd.concat([histogram(v, s, 0.0, 1.0)
                                                                              for s, v in sats]))
    write_saturation(folder, [({'setting': s}, v) for s, v in sats])
    plotFunctions.plot_folder(folder)
    return folder


RUN = {'toy': toy, 'mnist': mnist, 'resnet': resnet, 'plot': plot_runs, 'distribution': distribution}

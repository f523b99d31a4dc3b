"""Laborieux et al. 2021 — "Scaling Equilibrium Propagation to deep ConvNets by drastically reducing its gradient
estimator bias": symmetric nudging, cross-entropy readout, continual EP, theorem (GDU) check.

Its flag group (the original's names and defaults), their validation into a frozen Config, and its actions: --todo
train (EP with the one-sided, random-sign or symmetric estimator, CEP, or truncated BPTT), evaluate, gducheck.
Networks in papers/laborieux2021/nets.py; the dynamics are the suite's engine (netFunctions.py), the epoch and mini-batch loops
its trainer (suite/trainer.py). EPLCANet (papers/eplcanet) extends this paper's flags, Config and actions.
"""
import argparse
import dataclasses
import os

import torch

import analog
from suite import checks
from suite import data
from ep import estimators
import netFunctions as nf
from suite import rundir
from suite import checkpoints
from suite import trainer
from suite.cli import adam, default_threads
from suite.cli import (SCHEDULES, RunConfig, UsageError, apply_defaults, dry_cap, run_config, run_device, say,
                 seed_everything)
from netClasses import conv_pool_sizes
from papers.laborieux2021.nets import ACTIVATION_NAMES, P_CNN, P_MLP, VF_CNN, VF_MLP

NAME = 'laborieux2021'
DEFAULTS = dict(epochs=1, dataset=None, archi=['784', '512', '10'], optim='sgd')


def add_args(parser):
    g = parser.add_argument_group('Laborieux et al. 2021 (scaled EP: symmetric nudging, cross-entropy readout, '
                                  'CEP); layers are listed from the input to the output; shares --archi, --epochs')
    g.add_argument('--model', default='MLP', choices=['MLP', 'VFMLP', 'CNN', 'VFCNN', 'EPLCACNN', 'LCACNN'],
                   help='network family (EPLCACNN, LCACNN: EPLCANet, see papers/eplcanet)')
    g.add_argument('--task', default='MNIST', help='MNIST, CIFAR10, or mnist5k (embedded offline digits)')
    g.add_argument('--channels', type=int, nargs='+', default=[32, 64], help='conv output channels')
    g.add_argument('--kernels', type=int, nargs='+', default=[5, 5], help='conv kernel sizes')
    g.add_argument('--strides', type=int, nargs='+', default=[1, 1], help='conv strides')
    g.add_argument('--paddings', type=int, nargs='+', default=[0, 0], help='conv paddings')
    g.add_argument('--pools', default='mm', help="one letter per conv layer: m (max), a (average), i (identity)")
    g.add_argument('--fc', type=int, nargs='+', default=[10], help='fully connected sizes after the convs')
    g.add_argument('--act', default='mysig', choices=sorted(ACTIVATION_NAMES), help='activation σ')
    g.add_argument('--lrs', type=float, nargs='+', default=[], help='one learning rate per synapse layer')
    g.add_argument('--wds', type=float, nargs='+', default=None, help='one weight decay per synapse layer')
    g.add_argument('--mmt', type=float, default=0.0, help='SGD momentum')
    g.add_argument('--loss', default='mse', choices=['mse', 'cel'], help='mse or cross-entropy (cel)')
    g.add_argument('--softmax', action='store_true', help='softmax readout outside the dynamics (CNN, with cel)')
    g.add_argument('--alg', default='EP', choices=['EP', 'BPTT', 'CEP', 'BP'],
                   help='EP, BPTT (BP: its EPLCANet name) or continual EP')
    g.add_argument('--mbs', type=int, default=20, help='training mini-batch size')
    g.add_argument('--T1', type=int, default=20, help='free-phase steps')
    g.add_argument('--T2', type=int, default=4, help='nudged-phase steps (and BPTT truncation)')
    g.add_argument('--betas', type=float, nargs=2, default=[0.0, 0.01], metavar=('BETA1', 'BETA2'),
                   help='β1 (free phase, 0) and β2 (nudged phases)')
    g.add_argument('--check-thm', action='store_true', help='GDU check on 5 samples every 10%% of an epoch')
    g.add_argument('--random-sign', action='store_true', help='random sign of β2 per mini-batch')
    g.add_argument('--thirdphase', action='store_true', help='symmetric estimator: a second nudged phase at −β2')
    g.add_argument('--carry-delta', action='store_true',
                   help='symmetric estimator with the nudged states relaxed as s* + Δ (ep/delta_form.py): the same '
                        'estimate, without float32 cancellation (--thirdphase, --model MLP or CNN)')
    g.add_argument('--data-aug', action='store_true', help='CIFAR-10 augmentation (flip, crop with edge padding)')
    g.add_argument('--lr-decay', action='store_true', help='cosine annealing, T_max 100, eta_min 1e-5')
    g.add_argument('--scale', type=float, default=None, help='multiply the default initialisation by this factor')
    g.add_argument('--save', action='store_true', help='accepted for compatibility: every run is saved')
    g.add_argument('--save-nrn', action='store_true', help='accepted for compatibility (stale flag of a script)')
    g.add_argument('--same-update', action='store_true', help='VFCNN: forward and backward weights share the update')
    # the original's CEP debugging switch (accumulate the T2 per-step updates, apply them as one step at the end):
    # accepted so that its command lines run, kept out of --help (an internal check, not a training setting)
    g.add_argument('--cep-debug', action='store_true', help=argparse.SUPPRESS)


FLAGS = {'--model', '--task', '--channels', '--kernels', '--strides', '--paddings', '--pools', '--fc', '--act',
         '--lrs', '--wds', '--mmt', '--loss', '--softmax', '--alg', '--mbs', '--T1', '--T2', '--betas',
         '--check-thm', '--random-sign', '--thirdphase', '--data-aug', '--lr-decay', '--scale', '--save',
         '--save-nrn', '--same-update', '--cep-debug', '--carry-delta'}

TASKS = {'mnist': 'mnist', 'mnist5k': 'mnist5k', 'cifar10': 'cifar10'}


# ---------------------------------------------------------------------------------------------------------------
# Arguments

ACTIONS = ('train', 'evaluate', 'gducheck')


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(RunConfig):
    """A validated command line of this paper (check_args): `resume` is the run that training picks up again,
    `model_from` the run whose model evaluate / gducheck use (its architecture flags are then the run's)."""
    data_name: str                      # mnist, mnist5k or cifar10 (--task, or --dataset)
    model: str
    archi: list[int]                    # MLP sizes from the input to the output
    channels: list[int]
    kernels: list[int]
    strides: list[int]
    paddings: list[int]
    pools: str
    fc: list[int]
    act: str
    loss: str
    softmax: bool
    same_update: bool
    scale: float | None
    alg: str
    optim: str
    lrs: list[float]
    wds: list[float] | None
    mmt: float
    lr_decay: bool
    cep_debug: bool
    mbs: int
    epochs: int
    T1: int
    T2: int
    betas: list[float]
    random_sign: bool
    thirdphase: bool
    check_thm: bool
    data_aug: bool
    carry_delta: bool = False           # --carry-delta: the symmetric estimate in Δ form
    extra_arch: tuple = ()              # architecture fields of a derived paper saved beside the weights (model.pt)


def check_carry_delta(args):
    """--carry-delta runs the symmetric EP estimate in Δ form (ep/delta_form.py): EP with --thirdphase on the symmetric
    layered nets (every activation of this paper has a closed-form difference)."""
    why = None
    if args.alg != 'EP' or not args.thirdphase:
        why = 'it is the symmetric EP estimate: give --alg EP --thirdphase'
    elif args.model not in ('MLP', 'CNN'):
        why = f'--model {args.model} is not a symmetric layered net (use MLP or CNN)'
    if why:
        raise UsageError(f'--carry-delta: {why}')


def check_args(args):
    """Every inconsistency is reported before anything is loaded or written; returns the run's Config."""
    validate(args)
    return run_config(Config, args)


def validate(args, actions=ACTIONS):
    """The checks of this paper's flags, normalising the namespace (defaults, data_name, integer --archi, the
    architecture of the --load-path run for evaluate / gducheck, dry-run caps) and setting its `resume`
    and `model_from` folders; EPLCANet runs them after its own (eplcanet.check_args)."""
    apply_defaults(args, DEFAULTS)
    if args.optim not in ('sgd', 'adam'):
        raise UsageError(f'--optim {args.optim}: this paper uses sgd or adam')
    task = (args.dataset or args.task).lower()
    if task not in TASKS:
        raise UsageError(f'--task {args.task}: choose MNIST, CIFAR10 or mnist5k')
    args.data_name = TASKS[task]
    if args.action not in actions:
        raise UsageError(f'--todo {args.action}: this paper runs {", ".join(actions)}')
    try:
        args.archi = [int(a) for a in args.archi]
    except ValueError:
        raise UsageError(f'--archi {" ".join(args.archi)}: give integer layer sizes from the input to the output '
                         f'(fc/conv belong to the binary-EP paper)')
    conv = 'CNN' in args.model
    n = len(args.channels)
    if args.model in ('CNN', 'VFCNN'):               # the EPLCANet models index these lists (papers/eplcanet)
        for flag in ('kernels', 'strides', 'paddings'):
            if len(getattr(args, flag)) != n:
                raise UsageError(f'--{flag} has {len(getattr(args, flag))} values but --channels has {n}: give one '
                                 f'per conv layer')
        if len(args.pools) != n or set(args.pools) - set('mai'):
            raise UsageError(f"--pools '{args.pools}': give {n} letters among m (max), a (average), i (identity), "
                             f"one per conv layer")
    if args.softmax and args.loss == 'mse':
        raise UsageError('--softmax needs --loss cel: the readout is trained with the cross-entropy')
    if args.same_update and not args.model.startswith('VF'):
        raise UsageError('--same-update is for the asymmetric models (--model VFMLP or VFCNN)')
    if args.softmax and not conv:
        raise UsageError('--softmax is for the conv models (--model CNN)')
    if getattr(args, 'carry_delta', False):
        check_carry_delta(args)
    n_syn = getattr(args, 'n_syn', None) or (n + len(args.fc) if conv else len(args.archi) - 1)
    if args.action in ('train', 'advtrain') and len(args.lrs) != n_syn:
        raise UsageError(f'--lrs has {len(args.lrs)} values but the network has {n_syn} synapse layers: give one '
                         f'learning rate per layer, from the input to the output')
    if args.wds is not None and len(args.wds) != n_syn:
        raise UsageError(f'--wds has {len(args.wds)} values but the network has {n_syn} synapse layers')
    if args.T1 < args.T2 or args.T2 < 1:
        raise UsageError(f'--T1 {args.T1} must be at least --T2 {args.T2} (and --T2 at least 1)')
    if args.betas[0] != 0.0:
        raise UsageError(f'--betas {args.betas[0]} {args.betas[1]}: the free phase runs at β1 = 0; give 0.0 first')
    if args.betas[1] == 0.0 and args.alg not in ('BPTT', 'BP'):
        raise UsageError(f'--betas {args.betas[0]} {args.betas[1]}: β2 must be non-zero for EP and CEP (e.g. --betas '
                         f'0.0 0.1)')
    check_values(args)
    checks.analog(args)
    if args.rpu is not None and (args.optim != 'sgd' or args.mmt):
        raise UsageError(f'--analog {args.analog}: the devices are written by plain pulsed SGD; drop '
                         f'{"--mmt" if args.mmt else "--optim adam"} (or --analog)')
    folder = checks.load_path(args)
    # train picks the run up again; every other action (EPLCANet's advtrain too) starts from its model
    args.resume, args.model_from = (folder, None) if args.action == 'train' else (None, folder)
    if args.model_from:
        adopt_arch(args, args.model_from)
    check_layers(args)
    checks.relaxation(args, None if args.model in ('MLP', 'CNN') else
                      f'--model {args.model} relaxes synchronously (async is for --model MLP or CNN)',
                      '--todo gducheck compares the last T2 steps of a T1-step phase' if args.action == 'gducheck'
                      else None)
    if args.action == 'evaluate' and not args.model_from and not args.dry_run:
        raise UsageError('--todo evaluate needs --load-path <run folder>')
    if args.dry_run:
        args.T1, args.T2 = dry_cap(args.T1, args.T2)
        args.epochs, args.mbs = 1, min(args.mbs, 16)
    if args.action in ('train', 'advtrain'):
        checks.global_batch('--mbs', args.mbs)


def check_values(args):
    """Sizes, steps, learning rates, weight decays, momentum, β and scale: finite and in range."""
    checks.count('--mbs', args.mbs, 1, 'the mini-batch size')
    checks.count('--epochs', args.epochs, 1, 'the number of epochs')
    checks.count('--T1', args.T1, 1, 'the number of free-phase steps')
    checks.real('--betas', args.betas, 'β')
    checks.real('--lrs', args.lrs, 'learning rate', lo=0)
    checks.real('--wds', args.wds, 'weight decay', lo=0)
    checks.real('--mmt', args.mmt, 'the SGD momentum', lo=0, below=1)
    checks.real('--scale', args.scale, 'the initialisation scale', above=0)
    checks.seed(args.seed)
    if args.optim == 'adam' and args.mmt:
        raise UsageError(f'--mmt {args.mmt} is the momentum of --optim sgd; drop it with --optim adam')
    if args.alg == 'CEP' and args.wds and min(args.lrs or [1]) <= 0:
        raise UsageError(f'--lrs {" ".join(map(str, args.lrs))}: with --alg CEP and --wds every learning rate must be '
                         f'positive (the weight decay is re-parameterised by it)')


N_CLASSES = 10
IN_SIZE = {'mnist': 28, 'mnist5k': 28, 'cifar10': 32}
IN_CHANNELS = {'mnist': 1, 'mnist5k': 1, 'cifar10': 3}


def check_layers(args):
    """Layer sizes (of the command, or of the run given to --load-path): positive, 10 outputs, input of the task,
    conv feature maps that do not vanish."""
    conv = 'CNN' in args.model
    if conv:
        checks.count('--channels', args.channels, 1, 'channel count')
        checks.count('--kernels', args.kernels, 1, 'kernel size')
        checks.count('--strides', args.strides, 1, 'stride')
        checks.count('--paddings', args.paddings, 0, 'padding')
        checks.count('--fc', args.fc, 1, 'layer size')
        if args.fc[-1] != N_CLASSES:
            raise UsageError(f'--fc {" ".join(map(str, args.fc))}: the last layer is the output, {N_CLASSES} classes')
    else:
        checks.count('--archi', args.archi, 1, 'layer size')
        pixels = IN_SIZE[args.data_name] ** 2 * IN_CHANNELS[args.data_name]
        if len(args.archi) < 2 or args.archi[0] != pixels or args.archi[-1] != N_CLASSES:
            raise UsageError(f'--archi {" ".join(map(str, args.archi))}: give the layer sizes from the input '
                             f'({pixels} pixels of {args.data_name}) to the output ({N_CLASSES} classes), e.g. '
                             f'--archi {pixels} 512 {N_CLASSES}')
    if args.model in ('CNN', 'VFCNN'):
        n = IN_SIZE[args.data_name]
        sizes = conv_pool_sizes(n, args.kernels, args.strides, args.paddings, args.pools)
        if min(sizes) < 1:
            raise UsageError(f'--channels {" ".join(map(str, args.channels))}: the feature maps vanish '
                             f'({" → ".join(map(str, sizes))} with --kernels {" ".join(map(str, args.kernels))}'
                             f', --strides {" ".join(map(str, args.strides))}, --paddings '
                             f'{" ".join(map(str, args.paddings))}, --pools {args.pools}); use fewer conv layers, '
                             f'smaller kernels or larger --paddings')


ARCH = ('model', 'archi', 'channels', 'kernels', 'strides', 'paddings', 'pools', 'fc', 'act', 'loss', 'softmax',
        'same_update')


def arch_of(cfg):
    return {k: getattr(cfg, k) for k in ARCH + cfg.extra_arch}


# architecture keys of earlier model.pt files: EPLCANet's LCA time constant was saved as `tau`
LEGACY_ARCH = {'tau': 'lca_tau'}


def adopt_arch(args, folder):
    """evaluate / gducheck rebuild the network of the saved run (state dicts carry no architecture)."""
    saved = checkpoints.load(os.path.join(folder, 'model.pt'), ('model', 'arch'), 'a model.pt of a training run')
    for k, v in saved['arch'].items():
        setattr(args, LEGACY_ARCH.get(k, k), v)


def build_model(cfg, in_shape):
    beta, vf = cfg.betas[1], cfg.model.startswith('VF')
    if 'CNN' in cfg.model:
        cls, extra = (VF_CNN, {'same_update': cfg.same_update}) if vf else (P_CNN, {})
        return cls(in_shape[-1], in_shape[0], cfg.channels, cfg.kernels, cfg.strides, cfg.paddings, cfg.pools,
                   cfg.fc, cfg.T1, cfg.T2, beta, cfg.act, loss=cfg.loss, softmax=cfg.softmax, **extra)
    archi = list(cfg.archi)
    if archi[0] != in_shape[0] * in_shape[1] * in_shape[2]:
        raise UsageError(f'--archi starts with {archi[0]} but the {cfg.data_name} input has '
                         f'{in_shape[0] * in_shape[1] * in_shape[2]} pixels')
    if vf:
        return VF_MLP(archi, cfg.T1, cfg.T2, beta, cfg.act, cfg.loss, same_update=cfg.same_update)
    return P_MLP(archi, cfg.T1, cfg.T2, beta, cfg.act, cfg.loss)


def rescale(model, g):
    """--scale g: weight = g × default (kaiming-uniform) init, bias = g × default init."""
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(g)


def make_optimizer(cfg, model):
    """SGD or Adam over the per-layer groups; with --analog, analog.DeviceSGD: the weights live on soft-bounds devices
    and the EP (or BPTT) estimate is written into them by pulses (the update path is analog; the relaxation reads the
    devices' weights directly)."""
    groups = model.lr_groups(cfg.lrs, cfg.wds)
    if cfg.alg == 'CEP' and cfg.wds:
        # CEP re-parameterises the weight decay so that T2 small steps decay as one ordinary step of 0.1·wd
        for g, wd in zip(groups, cfg.wds):
            g['weight_decay'] = (1 - (1 - 0.1 * wd) ** (1 / cfg.T2)) / g['lr']
    if cfg.rpu is not None:                                # the weights live on devices, written by pulses
        opt = analog.DeviceSGD(groups, lr=cfg.lrs[0], rpu=cfg.rpu, digital=model.digital_parameters())
    elif cfg.optim == 'sgd':
        opt = torch.optim.SGD(groups, lr=cfg.lrs[0], momentum=cfg.mmt)
    else:
        opt = adam(groups, lr=cfg.lrs[0])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 100, eta_min=1e-5) if cfg.lr_decay else None
    return opt, sched


# ---------------------------------------------------------------------------------------------------------------
# Data

CIFAR_STD = (3 * 0.2023, 3 * 0.1994, 3 * 0.2010)          # 3× the usual std, as the original


def load_split(cfg, train):
    x, y = data.load_or_synthetic(cfg.data_name, cfg.data_root, train, cfg.dry_run, max(cfg.mbs, 8),
                                  cfg.float_dtype)
    return (data.normalize(x, data.CIFAR_MEAN, CIFAR_STD) if cfg.data_name == 'cifar10' else x), y


def batches(cfg, x, y, bs, train, device, gen):
    aug = data.augment if (train and cfg.data_aug and cfg.data_name == 'cifar10') else None
    return data.Batches(x, y, bs, shuffle=train, device=device, generator=gen, transform=aug,
                        max_batches=1 if cfg.dry_run else None)


# ---------------------------------------------------------------------------------------------------------------
# Actions

def run(args, argv):
    cfg = check_args(args)
    default_threads(cfg.threads, 'CNN' in cfg.model, cfg.mbs)
    device = run_device(cfg)
    seed = seed_everything(cfg.seed)
    xtr, ytr = load_split(cfg, True)
    xte, yte = (load_split(cfg, False) if cfg.action != 'gducheck' else (None, None))
    model = build_model(cfg, tuple(xtr.shape[1:])).to(device, cfg.float_dtype)
    model.set_relaxation(cfg.tol, cfg.tol_every, SCHEDULES[cfg.schedule]).set_gpu(*cfg.gpu)
    if cfg.scale is not None:
        rescale(model, cfg.scale)
    if cfg.action == 'gducheck':
        return gducheck_action(cfg, argv, model, xtr, ytr, device, seed)
    if cfg.action == 'evaluate':
        return evaluate_action(cfg, model, xtr, ytr, xte, yte, device)
    return train_action(cfg, argv, model, xtr, ytr, xte, yte, device, seed)


def new_run_folder(cfg, argv, device, seed, model, extra_items=()):
    """A new <results-dir>/<alg>/<loss>/<date>/<time> folder with its hyperparameters and plotting script."""
    folder = rundir.claim_time_dir(os.path.join(cfg.results_dir, cfg.alg, cfg.loss))
    items = [('task', cfg.data_name), ('model', cfg.model), ('data augmentation', cfg.data_aug),
             ('learning rate decay', cfg.lr_decay), ('scale', cfg.scale), ('activation', cfg.act),
             ('learning rates', cfg.lrs), ('weight decays', cfg.wds), ('momentum', cfg.mmt),
             ('optimizer', cfg.optim), ('loss', cfg.loss), ('alg', cfg.alg), ('minibatch size', cfg.mbs),
             ('T1', cfg.T1), ('T2', cfg.T2), ('betas', cfg.betas), ('random beta_2 sign', cfg.random_sign),
             ('thirdphase', cfg.thirdphase), ('softmax', cfg.softmax), ('same update VFCNN', cfg.same_update),
             ('epochs', cfg.epochs), ('seed', seed), ('device', device), ('dry run', cfg.dry_run),
             ('dtype', cfg.dtype), ('carry delta', cfg.carry_delta)]
    if 'CNN' in cfg.model:
        items += [('channels', cfg.channels), ('kernels', cfg.kernels), ('strides', cfg.strides),
                  ('paddings', cfg.paddings), ('poolings', list(cfg.pools)), ('fc', cfg.fc)]
    else:
        items.append(('archi', cfg.archi))
    rundir.write_hyperparameters(folder, argv, items + checks.analog_items(cfg) + checks.relaxation_items(cfg)
                                  + list(extra_items))
    rundir.append_hyperparameters(folder, [str(model)])
    rundir.copy_plot_script(folder)
    return folder


def make_estimator(cfg, gen):
    """The gradient estimator of the flags: truncated BPTT (--alg BPTT, BP), CEP (--alg CEP, --thirdphase,
    --cep-debug), or EP: symmetric (--thirdphase), random-sign (--random-sign, drawn from gen) or one-sided."""
    beta, T, K = cfg.betas[1], cfg.T1, cfg.T2
    if cfg.alg in ('BPTT', 'BP'):
        return estimators.TruncatedBPTT(T, K)
    if cfg.alg == 'CEP':
        return estimators.Continual(beta, T, K, thirdphase=cfg.thirdphase, accumulate=cfg.cep_debug)
    if cfg.thirdphase:
        return (estimators.SymmetricDelta if cfg.carry_delta else estimators.Symmetric)(beta, T, K)
    if cfg.random_sign:
        return estimators.RandomSign(beta, T, K, generator=gen)
    return estimators.OneSided(beta, T, K)


def train_epoch(cfg, model, opt, train_b, gen, ext=None):
    """One epoch; returns the running training accuracy (%) at the free equilibrium before each update."""
    ext = ext or trainer.Extension()
    tenth = max(len(train_b) // 10, 1)

    def hook(b, x, y):
        if cfg.check_thm and cfg.alg not in ('BPTT', 'BP') and b % tenth == 0:
            check_theorem(cfg, model, x[:5], y[:5], b / len(train_b))
    estimate = make_estimator(cfg, gen)
    step = ext.step(lambda x, y: estimate(model, x, y, opt))
    return 100.0 - trainer.train(model, opt, train_b, step, 'train', hook, ext.observe(True))['error']


def check_theorem(cfg, model, x, y, frac):
    """--check-thm: the GDU check on 5 samples, RMSE per key printed (every 10 % of an epoch)."""
    rows = nf.gdu_table(nf.gdu_traces(model, x, y, cfg.T1, cfg.T2, cfg.betas[1]))
    say(f'[{frac:.0%} of the epoch] GDU RMSE: ' + ', '.join(f'{r["key"]} {r["rmse_mean"]:.3f}' for r in rows))


def train_action(cfg, argv, model, xtr, ytr, xte, yte, device, seed, ext=None):
    ext = ext or trainer.Extension()
    gen = torch.Generator().manual_seed(seed)
    history, best = [], -1.0
    if cfg.resume:                      # from the LAST checkpoint, read before anything is appended to the folder
        opt, sched = make_optimizer(cfg, model)
        history, best = resume(cfg, model, opt, sched, gen)
    folder = trainer.open_run(lambda: new_run_folder(cfg, argv, device, seed, model, ext.items), cfg.resume,
                              cfg.argv_given or argv)
    if not cfg.resume:                  # after the first line: a first optimiser imports torch._dynamo (~1 s)
        opt, sched = make_optimizer(cfg, model)
    train_b = batches(cfg, xtr, ytr, cfg.mbs, True, device, gen)
    test_b = batches(cfg, xte, yte, 16 if cfg.dry_run else 200, False, device, gen)

    def run_epoch(epoch):
        train_acc = train_epoch(cfg, model, opt, train_b, gen, ext)
        if sched and epoch <= 100:                         # the original stops the cosine schedule at epoch 100
            sched.step()
        test = trainer.evaluate(model, test_b, cfg.T1, ext.observe(False))
        test_err, test_loss = test['error'], test['loss']
        row = dict(train_acc=train_acc, test_acc=100 - test_err, test_loss=test_loss, lr=opt.param_groups[0]['lr'],
                   **model.pop_steps())                   # free-phase steps under --tol
        if hasattr(model, 'angles'):                       # VF nets: angle between B_k and W_{k+1}, degrees
            row.update({f'angle_{k}': a for k, a in enumerate(model.angles())})
        return row

    def save(history):
        nonlocal best
        last = history[-1] if history else dict(epoch=0, test_acc=-1.0)
        ck = checkpoints.state(model, opt, last['epoch'], history, sched, gen, cfg, best=max(best, last['test_acc']))
        best, improved = checkpoints.save_epoch(folder, ck, history, best)
        if improved:
            rundir.save({'model': model.state_dict(), 'arch': arch_of(cfg)}, os.path.join(folder, 'model.pt'))
        if history:
            trainer.say_epoch(last)

    trainer.fit(folder, cfg.epochs, history, run_epoch, save, model.parameters(), metrics='metrics.csv',
                extension=ext, plot=rundir.plot_folder)
    save_neural_activity(model, train_b, folder, cfg.T1)
    rundir.save({'model': model.state_dict(), 'arch': arch_of(cfg)}, os.path.join(folder, 'final_model.pt'))
    rundir.plot_folder(folder)
    return folder


def resume(cfg, model, opt, sched, gen):
    """Model, optimiser, scheduler and random states of the last checkpoint of a run (learning rates, weight
    decays and momentum are this command's, see checkpoints.load_optimizer); returns (history, best)."""
    ck = checkpoints.restore(os.path.join(cfg.resume, 'checkpoint.tar'), model, opt, sched, gen,
                             'a checkpoint.tar of a Laborieux-2021 / EPLCANet training run', ('best',))
    if sched and ck['scheduler']:                       # the base rates of this command (load_optimizer)
        sched.base_lrs = [g['initial_lr'] for g in opt.param_groups]
    return ck['history'], ck['best']


def load_model(folder, model):
    """The weights of a run's best model (model.pt) into `model`."""
    path = os.path.join(folder, 'model.pt')
    checkpoints.load_state(model, checkpoints.load(path, ('model',), 'a model.pt of a training run')['model'], path)


def save_neural_activity(model, train_b, folder, T1):
    """States of every neuron layer at the free equilibrium of one mini-batch (histograms: neural_activity.png)."""
    x, _ = next(iter(train_b))
    with torch.no_grad():
        s = nf.free_phase(model, model.front(x), T1)
    rundir.save({f'layer {k}': si.flatten().cpu() for k, si in enumerate(s)},
                 os.path.join(folder, 'neural_activity.pt'))


def evaluate_action(cfg, model, xtr, ytr, xte, yte, device):
    """Train and test accuracy of the best model of a run, appended to its hyperparameters.txt."""
    if cfg.model_from:
        load_model(cfg.model_from, model)
    lines = []
    for name, (x, y) in (('Train', (xtr, ytr)), ('Test', (xte, yte))):
        err = trainer.evaluate(model, batches(cfg, x, y, cfg.mbs, False, device, None), cfg.T1)['error']
        lines.append(f'{name} accuracy : {100 - err:.2f}')
        say(lines[-1])
    if cfg.model_from:                                     # (not a 'python main.py' line: a later resume of the
        given = cfg.argv_given                             # run does not take the evaluation's flags)
        head = [f'evaluated with: {rundir.command_line(given)}'] if given else []
        rundir.append_hyperparameters(cfg.model_from, head + lines)
    return cfg.model_from


def gdu_dict(tr, side):
    """{'synapses.k.weight': (T2, ...), 'neurons_k': (T2, ...)} per-step traces of one side ('n' BPTT, 'd' EP)."""
    out = dict(tr[side + 'T'])
    out.update({f'neurons_{k}': v for k, v in enumerate(tr[side + 'S'])})
    return out


def gducheck_action(cfg, argv, model, xtr, ytr, device, seed):
    import pandas as pd                 # (imported here: it costs start-up time to commands that write no table)
    if cfg.model_from:                                     # the check gets a folder of its own
        load_model(cfg.model_from, model)
    folder = trainer.open_run(lambda: new_run_folder(cfg, argv, device, seed, model))
    x, label = xtr[:min(20, cfg.mbs)].to(device), ytr[:min(20, cfg.mbs)].to(device)
    y = nf.one_hot(label, model.output_size).to(x)
    beta = cfg.betas[1]
    traces = {'right': nf.gdu_traces(model, x, y, cfg.T1, cfg.T2, beta)}
    if cfg.thirdphase:
        traces['left'] = nf.gdu_traces(model, x, y, cfg.T1, cfg.T2, -beta)
    for side, tr in traces.items():
        tr = {k: ([t.cpu() for t in v] if isinstance(v, list) else {n: t.cpu() for n, t in v.items()})
              for k, v in tr.items()}
        traces[side] = tr
    rundir.save(traces, os.path.join(folder, 'gdu_laborieux.pt'))
    for side, name in (('right', 'EP'), ('left', 'EP_2')):     # the original's dumps, keyed by parameter/neurons
        if side in traces:
            rundir.save(gdu_dict(traces[side], 'd'), os.path.join(folder, f'{name}.tar'))
    rundir.save(gdu_dict(traces['right'], 'n'), os.path.join(folder, 'BPTT.tar'))
    table = pd.DataFrame(nf.gdu_table(traces['right']))
    rundir.write_csv(os.path.join(folder, 'gdu_stats.csv'), table)
    say(table.to_string(index=False, float_format=lambda v: f'{v:.4f}'))
    rundir.plot_folder(folder)
    return folder

"""Laydevant, Ernoult, Querlioz, Grollier, CVPRW 2021 — "Training dynamical binary neural networks with equilibrium
propagation": binary weights (bin_W) and binary weights + activations (bin_W_N), fc and conv.

Its flag group (the original's names and defaults, except --optim whose default becomes ep), their validation into a
frozen Config, and its action: train. Networks in Network_fc.py / Network_conv.py, the paper's loops and files in
Tools_fc.py / Tools_conv.py, the epoch loop and run folder in trainer.py.
"""
import dataclasses
import os

import torch

from suite import checks
from suite import data
from suite import checkpoints
from suite import rundir
from suite import trainer
import Tools_conv
import Tools_fc
from suite.cli import default_threads
from suite.cli import RunConfig, UsageError, apply_defaults, dry_cap, run_config, run_device, say, seed_everything
from Network_conv import Network_conv_bin_W, Network_conv_bin_W_N
from netClasses import conv_pool_sizes
from Network_fc import ACTIVATION_NAMES, BinaryOptimizer, Network_fc_bin_W, Network_fc_bin_W_N

NAME = 'laydevant2021'
DEFAULTS = dict(T=150, Kmax=10, beta=0.3, epochs=2, padding=0, Fpool=2, dataset='mnist', optim='ep',
                archi=['conv'])


def add_args(parser):
    g = parser.add_argument_group('Laydevant et al. 2021 (binary EP); shares --archi fc|conv, --T, --Kmax, --beta, '
                                  '--padding, --Fpool, --optim ep|bptt, --dataset, --epochs; layers output first '
                                  'inside the nets')
    g.add_argument('--layersList', type=int, nargs='+', default=[10],
                   help='fc: layer sizes input first (784 4096 10); conv: the classifier (10)')
    g.add_argument('--convList', type=int, nargs='+', default=[64, 32, 1],
                   help='conv channels, deepest first, input channels last')
    g.add_argument('--kernelSize', type=int, default=5, help='conv kernel size')
    g.add_argument('--activationFun', default='hardsigm', choices=list(ACTIVATION_NAMES))
    g.add_argument('--gamma_neur', type=float, default=0.5, help='leak of the binary-neuron pre-activations')
    g.add_argument('--random_beta', type=int, default=1, help='1: random sign of β per mini-batch')
    g.add_argument('--binary_settings', default='bin_W', choices=['bin_W', 'bin_W_N'])
    g.add_argument('--gamma', type=float, nargs='+', default=None,
                   help='momentum γ per fc layer (default 1e-5 1e-5); with --archi conv, one list for all layers')
    g.add_argument('--classi_gamma', '--gamma_classi', type=float, nargs='+', default=[1e-5],
                   help='γ per classifier layer (conv)')
    g.add_argument('--conv_gamma', '--gamma_conv', type=float, nargs='+', default=[1e-5, 1e-5],
                   help='γ per conv layer')
    g.add_argument('--gradThreshold', type=float, nargs='+', default=None,
                   help='flip threshold τ per fc layer (default 5e-7 5e-8); with --archi conv, one list for all')
    g.add_argument('--classi_threshold', type=float, nargs='+', default=[5e-8], help='τ per classifier layer')
    g.add_argument('--conv_threshold', type=float, nargs='+', default=[5e-8, 5e-8], help='τ per conv layer')
    g.add_argument('--rho_threshold', type=float, default=0.5, help='θ of the binary activation H(s − θ)')
    g.add_argument('--expand_output', type=int, default=1, help='output neurons per class')
    g.add_argument('--lrBias', type=float, nargs='+', default=[0.025, 0.05, 0.1], help='bias learning rates')
    g.add_argument('--batchSize', type=int, default=64, help='training mini-batch')
    g.add_argument('--test_batchSize', type=int, default=512, help='test mini-batch')
    g.add_argument('--learnAlpha', type=int, default=1, help='1: learn the scaling factors α')
    g.add_argument('--lrAlpha', type=float, nargs='*', default=[0.0, 0.0, 0.0], help='α learning rates')
    g.add_argument('--decayLrAlpha', type=float, default=1.0, help='divide lrAlpha by this at epochDecayLrAlpha')
    g.add_argument('--epochDecayLrAlpha', type=int, default=1000, help='epoch at which lrAlpha is divided')


FLAGS = {'--layersList', '--convList', '--kernelSize', '--activationFun', '--gamma_neur', '--random_beta',
         '--binary_settings', '--gamma', '--classi_gamma', '--gamma_classi', '--conv_gamma', '--gamma_conv',
         '--gradThreshold', '--classi_threshold', '--conv_threshold', '--rho_threshold', '--expand_output',
         '--lrBias', '--batchSize', '--test_batchSize', '--learnAlpha', '--lrAlpha', '--decayLrAlpha',
         '--epochDecayLrAlpha'}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(RunConfig):
    """A validated binary-EP command line (check_args); `resume` is the S-k folder that training picks up again.
    Per-layer lists are output layer first; a conv net's --gamma / --gradThreshold are split into its classifier and
    conv lists (and stay None)."""
    archi: str                          # fc or conv
    optim: str                          # ep or bptt
    dataset: str
    T: int
    Kmax: int
    beta: float
    epochs: int
    padding: int
    Fpool: int
    layersList: list[int]
    convList: list[int]
    kernelSize: int
    activationFun: str
    gamma_neur: float
    random_beta: int
    binary_settings: str
    gamma: list[float] | None
    classi_gamma: list[float]
    conv_gamma: list[float]
    gradThreshold: list[float] | None
    classi_threshold: list[float]
    conv_threshold: list[float]
    rho_threshold: float
    expand_output: int
    lrBias: list[float]
    batchSize: int
    test_batchSize: int
    learnAlpha: int
    lrAlpha: list[float]
    decayLrAlpha: float
    epochDecayLrAlpha: int


def check_args(args, argv=()):
    """Every inconsistency is reported before anything is loaded or written; returns the run's Config. The namespace
    is normalised on the way (defaults, --archi fc|conv, per-layer lists, dry-run caps)."""
    if args.archi == ['fc'] and conv_only_flags_given(argv):
        raise UsageError(f'{", ".join(conv_only_flags_given(argv))}: conv flags do not apply to --archi fc')
    apply_defaults(args, DEFAULTS)
    if args.archi not in (['fc'], ['conv']):
        raise UsageError(f'--archi {" ".join(args.archi)}: the binary-EP paper takes fc or conv')
    args.archi = args.archi[0]
    if args.optim not in ('ep', 'bptt'):
        raise UsageError(f'--optim {args.optim}: the binary-EP paper trains with ep or bptt')
    if args.action != 'train':
        raise UsageError(f'--action {args.action}: the binary-EP paper runs train')
    args.dataset = args.dataset.lower()
    if args.dataset not in ('mnist', 'mnist5k', 'cifar10'):
        raise UsageError(f'--dataset {args.dataset}: choose mnist, mnist5k or cifar10')
    if args.archi == 'fc' and args.dataset == 'cifar10':
        raise UsageError('--archi fc runs on MNIST (use --dataset mnist or mnist5k)')
    check_values(args)
    checks.relaxation(args, 'the binary nets relax synchronously (async is for the Ernoult 2019 prototypical nets and '
                            'the Laborieux 2021 MLP / CNN)')
    if args.archi == 'conv':
        conv_geometry(args)
    if args.optim == 'bptt' and args.binary_settings == 'bin_W_N':
        raise UsageError('--optim bptt is for --binary_settings bin_W (binary neurons have no gradient)')
    if args.T < args.Kmax:
        raise UsageError(f'--T {args.T} is smaller than --Kmax {args.Kmax}')
    if args.archi == 'fc':
        args.gamma = args.gamma or [1e-5, 1e-5]
        args.gradThreshold = args.gradThreshold or [5e-7, 5e-8]
        check_lengths(args, len(args.layersList) - 1, ('gamma', 'gradThreshold'))
        if args.layersList[0] != 784:
            raise UsageError(f'--layersList starts with {args.layersList[0]}: fc nets take 784 MNIST pixels')
    else:
        n_fc, n_conv = len(args.layersList), len(args.convList) - 1
        # the older README gave conv nets one --gamma / --gradThreshold list for all layers (classifier first)
        for flat, classi, conv in (('gamma', 'classi_gamma', 'conv_gamma'),
                                   ('gradThreshold', 'classi_threshold', 'conv_threshold')):
            v = getattr(args, flat)
            if v is not None:
                if len(v) != n_fc + n_conv:
                    raise UsageError(f'--{flat} has {len(v)} values; with --archi conv give one per layer '
                                     f'({n_fc} classifier + {n_conv} conv), or use --{classi} and --{conv}')
                setattr(args, classi, v[:n_fc])
                setattr(args, conv, v[n_fc:])
        check_lengths(args, n_fc, ('classi_gamma', 'classi_threshold'))
        check_lengths(args, n_conv, ('conv_gamma', 'conv_threshold'))
        want = 3 if args.dataset == 'cifar10' else 1
        if args.convList[-1] != want:
            raise UsageError(f'--convList ends with {args.convList[-1]}: the input has {want} channel(s)')
    n_layers = len(args.layersList) - 1 if args.archi == 'fc' else len(args.layersList) + len(args.convList) - 1
    # the original indexes these lists by layer: extra values (the 3-entry defaults) are unused
    args.lrBias, args.lrAlpha = args.lrBias[:n_layers], args.lrAlpha[:n_layers]
    check_lengths(args, n_layers, ('lrBias',))
    if args.learnAlpha:
        if 0 < len(args.lrAlpha) < n_layers:
            # the README's FC 2h command gives 2 values for 3 layers; its table says "1e-2 ×3"
            say(f'main.py: warning: --lrAlpha has {len(args.lrAlpha)} values for {n_layers} layers; repeating the '
                f'last one')
            args.lrAlpha = args.lrAlpha + [args.lrAlpha[-1]] * (n_layers - len(args.lrAlpha))
        check_lengths(args, n_layers, ('lrAlpha',))
    out = args.layersList[-1 if args.archi == 'fc' else 0]
    if out != N_CLASSES * args.expand_output:
        raise UsageError(f'--layersList {" ".join(map(str, args.layersList))} with --expand_output '
                         f'{args.expand_output}: the output layer ({"last" if args.archi == "fc" else "first"} entry) '
                         f'must have {N_CLASSES} × --expand_output = {N_CLASSES * args.expand_output} neurons')
    if args.dry_run:
        args.T, args.Kmax = dry_cap(args.T, args.Kmax)
        args.epochs, args.batchSize, args.test_batchSize = 1, min(args.batchSize, 16), min(args.test_batchSize, 16)
    checks.global_batch('--batchSize', args.batchSize)
    return run_config(Config, args, resume=args.load_path or None)


N_CLASSES = 10


def check_values(args):
    """Sizes, steps, β, momenta γ, thresholds and learning rates: finite and in range."""
    for flag, least, what in (('T', 1, 'the number of free-phase steps'), ('Kmax', 1, 'the number of nudged steps'),
                              ('epochs', 1, 'the number of epochs'), ('batchSize', 1, 'the mini-batch size'),
                              ('test_batchSize', 1, 'the test mini-batch size'), ('layersList', 1, 'layer size'),
                              ('convList', 1, 'channel count'), ('kernelSize', 1, 'the kernel size'),
                              ('padding', 0, 'the padding'), ('Fpool', 1, 'the pooling size'),
                              ('expand_output', 1, 'the number of output neurons per class'),
                              ('epochDecayLrAlpha', 1, 'the epoch of the α learning-rate decay')):
        checks.count('--' + flag, getattr(args, flag), least, what)
    checks.seed(args.seed)
    checks.real('--beta', args.beta, 'the nudging strength β', nonzero=True, fix='e.g. --beta 0.3')
    checks.switch('--random_beta', args.random_beta)
    checks.switch('--learnAlpha', args.learnAlpha)
    checks.real('--gamma_neur', args.gamma_neur, 'the leak of the binary neurons', lo=0, hi=1)
    checks.real('--rho_threshold', args.rho_threshold, 'the activation threshold θ')
    for flag in ('gamma', 'classi_gamma', 'conv_gamma'):
        checks.real('--' + flag, getattr(args, flag), 'momentum γ of the flip rule', lo=0, hi=1)
    for flag in ('gradThreshold', 'classi_threshold', 'conv_threshold'):
        checks.real('--' + flag, getattr(args, flag), 'flip threshold τ', lo=0)
    checks.real('--lrBias', args.lrBias, 'bias learning rate', lo=0)
    checks.real('--lrAlpha', args.lrAlpha, 'α learning rate', lo=0)
    checks.real('--decayLrAlpha', args.decayLrAlpha, 'the divisor of the α learning rates', above=0)


def conv_geometry(args):
    """Spatial sizes of the conv layers (convEP's formula with an explicit padding); vanishing maps are an error."""
    n = len(args.convList) - 1
    sizes = conv_pool_sizes(32 if args.dataset == 'cifar10' else 28, [args.kernelSize] * n, [1] * n,
                            [args.padding] * n, 'm' * n, args.Fpool)
    if sizes[-1] < 1:
        raise UsageError(f'--convList {" ".join(map(str, args.convList))}: the feature map vanishes '
                         f'({" → ".join(map(str, sizes))} with --kernelSize {args.kernelSize}, --Fpool '
                         f'{args.Fpool}, --padding {args.padding}); use fewer conv layers or a larger --padding '
                         f'(--padding {(args.kernelSize - 1) // 2} keeps the size through each convolution)')
    return sizes


def check_lengths(args, n, flags):
    for flag in flags:
        v = getattr(args, flag)
        if len(v) != n:
            raise UsageError(f'--{flag} has {len(v)} values but the network has {n} such layers: give one per layer'
                             f' (output layer first)')


def conv_only_flags_given(argv):
    return [f for f in ('--convList', '--kernelSize', '--classi_threshold', '--conv_threshold', '--classi_gamma',
                        '--conv_gamma', '--gamma_classi', '--gamma_conv') if f in argv]


def build_net(cfg, in_size):
    common = dict(expand_output=cfg.expand_output)
    if cfg.archi == 'fc':
        if cfg.binary_settings == 'bin_W':
            return Network_fc_bin_W(cfg.layersList, cfg.T, cfg.Kmax, cfg.beta, cfg.activationFun, **common)
        return Network_fc_bin_W_N(cfg.layersList, cfg.T, cfg.Kmax, cfg.beta, cfg.activationFun,
                                  gamma_neur=cfg.gamma_neur, rho_threshold=cfg.rho_threshold, **common)
    kw = dict(activation=cfg.activationFun, kernel_size=cfg.kernelSize, Fpool=cfg.Fpool, padding=cfg.padding,
              in_size=in_size, **common)
    try:
        if cfg.binary_settings == 'bin_W':
            return Network_conv_bin_W(cfg.layersList, cfg.convList, cfg.T, cfg.Kmax, cfg.beta, **kw)
        return Network_conv_bin_W_N(cfg.layersList, cfg.convList, cfg.T, cfg.Kmax, cfg.beta,
                                    gamma_neur=cfg.gamma_neur, rho_threshold=cfg.rho_threshold, **kw)
    except ValueError as e:
        raise UsageError(str(e))


def make_optimizer(net, cfg):
    if cfg.archi == 'fc':
        gammas, taus = cfg.gamma, cfg.gradThreshold
    else:
        gammas, taus = cfg.classi_gamma + cfg.conv_gamma, cfg.classi_threshold + cfg.conv_threshold
    return BinaryOptimizer(net.binary_layers(), cfg.lrBias, gammas, taus, cfg.lrAlpha if cfg.learnAlpha else None,
                           bool(cfg.learnAlpha))


HP_FC = ('gradThreshold', 'gamma')
HP_CONV = ('convList', 'padding', 'kernelSize', 'Fpool', 'classi_threshold', 'conv_threshold', 'classi_gamma',
           'conv_gamma')
HP_BIN_N = ('gamma_neur', 'rho_threshold', 'expand_output')
HP_ALL = ('device', 'archi', 'layersList', 'optim', 'activationFun', 'T', 'Kmax', 'beta', 'random_beta',
          'binary_settings', 'dataset', 'lrBias', 'batchSize', 'test_batchSize', 'epochs', 'learnAlpha', 'lrAlpha',
          'decayLrAlpha', 'epochDecayLrAlpha', 'seed', 'dtype')


CIFAR_STD = (0.247, 0.243, 0.261)


def load_split(cfg, train):
    x, y = data.load_or_synthetic(cfg.dataset, cfg.data_root, train, cfg.dry_run, dtype=cfg.float_dtype)
    return (data.normalize(x, data.CIFAR_MEAN, CIFAR_STD) if cfg.dataset == 'cifar10' else x), y


HYPER_FILE = 'Hyperparameters.txt'


def resume(cfg, net, opt, gen):
    """Weights, α, flip-rule momenta, α learning rates and random states of the last checkpoint of an S-k folder;
    returns the rows of results.csv done so far."""
    ck = checkpoints.restore(os.path.join(cfg.resume, 'checkpoint.pt'), net, opt, generator=gen,
                             what='a checkpoint.pt of a binary-EP training run (S-k folder)', keys=('optimizer',))
    return ck['history']


def run(args, argv):
    cfg = check_args(args, argv)
    default_threads(cfg.threads, cfg.archi == 'conv', cfg.batchSize)
    device = run_device(cfg)
    seed_everything(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    xtr, ytr = load_split(cfg, True)
    xte, yte = load_split(cfg, False)
    net = build_net(cfg, xtr.shape[-1]).to(device, cfg.float_dtype)
    net.set_relaxation(cfg.tol, cfg.tol_every).set_gpu(*cfg.gpu)
    tools = Tools_fc if cfg.archi == 'fc' else Tools_conv
    row_fn = Tools_fc.results_row if cfg.archi == 'fc' else Tools_conv.results_row_conv
    opt, rows = None, []
    if cfg.resume:                      # the checkpoint, read before anything is appended to the folder
        opt = make_optimizer(net, cfg)
        rows = resume(cfg, net, opt, gen)
    keys = HP_ALL + (HP_FC if cfg.archi == 'fc' else HP_CONV) + (HP_BIN_N if cfg.binary_settings == 'bin_W_N' else ())
    keys += ('tol', 'tol_every') if cfg.tol is not None else ()

    def new_folder():
        folder = tools.create_path(cfg)
        tools.save_hyperparameters(folder, cfg, argv, keys)
        return folder
    folder = trainer.open_run(new_folder, cfg.resume, cfg.argv_given or argv, HYPER_FILE)
    if opt is None:                     # after the first line: a first optimiser imports torch._dynamo (~1 s)
        opt = make_optimizer(net, cfg)
    flat = cfg.archi == 'fc'
    aug = data.augment if cfg.dataset == 'cifar10' else None
    max_b = 1 if cfg.dry_run else None
    train_b = data.Batches(xtr, ytr, cfg.batchSize, True, flat, device, gen, max_b, transform=aug)
    test_b = data.Batches(xte, yte, cfg.test_batchSize, False, flat, device, gen, max_b)

    def run_epoch(epoch):
        if epoch == cfg.epochDecayLrAlpha:
            opt.lr_alpha = [lr / cfg.decayLrAlpha for lr in opt.lr_alpha]
        train = tools.train_bin(net, opt, train_b, cfg, gen)
        test = tools.test_bin(net, test_b)
        return {**row_fn(net, opt, train, test, cfg), **net.pop_steps()}     # free-phase steps under --tol

    def save(rows):
        checkpoints.save(os.path.join(folder, 'checkpoint.pt'), net, opt, rows[-1]['epoch'] if rows else 0, rows,
                         generator=gen, config=cfg)
        if rows:
            r = rows[-1]
            say(f'epoch {r["epoch"]}: train error {r["Ave_Train_Error"]:.2f} % (single {r["Single_Train_Error"]:.2f}),'
                f' test error {r["Ave_Test_Error"]:.2f} % (single {r["Single_Test_Error"]:.2f}), {r["seconds"]:.1f} s')

    trainer.fit(folder, cfg.epochs, rows, run_epoch, save, net.parameters(), HYPER_FILE, metrics='results.csv',
                plot=lambda f: rundir.plot_folder(os.path.dirname(f)))
    rundir.plot_folder(os.path.dirname(folder))
    return folder

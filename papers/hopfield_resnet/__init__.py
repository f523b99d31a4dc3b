"""Hopfield-ResNet (Elayedam & Srinivasan 2025): Hopfield-ResNet13 and VGG5, energies over a graph of layers
(ep/graph.py), trained by centered EP or by backpropagation through the relaxation.

Its flag group keeps the names of the authors' script (--network, --num_iterations_inference, … ; --beta, --epochs,
--dataset are the suite's shared flags), validated into a frozen Config. One mini-batch, the suite's:

    s* = free phase (--num_iterations_inference steps, layers by groups of a colouring of the graph)
    s^{±β} = nudged phases (--num_iterations_training steps, one batched tensor)
    ĝ_θ = −(1/2β) mean_b [∂Φ/∂θ(s^{+β}) − ∂Φ/∂θ(s^{−β})]                  (centered EP; --algorithm BPTT: ∂L/∂θ
                                                                          through the last K steps of the relaxation)
    θ ← SGD with Nesterov momentum and weight decay (or Adam), one learning rate per tensor, cosine-annealed per epoch.

The epoch and mini-batch loops are the trainer's (suite/trainer.py), checkpoints suite/checkpoints.py's.
"""
import dataclasses
import math
import os

import torch
import torch.nn.functional as F

from ep import estimators
from suite import checkpoints, checks, data, rundir, trainer
from suite.cli import RunConfig, UsageError, adam, default_threads, dry_cap, run_config, run_device, seed_everything
from papers.hopfield_resnet import nets

NAME = 'hopfield_resnet'

DATASETS = {'cifar10': 'CIFAR10', 'cifar100': 'CIFAR100', 'fashionmnist': 'FashionMNIST', 'mnist5k': 'mnist5k'}
# per data set: (input channels, classes, β, weight decay) of the paper's best settings (mnist5k: CIFAR-10's)
SETTINGS = {'CIFAR10': (3, 10, 0.1, 2.5e-4), 'CIFAR100': (3, 100, 0.15, 3.5e-4),
            'FashionMNIST': (1, 10, 0.15, 3.5e-4), 'mnist5k': (1, 10, 0.1, 2.5e-4)}
CIFAR_STD = (0.2470, 0.2435, 0.2616)
LR = {'sgd': 3e-2, 'adam': 1e-4}
ETA_MIN, RESTART_EPOCHS = 2e-6, 5
DRY_BATCH = 8                           # a dry run's mini-batch: the full-width nets cost ~1 GFLOP per sample and step


def _list(values):
    """Values given as 'a,b,c' or 'a b c' (or both), as floats."""
    return [float(v) for item in values for v in item.split(',') if v != '']


def add_args(parser):
    g = parser.add_argument_group('Hopfield-ResNet (Elayedam & Srinivasan 2025): Hopfield-ResNet13 / VGG5, centered '
                                  'EP; shares --beta, --epochs, --dataset (CIFAR10, CIFAR100, FashionMNIST, mnist5k)')
    g.add_argument('--network', dest='hr_network', default='hopfieldresnet13', choices=list(nets.NETWORKS),
                   help='hopfieldresnet13 (13 weighted interactions, skips) or vgg5 (conv + max-pool)')
    g.add_argument('--num_iterations_inference', dest='hr_T', type=int, default=120,
                   help='free-phase iterations (each updates every group of layers once)')
    g.add_argument('--num_iterations_training', dest='hr_K', type=int, default=50,
                   help='nudged-phase iterations (and, with --algorithm BPTT, the steps backpropagated through)')
    g.add_argument('--weight_gains', dest='hr_gains', nargs='+', default=None,
                   help='initial gain of each weight tensor, comma-separated (default: the paper\'s)')
    g.add_argument('--learning_rates_weights', dest='hr_lrs_w', nargs='+', default=None,
                   help='learning rate of each weight tensor, comma-separated, or one for all (default 3e-2 sgd, '
                        '1e-4 adam)')
    g.add_argument('--learning_rates_biases', dest='hr_lrs_b', nargs='+', default=None,
                   help='learning rate of each bias, comma-separated, or one for all (default: as the weights)')
    g.add_argument('--lossfn', dest='hr_lossfn', default='MSE', choices=['MSE', 'CE'],
                   help='squared error or cross-entropy on the output layer')
    g.add_argument('--use_warm_restarts', dest='hr_warm', action='store_true',
                   help=f'cosine annealing restarted every {RESTART_EPOCHS} epochs (default: one cosine over the run, '
                        f'eta_min {ETA_MIN})')
    g.add_argument('--batch_size', dest='hr_batch', type=int, default=128, help='training mini-batch size')
    g.add_argument('--momentum', dest='hr_momentum', type=float, default=0.9, help='Nesterov momentum of sgd')
    g.add_argument('--weight_decay', dest='hr_wd', type=float, default=None,
                   help='weight decay (default 2.5e-4 on CIFAR10 and mnist5k, 3.5e-4 on CIFAR100 and FashionMNIST)')
    g.add_argument('--optimizer', dest='hr_optimizer', default='sgd', choices=['sgd', 'adam'], help='sgd or adam')
    g.add_argument('--activation', dest='hr_act', default='relu6', choices=['hard-sigmoid', 'relu6', 'relu', 'reluclip'],
                   help='the box of the hidden layers (reluclip: [0, c], c drawn in [1, 10] per layer)')
    g.add_argument('--width', dest='hr_width', type=float, default=1.0,
                   help='multiplier of the widths 128, 256, 512, 512 (e.g. 0.125 on a CPU)')
    g.add_argument('--algorithm', dest='hr_algorithm', default='EP', choices=['EP', 'BPTT'],
                   help='centered EP, or backpropagation through the last --num_iterations_training steps')


FLAGS = {'--network', '--num_iterations_inference', '--num_iterations_training', '--weight_gains',
         '--learning_rates_weights', '--learning_rates_biases', '--lossfn', '--use_warm_restarts', '--batch_size',
         '--momentum', '--weight_decay', '--optimizer', '--activation', '--width', '--algorithm'}

# suite flags this paper does not read, and what it uses instead
NOT_USED = {'--T': 'its free-phase iterations are --num_iterations_inference',
            '--Kmax': 'its nudged-phase iterations are --num_iterations_training',
            '--optim': 'its optimiser is --optimizer sgd|adam', '--archi': 'its network is --network',
            '--padding': 'its convolutions are fixed by --network', '--Fpool': 'its poolings are fixed by --network',
            '--tol': 'its phases run a fixed number of iterations', '--tol-every': 'its phases run a fixed number of '
            'iterations', '--schedule': 'its layers are updated by the groups of a colouring of its graph',
            **{f: 'its weights are digital' for f in ('--analog', '--analog-tau', '--analog-preset',
                                                      '--analog-fast-lr', '--analog-reads')}}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(RunConfig):
    data_name: str                      # CIFAR10, CIFAR100, FashionMNIST or mnist5k
    network: str
    width: float
    act: str
    lossfn: str
    algorithm: str
    optimizer: str
    gains: list[float]
    lrs_weights: list[float]
    lrs_biases: list[float]
    momentum: float
    weight_decay: float
    warm_restarts: bool
    batch_size: int
    epochs: int
    T: int
    K: int
    beta: float


def _per_tensor(flag, values, n, what):
    """One value per tensor: n given, or one for all."""
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise UsageError(f'{flag} has {len(values)} values but the network has {n} {what}: give one, or one per '
                         f'{what[:-1]} in order')
    return values


def check_args(args):
    """Every inconsistency reported before anything is loaded or written; returns the Config."""
    if args.action != 'train':
        raise UsageError(f'--action {args.action}: Hopfield-ResNet runs train (resume with --load-path)')
    name = DATASETS.get((args.dataset or 'CIFAR10').lower())
    if name is None:
        raise UsageError(f'--dataset {args.dataset}: choose CIFAR10, CIFAR100, FashionMNIST or mnist5k')
    _, _, beta, wd = SETTINGS[name]
    net = args.hr_network
    try:
        gains = _list(args.hr_gains) if args.hr_gains else list(nets.GAINS[net])
        lrs_w = _list(args.hr_lrs_w) if args.hr_lrs_w else [LR[args.hr_optimizer]]
        lrs_b = _list(args.hr_lrs_b) if args.hr_lrs_b else lrs_w[:1]
    except ValueError as e:
        raise UsageError(f'--weight_gains / --learning_rates_weights / --learning_rates_biases: numbers separated by '
                         f'commas ({e})')
    if len(gains) != nets.N_WEIGHTS[net]:
        raise UsageError(f'--weight_gains has {len(gains)} values but --network {net} has {nets.N_WEIGHTS[net]} '
                         f'weight tensors')
    lrs_w = _per_tensor('--learning_rates_weights', lrs_w, nets.N_WEIGHTS[net], 'weight tensors')
    lrs_b = _per_tensor('--learning_rates_biases', lrs_b, nets.N_BIASES[net], 'biases')
    beta = beta if args.beta is None else args.beta
    wd = wd if args.hr_wd is None else args.hr_wd
    epochs = 300 if args.epochs is None else args.epochs
    checks.count('--batch_size', args.hr_batch, 1, 'the mini-batch size')
    checks.count('--epochs', epochs, 1, 'the number of epochs')
    checks.count('--num_iterations_inference', args.hr_T, 1, 'the number of free-phase iterations')
    checks.count('--num_iterations_training', args.hr_K, 1, 'the number of nudged-phase iterations')
    checks.real('--weight_gains', gains, 'gain', above=0)
    checks.real('--learning_rates_weights', lrs_w, 'learning rate', lo=0)
    checks.real('--learning_rates_biases', lrs_b, 'learning rate', lo=0)
    checks.real('--momentum', args.hr_momentum, 'the momentum', lo=0, below=1)
    checks.real('--weight_decay', wd, 'weight decay', lo=0)
    checks.real('--width', args.hr_width, 'the width multiplier', above=0)
    checks.real('--beta', beta, 'β')
    checks.seed(args.seed)
    if args.hr_algorithm == 'EP' and beta == 0:
        raise UsageError('--beta 0: centered EP needs a non-zero β (e.g. --beta 0.1)')
    if args.hr_K > args.hr_T and args.hr_algorithm == 'BPTT':
        raise UsageError(f'--num_iterations_training {args.hr_K} is more than --num_iterations_inference '
                         f'{args.hr_T}: BPTT backpropagates through the last steps of the relaxation')
    folder = checks.load_path(args)
    T, K, batch = args.hr_T, args.hr_K, args.hr_batch
    if args.dry_run:
        T, K = dry_cap(T, K)
        epochs, batch = 1, min(batch, DRY_BATCH)
    checks.global_batch('--batch_size', batch)
    return run_config(Config, args, data_name=name, network=net, width=float(args.hr_width), act=args.hr_act,
                      lossfn=args.hr_lossfn, algorithm=args.hr_algorithm, optimizer=args.hr_optimizer, gains=gains,
                      lrs_weights=lrs_w, lrs_biases=lrs_b, momentum=float(args.hr_momentum),
                      weight_decay=float(wd), warm_restarts=args.hr_warm, batch_size=batch, epochs=epochs, T=T, K=K,
                      beta=float(beta), resume=folder, tol=None, tol_every=10)


# ---------------------------------------------------------------------------------------------------------------
# Data: 32×32 inputs (the 28×28 digits and clothes padded by 2 pixels), CIFAR normalised per channel

def load_split(cfg, train):
    """(x, y) of a split in --dtype, 32×32 (the 28×28 digits and clothes padded by 2 pixels), CIFAR normalised per
    channel; a dry run synthesises images of the data set's shape when the files are absent (data.load_or_synthetic)."""
    x, y = data.load_or_synthetic(cfg.data_name, cfg.data_root, train, cfg.dry_run, 4 * DRY_BATCH, cfg.float_dtype)
    if x.shape[-1] == 28:
        x = F.pad(x, (2, 2, 2, 2))
    if cfg.data_name.startswith('CIFAR'):
        x = data.normalize(x, data.CIFAR_MEAN, CIFAR_STD)
    return x, y


def batches(cfg, x, y, bs, train, device, gen):
    aug = data.augment if (train and cfg.data_name.startswith('CIFAR')) else None
    return data.Batches(x, y, bs, shuffle=train, device=device, generator=gen, transform=aug,
                        max_batches=1 if cfg.dry_run else None)


# ---------------------------------------------------------------------------------------------------------------
# Network, estimator, optimiser

def build_model(cfg, generator=None):
    channels, classes = SETTINGS[cfg.data_name][:2]
    return nets.build(cfg.network, channels, classes, cfg.width, cfg.act, cfg.lossfn, cfg.T, cfg.K, cfg.beta,
                      generator=generator, gains=cfg.gains)


def make_estimator(cfg):
    if cfg.algorithm == 'BPTT':
        return estimators.TruncatedBPTT(cfg.T, cfg.K)
    return estimators.Symmetric(cfg.beta, cfg.T, cfg.K)


def make_optimizer(cfg, model):
    """SGD (Nesterov momentum) or Adam over one group per tensor, each with its learning rate."""
    groups = model.lr_groups(cfg.lrs_weights, cfg.lrs_biases, cfg.weight_decay)
    if cfg.optimizer == 'sgd':
        return torch.optim.SGD(groups, lr=cfg.lrs_weights[0], momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    return adam(groups, lr=cfg.lrs_weights[0])


def learning_rate(cfg, base, epoch):
    """Cosine annealing of a base rate η_0 in epoch e (1-based), as torch's CosineAnnealingLR stepped per epoch:
        η_e = η_min + ½ (η_0 − η_min)(1 + cos(π t / T)),   t = e − 1, T = epochs
    or, with warm restarts (CosineAnnealingWarmRestarts), t = (e − 1) mod RESTART_EPOCHS, T = RESTART_EPOCHS.
    A closed form of the epoch, so that a resumed run (--epochs given again: a new total) continues the schedule
    of its total without a scheduler state to reconcile."""
    t, T = ((epoch - 1) % RESTART_EPOCHS, RESTART_EPOCHS) if cfg.warm_restarts else (epoch - 1, cfg.epochs)
    return ETA_MIN + 0.5 * (base - ETA_MIN) * (1 + math.cos(math.pi * t / T))


# ---------------------------------------------------------------------------------------------------------------
# Run

def new_run_folder(cfg, argv, device, seed, model):
    folder = rundir.claim_time_dir(os.path.join(cfg.results_dir, cfg.network, cfg.algorithm))
    items = [('dataset', cfg.data_name), ('network', cfg.network), ('width', cfg.width), ('activation', cfg.act),
             ('lossfn', cfg.lossfn), ('algorithm', cfg.algorithm), ('beta', cfg.beta),
             ('num_iterations_inference', cfg.T), ('num_iterations_training', cfg.K), ('weight gains', cfg.gains),
             ('learning rates weights', cfg.lrs_weights), ('learning rates biases', cfg.lrs_biases),
             ('optimizer', cfg.optimizer), ('momentum (Nesterov)', cfg.momentum), ('weight decay', cfg.weight_decay),
             ('warm restarts', cfg.warm_restarts), ('batch size', cfg.batch_size), ('epochs', cfg.epochs),
             ('layer groups', [[model.layers[l + 1].name for l in g] for g in model.groups]),
             ('threads', torch.get_num_threads()), ('seed', seed), ('device', device), ('dry run', cfg.dry_run),
             ('dtype', cfg.dtype)]
    rundir.write_hyperparameters(folder, argv, items)
    rundir.append_hyperparameters(folder, [str(model)])
    rundir.copy_plot_script(folder)
    return folder


def run(args, argv):
    cfg = check_args(args)
    default_threads(cfg.threads, True, cfg.batch_size)
    device = run_device(cfg)
    seed = seed_everything(cfg.seed)
    gen = torch.Generator().manual_seed(seed)
    xtr, ytr = load_split(cfg, True)
    xte, yte = load_split(cfg, False)
    model = build_model(cfg, gen).to(device, cfg.float_dtype).set_gpu(*cfg.gpu)
    history, best = [], -1.0

    def optimiser():
        opt = make_optimizer(cfg, model)
        return opt, [g['lr'] for g in opt.param_groups]     # the base rates (a checkpoint holds scheduled ones)
    if cfg.resume:                      # the checkpoint, read before anything is appended to the folder
        opt, bases = optimiser()
        ck = checkpoints.restore(os.path.join(cfg.resume, 'checkpoint.tar'), model, opt, None, gen,
                                 'a checkpoint.tar of a Hopfield-ResNet training run', ('best',))
        history, best = ck['history'], ck['best']
    folder = trainer.open_run(lambda: new_run_folder(cfg, argv, device, seed, model), cfg.resume,
                              cfg.argv_given or argv)
    if not cfg.resume:                  # after the first line: a first optimiser imports torch._dynamo (~1 s)
        opt, bases = optimiser()
    train_b = batches(cfg, xtr, ytr, cfg.batch_size, True, device, gen)
    test_b = batches(cfg, xte, yte, min(cfg.batch_size, 200) if not cfg.dry_run else DRY_BATCH, False, device, gen)
    estimate = make_estimator(cfg)

    def run_epoch(epoch):
        for g, base in zip(opt.param_groups, bases):
            g['lr'] = learning_rate(cfg, base, epoch)
        lr = opt.param_groups[0]['lr']
        train = trainer.train(model, opt, train_b, lambda x, y: estimate(model, x, y, opt), 'train')
        test = trainer.evaluate(model, test_b, cfg.T)
        return dict(train_acc=100 - train['error'], test_acc=100 - test['error'], test_loss=test['loss'], lr=lr)

    def save(history):
        nonlocal best
        last = history[-1] if history else dict(epoch=0, test_acc=-1.0)
        ck = checkpoints.state(model, opt, last['epoch'], history, None, gen, cfg, best=max(best, last['test_acc']))
        best, _ = checkpoints.save_epoch(folder, ck, history, best)
        if history:
            trainer.say_epoch(last, 'epoch_seconds')

    trainer.fit(folder, cfg.epochs, history, run_epoch, save, model.parameters(), metrics='metrics.csv',
                plot=rundir.plot_folder)
    rundir.save({'model': model.state_dict(), 'network': cfg.network}, os.path.join(folder, 'final_model.pt'))
    rundir.plot_folder(folder)
    return folder

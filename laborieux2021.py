"""Laborieux et al. 2021 — "Scaling Equilibrium Propagation to deep ConvNets by drastically reducing its gradient
estimator bias": symmetric nudging, cross-entropy readout, continual EP, theorem (GDU) check.

Its flag group (spec B.1, same names and defaults) and its actions: --todo train (EP with the one-sided, random-sign
or symmetric estimator, CEP, or truncated BPTT), evaluate, gducheck. Networks in netLaborieux.py; the loops are the
suite's engine (netFunctions.py).
"""
import os
import time

import pandas as pd
import torch

import checks
import data
import netFunctions as nf
import plotFunctions
import results
import trainer
from cli import UsageError, apply_defaults, dry_cap, pick_device, say, seed_everything
from netLaborieux import ACTIVATIONS, P_CNN, P_MLP, VF_CNN, VF_MLP, conv_sizes

NAME = 'laborieux2021'
DEFAULTS = dict(epochs=1, dataset=None, archi=['784', '512', '10'], optim='sgd')


def add_args(parser):
    g = parser.add_argument_group('Laborieux et al. 2021 (scaled EP: symmetric nudging, cross-entropy readout, '
                                  'CEP); layers are listed from the input to the output; shares --archi, --epochs')
    g.add_argument('--model', default='MLP', choices=['MLP', 'VFMLP', 'CNN', 'VFCNN', 'EPLCACNN', 'LCACNN'],
                   help='network family (EPLCACNN, LCACNN: EPLCANet, see eplcanet.py)')
    g.add_argument('--task', default='MNIST', help='MNIST, CIFAR10, or mnist5k (embedded offline digits)')
    g.add_argument('--channels', type=int, nargs='+', default=[32, 64], help='conv output channels')
    g.add_argument('--kernels', type=int, nargs='+', default=[5, 5], help='conv kernel sizes')
    g.add_argument('--strides', type=int, nargs='+', default=[1, 1], help='conv strides')
    g.add_argument('--paddings', type=int, nargs='+', default=[0, 0], help='conv paddings')
    g.add_argument('--pools', default='mm', help="one letter per conv layer: m (max), a (average), i (identity)")
    g.add_argument('--fc', type=int, nargs='+', default=[10], help='fully connected sizes after the convs')
    g.add_argument('--act', default='mysig', choices=sorted(ACTIVATIONS), help='activation σ')
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
    g.add_argument('--data-aug', action='store_true', help='CIFAR-10 augmentation (flip, crop with edge padding)')
    g.add_argument('--lr-decay', action='store_true', help='cosine annealing, T_max 100, eta_min 1e-5')
    g.add_argument('--scale', type=float, default=None, help='multiply the default initialisation by this factor')
    g.add_argument('--save', action='store_true', help='accepted for compatibility: every run is saved')
    g.add_argument('--save-nrn', action='store_true', help='accepted for compatibility (stale flag of a script)')
    g.add_argument('--same-update', action='store_true', help='VFCNN: forward and backward weights share the update')
    g.add_argument('--cep-debug', action='store_true',
                   help='CEP: accumulate the T2 per-step updates and apply them as one step at the end')


FLAGS = {'--model', '--task', '--channels', '--kernels', '--strides', '--paddings', '--pools', '--fc', '--act',
         '--lrs', '--wds', '--mmt', '--loss', '--softmax', '--alg', '--mbs', '--T1', '--T2', '--betas',
         '--check-thm', '--random-sign', '--thirdphase', '--data-aug', '--lr-decay', '--scale', '--save',
         '--save-nrn', '--same-update', '--cep-debug'}

TASKS = {'mnist': 'mnist', 'mnist5k': 'mnist5k', 'cifar10': 'cifar10'}


# ---------------------------------------------------------------------------------------------------------------
# Arguments

ACTIONS = ('train', 'evaluate', 'gducheck')


def check_args(args, actions=ACTIONS):
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
    if args.model in ('CNN', 'VFCNN'):               # the EPLCANet models index these lists (eplcanet.py)
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
    if args.load_path and not os.path.isdir(args.load_path):
        if not args.dry_run:
            raise UsageError(f'--load-path {args.load_path}: no such run folder')
        say(f'dry run: --load-path {args.load_path} does not exist; using a fresh network')
        args.load_path = ''
    if args.load_path and args.action != 'train':
        adopt_arch(args, args.load_path)
    check_layers(args)
    if args.action == 'evaluate' and not args.load_path and not args.dry_run:
        raise UsageError('--todo evaluate needs --load-path <run folder>')
    if args.dry_run:
        args.T1, args.T2 = dry_cap(args.T1, args.T2)
        args.epochs, args.mbs = 1, min(args.mbs, 16)
    args.estimator = 'symmetric' if args.thirdphase else ('random-sign' if args.random_sign else 'one-sided')


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
        sizes = conv_sizes(n, args.kernels, args.strides, args.paddings, args.pools)
        if min(sizes) < 1:
            raise UsageError(f'--channels {" ".join(map(str, args.channels))}: the feature maps vanish '
                             f'({" → ".join(map(str, [n] + sizes))} with --kernels {" ".join(map(str, args.kernels))}'
                             f', --strides {" ".join(map(str, args.strides))}, --paddings '
                             f'{" ".join(map(str, args.paddings))}, --pools {args.pools}); use fewer conv layers, '
                             f'smaller kernels or larger --paddings')


ARCH = ('model', 'archi', 'channels', 'kernels', 'strides', 'paddings', 'pools', 'fc', 'act', 'loss', 'softmax',
        'same_update')


def arch_of(args):
    return {k: getattr(args, k) for k in ARCH + tuple(getattr(args, 'extra_arch', ()))}


def adopt_arch(args, folder):
    """evaluate / gducheck rebuild the network of the saved run (state dicts carry no architecture)."""
    saved = trainer.load(os.path.join(folder, 'model.pt'), ('model', 'arch'), 'a model.pt of a training run')
    for k, v in saved['arch'].items():
        setattr(args, k, v)


def build_model(args, in_shape):
    beta, vf = args.betas[1], args.model.startswith('VF')
    if 'CNN' in args.model:
        cls, extra = (VF_CNN, {'same_update': args.same_update}) if vf else (P_CNN, {})
        return cls(in_shape[-1], in_shape[0], args.channels, args.kernels, args.strides, args.paddings, args.pools,
                   args.fc, args.T1, args.T2, beta, args.act, loss=args.loss, softmax=args.softmax, **extra)
    archi = list(args.archi)
    if archi[0] != in_shape[0] * in_shape[1] * in_shape[2]:
        raise UsageError(f'--archi starts with {archi[0]} but the {args.data_name} input has '
                         f'{in_shape[0] * in_shape[1] * in_shape[2]} pixels')
    if vf:
        return VF_MLP(archi, args.T1, args.T2, beta, args.act, args.loss, same_update=args.same_update)
    return P_MLP(archi, args.T1, args.T2, beta, args.act, args.loss)


def rescale(model, g):
    """--scale g: weight = g × default (kaiming-uniform) init, bias = g × default init."""
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(g)


def make_optimizer(args, model):
    groups = model.lr_groups(args.lrs, args.wds)
    if args.alg == 'CEP' and args.wds:
        # CEP re-parameterises the weight decay so that T2 small steps decay as one ordinary step of 0.1·wd
        for g, wd in zip(groups, args.wds):
            g['weight_decay'] = (1 - (1 - 0.1 * wd) ** (1 / args.T2)) / g['lr']
    if args.optim == 'sgd':
        opt = torch.optim.SGD(groups, lr=args.lrs[0], momentum=args.mmt)
    else:
        opt = torch.optim.Adam(groups, lr=args.lrs[0])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 100, eta_min=1e-5) if args.lr_decay else None
    return opt, sched


# ---------------------------------------------------------------------------------------------------------------
# Data

CIFAR_STD = (3 * 0.2023, 3 * 0.1994, 3 * 0.2010)          # 3× the usual std, as the original


def load_split(args, train):
    x, y = data.load_or_synthetic(args.data_name, args.data_root, train, args.dry_run, max(args.mbs, 8))
    return (data.normalize(x, data.CIFAR_MEAN, CIFAR_STD) if args.data_name == 'cifar10' else x), y


def batches(args, x, y, bs, train, device, gen):
    aug = data.augment if (train and args.data_aug and args.data_name == 'cifar10') else None
    return data.Batches(x, y, bs, shuffle=train, device=device, generator=gen, transform=aug,
                        max_batches=1 if args.dry_run else None)


# ---------------------------------------------------------------------------------------------------------------
# Actions

def run(args, argv):
    check_args(args)
    device = pick_device(args.device)
    seed = seed_everything(args.seed)
    xtr, ytr = load_split(args, True)
    xte, yte = (load_split(args, False) if args.action != 'gducheck' else (None, None))
    model = build_model(args, tuple(xtr.shape[1:])).to(device)
    if args.scale is not None:
        rescale(model, args.scale)
    if args.action == 'gducheck':
        return gducheck_action(args, argv, model, xtr, ytr, device, seed)
    if args.action == 'evaluate':
        return evaluate_action(args, model, xtr, ytr, xte, yte, device)
    return train_action(args, argv, model, xtr, ytr, xte, yte, device, seed)


def run_folder(args, argv, device, seed, model, extra_items=()):
    if args.load_path:
        return args.load_path
    now = time.localtime()
    parent = os.path.join(args.results_dir, args.alg, args.loss, time.strftime('%Y-%m-%d', now))
    folder = results.claim_dir(os.path.join(parent, time.strftime('%H-%M-%S', now)))
    items = [('task', args.data_name), ('model', args.model), ('data augmentation', args.data_aug),
             ('learning rate decay', args.lr_decay), ('scale', args.scale), ('activation', args.act),
             ('learning rates', args.lrs), ('weight decays', args.wds), ('momentum', args.mmt),
             ('optimizer', args.optim), ('loss', args.loss), ('alg', args.alg), ('minibatch size', args.mbs),
             ('T1', args.T1), ('T2', args.T2), ('betas', args.betas), ('random beta_2 sign', args.random_sign),
             ('thirdphase', args.thirdphase), ('softmax', args.softmax), ('same update VFCNN', args.same_update),
             ('epochs', args.epochs), ('seed', seed), ('device', device), ('dry run', args.dry_run)]
    if 'CNN' in args.model:
        items += [('channels', args.channels), ('kernels', args.kernels), ('strides', args.strides),
                  ('paddings', args.paddings), ('poolings', list(args.pools)), ('fc', args.fc)]
    else:
        items.append(('archi', args.archi))
    results.write_hyperparameters(folder, argv, items + list(extra_items))
    results.append_hyperparameters(folder, [str(model)])
    results.copy_plot_script(folder)
    return folder


def train_one_batch(args, model, opt, x, y, gen):
    beta = args.betas[1]
    if args.alg in ('BPTT', 'BP'):
        return nf.bptt_step(model, x, y, args.T1, args.T2)
    if args.alg == 'CEP':
        return nf.cep_step(model, x, y, beta, opt, args.T1, args.T2, thirdphase=args.thirdphase,
                           accumulate=args.cep_debug)
    return nf.ep_step(model, x, y, beta, args.estimator, args.T1, args.T2, generator=gen)


class Extension:
    """What a derived paper (eplcanet.py) adds to this training loop; no-ops here."""
    items = ()                                          # extra hyperparameters.txt lines

    def prepare(self, x, y):
        """The mini-batch the update sees (adversarial training replaces it)."""
        return x

    def after_step(self, s):
        """After the gradient estimate, before the optimiser step (built-in dictionary updates)."""
        return s

    def observe(self, train):
        """Callback(s, y, label) run on every training (train=True) or test batch, or None."""
        return None

    def epoch_row(self):
        """Extra metrics.csv columns of the epoch that just ended."""
        return {}

    def save(self, folder):
        """Extra files of the run, written every epoch."""


def train_epoch(args, model, opt, train_b, gen, ext=None):
    """One epoch; returns the running training accuracy (%) at the free equilibrium before each update."""
    ext = ext or Extension()
    tenth = max(len(train_b) // 10, 1)

    def hook(b, x, y):
        if args.check_thm and args.alg not in ('BPTT', 'BP') and b % tenth == 0:
            check_theorem(args, model, x[:5], y[:5], b / len(train_b))
    step = (lambda x, y: ext.after_step(train_one_batch(args, model, opt, ext.prepare(x, y), y, gen)))
    return 100.0 - trainer.train(model, opt, train_b, step, 'train', hook, ext.observe(True))


def check_theorem(args, model, x, y, frac):
    """--check-thm: the GDU check on 5 samples, RMSE per key printed (every 10 % of an epoch)."""
    rows = nf.gdu_table(nf.gdu_traces(model, x, y, args.T1, args.T2, args.betas[1]))
    say(f'[{frac:.0%} of the epoch] GDU RMSE: ' + ', '.join(f'{r["key"]} {r["rmse_mean"]:.3f}' for r in rows))


def checkpoint(model, opt, sched, gen, epoch, history, best):
    return {'model': model.state_dict(), 'optimizer': opt.state_dict(),
            'scheduler': sched.state_dict() if sched else None, 'generator': gen.get_state(),
            'torch_rng': torch.get_rng_state(), 'epoch': epoch, 'history': history, 'best': best}


def train_action(args, argv, model, xtr, ytr, xte, yte, device, seed, ext=None):
    ext = ext or Extension()
    opt, sched = make_optimizer(args, model)
    gen = torch.Generator().manual_seed(seed)
    history, best = [], -1.0
    if args.load_path:                                     # resume from the LAST checkpoint
        history, best = resume(args, model, opt, sched, gen)
    folder = run_folder(args, argv, device, seed, model, ext.items)
    if args.load_path:
        trainer.note_resume(folder, getattr(args, 'argv_given', argv))
    say(f'results: {folder}')
    train_b = batches(args, xtr, ytr, args.mbs, True, device, gen)
    test_b = batches(args, xte, yte, 16 if args.dry_run else 200, False, device, gen)

    def run_epoch(epoch):
        train_acc = train_epoch(args, model, opt, train_b, gen, ext)
        if sched and epoch <= 100:                         # the original stops the cosine schedule at epoch 100
            sched.step()
        test_err, test_loss = trainer.evaluate(model, test_b, args.T1, ext.observe(False))
        row = dict(train_acc=train_acc, test_acc=100 - test_err, test_loss=test_loss, lr=opt.param_groups[0]['lr'])
        if hasattr(model, 'angles'):                       # VF nets: angle between B_k and W_{k+1}, degrees
            row.update({f'angle_{k}': a for k, a in enumerate(model.angles())})
        row.update(ext.epoch_row())
        return row

    def save(history):
        nonlocal best
        last = history[-1] if history else dict(epoch=0, test_acc=-1.0)
        ck = checkpoint(model, opt, sched, gen, last['epoch'], history, max(best, last['test_acc']))
        results.save(ck, os.path.join(folder, 'checkpoint.tar'))
        if not history:
            return
        ext.save(folder)
        results.write_csv(os.path.join(folder, 'metrics.csv'), pd.DataFrame(history))
        if last['test_acc'] > best:
            best = last['test_acc']
            results.save(ck, os.path.join(folder, 'best_checkpoint.tar'))
            results.save({'model': model.state_dict(), 'arch': arch_of(args)}, os.path.join(folder, 'model.pt'))
        say(f'epoch {last["epoch"]}: train acc {last["train_acc"]:.2f} %, test acc {last["test_acc"]:.2f} %, '
            f'test loss {last["test_loss"]:.4f}, {last["seconds"]:.1f} s')

    trainer.fit(folder, args.epochs, history, run_epoch, save, model.parameters())
    save_neural_activity(model, train_b, folder, args.T1)
    results.save({'model': model.state_dict(), 'arch': arch_of(args)}, os.path.join(folder, 'final_model.pt'))
    plotFunctions.plot_folder(folder)
    return folder


CHECKPOINT_KEYS = ('model', 'optimizer', 'scheduler', 'generator', 'torch_rng', 'epoch', 'history', 'best')


def resume(args, model, opt, sched, gen):
    """Model, optimiser, scheduler and random states of the last checkpoint of a run (learning rates, weight
    decays and momentum are this command's, see trainer.load_optimizer); returns (history, best)."""
    path = os.path.join(args.load_path, 'checkpoint.tar')
    ck = trainer.load(path, CHECKPOINT_KEYS, 'a checkpoint.tar of a Laborieux-2021 / EPLCANet training run')
    trainer.load_state(model, ck['model'], path)
    trainer.load_optimizer(opt, ck['optimizer'], path)
    if sched and ck['scheduler']:
        sched.load_state_dict(ck['scheduler'])
        sched.base_lrs = [g['initial_lr'] for g in opt.param_groups]
    gen.set_state(ck['generator'])
    torch.set_rng_state(ck['torch_rng'])
    return ck['history'], ck['best']


def load_model(folder, model):
    """The weights of a run's best model (model.pt) into `model`."""
    path = os.path.join(folder, 'model.pt')
    trainer.load_state(model, trainer.load(path, ('model',), 'a model.pt of a training run')['model'], path)


def save_neural_activity(model, train_b, folder, T1):
    """States of every neuron layer at the free equilibrium of one mini-batch (histograms: neural_activity.png)."""
    x, _ = next(iter(train_b))
    with torch.no_grad():
        s = nf.free_phase(model, model.front(x), T1)
    results.save({f'layer {k}': si.flatten().cpu() for k, si in enumerate(s)},
                 os.path.join(folder, 'neural_activity.pt'))


def evaluate_action(args, model, xtr, ytr, xte, yte, device):
    """Train and test accuracy of the best model of a run, appended to its hyperparameters.txt."""
    if args.load_path:
        load_model(args.load_path, model)
    lines = []
    for name, (x, y) in (('Train', (xtr, ytr)), ('Test', (xte, yte))):
        err, _ = trainer.evaluate(model, batches(args, x, y, args.mbs, False, device, None), args.T1)
        lines.append(f'{name} accuracy : {100 - err:.2f}')
        say(lines[-1])
    if args.load_path:                                     # (not a 'python main.py' line: a later resume of the
        given = getattr(args, 'argv_given', None)          # run does not take the evaluation's flags)
        head = [f'evaluated with: {results.command_line(given)}'] if given else []
        results.append_hyperparameters(args.load_path, head + lines)
    return args.load_path or None


def gdu_dict(tr, side):
    """{'synapses.k.weight': (T2, ...), 'neurons_k': (T2, ...)} per-step traces of one side ('n' BPTT, 'd' EP)."""
    out = dict(tr[side + 'T'])
    out.update({f'neurons_{k}': v for k, v in enumerate(tr[side + 'S'])})
    return out


def gducheck_action(args, argv, model, xtr, ytr, device, seed):
    if args.load_path:
        load_model(args.load_path, model)
        args.load_path = ''                                # the check gets a folder of its own
    folder = run_folder(args, argv, device, seed, model)
    say(f'results: {folder}')
    x, label = xtr[:min(20, args.mbs)].to(device), ytr[:min(20, args.mbs)].to(device)
    y = nf.one_hot(label, model.output_size).to(x)
    beta = args.betas[1]
    traces = {'right': nf.gdu_traces(model, x, y, args.T1, args.T2, beta)}
    if args.thirdphase:
        traces['left'] = nf.gdu_traces(model, x, y, args.T1, args.T2, -beta)
    for side, tr in traces.items():
        tr = {k: ([t.cpu() for t in v] if isinstance(v, list) else {n: t.cpu() for n, t in v.items()})
              for k, v in tr.items()}
        traces[side] = tr
    results.save(traces, os.path.join(folder, 'gdu_laborieux.pt'))
    for side, name in (('right', 'EP'), ('left', 'EP_2')):     # the original's dumps, keyed by parameter/neurons
        if side in traces:
            results.save(gdu_dict(traces[side], 'd'), os.path.join(folder, f'{name}.tar'))
    results.save(gdu_dict(traces['right'], 'n'), os.path.join(folder, 'BPTT.tar'))
    table = pd.DataFrame(nf.gdu_table(traces['right']))
    results.write_csv(os.path.join(folder, 'gdu_stats.csv'), table)
    say(table.to_string(index=False, float_format=lambda v: f'{v:.4f}'))
    plotFunctions.plot_folder(folder)
    return folder

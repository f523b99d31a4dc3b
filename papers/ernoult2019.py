"""Ernoult et al., NeurIPS 2019 — "Updates of EP match gradients of BPTT in an RNN with static input".

Its flag group (the original's names and meanings), their validation into a frozen Config, and its actions: train
(EP or BPTT, --benchmark trains both from the same initial weights), plotcurves (GDU traces of one mini-batch, also
reachable as gducheck) and receipe (sign agreement of EP and BPTT over 20 mini-batches). Networks in netClasses.py,
algorithms in netFunctions.py, the epoch loop and run folder in trainer.py.
"""
import copy
import dataclasses
import os

import torch

from suite import data
from ep import estimators
import netFunctions as nf
import analog
from suite import checks
from suite import rundir
from suite import checkpoints
from suite import trainer
from suite.cli import default_threads
from suite.cli import (SCHEDULES, RunConfig, UsageError, apply_defaults, dry_cap, run_config, run_device, say,
                 seed_everything)
from netClasses import ACTIVATION_NAMES, build_net, conv_pool_sizes

NAME = 'ernoult2019'
DEFAULTS = dict(T=100, Kmax=25, beta=1.0, epochs=1, padding=0, Fpool=2, dataset='mnist')
METHODS = {'EP': 'EP', 'eqprop': 'EP', 'BPTT': 'BPTT'}


def add_args(parser):
    g = parser.add_argument_group('Ernoult et al. 2019 (EP updates match BPTT gradients): layers are listed from '
                                  'the output to the input')
    g.add_argument('--batch-size', type=int, default=20, help='training mini-batch (also plotcurves/receipe)')
    g.add_argument('--test-batch-size', type=int, default=1000, help='test mini-batch')
    g.add_argument('--lr_tab', type=float, nargs='+', default=[0.05, 0.1],
                   help='learning rates from the output layer towards the input (one per weight layer)')
    g.add_argument('--size_tab', type=int, nargs='+', default=[10],
                   help='layer sizes from the output to the input (e.g. 10 512 784); conv nets: fc classifier only')
    g.add_argument('--C_tab', type=int, nargs='+', default=[],
                   help='conv channels from the classifier side to the input (e.g. 64 32 1): selects convEP')
    g.add_argument('--discrete', action='store_true', help='prototypical setting (EPdisc, dt = 1 unless --dt)')
    g.add_argument('--toymodel', action='store_true', help='toy model of Fig. 2 (toyEPcont)')
    g.add_argument('--no-clamp', action='store_true', help='do not clip the energy-based states to [0, 1]')
    g.add_argument('--dt', type=float, default=None,
                   help='Euler step ε of the energy-based setting (default 0.2); the prototypical setting uses 1 '
                        'unless --dt is given')
    g.add_argument('--activation-function', default='sigm', choices=sorted(ACTIVATION_NAMES),
                   help="ρ: 'sigm' (1/(1+exp(-4(x-0.5)))), 'hardsigm' (clip to [0,1]) or 'tanh'")
    g.add_argument('--training-method', default='eqprop', choices=sorted(METHODS),
                   help='EP (alias eqprop) or BPTT')
    g.add_argument('--benchmark', action='store_true',
                   help='also train a BPTT twin from the same initial weights, with the same hyperparameters')
    g.add_argument('--Fconv', type=int, default=5, help='conv kernel size')
    g.add_argument('--device-label', type=int, default=None, help='CUDA index, -1 = CPU (alias of --device)')
    g.add_argument('--save-all-traces', action='store_true',
                   help='plotcurves: keep the traces of every unit in gdu.pt (default: a seeded subset of at most 50 '
                        'units per layer and per parameter tensor; statistics always use every unit)')


FLAGS = {'--batch-size', '--test-batch-size', '--lr_tab', '--size_tab', '--C_tab', '--discrete', '--toymodel',
         '--no-clamp', '--dt', '--activation-function', '--training-method', '--benchmark', '--Fconv',
         '--device-label', '--save-all-traces'}


# ---------------------------------------------------------------------------------------------------------------

def n_weight_layers(args):
    if args.toymodel:
        return 3
    if args.C_tab:
        return len(args.size_tab) + len(args.C_tab) - 1
    return len(args.size_tab) - 1


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(RunConfig):
    """A validated command line of this paper (check_args); `resume` is the Trial folder that training picks up."""
    dataset: str
    T: int
    Kmax: int
    beta: float
    epochs: int
    batch_size: int
    test_batch_size: int
    lr_tab: list[float]
    size_tab: list[int]                 # from the output to the input
    C_tab: list[int]                    # conv channels (convEP), empty for the fully connected nets
    Fconv: int
    Fpool: int
    padding: int
    discrete: bool
    toymodel: bool
    no_clamp: bool
    dt: float                           # Euler step of the energy-based setting
    dt_disc: float                      # ... and of the prototypical one (1 unless --dt)
    activation_function: str
    method: str                         # EP or BPTT (--training-method)
    benchmark: bool
    save_all_traces: bool


def check_args(args):
    """Every inconsistency is reported before anything is loaded or written; returns the run's Config (the namespace
    is normalised on the way: defaults applied, gducheck → plotcurves, --device-label → --device)."""
    if not args.C_tab:                                    # conv-only flags (unset shared flags are still None here)
        given = [f for f, v in (('--padding', args.padding), ('--Fpool', args.Fpool)) if v is not None]
        given += ['--Fconv'] if args.Fconv != 5 else []
        if given:
            raise UsageError(f'{", ".join(given)}: conv flags of this paper; they need --C_tab (a conv net), or drop '
                             f'them for the fully connected nets of --size_tab')
    apply_defaults(args, DEFAULTS)
    args.method = METHODS[args.training_method]
    if args.action == 'gducheck':
        args.action = 'plotcurves'
    if args.action not in ('train', 'plotcurves', 'receipe'):
        raise UsageError(f'--action {args.action} is not an action of the Ernoult-2019 commands; use train, '
                         f'plotcurves or receipe (EPLCANet actions need --model or LCA flags of that paper)')
    if args.dataset not in ('mnist', 'mnist5k'):
        raise UsageError(f'--dataset {args.dataset}: this paper runs on MNIST; use mnist or mnist5k')
    for flag in ('T', 'Kmax', 'epochs', 'batch_size', 'test_batch_size', 'Fconv', 'Fpool'):
        if getattr(args, flag) < 1:
            raise UsageError(f'--{flag.replace("_", "-") if "size" in flag else flag} {getattr(args, flag)}: must be '
                             f'at least 1')
    if args.T < args.Kmax:
        raise UsageError(f'--T {args.T} is smaller than --Kmax {args.Kmax}: the last Kmax steps (BPTT window, GDU '
                         f'traces) must fit in the T free steps; raise --T or lower --Kmax')
    check_values(args)
    checks.analog(args)
    checks.relaxation(args, None if (args.discrete or args.C_tab) else 'the energy-based nets (EPcont, --toymodel) '
                      'relax synchronously (async is for the prototypical nets: --discrete or --C_tab)',
                      None if args.action == 'train' else f'--action {args.action} compares the last Kmax steps of '
                      f'a T-step phase')
    if args.action == 'train':
        checks.global_batch('--batch-size', args.batch_size)
    if args.toymodel and len(args.size_tab) != 3:
        raise UsageError(f'--toymodel needs --size_tab with 3 entries (output hidden input), got {args.size_tab}')
    if not args.C_tab and not args.toymodel and len(args.size_tab) < 2:
        raise UsageError(f'--size_tab {" ".join(map(str, args.size_tab))}: give the layer sizes from the output to '
                         f'the input, e.g. --size_tab 10 512 784 (or --C_tab for a conv net)')
    if not args.C_tab and args.size_tab[-1] != 784 and not (args.toymodel and args.action != 'train'):
        # (the toy model's GDU curves and receipe use random inputs of any size, as the original; training is MNIST)
        raise UsageError(f'--size_tab ends with {args.size_tab[-1]}: the input layer must be 784 (28×28 MNIST)')
    if args.C_tab and args.C_tab[-1] != 1:
        raise UsageError(f'--C_tab {" ".join(map(str, args.C_tab))}: the last entry is the input channels, 1 for '
                         f'MNIST')
    if args.action == 'train' and len(args.lr_tab) != n_weight_layers(args):
        raise UsageError(f'--lr_tab has {len(args.lr_tab)} values but this network has {n_weight_layers(args)} '
                         f'weight layers (--size_tab {" ".join(map(str, args.size_tab))}'
                         f'{" --C_tab " + " ".join(map(str, args.C_tab)) if args.C_tab else ""}); give one learning '
                         f'rate per layer, from the output towards the input')
    if args.C_tab:
        conv_geometry(args)
    args.dt_disc = 1.0 if args.dt is None else args.dt   # prototypical setting: dt = 1 (paper), see EPdisc
    args.dt = 0.2 if args.dt is None else args.dt
    if args.dry_run:
        args.T, args.Kmax = dry_cap(args.T, args.Kmax)
        args.epochs = 1
    if args.device_label is not None and args.device is None:
        args.device = args.device_label
    if args.load_path and args.action != 'train':
        raise UsageError(f'--load-path is for --action train here (it resumes a Trial folder), not {args.action}')
    return run_config(Config, args, resume=args.load_path or None)


def check_values(args):
    """Sizes, learning rates, β and dt: finite and in range (a NaN learning rate would train on NaN weights)."""
    checks.seed(args.seed)
    checks.real('--beta', args.beta, 'the nudging strength β', nonzero=True, fix='e.g. --beta 0.1')
    checks.real('--lr_tab', args.lr_tab, 'learning rate', lo=0)
    checks.real('--dt', args.dt, 'the Euler step', above=0, fix='e.g. --dt 0.2')
    checks.count('--size_tab', args.size_tab, 1, 'layer size')
    checks.count('--C_tab', args.C_tab, 1, 'channel count')
    if args.padding not in (0, 1):
        raise UsageError(f'--padding {args.padding}: give 0 (no padding) or 1 ("same" convolutions)')
    if args.toymodel and (args.C_tab or args.discrete):
        raise UsageError(f'--toymodel is the energy-based toy model of Fig. 2: drop '
                         f'{"--C_tab" if args.C_tab else "--discrete"}')
    if not args.toymodel and args.size_tab[0] != 10:
        raise UsageError(f'--size_tab starts with {args.size_tab[0]}: the output layer has the 10 MNIST classes '
                         f'(layers are listed from the output to the input)')


def conv_geometry(args, in_size=28):
    """The spatial size of every conv layer of convEP (its formula); vanishing maps are a usage error."""
    P, n = (args.Fconv - 1) // 2 if args.padding else 0, len(args.C_tab) - 1
    sizes = conv_pool_sizes(in_size, [args.Fconv] * n, [1] * n, [P] * n, 'm' * n, args.Fpool)
    if sizes[-1] < 1:
        raise UsageError(f'--C_tab {" ".join(map(str, args.C_tab))}: the feature maps vanish '
                         f'({" → ".join(map(str, sizes))} with --Fconv {args.Fconv}, --Fpool {args.Fpool}, '
                         f'--padding {args.padding}); use fewer conv layers, a smaller --Fconv or --padding 1')
    return sizes


def model_name(cfg):
    kind = '_conv' if cfg.C_tab else ('_disc' if cfg.discrete else '_cont')
    return 'ep' + kind + ('_toymodel' if cfg.toymodel else f'_{len(cfg.size_tab) - 2}hidden')


def hyperparameters(cfg, seed, device):
    items = [('action', cfg.action), ('model', model_name(cfg)), ('dataset', cfg.dataset),
             ('T', cfg.T), ('Kmax', cfg.Kmax), ('beta', f'{cfg.beta:.3f}'), ('batch size', cfg.batch_size),
             ('activation function', cfg.activation_function), ('training method', cfg.method),
             ('benchmark', cfg.benchmark)]
    if cfg.action == 'train':
        items += [('number of epochs', cfg.epochs), ('learning rates', cfg.lr_tab)]
    items.append(('dt', f'{cfg.dt_disc if cfg.discrete else cfg.dt:.3f}' if not cfg.C_tab else 'n/a (P-conv)'))
    if not cfg.discrete and not cfg.C_tab:
        items.append(('clamp', not cfg.no_clamp))
    if cfg.C_tab:
        items += [('channel sizes', cfg.C_tab), ('classifier sizes', cfg.size_tab), ('filter size', cfg.Fconv),
                  ('pool size', cfg.Fpool), ('padded layers', 'yes' if cfg.padding else 'no')]
    else:
        items.append(('layer sizes', cfg.size_tab))
    items += [('seed', seed), ('device', device), ('dry run', cfg.dry_run), ('dtype', cfg.dtype)]
    return items + checks.analog_items(cfg) + checks.relaxation_items(cfg)


def load_data(cfg, train):
    return data.load_or_synthetic(cfg.dataset, cfg.data_root, train, cfg.dry_run, dtype=cfg.float_dtype)


def make_batches(cfg, x, y, batch_size, shuffle, device, gen):
    flat = not cfg.C_tab
    return data.Batches(x, y, batch_size, shuffle=shuffle, flatten=flat, device=device, generator=gen,
                        max_batches=1 if cfg.dry_run else None)


def new_run_dir(cfg, argv, seed, device, header):
    """A new Trial-<k> folder of this model and day, with its hyperparameters and plotting script."""
    folder = rundir.claim_run_dir(os.path.join(cfg.results_dir, NAME, model_name(cfg), rundir.today()))
    rundir.write_hyperparameters(folder, argv, hyperparameters(cfg, seed, device), header=header)
    rundir.copy_plot_script(folder)
    return folder


# ---------------------------------------------------------------------------------------------------------------
# Actions

def run(args, argv):
    cfg = check_args(args)
    default_threads(cfg.threads, bool(cfg.C_tab), cfg.batch_size)
    device = run_device(cfg)
    seed = seed_everything(cfg.seed)
    gen = torch.Generator().manual_seed(seed)
    if cfg.action == 'train':
        return train_action(cfg, argv, device, seed)
    return gdu_action(cfg, argv, device, seed, gen)


def train_action(cfg, argv, device, seed):
    xtr, ytr = load_data(cfg, True)
    xte, yte = load_data(cfg, False)
    net = build_net(cfg).to(device, cfg.float_dtype).set_relaxation(cfg.tol, cfg.tol_every,
                                                                    SCHEDULES[cfg.schedule]).set_gpu(*cfg.gpu)
    nets = {cfg.method: net}
    if cfg.benchmark:                                     # BPTT twin from the same initial weights, trained first
        nets = {'BPTT': copy.deepcopy(net), 'EP': net}
    gens = {m: torch.Generator().manual_seed(seed) for m in nets}   # EP and its twin see the same mini-batches
    opts, rows = {}, {m: [] for m in nets}
    if cfg.resume:                      # the checkpoints, read before anything is appended to the folder
        opts = {m: make_optimizer(cfg, n) for m, n in nets.items()}
        rows = resume(cfg, nets, opts, gens)
    header = f' TRAINING: list of hyperparameters ({model_name(cfg)}, {rundir.today()})'
    folder = trainer.open_run(lambda: new_run_dir(cfg, argv, seed, device, header), cfg.resume,
                              cfg.argv_given or argv)
    # after the first line: a first optimiser imports torch._dynamo (~1 s)
    opts = opts or {m: make_optimizer(cfg, n) for m, n in nets.items()}

    def saver(method):
        def save(history):
            checkpoints.save(os.path.join(folder, f'checkpoint_{method}.pt'), nets[method], opts[method],
                             history[-1]['epoch'] if history else 0, history, generator=gens[method], config=cfg,
                             seed=seed, method=method)
            if history:
                r = history[-1]
                say(f'{method} epoch {r["epoch"]}: train error {r["train_error"]:.2f} %, test error '
                    f'{r["test_error"]:.2f} %, test loss {r["test_loss"]:.4f}, {r["seconds"]:.1f} s')
        return save

    saves = {m: saver(m) for m in nets}
    for m in nets:                                        # every net resumes, even if Ctrl-C comes before its turn
        if not rows[m]:
            saves[m](rows[m])
    for method, m in nets.items():
        train_b = make_batches(cfg, xtr, ytr, cfg.batch_size, True, device, gens[method])
        test_b = make_batches(cfg, xte, yte, cfg.test_batch_size, False, device, gens[method])

        def run_epoch(epoch, method=method, m=m, train_b=train_b, test_b=test_b):
            tr = trainer.train(m, opts[method], train_b, step_fn(m, method), f'{method} epoch {epoch}')
            te = trainer.evaluate(m, test_b)
            return dict(method=method, train_error=tr['error'], test_error=te['error'], test_loss=te['loss'],
                        **m.pop_steps())
        trainer.fit(folder, cfg.epochs, rows[method], run_epoch, saves[method], m.parameters(), label=f' ({method})',
                    metrics='metrics.csv', table=lambda: [r for v in rows.values() for r in v],
                    plot=lambda f: rundir.plot_folder(f, show=False))
    rundir.plot_folder(folder, show=False)
    return folder


def make_optimizer(cfg, net):
    """SGD at the per-layer learning rates; with --analog the weights live on devices (analog.DeviceSGD): the EP (or
    BPTT) estimate is written by pulses, the relaxation reads the devices' weights."""
    groups = net.lr_groups(cfg.lr_tab)
    if cfg.rpu is not None:
        return analog.DeviceSGD(groups, lr=cfg.lr_tab[0], rpu=cfg.rpu, digital=net.digital_parameters())
    return torch.optim.SGD(groups, lr=cfg.lr_tab[0])


def resume(cfg, nets, opts, gens):
    """Weights, optimiser and shuffling state of every net of a Trial folder (learning rates: this command's);
    returns the rows done per net."""
    rows = {}
    for method, net in nets.items():
        rows[method] = checkpoints.restore(
            os.path.join(cfg.resume, f'checkpoint_{method}.pt'), net, opts[method], generator=gens[method],
            what=f'a checkpoint_{method}.pt of an Ernoult-2019 training run with the same --benchmark',
            keys=('optimizer', 'generator'))['history']
    return rows


def step_fn(net, method, opt=None):
    """One mini-batch of the paper's training: one-sided EP (T free, Kmax nudged steps, the net's β) or truncated
    BPTT."""
    estimate = estimators.OneSided(net.beta) if method == 'EP' else estimators.TruncatedBPTT()
    return lambda x, y: estimate(net, x, y, opt)


def gdu_sampler(cfg, device, gen):
    """Draws GDU mini-batches (x, y one-hot); the toy model gets uniform inputs and one random class per batch."""
    B = cfg.batch_size
    if cfg.toymodel:
        nx, n0 = cfg.size_tab[-1], cfg.size_tab[0]

        def draw():
            x = torch.rand(B, nx, generator=gen, dtype=cfg.float_dtype)
            label = torch.randint(0, n0, (1,), generator=gen).repeat(B)
            return x.to(device), nf.one_hot(label, n0).to(device, x.dtype)
        return draw
    xtr, ytr = load_data(cfg, True)
    batches = make_batches(cfg, xtr, ytr, B, True, device, gen)

    def draw():
        x, label = next(iter(batches))                    # a fresh shuffle: a new mini-batch each call
        return x, nf.one_hot(label, 10).to(x)
    return draw


def gdu_action(cfg, argv, device, seed, gen):
    import pandas as pd                 # (imported here: it costs start-up time to commands that write no table)
    import plotFunctions                # (imported here: matplotlib costs start-up time to every command)
    draw = gdu_sampler(cfg, device, gen)                  # fails on absent data before the folder exists
    net = build_net(cfg).to(device, cfg.float_dtype).set_relaxation(cfg.tol, cfg.tol_every,
                                                                    SCHEDULES[cfg.schedule]).set_gpu(*cfg.gpu)
    header = f' NABLA-DELTA CURVES ({cfg.action}): list of hyperparameters ({model_name(cfg)}, {rundir.today()})'
    folder = trainer.open_run(lambda: new_run_dir(cfg, argv, seed, device, header))
    if cfg.action == 'receipe':
        return receipe_action(cfg, net, folder, draw)
    x, y = draw()
    tr = nf.gdu_traces(net, x, y)
    tr = {k: ([t.cpu() for t in v] if isinstance(v, list) else {n: t.cpu() for n, t in v.items()})
          for k, v in tr.items()}
    tr['labels'] = plotFunctions.param_labels(list(tr['nT']), toymodel=cfg.toymodel)
    table = pd.DataFrame(nf.gdu_table(tr, param_labels=tr['labels']))      # statistics of the full traces
    rundir.save(tr if cfg.save_all_traces else sample_traces(tr), os.path.join(folder, 'gdu.pt'))
    rundir.write_csv(os.path.join(folder, 'gdu_stats.csv'), table)
    say(table.to_string(index=False, float_format=lambda v: f'{v:.4f}'))
    rundir.plot_folder(folder, show=False)
    return folder


TRACE_UNITS, TRACE_SEED = 50, 0


def sample_traces(tr, n_keep=TRACE_UNITS, seed=TRACE_SEED):
    """The traces of at most n_keep units per layer and per parameter tensor (the full ones grow with K, the batch
    and the layer widths: 65 MB at T 150 / K 10, batch 20, 784-512-10): a fixed seeded random subset that contains the
    units the figures draw, so that they are unchanged. Layout in plotFunctions.py (tr['units'], tr['shapes'])."""
    import plotFunctions                # (imported here: matplotlib costs start-up time to every command)
    gen = torch.Generator().manual_seed(seed)
    s_sizes, t_sizes = plotFunctions.trace_sizes(tr)
    drawn_S, drawn_T = plotFunctions.units_S(s_sizes), plotFunctions.units_T(t_sizes)

    def pick(n, drawn):
        if n <= n_keep:
            return torch.arange(n)
        keep = set(drawn)
        for u in torch.randperm(n, generator=gen).tolist():
            if len(keep) >= n_keep:
                break
            keep.add(u)
        return torch.tensor(sorted(keep))

    units = {'nS': [pick(n, drawn_S[i]) for i, n in enumerate(s_sizes)],
             'nT': {k: pick(n, drawn_T.get(k, [])) for k, n in t_sizes.items()}}
    shapes = {'nS': [tuple(v.shape) for v in tr['nS']], 'nT': {k: tuple(v.shape) for k, v in tr['nT'].items()}}
    out = {'shapes': shapes, 'units': units, 'sampled': {'units': n_keep, 'seed': seed}}
    for key in ('nS', 'dS'):
        out[key] = [v.flatten(1)[:, idx].clone() for v, idx in zip(tr[key], units['nS'])]
    for key in ('nT', 'dT', 'NT', 'DT'):
        out[key] = {k: v.flatten(1)[:, units['nT'][k]].clone() for k, v in tr[key].items()}
    return {**{k: v for k, v in tr.items() if k not in out}, **out}


def receipe_action(cfg, net, folder, draw):
    import pandas as pd                 # (imported here: it costs start-up time to commands that write no table)
    n_trials = 1 if cfg.dry_run else 20
    stats = nf.receipe(net, draw, n_trials)
    rows, summary = [], []
    for k, v in stats.items():
        for trial, (ps, pz) in enumerate(v.tolist()):
            rows.append(dict(key=k, trial=trial, p_sign=ps, p_zero=pz, p_total=ps + pz))
        tot = v.sum(1)
        summary.append(dict(key=k, total_mean=tot.mean().item(), total_std=tot.std().item() if len(v) > 1 else 0.,
                            sign_mean=v[:, 0].mean().item(), sign_std=v[:, 0].std().item() if len(v) > 1 else 0.,
                            zero_mean=v[:, 1].mean().item(), zero_std=v[:, 1].std().item() if len(v) > 1 else 0.))
        s = summary[-1]
        say(f'{k}: same sign (total) {s["total_mean"]:.2f} ± {s["total_std"]:.2f} %, strictly non-zero '
            f'{s["sign_mean"]:.2f} ± {s["sign_std"]:.2f} %, both zero {s["zero_mean"]:.2f} ± {s["zero_std"]:.2f} %')
    rundir.write_csv(os.path.join(folder, 'receipe.csv'), pd.DataFrame(rows))
    rundir.write_csv(os.path.join(folder, 'receipe_summary.csv'), pd.DataFrame(summary))
    rundir.plot_folder(folder, show=False)                          # receipe.png
    return folder

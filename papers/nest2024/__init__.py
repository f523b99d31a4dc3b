"""Nest & Ernoult 2024, "Towards training digitally-tied analog blocks via hybrid gradient computation": ff-EBMs
(papers/nest2024/nets.py) trained with EP inside the blocks and backprop between them, or with ID (truncated BPTT from the free
equilibria); static gradient analysis (GDD). Models: the VGG chains of the configs (model/*.yaml with name vgg) and
ResNet18/34 chains of BasicBlocks (model=resnet18|resnet34, name resnet: the paper's ResNet chains, selected by no original config).

Command line: `python main.py --config-name=<top-level config> [group=option …] [key=value …] [+key=value …]`, composed
by Hydra's compose API over configs/ (groups model/, data/, algorithm/, trainer/), then typed and bounded key by key
(config.py; `--help` lists the groups and keys). Suite flags that may appear anywhere on the line: --dry-run,
--results-dir, --data-root, --seed, --device, --threads, --load-path. Results go to
<results-dir>/ffebm/<config-name>/<date>/<time>/. Training goes through the suite's trainer.train / trainer.evaluate /
trainer.fit and suite.checkpoints, as every paper's.

Quirks of the original code and what this suite does:
 1. seed 0 meant unseeded: every run is seeded (trainer.seed, or drawn and written to config.yaml).
 2. CIFAR's test loader dropped the last partial batch: every test image is scored (the training split drops its
    last partial batch, as the original).
 3. checkpoints only with a logger, `best` never updated, resume restarting at epoch 0: checkpoint.tar every epoch,
    best.pt at the best test top-1, --load-path continues the epoch count up to trainer.epochs (the run's total).
 4. config.yaml (the default) named a missing model, splitting_small*.yaml defaulted to the large model: there is
    no default config (--config-name is required; the bare command line belongs to the other papers) and
    splitting_small*.yaml default to splitting_small_1block.
 5. algorithm/bp.yaml named an unregistered algorithm: algorithm=bp is the backprop baseline, the chain's
    feedforward twin (each block's fixed point replaced by its feedforward pass; nets.FeedforwardChain) trained by
    backprop through the same loop.
 6. splitting_large_sota3's activation was a string ("hard_ern19", a crash): the string names Ernoult 2019's hard
    sigmoid, slope 1.0 (NAMED_SLOPES); its block layout is a reconstruction from the paper's outline.
 7. scaling_large's 258-channel layer: kept (it is what ran), said in its config.
 8. ImageNet32 val read train_data_batch_* names: both that layout and the official val_data are read.
 9. gdown md5= (removed from gdown): data.download=true fetches the authors' ImageNet32 archive with hash= where
    gdown imports and the machine is online; otherwise, as for any absent dataset, one line names the folder and the
    expected files (exit 2). A dry run never downloads.
10. the autograd stepper's δ-nudge sign: one Cost (ErrorCurrent) gives both Φ and the closed-form force.
11. BN running statistics updated at every stepper call and Φ evaluation: once per block and mini-batch (free phase).
12. GDD's BPTT pass re-cached the block inputs used by EP: both use the free-phase inputs.
13. harmless indexing slip in the BPTT-detailed loop: not reproduced.
14. tolerance silently off before a496fc3: model.config.tol is applied whenever set.
"""
import dataclasses
import datetime
import os
import re
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from suite import checks
from suite import data
from ep import estimators
from suite import rundir
from suite import checkpoints
from suite import trainer
from suite import runlog
from suite.cli import adam, default_threads
from suite.cli import DTYPES, UsageError, apply_suite_flags, dry_cap, pick_device, say, seed_everything
from papers.nest2024 import config
from papers.nest2024.nets import FeedforwardChain, HopfieldChain, blocks_from_config, resnet_blocks

NAME = 'nest2024'
CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'configs')
CONFIG_NAMES = ('gdd', 'splitting_small', 'splitting_small_TOL', 'splitting_large', 'splitting_large_TOL',
                'scaling_small', 'scaling_large')
# suite flags this paper reads (with a value, except --dry-run) and the config key a flag sets
SUITE_FLAGS = {'--dry-run': None, '--results-dir': 'results_dir', '--data-root': 'data_root', '--seed': 'seed',
               '--device': 'device', '--threads': 'threads', '--load-path': 'load_path', '--config-name': 'config_name'}
HELP = ('--help', '-h')
NORMALISE = {'cifar10': ((0.4914, 0.4822, 0.4465), tuple(3 * s for s in (0.2023, 0.1994, 0.2010))),
             'cifar100': ((0.4914, 0.4822, 0.4465), tuple(3 * s for s in (0.2023, 0.1994, 0.2010))),
             'imagenet32': ((0.485, 0.456, 0.406), tuple(1.5 * s for s in (0.229, 0.224, 0.225))),
             # MNIST by analogy with CIFAR (its mean, 3× its std)
             'mnist5k': ((0.1307,) * 3, (3 * 0.3081,) * 3)}
DRY_BATCH = 2


# ---------------------------------------------------------------------------------------------------------------
# Command line → composed config → typed run config

def split_argv(argv):
    """(suite flag values by name, Hydra overrides). Suite flags may appear anywhere; any other '-…' is an error."""
    flags, overrides, i = {}, [], 0
    while i < len(argv):
        a = argv[i]
        if a.startswith('-'):
            name, eq, val = a.partition('=')
            if name not in SUITE_FLAGS:
                raise UsageError(f'{name}: not a flag of the Nest & Ernoult 2024 commands (they take Hydra overrides '
                                 f'key=value, and the suite flags {", ".join(SUITE_FLAGS)})')
            if SUITE_FLAGS[name] is None:
                flags['dry_run'] = True
            else:
                if not eq:
                    if i + 1 >= len(argv):
                        raise UsageError(f'{name}: expected a value')
                    i += 1
                    val = argv[i]
                flags[SUITE_FLAGS[name]] = val
        else:
            overrides.append(a)
        i += 1
    return flags, overrides


def _int_flag(flags, key):
    if flags.get(key) is None:
        return None
    try:
        return int(flags[key])
    except ValueError:
        raise UsageError(f'--{key.replace("_", "-")} {flags[key]}: expected an integer')


def merge_overrides(*lists):
    """Override lists in order, a later value of the same key replacing an earlier one (resume: saved, then new; a key
    of the original's schema and the key of this one it sets are the same key)."""
    out = {}
    for lst in lists:
        for o in lst:
            k = config.suite_key(o)
            out.pop(k, None)                       # (the later one also comes later: the order of the line kept)
            out[k] = o
    return list(out.values())


def compose_config(name, overrides):
    """Hydra's composition of configs/<name>.yaml with the overrides, the original's keys and values translated
    first (config.from_original): (the composed config, untyped: config.typed checks it; the translation's lines)."""
    if name not in CONFIG_NAMES:
        raise UsageError(f'--config-name={name}: no such configuration (choose {", ".join(CONFIG_NAMES)})')

    def n_blocks(rest):
        blocks = _compose(name, config.from_original(rest)[0]).model.config.get('blocks')
        return 0 if blocks is None else len(blocks)
    suite, notes = config.from_original(overrides, n_blocks)
    return _compose(name, suite), notes


def _compose(name, overrides):
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base='1.3'):
            return compose(config_name=name, overrides=overrides)
    except (HydraException, OmegaConfBaseException, ValueError) as e:
        msg = ' '.join(str(e).split())
        unknown = re.search(r"Could not override '([^']+)'", msg)          # key=value of a key no config has
        if unknown:
            raise UsageError(config.unknown_key(unknown.group(1)))
        raise UsageError(f'{" ".join(overrides)}: {msg[:300]}')


@dataclass
class Run:
    """The validated run configuration."""
    config_name: str
    exp_type: str
    blocks: list
    T1: int
    T2: int
    slope: float
    tol: float
    check_every: int
    V: float
    asynchronous: bool
    use_autograd: bool
    algorithm: str
    beta: float
    feedback: str
    dataset: str
    batch_size: int
    num_classes: int
    epochs: int
    lr: float
    weight_decay: float
    T_max: int
    eta_min: float
    device: int
    seed: int
    limit_batches: int = None
    dtype: str = 'float32'          # trainer.dtype: the precision of the chain, its states and the images
    download: bool = False
    gdd: dict = field(default_factory=dict)
    dry_run: bool = False
    results_dir: str = 'results'
    data_root: str = './data'
    load_path: str = ''
    original: list = field(default_factory=list)     # the original's keys given, as config.from_original read them


def check_blocks(blocks):
    """The block list of a vgg model (typed config.Block entries) as blocks_from_config takes it: the layout rules
    the types cannot say (a conv count, one pool letter per conv, blocks that chain, fc layers last)."""
    out = []
    for i, b in enumerate(blocks):
        where = f'model.config.blocks[{i}]'
        if len(b.channels) < 2:
            raise UsageError(f'{where}.channels={b.channels}: give the input channels then one count per conv')
        if len(b.pools) != len(b.channels) - 1 or set(b.pools) - set('ms-'):
            raise UsageError(f'{where}.pools={b.pools}: one letter per conv (m: 2×2 max-pool, s or -: none)')
        out.append(dict(channels=list(b.channels), pools=b.pools, norm=b.norm == 'bn', fc=list(b.fc),
                        clamp_last=b.clamp_last))
    if not out:
        raise UsageError('model.config.blocks: give at least one block')
    for i in range(1, len(out)):
        if out[i]['channels'][0] != out[i - 1]['channels'][-1] or out[i - 1]['fc']:
            raise UsageError(f'model.config.blocks[{i}]: its input channels ({out[i]["channels"][0]}) must be the '
                             f'last channels of block {i - 1} ({out[i - 1]["channels"][-1]}), and only the last '
                             f'block may have fc layers')
    return out


def model_blocks(model):
    """The block list: model.config.blocks (vgg), or ResNet18/34's BasicBlocks (resnet: depth, widths, stem,
    clamp_last)."""
    m = model.config
    if model.name == 'vgg':
        return check_blocks(m.blocks)
    return resnet_blocks(m.depth, list(m.widths), m.stem, m.clamp_last)


def to_run(cfg, name, flags):
    """Validate the composed config (config.typed: every key typed and bounded) into a Run; every failure is one
    UsageError line."""
    c = config.typed(cfg)
    m, alg, d, t = c.model.config, c.algorithm.config, c.data, c.trainer
    seed, device = _int_flag(flags, 'seed'), _int_flag(flags, 'device')
    checks.seed(seed)
    run = Run(config_name=name, exp_type=c.exp_type, blocks=model_blocks(c.model), T1=m.T1, T2=alg.T2,
              slope=float(config.NAMED_SLOPES.get(m.activation, m.activation)), tol=m.tol,
              check_every=m.tol_check_every, V=m.V, asynchronous=m.asynchronous, use_autograd=m.use_autograd,
              algorithm=c.algorithm.name, beta=alg.beta, feedback=alg.feedback, dataset=d.name,
              batch_size=d.config.batch_size, num_classes=d.config.num_classes, epochs=t.epochs, lr=t.lr,
              weight_decay=t.weight_decay, T_max=t.T_max, eta_min=t.eta_min,
              device=device if device is not None else t.device,
              seed=seed if seed is not None else t.seed, limit_batches=t.limit_batches, dtype=t.dtype,
              download=d.download, gdd=dataclasses.asdict(c.gdd) if c.gdd is not None else {},
              dry_run=flags.get('dry_run', False), results_dir=flags.get('results_dir', 'results'),
              data_root=flags.get('data_root', './data'), load_path=flags.get('load_path', ''))
    if run.download and run.dataset != 'imagenet32':
        raise UsageError(f'data.download=true: only ImageNet32 is downloaded (the authors\' archive); put '
                         f'{run.dataset} under --data-root {os.path.abspath(run.data_root)}')
    if run.dry_run:
        run.T1, run.T2 = dry_cap(run.T1, run.T2)
        run.epochs, run.batch_size = 1, min(run.batch_size, DRY_BATCH)
        run.gdd = {**run.gdd, 'batches': 1, 'seeds': 1}
    if run.exp_type != 'gdd':
        checks.global_batch('data.config.batch_size', run.batch_size)
    return run


def saved_command(folder):
    """(config name, overrides) of a run folder: its first command line, then every resume line, merged."""
    path = trainer.hyper_file_of(folder)
    if path is None:
        raise UsageError(f'--load-path {folder}: no hyperparameters.txt in that folder; give a run folder of this '
                         f'suite')
    name, lists = None, []
    for line in trainer.command_lines(path):
        try:
            flags, ov = split_argv(line)
        except UsageError as e:
            raise UsageError(f'{path}: unreadable command line ({e}); restore the line that made the run, or give '
                             f'another run folder')
        name = name or flags.get('config_name')
        lists.append(ov)
    return name, merge_overrides(*lists)


def composed(argv):
    """(suite flags, config name, overrides, composed config, lines of the original's keys translated) of a command
    line (with --load-path: the run's saved overrides first)."""
    flags, overrides = split_argv(argv)
    name = flags.get('config_name')
    if flags.get('load_path'):
        saved_name, saved = saved_command(flags['load_path'])
        if name not in (None, saved_name):
            raise UsageError(f'--config-name={name}: {flags["load_path"]} is a {saved_name} run')
        name, overrides = saved_name, merge_overrides(saved, overrides)
    return (flags, name, overrides) + compose_config(name, overrides)


def resolve(argv):
    """(Run, composed config, overrides) of a command line."""
    flags, name, overrides, cfg, notes = composed(argv)
    run = to_run(cfg, name, flags)
    run.original = notes
    return run, cfg, overrides


def usage(argv):
    """--help: the config groups and every key of the named config (type, bounds, value with the overrides given)."""
    _, name, _, cfg, _ = composed([a for a in argv if a not in HELP])
    print(config.describe(name, cfg, CONFIG_DIR, [f for f in SUITE_FLAGS if f != '--config-name'] + list(HELP)))


# ---------------------------------------------------------------------------------------------------------------
# Model, data

def build_chain(run, device):
    chain = HopfieldChain(blocks_from_config(run.blocks, 32, run.num_classes, run.slope, run.T1, run.T2, run.beta,
                                             run.V, run.asynchronous, run.use_autograd), run.tol, run.check_every)
    return chain.to(device, DTYPES[run.dtype])


def mnist_images(train):
    """The embedded digits padded to 32×32 and repeated to 3 channels (uint8), so that every model config runs."""
    x, y = data.load_mnist5k(train)
    x = F.pad((x * 255).round().to(torch.uint8), (2, 2, 2, 2)).repeat(1, 3, 1, 1)
    return x, y


def load_split(run, train):
    """(uint8 images, labels) of a split; --dry-run falls back to synthetic images when the files are absent."""
    if run.dataset == 'mnist5k':
        return mnist_images(train)
    try:
        return data.load_images(run.dataset, run.data_root, train, download=run.download and not run.dry_run)
    except data.DataError:
        if not run.dry_run:
            raise
        x, y = data.synthetic((3, 32, 32), 16, run.num_classes, seed=int(train))
        say(f'dry run: no {run.dataset} data under {run.data_root}; synthesised {"train" if train else "test"} '
            f'images {tuple(x.shape)} and labels in 0..{run.num_classes - 1}')
        return (x * 255).to(torch.uint8), y


def transform(run, augment):
    """uint8 → [0, 1] → the dataset's normalisation → (training, CIFAR/ImageNet32) random flip and 4-pixel edge crop."""
    mean, std = NORMALISE[run.dataset]

    def f(x, generator=None):
        x = data.normalize(x.to(DTYPES[run.dtype]) / 255, mean, std).to(x.device)
        return data.augment(x, generator) if augment and run.dataset != 'mnist5k' else x
    return f


def batches(run, train, device, gen):
    x, y = load_split(run, train)
    n_batches = max(len(y) // run.batch_size, 1) if train else None          # train: drop the last partial batch
    cap = 1 if run.dry_run else run.limit_batches
    if cap is not None:
        n_batches = cap if n_batches is None else min(n_batches, cap)
    return data.Batches(x, y, run.batch_size, train, False, device, gen, n_batches, transform(run, train))


# ---------------------------------------------------------------------------------------------------------------
# Training

def estimator(run):
    """The gradient estimator of algorithm.name: EP inside the blocks (ep), ID (bptt), or backprop through the
    feedforward twin (bp)."""
    if run.algorithm == 'bp':
        return estimators.Backprop()
    return estimators.ChainEP(run.beta, run.T2) if run.algorithm == 'ep' else estimators.ChainID(run.T2, run.feedback)


def trained_net(run, chain):
    """What trainer.train and trainer.evaluate drive: the chain (ep, bptt), or its feedforward twin (bp), whose
    parameters are the chain's."""
    return FeedforwardChain(chain) if run.algorithm == 'bp' else chain


def epoch_row(train, test, lr):
    """The metrics of an epoch from trainer.train / trainer.evaluate's error rates: top-1 / top-5 accuracies (%) and
    the mean cross-entropy of the training mini-batches (at the state the estimator returns: the free equilibrium for
    EP, the re-run for ID, the feedforward pass for BP) and of the test set (free equilibrium, or BP's feedforward
    pass; BN running statistics)."""
    row = {}
    for split, r in (('train', train), ('test', test)):
        row.update({f'{split}_top1': 100 - r['error'], f'{split}_top5': 100 - r['top5_error'],
                    f'{split}_loss': r['loss']})
    return {**row, 'lr': lr}


def run_folder(run):
    now = datetime.datetime.now()
    root = os.path.join(run.results_dir, 'ffebm', run.config_name, now.strftime('%Y-%m-%d'))
    return rundir.claim_dir(os.path.join(root, now.strftime('%H-%M-%S')))


def write_config(folder, argv, cfg, run):
    """config.yaml (the command line first, with the original's keys as given and the keys they set, then the
    resolved config with the seed used) and hyperparameters.txt."""
    import pandas as pd                 # (imported here: it costs start-up time to commands that write no table)
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.trainer.seed = run.seed
    given = ''.join(f'# the original\'s {line}\n' for line in run.original)
    rundir.write_text(os.path.join(folder, 'config.yaml'),
                       f'# {rundir.command_line(argv)}\n{given}{OmegaConf.to_yaml(cfg, resolve=True)}')
    flat = pd.json_normalize(OmegaConf.to_container(cfg, resolve=True), sep='.').iloc[0].to_dict()
    rundir.write_hyperparameters(folder, argv, [(k, v) for k, v in flat.items()])


def new_folder(run, cfg, argv):
    """A new run folder with config.yaml, hyperparameters.txt and the plotting script."""
    folder = run_folder(run)
    write_config(folder, argv, cfg, run)
    rundir.copy_plot_script(folder)
    return folder


def train(run, cfg, argv):
    """Adam (coupled L2 weight decay) and a cosine schedule stepped once per epoch; every mini-batch through
    trainer.train (the estimator, then chain.updateWeights), the test set through trainer.evaluate; checkpoint.tar
    after every epoch, best.pt at the best test top-1; --load-path resumes from checkpoint.tar."""
    device = pick_device(run.device)
    run.seed = seed_everything(run.seed)
    gen = torch.Generator().manual_seed(run.seed)
    train_b, test_b = batches(run, True, device, gen), batches(run, False, device, gen)
    chain = build_chain(run, device)
    est, net = estimator(run), trained_net(run, chain)
    history, best = [], -1.0

    def optimiser():
        opt = adam(chain.parameters(), lr=run.lr, weight_decay=run.weight_decay)
        return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, run.T_max, run.eta_min)
    if run.load_path:        # (a checkpoint of the earlier layout has the same keys, without `format`)
        opt, sched = optimiser()
        ck = checkpoints.restore(os.path.join(run.load_path, 'checkpoint.tar'), chain, opt, sched, gen,
                                 'a checkpoint.tar of a Nest & Ernoult 2024 training run')
        # the learning rate, weight decay and schedule are this command's (checkpoints.load_optimizer: the same
        # values keep the saved, scheduled state)
        sched.base_lrs = [g['initial_lr'] for g in opt.param_groups]
        sched.T_max, sched.eta_min = run.T_max, run.eta_min
        history, best = ck['history'], ck.get('best_top1', -1.0)
    folder = trainer.open_run(lambda: new_folder(run, cfg, argv), run.load_path or None, argv)
    if not run.load_path:               # after the first line: a first optimiser imports torch._dynamo (~1 s)
        opt, sched = optimiser()

    def run_epoch(epoch):
        row = epoch_row(trainer.train(net, opt, train_b, lambda x, y: est(net, x, y), topk=5, loss=True),
                        trainer.evaluate(net, test_b, topk=5), opt.param_groups[0]['lr'])
        sched.step()
        say(f'epoch {epoch}: train top-1 {row["train_top1"]:.2f} %, test top-1 {row["test_top1"]:.2f} % '
            f'(top-5 {row["test_top5"]:.2f} %), loss {row["train_loss"]:.4f}')
        return row

    def save(history):
        nonlocal best
        improved = bool(history) and history[-1]['test_top1'] > best
        best = history[-1]['test_top1'] if improved else best
        ck = dict(model=chain, optimizer=opt, epoch=history[-1]['epoch'] if history else 0, history=history,
                  scheduler=sched, generator=gen, config=run, best_top1=best)
        if improved:
            checkpoints.save(os.path.join(folder, 'best.pt'), **ck)
        checkpoints.save(os.path.join(folder, 'checkpoint.tar'), **ck)

    trainer.fit(folder, run.epochs, history, run_epoch, save, chain.parameters(), metrics='metrics.csv',
                plot=rundir.plot_folder)
    rundir.plot_folder(folder)
    return folder


# ---------------------------------------------------------------------------------------------------------------
# GDD: static gradient analysis

def weight_layers(chain):
    """[(layer number, block, parameter name, tensor)] of every conv / fc weight (no bias, BN or readout)."""
    out = []
    for k, block in enumerate(chain.blocks):
        named = dict(block.named_parameters())
        for n in block.weight_names():
            out.append((len(out) + 1, k + 1, f'blocks.{k}.{n}', named[n]))
    return out


def cosine(a, b):
    a, b = a.double().flatten(), b.double().flatten()          # float64: 16M-element layers
    return (a @ b / (a.norm() * b.norm()).clamp_min(1e-300)).item()


def gdd_cosines(chain, x, label, run):
    """Per weight layer: cos(ĝ_EP, ĝ_ID) at t = T2, both from the same free equilibria."""
    states, _ = chain.free_phase(x)
    layers = weight_layers(chain)
    chain.id_gradients(states, label, run.T2)
    g_id = [p.grad.clone() for _, _, _, p in layers]
    chain.ep_gradients(states, label, run.beta, run.T2)
    return [cosine(p.grad, g) for (_, _, _, p), g in zip(layers, g_id)]


def gdd_curves(chain, x, label, run, gen):
    """Per-step transients of `curves` random elements of every weight layer: ID (block run t steps, then every later
    block T2 steps, backprop) and EP (the Φ-difference estimate from the states after t nudged steps)."""
    states, _ = chain.free_phase(x)
    layers = weight_layers(chain)
    rows = []
    ep = chain.ep_transients(states, label, run.beta, run.T2)
    id_ = chain.id_transients(states, label, run.T2)
    for idx, k, name, p in layers:
        pick = torch.randint(0, p.numel(), (run.gdd['curves'],), generator=gen)
        pname = name.split('.', 2)[2]
        id_t = [g[pname] for g in id_[k - 1]]
        for t in range(run.T2 + 1):
            for e, j in enumerate(pick.tolist()):
                rows.append({'layer': idx, 'block': k, 'element': e, 't': t,
                             'ID': id_t[t].flatten()[j].item(), 'EP': ep[k - 1][t][pname].flatten()[j].item()})
    return rows


def gdd(run, cfg, argv):
    import pandas as pd                 # (imported here: it costs start-up time to commands that write no table)
    device = pick_device(run.device)
    run.seed = seed_everything(run.seed)
    folder = trainer.open_run(lambda: new_folder(run, cfg, argv))
    per, curves = [], None
    for i in range(run.gdd['seeds']):
        seed_everything(run.seed + i)
        gen = torch.Generator().manual_seed(run.seed + i)
        chain = build_chain(run, device).train()
        for b, (x, label) in enumerate(batches(run, True, device, gen)):
            if b >= run.gdd['batches']:
                break
            per.append(gdd_cosines(chain, x, label, run))
            if curves is None:
                curves = gdd_curves(chain, x, label, run, gen)
    c = torch.tensor(per, dtype=torch.float64)
    layers = weight_layers(chain)
    rows = [{'layer': idx, 'block': k, 'name': name, 'cosine': c[:, j].mean().item(),
             'cosine_std': c[:, j].std().item() if len(per) > 1 else 0.0, 'n': len(per)}
            for j, (idx, k, name, _) in enumerate(layers)]
    rundir.write_csv(os.path.join(folder, 'bars.csv'), pd.DataFrame(rows))
    rundir.write_csv(os.path.join(folder, 'curves.csv'), pd.DataFrame(curves))
    for r in rows:
        say(f'layer {r["layer"]:2d} (block {r["block"]}): cos(EP, ID) = {r["cosine"]:.5f}'
            + (f' ± {r["cosine_std"]:.5f} over {r["n"]}' if r['n'] > 1 else ''))
    rundir.plot_folder(folder)
    return folder


# ---------------------------------------------------------------------------------------------------------------

def main(argv):
    """Entry point from main.py (suite/entry.run's dispatch) for a `--config-name=` command line; returns the result
    folder (None for --help). --threads, --results-dir and --dry-run are applied as for every paper
    (cli.apply_suite_flags)."""
    if any(a in HELP for a in argv):
        return usage(argv)
    flags, _ = split_argv(argv)
    runlog.note(paper=NAME)
    run, cfg, _ = resolve(argv)
    run.results_dir = apply_suite_flags(_int_flag(flags, 'threads'), run.results_dir, run.dry_run)
    default_threads(_int_flag(flags, 'threads'), True, run.batch_size)
    if run.exp_type == 'gdd':
        return gdd(run, cfg, argv)
    return train(run, cfg, argv)

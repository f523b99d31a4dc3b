"""One table per paper of what --tol, --schedule async and --dtype float64 do to one training
mini-batch: free-phase steps and milliseconds, as ratios to the fixed-step, synchronous, float32 baseline.

Each paper runs one small configuration of its own commands through its own code: the command line is parsed and
validated by main.py's parser and the paper's check_args, the network, optimiser and estimator are built by the
paper's functions (the lines of its `run`), and one mini-batch is bench_engine.train_step (zero_grad → the paper's
estimator → net.updateWeights, the body of trainer.train). A variant is the same command line plus its flags:

    fixed         (the command as given: T free steps, synchronous, float32)
    --tol 1e-4    (free phase stops at the first check, every 10 steps, whose mean relative change is < 1e-4)
    --schedule async
    --tol 1e-4 --schedule async
    --tol 1e-4 --schedule async-free   (asynchronous free phase, synchronous nudged phase)
    --dtype float64

Nest & Ernoult 2024 has no such flags: its Hydra keys model.config.tol / model.config.asynchronous / trainer.dtype
are set on the resolved run of bench_ffebm.make_run (its configs default to asynchronous: true; "fixed" here is the
synchronous chain so that every table has the same baseline). Wu et al. 2024's own scripts train feed-forward nets
(no relaxation) and have no --dtype; its devices meet the flags through --analog on an EP net (the P-1h command with
--analog "Analog SGD": the last table).

Every variant starts from the same untrained weights (seed 0; no warm-up training: the step counts are those of a
fresh network) and sees the same real mnist5k mini-batches in the same order (the paper's own loader and batching);
the weights then train as in a real run. The variants are timed interleaved, one mini-batch each in turn, so that
the machine's load falls on all of them alike; each case reports the median wall-clock and CPU ms (this process's
time.process_time: with one thread on a shared machine the CPU time is the figure other jobs' load inflates least)
and the mean / max free steps (per block for the chain) over the timed repetitions.

    python bench/bench_scale.py [--threads 1] [--reps 5] [--warmup 1] [--quick] [--papers ernoult2019 …]
"""
import argparse
import dataclasses
import os
import platform
import shlex
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import bench_engine                                 # noqa: E402  (train_step: one mini-batch as the trainer runs it)
import bench_ffebm                                  # noqa: E402  (make_run, timed: the ff-EBM run and the clocks)
from suite import data                                         # noqa: E402
from papers import eplcanet                                     # noqa: E402
from papers import ernoult2019                                  # noqa: E402
from ep import estimators                                   # noqa: E402
from papers import laborieux2021                                # noqa: E402
from papers import laydevant2021                                # noqa: E402
import main as entry                                # noqa: E402  (the parser and the paper routing)
from papers import nest2024                                     # noqa: E402
from suite import commandline                                  # noqa: E402
from suite.cli import SCHEDULES, UsageError, adam               # noqa: E402

TOL = ['--tol', '1e-4']
VARIANTS = [('fixed', []), ('--tol 1e-4', TOL), ('--schedule async', ['--schedule', 'async']),
            ('--tol 1e-4 --schedule async', TOL + ['--schedule', 'async']),
            ('--tol 1e-4 --schedule async-free', TOL + ['--schedule', 'async-free']),
            ('--dtype float64', ['--dtype', 'float64'])]


# ---------------------------------------------------------------------------------------------------------------
# One training mini-batch of each paper, built by the paper's own functions from a command line

def parse(argv):
    """The paper module and its validated Config of a command line (main.py's parser and routing, the paper's
    check_args); a refused flag raises cli.UsageError with the suite's own message."""
    parser = entry.build_parser()
    args, argv = commandline.resolve(argv, parser)
    paper = entry.paper_of(argv, parser)
    cfg = paper.check_args(args, argv) if paper is laydevant2021 else paper.check_args(args)
    return paper, cfg


class Case:
    """A network, its train_step grads_fn and optimiser, its mini-batches (x, label), the free steps T of its
    command, and how many free steps its last mini-batch ran."""

    def __init__(self, net, grads_fn, opt, batches, T, K):
        self.net, self.grads_fn, self.opt, self.T, self.K = net, grads_fn, opt, T, K
        self.batches = [(x, net.target(label)) for x, label in batches]

    def step(self, b):
        x, y = self.batches[b % len(self.batches)]
        bench_engine.train_step(self.grads_fn, self.net, self.opt, x, y)

    def free_steps(self):
        """[steps of the last free phase]: recorded by the net under --tol, else its T."""
        n = self.net.free_steps['train']
        out = list(n) if n else [self.T]
        n.clear()
        return out


def first_batches(batches, n):
    out = []
    for x, label in batches:
        out.append((x, label))
        if len(out) == n:
            break
    return out


def ernoult_case(cfg, n):
    """ernoult2019.train_action's net and optimiser, step_fn's one-sided EP, make_batches' mini-batches."""
    net = ernoult2019.build_net(cfg).to('cpu', cfg.float_dtype).set_relaxation(cfg.tol, cfg.tol_every,
                                                                               SCHEDULES[cfg.schedule])
    opt = ernoult2019.make_optimizer(cfg, net)
    step = ernoult2019.step_fn(net, 'EP', opt)
    x, y = ernoult2019.load_data(cfg, True)
    b = ernoult2019.make_batches(cfg, x, y, cfg.batch_size, True, 'cpu', torch.Generator().manual_seed(0))
    return Case(net.train(), lambda net, x, y: step(x, y), opt, first_batches(b, n), cfg.T, cfg.Kmax)


def laborieux_case(cfg, n):
    """laborieux2021.run / eplcanet.run's model (and EPLCANet's LCA extension: its dictionary update is part of the
    step), make_optimizer, make_estimator, batches."""
    lab = laborieux2021
    x, y = lab.load_split(cfg, True)
    if cfg.model in eplcanet.MODELS:
        model = eplcanet.build(cfg, tuple(x.shape[1:]))
        ext = eplcanet.LCAExtension(cfg, model)
    else:
        model, ext = lab.build_model(cfg, tuple(x.shape[1:])), None
    model = model.to('cpu', cfg.float_dtype).set_relaxation(cfg.tol, cfg.tol_every, SCHEDULES[cfg.schedule])
    opt, _ = lab.make_optimizer(cfg, model)
    gen = torch.Generator().manual_seed(0)
    estimate = lab.make_estimator(cfg, gen)
    step = lambda x, y: estimate(model, x, y, opt)       # noqa: E731
    step = ext.step(step) if ext is not None else step
    b = lab.batches(cfg, x, y, cfg.mbs, True, 'cpu', gen)
    return Case(model.train(), lambda net, x, y: step(x, y), opt, first_batches(b, n), cfg.T1, cfg.T2)


def laydevant_case(cfg, n):
    """laydevant2021.run's net and flip-rule optimiser; the estimator of Tools_fc.train_bin (one-sided EP, or
    random-sign with --random_beta 1)."""
    x, y = laydevant2021.load_split(cfg, True)
    net = laydevant2021.build_net(cfg, x.shape[-1]).to('cpu', cfg.float_dtype).set_relaxation(cfg.tol, cfg.tol_every)
    opt = laydevant2021.make_optimizer(net, cfg)
    gen = torch.Generator().manual_seed(0)
    estimate = estimators.RandomSign(net.beta, generator=gen) if cfg.random_beta else estimators.OneSided(net.beta)
    b = data.Batches(x, y, cfg.batchSize, True, cfg.archi == 'fc', 'cpu', gen)
    return Case(net.train(), lambda net, x, y: estimate(net, x, y, opt), opt, first_batches(b, n), cfg.T, cfg.Kmax)


BUILDERS = {'ernoult2019': ernoult_case, 'laborieux2021': laborieux_case, 'eplcanet': laborieux_case,
            'laydevant2021': laydevant_case}


class ChainCase:
    """Nest & Ernoult 2024: nest2024.train's chain, Adam and ChainEP; one mini-batch is trainer.train's body. The
    iterations of every block's free phase are read from chain.free_phase (wrapped on this instance only)."""

    def __init__(self, run, n):
        self.chain = nest2024.build_chain(run, 'cpu').train()
        self.opt = adam(self.chain.parameters(), lr=run.lr, weight_decay=run.weight_decay)
        self.est = estimators.ChainEP(run.beta, run.T2)
        self.batches = first_batches(nest2024.batches(run, True, 'cpu', torch.Generator().manual_seed(0)), n)
        self.T, self.K, self.iters = run.T1, run.T2, []
        free_phase = self.chain.free_phase

        def recorded(*a, **k):
            states, iters = free_phase(*a, **k)
            self.iters = iters
            return states, iters
        self.chain.free_phase = recorded

    def step(self, b):
        x, label = self.batches[b % len(self.batches)]
        self.est(self.chain, x, self.chain.target(label))
        self.chain.updateWeights(self.opt)

    def free_steps(self):
        return list(self.iters)


# ---------------------------------------------------------------------------------------------------------------
# The papers' configurations

@dataclasses.dataclass
class Paper:
    title: str
    what: str                 # the configuration in words
    argv: list = None         # a main.py command line (None: Nest 2024's chain)
    quick: list = None        # flags appended under --quick


MNIST5K = ['--dataset', 'mnist5k']
P1H = ['--action', 'train', '--discrete', '--size_tab', '10', '512', '784', '--lr_tab', '0.04', '0.08', '--T', '40',
       '--Kmax', '15', '--beta', '0.1', '--seed', '0'] + MNIST5K
PAPERS = {
    'ernoult2019': Paper('Ernoult et al. 2019, EPdisc P-1h', 'Table 1 P-1h, batch 20', P1H),
    'ernoult2019-conv': Paper('Ernoult et al. 2019, convEP P-conv', 'Table 1 P-conv, batch 20',
                              ['--action', 'train', '--activation-function', 'hardsigm', '--C_tab', '64', '32', '1',
                               '--size_tab', '10', '--lr_tab', '0.015', '0.035', '0.15', '--T', '200', '--Kmax', '10',
                               '--beta', '0.4', '--seed', '0'] + MNIST5K, ['--T', '60']),
    'laydevant2021': Paper('Laydevant et al. 2021, binary fc (bin_W)', 'README fc 784-4096-10, batch 64',
                           ['--archi', 'fc', '--layersList', '784', '4096', '10', '--activationFun', 'hardsigm',
                            '--T', '50', '--Kmax', '10', '--beta', '0.3', '--gamma', '1e-5', '1e-4',
                            '--gradThreshold', '5e-7', '5e-7', '--lrBias', '0.025', '0.05', '--batchSize', '64',
                            '--learnAlpha', '0', '--seed', '0'] + MNIST5K),
    'laborieux2021-mlp': Paper('Laborieux et al. 2021, P_MLP', 'check/train_mnist.sh (without --check-thm), batch 50',
                               ['--model', 'MLP', '--task', 'mnist5k', '--archi', '784', '512', '10', '--optim',
                                'adam', '--lrs', '5e-4', '5e-4', '--act', 'mysig', '--betas', '0.0', '0.1', '--T1',
                                '30', '--T2', '10', '--mbs', '50', '--seed', '0']),
    'laborieux2021-cnn': Paper('Laborieux et al. 2021, P_CNN', 'check/train_mnist_cnn.sh at batch 16 (not 100)',
                               ['--model', 'CNN', '--task', 'mnist5k', '--channels', '32', '64', '--kernels', '5',
                                '5', '--pools', 'mm', '--strides', '1', '1', '--fc', '10', '--optim', 'adam', '--lrs',
                                '5e-5', '1e-5', '8e-6', '--act', 'hard_sigmoid', '--betas', '0.0', '0.4', '--T1',
                                '200', '--T2', '10', '--mbs', '16', '--seed', '0'], ['--T1', '60']),
    'eplcanet': Paper('EPLCANet (EPLCACNN)', 'check/train_mnist_eplcanet.sh (symmetric EP, recon dictionary), '
                      'batch 16 (not 50)',
                      ['--model', 'EPLCACNN', '--task', 'mnist5k', '--todo', 'train', '--alg', 'EP', '--channels',
                       '32', '32', '64', '--kernels', '5', '5', '--paddings', '0', '0', '0', '--strides', '1', '1',
                       '1', '--optim', 'adam', '--lrs', '1e-4', '1e-5', '8e-6', '--pools', 'imm', '--act', 'mysig',
                       '--betas', '0.0', '0.1', '--T1', '30', '--T2', '10', '--mbs', '16', '--lca_lambda', '0.25',
                       '--tau', '200', '--softmax', '--loss', 'cel', '--seed', '2', '--lca_iters', '1',
                       '--thirdphase', '--dict_loss', 'recon']),
    'nest2024': Paper('Nest & Ernoult 2024, ff-EBM splitting_small_3block (¼ width)',
                      'bench_ffebm.make_run: splitting_small_3block, channels and fc × 0.25, batch 16, data=mnist5k'),
    'wu2024-analog': Paper('Wu et al. 2024 devices under EP: P-1h with --analog "Analog SGD"',
                           'the P-1h command above with its weights on the S4 soft-bounds devices at τ 0.6 '
                           '(analog.DeviceSGD, Analog SGD)',
                           P1H + ['--analog', 'Analog SGD', '--analog-tau', '0.6']),
}


def nest_cases(a):
    """The chain under each variant: the Hydra keys set on the resolved run (async on / off, tol, dtype)."""
    base = bench_ffebm.make_run('splitting_small_3block', 16, T1=20 if a.quick else None, width=0.25)
    keys = {'fixed': {}, '--tol 1e-4': {'tol': 1e-4}, '--schedule async': {'asynchronous': True},
            '--tol 1e-4 --schedule async': {'tol': 1e-4, 'asynchronous': True}, '--dtype float64': {'dtype': 'float64'}}
    cases = {}
    for name, _ in VARIANTS:
        if name not in keys:
            cases[name] = 'n/a: not applicable (model.config.asynchronous is one schedule for both phases)'
            continue
        torch.manual_seed(0)
        run = dataclasses.replace(base, **{'asynchronous': False, 'tol': None, **keys[name]})
        cases[name] = ChainCase(run, a.warmup + a.reps)
    return cases, base


def suite_cases(p, a):
    """{variant: Case} from the paper's command line plus each variant's flags; a refused variant maps to its
    one-line UsageError message."""
    argv = p.argv + ((p.quick or []) if a.quick else [])
    cases = {}
    for name, flags in VARIANTS:
        try:
            paper, cfg = parse(argv + flags)
        except UsageError as e:
            cases[name] = str(e)
            continue
        torch.manual_seed(0)                    # the same initial weights in every variant
        cases[name] = BUILDERS[paper.NAME](cfg, a.warmup + a.reps)
    return cases, argv


# ---------------------------------------------------------------------------------------------------------------
# Timing and the table

def bench(cases, a):
    """Interleaved: mini-batch r of every variant in turn. {variant: (wall ms list, CPU ms list, free steps list)}."""
    live = {k: c for k, c in cases.items() if not isinstance(c, str)}
    out = {k: ([], [], []) for k in live}
    for r in range(a.warmup + a.reps):
        for k, c in live.items():
            wall, cpu = bench_ffebm.timed(lambda: c.step(r))
            steps = c.free_steps()
            if r >= a.warmup:
                out[k][0].append(wall)
                out[k][1].append(cpu)
                out[k][2].extend(steps)
    return out


def load():
    return ' / '.join(f'{v:.2f}' for v in os.getloadavg())


def machine():
    name = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            name = next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    return f'{name}, nproc {os.cpu_count()}, torch {torch.__version__}, {torch.get_num_threads()} thread(s)'


def table(cases, res, T, K, blocks=False):
    """Markdown rows: free steps mean / max (per block for a chain), steps per mini-batch (free + nudged) and its ratio
    to fixed, CPU and wall ms and their ratios to fixed."""
    per = ' per block' if blocks else ''
    lines = [f'| variant | free steps{per}, mean / max (T {T}) | free + nudged steps{per} (K {K}) | fewer steps '
             f'than fixed | CPU ms | × fixed (CPU) | wall ms | × fixed (wall) |',
             '|---|---|---|---|---|---|---|---|']
    med = {k: (statistics.median(v[0]), statistics.median(v[1]), statistics.mean(v[2]), max(v[2]))
           for k, v in res.items()}
    f_wall, f_cpu, f_steps, _ = med['fixed']
    for name, _ in VARIANTS:
        if isinstance(cases[name], str):
            why = cases[name]                           # the suite's refusal, or why the variant does not apply
            cell = why[5:] if why.startswith('n/a: ') else f'refused: "{why}"'
            lines.append(f'| {name} | {cell} | | | | | | |')
            continue
        wall, cpu, steps, mx = med[name]
        lines.append(f'| {name} | {steps:.1f} / {mx} | {steps + K:.1f} | {(f_steps + K) / (steps + K):.2f}× | '
                     f'{cpu:.1f} | {cpu / f_cpu:.2f}× | {wall:.1f} | {wall / f_wall:.2f}× |')
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--papers', nargs='+', choices=list(PAPERS), default=list(PAPERS))
    ap.add_argument('--reps', type=int, default=5, help='timed mini-batches per variant (median reported)')
    ap.add_argument('--warmup', type=int, default=1, help='untimed mini-batches per variant first')
    ap.add_argument('--threads', type=int, default=1, help='torch CPU threads (default 1)')
    ap.add_argument('--quick', action='store_true', help='shorter free phases of the slow configurations '
                                                         '(P-conv T 60, P_CNN T1 60, ff-EBM T1 20)')
    a = ap.parse_args()
    for flag, v, least in (('--reps', a.reps, 1), ('--warmup', a.warmup, 0), ('--threads', a.threads, 1)):
        if v < least:
            ap.error(f'{flag} {v}: must be at least {least}')
    torch.set_num_threads(a.threads)
    command = 'python ' + ' '.join(shlex.quote(s) for s in ['bench/bench_scale.py'] + sys.argv[1:])
    print(f'{command}\n{machine()}; median of {a.reps} after {a.warmup} warm-up, interleaved; untrained weights '
          f'(seed 0), real mnist5k mini-batches', flush=True)
    t_all = time.perf_counter()
    for key in a.papers:
        p = PAPERS[key]
        before, t0 = load(), time.perf_counter()
        if key == 'nest2024':
            cases, run = nest_cases(a)
            where = (f'--config-name={run.config_name}, T1 {run.T1}, T2 {run.T2}, β {run.beta}; fixed is '
                     f'model.config.asynchronous=false (the configs\' default, true, is the async row); the variants set '
                     f'model.config.asynchronous / model.config.tol / trainer.dtype')
            T, K, blocks = run.T1, run.T2, True
        else:
            cases, argv = suite_cases(p, a)
            where = f'`python main.py {" ".join(shlex.quote(s) for s in argv)}` + the variant\'s flags'
            base = cases['fixed']
            T, K, blocks = base.T, base.K, False
        res = bench(cases, a)
        print(f'\n### {p.title}\n\n{p.what}; {where}.\nMachine: {machine()}. Load average (1 / 5 / 15 min) before '
              f'{before}, after {load()}; {time.perf_counter() - t0:.0f} s. Command: `{command}`.\n')
        print('\n'.join(table(cases, res, T, K, blocks)), flush=True)
    print(f'\nWu et al. 2024: its own scripts (S1–S6, A12; netWu.py\'s FCN, CNN and ResNets) train feed-forward '
          f'networks, with no relaxation for --tol or --schedule to act on, and have no --dtype (torch\'s default '
          f'float32); the suite meets its devices through --analog on the EP nets (the table "Wu et al. 2024 devices under EP", '
          f'--papers wu2024-analog).\n\n'
          f'total {time.perf_counter() - t_all:.0f} s')


if __name__ == '__main__':
    main()

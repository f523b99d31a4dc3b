"""Closed-form EP engine vs the autograd-of-Φ oracle: milliseconds per training mini-batch.

One mini-batch = free phase (T steps from zeros) + nudged phase (Kmax steps) + EP parameter gradients + SGD step.
  engine: netFunctions.ep_step as is (closed-form ∂Φ/∂s, input drive computed once per phase)
  oracle: the same update, every relaxation step through stepper_autograd (relax_autograd), then the EP rule by
          autograd of Φ (phi_param_grads)
Both paths are first run on identical weights and their gradients compared, then timed in the same run
(warm-up, then interleaved repetitions, median). The load average is printed before and after.

Interleaving: by default the paths alternate every mini-batch (`--block 1`), so background load hits both alike; but
then each engine mini-batch starts after an oracle one, whose autograd buffers (tens of MB) have most likely pushed
the engine's weights out of the caches: 0.35 ms more per L-MLP mini-batch (3.4 against 3.1 ms), a cost that training
(mini-batch after mini-batch of one path) never pays. `--block N` alternates blocks of N consecutive mini-batches per
path instead (the median is still over single mini-batches).

    python bench/bench_engine.py [--config P-1h EB-1h] [--quick] [--reps 5] [--block 1] [--threads 1] [--clock cpu]
        [--device cpu]

The two Laborieux 2021 settings of the engine table (MLP of check/train_mnist.sh, CNN of check/train_mnist_cnn.sh):

    python bench/bench_engine.py --config L-MLP L-CNN --threads 1 --reps 7

To benchmark another paper's network, append a Config to CONFIGS.
"""
import argparse
import copy
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import netFunctions as nf                                   # noqa: E402
from netClasses import EPcont, EPdisc, convEP              # noqa: E402
from papers.laborieux2021.nets import P_CNN, P_MLP                      # noqa: E402
from papers.eplcanet.nets import LCANet                               # noqa: E402


@dataclass
class Config:
    name: str
    build: Callable[..., torch.nn.Module]    # build(**overrides) -> network
    x_shape: tuple                           # one input sample
    lr_tab: list                             # one learning rate per lr group (does not affect the timing)
    batch: int = 20
    quick: dict = field(default_factory=dict)  # build overrides under --quick


CONFIGS = [
    Config('P-1h', lambda T=40: EPdisc([10, 512, 784], T=T, Kmax=15, beta=0.1, activation='sigm'),
           (784,), [0.08, 0.04]),
    Config('EB-1h', lambda T=100: EPcont([10, 512, 784], T=T, Kmax=12, beta=0.5, activation='sigm', dt=0.2,
                                         clamp=True),
           (784,), [0.05, 0.1]),
    Config('P-conv', lambda T=200: convEP([10], [64, 32, 1], T=T, Kmax=10, beta=0.4, activation='hardsigm'),
           (1, 28, 28), [0.15, 0.035, 0.015], quick={'T': 20}),
    # Laborieux et al. 2021: the MLP of check/train_mnist.sh, the CNN of check/train_mnist_cnn.sh and the CIFAR-10
    # ConvNet of the paper (small batch on CPU)
    Config('L-MLP', lambda T=30: P_MLP([784, 512, 10], T, 10, 0.1, 'mysig', 'mse'), (1, 28, 28), [5e-4, 5e-4],
           batch=50),
    Config('L-CNN', lambda T=200, K=10: P_CNN(28, 1, [32, 64], [5, 5], [1, 1], [0, 0], 'mm', [10], T, K, 0.4,
                                              'hard_sigmoid'),
           (1, 28, 28), [5e-5, 1e-5, 8e-6], batch=100, quick={'T': 20, 'K': 5}),
    Config('L-CIFAR', lambda T=250, K=30: P_CNN(32, 3, [128, 256, 512, 512], [3, 3, 3, 3], [1, 1, 1, 1], [1, 1, 1, 0],
                                                'mmmm', [10], T, K, 0.5, 'my_hard_sig'),
           (3, 32, 32), [0.25, 0.15, 0.1, 0.08, 0.05], batch=4, quick={'T': 10, 'K': 4}),
    # EPLCANet, check/train_mnist_eplcanet.sh: the LCA (T1 × 1 iterations, once per mini-batch) is common to both
    Config('LCA-MNIST', lambda T=30, K=10: LCANet(
        28, 1, dict(out_neurons=32, kernel_size=5, stride=1, lambda_=0.25, tau=200.0, eta=1e-3, lca_iters=T,
                    pad='valid'), [32, 32, 64], [5, 5], [1, 1], [0, 0], 'im', [10], T, K, 0.1, 'mysig', 'cel', True,
        0.0), (1, 28, 28), [1e-4, 1e-5, 8e-6], batch=50, quick={'T': 10, 'K': 4}),
]


# ---------------------------------------------------------------------------------------------------------------

def engine_grads(net, x, y):
    nf.ep_step(net, x, y, net.beta)


def oracle_grads(net, x, y):
    with torch.no_grad():
        x = net.front(x)                               # the LCA code of EPLCANet (identity for the other nets)
        s_free = nf.relax_autograd(net, x, net.init_state(x.shape[0]), None, 0.0, net.T)
    (s_beta,) = nf.nudged_phases(net, x, y, s_free, [net.beta], net.Kmax, relax_fn=nf.relax_autograd)
    for p, g in zip(net.parameters(), nf.phi_param_grads(net, x, s_free, s_beta, 0.0, net.beta, y)):
        if p.requires_grad:
            p.grad = g


def train_step(grads_fn, net, opt, x, y):
    opt.zero_grad(set_to_none=True)
    grads_fn(net, x, y)
    net.updateWeights(opt)


def grad_diff(net, x, y):
    """Max |engine − oracle| over all parameter gradients (same weights, same batch), and max |engine|."""
    out = []
    for fn in (engine_grads, oracle_grads):
        net.zero_grad(set_to_none=True)
        fn(net, x, y)
        out.append([p.grad.clone() for p in net.parameters() if p.requires_grad])
    net.zero_grad(set_to_none=True)
    diff = max((a - b).abs().max().item() for a, b in zip(*out))
    return diff, max(a.abs().max().item() for a in out[0])


def bench(cfg, args):
    torch.manual_seed(0)
    dev = torch.device(args.device)
    net = cfg.build(**(cfg.quick if args.quick else {})).to(dev)
    x = torch.rand(cfg.batch, *cfg.x_shape, device=dev)
    y = nf.one_hot(torch.randint(0, net.output_size, (cfg.batch,), device=dev), net.output_size)
    diff, gmax = grad_diff(net, x, y)

    paths = {}
    for name, fn in (('engine', engine_grads), ('oracle', oracle_grads)):
        n = copy.deepcopy(net)
        paths[name] = (fn, n, torch.optim.SGD(n.lr_groups(cfg.lr_tab)))

    clock = time.process_time if args.clock == 'cpu' else time.perf_counter

    def timed(name):
        fn, n, opt = paths[name]
        if dev.type == 'cuda':
            torch.cuda.synchronize()
        t0 = clock()
        train_step(fn, n, opt, x, y)
        if dev.type == 'cuda':
            torch.cuda.synchronize()
        return 1e3 * (clock() - t0)

    for _ in range(args.warmup):
        for name in paths:
            timed(name)
    ms = {name: [] for name in paths}
    while len(ms['engine']) < args.reps:             # interleaved: background load hits both paths alike
        n = min(args.block, args.reps - len(ms['engine']))
        for name in paths:
            ms[name] += [timed(name) for _ in range(n)]
    med = {k: statistics.median(v) for k, v in ms.items()}
    return dict(config=cfg.name, T=net.T, K=net.Kmax, B=cfg.batch, engine=med['engine'], oracle=med['oracle'],
                ratio=med['oracle'] / med['engine'], diff=diff, gmax=gmax)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--config', nargs='+', choices=[c.name for c in CONFIGS], help='subset of configurations')
    ap.add_argument('--quick', action='store_true', help='shrink the slow configurations (conv nets: short T, K)')
    ap.add_argument('--reps', type=int, default=5, help='timed repetitions per path (median reported)')
    ap.add_argument('--warmup', type=int, default=2, help='untimed repetitions per path')
    ap.add_argument('--block', type=int, default=1,
                    help='consecutive timed mini-batches of one path before the other runs (default 1: alternate '
                         'every mini-batch)')
    ap.add_argument('--threads', type=int, help='torch threads (default: torch\'s)')
    ap.add_argument('--clock', choices=('wall', 'cpu'), default='wall',
                    help='wall clock, or this process\'s CPU time (steadier on a shared machine, with --threads 1)')
    ap.add_argument('--device', default='cpu')
    args = ap.parse_args()
    if args.block < 1:
        ap.error(f'--block {args.block}: give a number of mini-batches, at least 1')
    if args.threads:
        torch.set_num_threads(args.threads)

    print(f'torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}, {args.clock} clock, '
          f'median of {args.reps} after {args.warmup} warm-up, alternating every {args.block} mini-batch(es); '
          f'load average {_load()}')
    head = f"{'config':<8} {'T':>4} {'K':>3} {'B':>3} {'engine ms':>10} {'oracle ms':>10} {'oracle/engine':>14}" \
           f" {'max|Δgrad|':>11} {'max|grad|':>10}"
    print(head + '\n' + '-' * len(head))
    for cfg in CONFIGS:
        if args.config and cfg.name not in args.config:
            continue
        r = bench(cfg, args)
        print(f"{r['config']:<8} {r['T']:>4} {r['K']:>3} {r['B']:>3} {r['engine']:>10.2f} {r['oracle']:>10.2f} "
              f"{r['ratio']:>13.2f}x {r['diff']:>11.2e} {r['gmax']:>10.2e}", flush=True)
    print(f'load average {_load()}')


def _load():
    """The 1 / 5 / 15 min load average (os.getloadavg, as uptime prints it)."""
    return ' / '.join(f'{v:.2f}' for v in os.getloadavg())


if __name__ == '__main__':
    main()

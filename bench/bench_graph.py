"""Laborieux's P_CNN in its own closed form (papers/laborieux2021/nets.py) vs the same network written as an energy
graph (ep/graph.py, papers.hopfield_resnet.nets.pcnn_graph): milliseconds per training mini-batch.

One mini-batch = free phase (T steps from zeros) + ±β nudged phases (K steps, one batched tensor) + the symmetric EP
estimate written to .grad (estimators.Symmetric). Both forms hold the same weights; their estimates are compared
first in float64 (relative difference; in float32 the symmetric difference of two nearly equal states
cancels, and the two forms' round-offs differ by up to ~15 % on the first layer's bias), then they are timed in the same run (warm-up, interleaved repetitions,
median), under the synchronous schedule (the same work per step) and under the colored / asynchronous free phase.

    python bench/bench_graph.py [--config L-CNN] [--reps 5] [--threads 1] [--quick]
"""
import argparse
import copy
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import netFunctions as nf                                   # noqa: E402
from ep import estimators                                   # noqa: E402
from papers.hopfield_resnet.nets import pcnn_graph          # noqa: E402
from papers.laborieux2021.nets import P_CNN                 # noqa: E402

# (build(T, K), input side, input channels, batch): check/train_mnist_cnn.sh's net, and Laborieux's CIFAR-10 net
CONFIGS = {
    'L-CNN': (lambda T, K: P_CNN(28, 1, [32, 64], [5, 5], [1, 1], [0, 0], 'mm', [10], T, K, 0.4, 'my_hard_sig'),
              28, 1, 100, 200, 10),
    'L-CIFAR': (lambda T, K: P_CNN(32, 3, [128, 256, 512, 512], [3, 3, 3, 3], [1, 1, 1, 1], [1, 1, 1, 0], 'mmmm',
                                   [10], T, K, 0.5, 'my_hard_sig'), 32, 3, 128, 250, 30),
}


def minibatch(net, x, y, T, K, beta):
    net.zero_grad(set_to_none=True)
    estimators.Symmetric(beta, T, K)(net, x, y)
    return [p.grad for p in net.parameters()]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--config', nargs='+', default=['L-CNN'], choices=list(CONFIGS))
    ap.add_argument('--reps', type=int, default=5)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--quick', action='store_true', help='T 10, K 4, batch 16, 2 repetitions')
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    for name in a.config:
        build, side, ch, batch, T, K = CONFIGS[name]
        if a.quick:
            T, K, batch, a.reps = 10, 4, 16, 2
        torch.manual_seed(0)
        net = build(T, K)
        g = pcnn_graph(net, side)
        x = torch.rand(batch, ch, side, side)
        y = nf.one_hot(torch.randint(0, 10, (batch,)), 10)
        for schedule, mode in (('sync', False), ('colored / async free phase', 'free')):
            net.set_relaxation(asynchronous=mode)
            g.set_relaxation(asynchronous=mode)
            n64, g64 = copy.deepcopy(net).double(), copy.deepcopy(g).double()
            ga = minibatch(n64, x.double(), y.double(), T, K, net.beta)
            gb = minibatch(g64, x.double(), y.double(), T, K, net.beta)
            k = len(net.synapses)
            pairs = [(ga[2 * i], gb[i]) for i in range(k)] + [(ga[2 * i + 1], gb[k + i]) for i in range(k)]
            rel = max(((u - v).norm() / u.norm().clamp_min(1e-30)).item() for u, v in pairs)
            times = {'P_CNN': [], 'graph': []}
            for _ in range(a.reps):
                for label, m in (('P_CNN', net), ('graph', g)):
                    t0 = time.perf_counter()
                    minibatch(m, x, y, T, K, net.beta)
                    times[label].append(1e3 * (time.perf_counter() - t0))
            med = {k_: statistics.median(v) for k_, v in times.items()}
            print(f'{name} ({schedule}), T {T}, K {K}, batch {batch}, {a.threads} thread(s): P_CNN '
                  f'{med["P_CNN"]:.0f} ms, graph {med["graph"]:.0f} ms per mini-batch (graph / P_CNN '
                  f'{med["graph"] / med["P_CNN"]:.2f}); float64 estimates differ by {rel:.1e} (relative, max over tensors)',
                  flush=True)


if __name__ == '__main__':
    main()

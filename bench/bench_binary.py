"""Cost of binarisation (Laydevant et al. 2021): ms per EP training mini-batch of the binary networks (±α weights,
flip rule) and of the same networks with full-precision weights trained by SGD in the suite, in one run.

    python bench/bench_binary.py [--quick] [--reps 5]
"""
import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import netFunctions as nf                                   # noqa: E402
from netClasses import ACTIVATIONS, EPdisc, convEP         # noqa: E402
from Network_conv import Network_conv_bin_W                # noqa: E402
from Network_fc import BinaryOptimizer, Network_fc_bin_W   # noqa: E402


def configs(quick):
    T_conv = 20 if quick else 150
    hs = ACTIVATIONS['hardsigm']
    return [
        ('FC 1h 784-4096-10', (784,), 64,
         lambda: Network_fc_bin_W([784, 4096, 10], 50, 10, 0.3),
         lambda: EPdisc([10, 4096, 784], 50, 10, 0.3, hs)),
        (f'conv MNIST 64-32 (T {T_conv})', (1, 28, 28), 64,
         lambda: Network_conv_bin_W([10], [64, 32, 1], T_conv, 10, 0.3, padding=0),
         lambda: convEP([10], [64, 32, 1], T_conv, 10, 0.3, hs)),
    ]


def binary_opt(net):
    n = len(net.binary_layers())
    return BinaryOptimizer(net.binary_layers(), [0.025] * n, [1e-5] * n, [5e-7] * n)


def timed(net, opt, x, y):
    t0 = time.perf_counter()
    opt.zero_grad()
    nf.ep_step(net, x, y, net.beta, 'random-sign')
    net.updateWeights(opt)
    return 1e3 * (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--quick', action='store_true', help='short free phase for the conv net')
    ap.add_argument('--reps', type=int, default=5)
    args = ap.parse_args()
    print(f'torch {torch.__version__}, threads {torch.get_num_threads()}, median of {args.reps} after 1 warm-up')
    print(f"{'config':<26} {'binary ms':>10} {'full-precision ms':>18} {'binary/full':>12}")
    for name, shape, B, make_bin, make_fp in configs(args.quick):
        torch.manual_seed(0)
        x = torch.rand(B, *shape)
        label = torch.randint(0, 10, (B,))
        nb, nfp = make_bin(), make_fp()
        ob = binary_opt(nb)
        ofp = torch.optim.SGD(nfp.lr_groups([0.01] * len(ob.layers)), lr=0.01)
        y = nb.target(label)
        ms = {'bin': [], 'fp': []}
        for rep in range(args.reps + 1):                     # interleaved; the first round is a warm-up
            for key, net, opt in (('bin', nb, ob), ('fp', nfp, ofp)):
                t = timed(net, opt, x, y)
                if rep:
                    ms[key].append(t)
        b, f = statistics.median(ms['bin']), statistics.median(ms['fp'])
        print(f'{name:<26} {b:>10.2f} {f:>18.2f} {b / f:>11.2f}x', flush=True)


if __name__ == '__main__':
    main()

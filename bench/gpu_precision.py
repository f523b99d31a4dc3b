"""The CIFAR-10-shaped P_CNN mini-batch on a GPU in float32, TF32 and bf16 autocast, each with and without CUDA
graphs for the fixed-step relaxation (--precision, --cuda-graphs): milliseconds per training mini-batch (free phase,
nudged phase, EP rule, SGD step), and what each setting does to the estimate.

The net is Laborieux et al. 2021's CIFAR-10 ConvNet (bench/bench_engine.py's L-CIFAR: channels 128-256-512-512,
T1 250, T2 30, β 0.5, my_hard_sig, mse), one-sided EP, on random 3×32×32 inputs. Every setting starts from the same
weights and reads the same batch; its gradient is compared with float32's without graphs (cosine and the largest
relative difference), so the table says what a setting costs in exactness as well as what it saves. The settings
are timed interleaved (warm-up, then `--reps` rounds, median), CUDA synchronised around each mini-batch.

    python bench/gpu_precision.py [--batch 128] [--T1 250] [--T2 30] [--reps 10] [--warmup 3] [--device 0]

It needs a CUDA device: without one it says so in one line and exits with 2 (tests/test_bench_scripts.py).
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
from papers.laborieux2021.nets import P_CNN                 # noqa: E402
from suite.cli import gpu_options                           # noqa: E402

SETTINGS = [('float32', False), ('float32', True), ('tf32', False), ('tf32', True), ('bf16', False), ('bf16', True)]
LRS = [0.25, 0.15, 0.1, 0.08, 0.05]


def build(T1, T2):
    return P_CNN(32, 3, [128, 256, 512, 512], [3, 3, 3, 3], [1, 1, 1, 1], [1, 1, 1, 0], 'mmmm', [10], T1, T2, 0.5,
                 'my_hard_sig')


def grads(net, x, y):
    net.zero_grad(set_to_none=True)
    nf.ep_step(net, x, y, net.beta)
    return torch.cat([p.grad.flatten() for p in net.parameters()])


def compare(g, ref):
    cos = torch.nn.functional.cosine_similarity(g.double(), ref.double(), dim=0).item()
    return cos, ((g - ref).abs().max() / ref.abs().max()).item()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--batch', type=int, default=128)
    ap.add_argument('--T1', type=int, default=250)
    ap.add_argument('--T2', type=int, default=30)
    ap.add_argument('--reps', type=int, default=10)
    ap.add_argument('--warmup', type=int, default=3)
    ap.add_argument('--device', type=int, default=0)
    a = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print('gpu_precision.py: error: needs a CUDA device (none here); run it on a machine with a GPU',
              file=sys.stderr)
        return 2
    dev = torch.device('cuda', a.device)
    torch.manual_seed(0)
    base = build(a.T1, a.T2).to(dev)
    x = torch.rand(a.batch, 3, 32, 32, device=dev)
    y = nf.one_hot(torch.randint(0, 10, (a.batch,), device=dev), 10)

    nets, ref = {}, None
    for precision, graphs in SETTINGS:
        gpu_options(dev, precision, graphs)
        net = copy.deepcopy(base).set_gpu(precision == 'bf16', graphs)
        g = grads(net, x, y)                               # (captures the graphs of a graphed setting)
        g = grads(net, x, y)
        ref = g if ref is None else ref
        nets[precision, graphs] = (net, torch.optim.SGD(net.lr_groups(LRS)), compare(g, ref))

    def timed(key):
        net, opt = nets[key][:2]
        gpu_options(dev, key[0], key[1])
        torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        nf.ep_step(net, x, y, net.beta)
        net.updateWeights(opt)
        torch.cuda.synchronize(dev)
        return 1e3 * (time.perf_counter() - t0)

    for _ in range(a.warmup):
        for key in nets:
            timed(key)
    ms = {key: [] for key in nets}
    for _ in range(a.reps):
        for key in nets:
            ms[key].append(timed(key))
    first = statistics.median(ms[SETTINGS[0]])
    print(f'{torch.cuda.get_device_name(dev)}, torch {torch.__version__}, P_CNN CIFAR-10 shape, batch {a.batch}, '
          f'T1 {a.T1}, T2 {a.T2}, median of {a.reps} after {a.warmup} warm-up')
    print('| precision | CUDA graphs | ms / mini-batch | × float32 | gradient cosine to float32 | max rel. diff |')
    print('|---|---|---|---|---|---|')
    for key, (_, _, (cos, rel)) in nets.items():
        m = statistics.median(ms[key])
        print(f'| {key[0]} | {"yes" if key[1] else "no"} | {m:.2f} | {first / m:.2f}× | {cos:.6f} | {rel:.2e} |')
    return 0


if __name__ == '__main__':
    sys.exit(main())

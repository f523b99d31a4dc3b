"""Cost of the analog simulator (analog.py, Wu et al. 2024): ms per mini-batch of the S4.1 FCN 784-256-128-10
(Sigmoid, LogSoftmax, NLL, batch 10, lr 0.05) trained with FP SGD, Analog SGD and TT-v1 (S4 configs, τ 0.6), and
the cost of the optimiser step alone (the simulator's pulsed update) against the FP SGD step, in one run.

    python bench/bench_analog.py [--reps 200] [--device cpu|cuda] [--threads N] [--binomial] [--sequential-check]

--binomial adds Analog SGD with per-element binomial pulse counts instead of bit-train coincidences.
--sequential-check: final f(W) on the S2 problem (τ 1 and 2, 1500 steps) with summed per-sample counts (default)
and with the toolkit's vector-by-vector order, over seeds (minutes on a 2-core CPU).
"""
import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import analog as A                                          # noqa: E402
from papers.wu2024 import nets as wu_nets                                                # noqa: E402


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize()


def timed_batch(model, opt, x, label, device):
    """(ms of the whole mini-batch, ms of the optimiser step)."""
    sync(device)
    t0 = time.perf_counter()
    opt.zero_grad()
    nn.functional.nll_loss(model(x), label).backward()
    sync(device)
    t1 = time.perf_counter()
    opt.step()
    sync(device)
    t2 = time.perf_counter()
    return 1e3 * (t2 - t0), 1e3 * (t2 - t1)


def bench(args, device):
    settings = [('FP SGD', 'FP SGD', 'auto'), ('Analog SGD', 'Analog SGD', 'auto'), ('TT-v1', 'TT-v1', 'auto')]
    if args.binomial:
        settings.append(('Analog SGD (binomial counts)', 'Analog SGD', 'binomial'))
    torch.manual_seed(0)
    x = torch.rand(10, 1, 28, 28, device=device)
    label = torch.randint(0, 10, (10,), device=device)
    runs = []
    for name, setting, method in settings:
        torch.manual_seed(0)
        model = A.convert(wu_nets.FCN(), A.rpu_config(setting, 0.6)).to(device)
        runs.append((name, method, model, A.AnalogSGD(model.parameters(), lr=0.05)))
    ms = {name: ([], []) for name, *_ in runs}
    for rep in range(args.reps + 5):                         # interleaved; the first 5 rounds warm up
        for name, method, model, opt in runs:
            A.tiles.COUNT_METHOD = method
            batch, step = timed_batch(model, opt, x, label, device)
            if rep >= 5:
                ms[name][0].append(batch)
                ms[name][1].append(step)
    A.tiles.COUNT_METHOD = 'auto'
    fp_batch, fp_step = (statistics.median(v) for v in ms['FP SGD'])
    print(f'torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, median of {args.reps}')
    print(f"{'optimiser':<30} {'ms/batch':>9} {'× FP':>7} {'step ms':>8} {'step × FP step':>15}")
    for name, (batch, step) in ms.items():
        b, s = statistics.median(batch), statistics.median(step)
        print(f'{name:<30} {b:>9.2f} {b / fp_batch:>6.2f}x {s:>8.2f} {s / fp_step:>14.1f}x', flush=True)


def s2_final(tau, seed, sequential, iters=1500, lr=0.03):
    g = torch.Generator().manual_seed(0)
    x_star = 0.3 * torch.randn(40, generator=g)
    a = torch.randn(100, 40, generator=g) / 2
    y = a @ x_star
    torch.manual_seed(seed)
    model = A.convert(nn.Linear(40, 1, bias=False), A.rpu_config('Analog SGD', tau, 'S2', sequential=sequential))
    model.W.weight.zero_()
    opt = A.AnalogSGD(model.parameters(), lr=lr)

    def loss():                                    # f(W) = ½ mean (⟨a_b, W⟩ − y_b)², gradients for the step
        opt.zero_grad()
        f = 0.5 * ((model(a).squeeze(1) - y) ** 2).mean()
        f.backward()
        return f
    for _ in range(iters):
        opt.step(loss)
    return 0.5 * ((a @ model.weight.reshape(-1) - y) ** 2).mean().item()


def sequential_check(seeds):
    print('S2 problem (the Wu 2024 spec's setting: lr 0.03, 1500 full-batch steps, Δw_min = τ/300, ideal IO): final f(W)')
    for tau in (2.0, 1.0):
        for sequential in (False, True):
            f = [s2_final(tau, s, sequential) for s in range(seeds)]
            print(f"τ {tau}  {'sequential' if sequential else 'summed':<10}  mean {statistics.mean(f):.3e}  "
                  f"sd {statistics.stdev(f):.1e}  ({', '.join(f'{v:.3e}' for v in f)})", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--reps', type=int, default=200)
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--binomial', action='store_true')
    ap.add_argument('--sequential-check', action='store_true')
    ap.add_argument('--seeds', type=int, default=4)
    ap.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch\'s choice)')
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.sequential_check:
        sequential_check(args.seeds)
    else:
        bench(args, torch.device(args.device))


if __name__ == '__main__':
    main()

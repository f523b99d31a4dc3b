"""The analog simulator's two update modes against each other (Wu et al. 2024): the default (each weight's up and down
pulse counts summed over the mini-batch and applied as one interleaved closed form, one Gaussian of the summed
cycle-to-cycle noise) and `Update(sequential=True)` (the toolkit's order: each vector's rank-1 pulse trains in turn,
each train with the law of its per-pulse noise), on

- S1, S2: the toy least-squares problems of papers/wu2024/toy.py (S1: α 0.1, τ 3, Analog SGD and TT-v1 with γ 0.4;
  S2: α 0.03, τ 1, Analog SGD with the weight noise σ / mean singular value of A), full batch (100 vectors per step);
- S4.1, S4.2: the MNIST FCN and LeNet of papers/wu2024/nets.py on the embedded mnist5k digits, S4 devices at τ 0.6,
  lr 0.05, batch 10 / 8, a few epochs (trainer.train / trainer.evaluate, as the S4 scripts).

Per run: the final loss (toy: the mean of the last 20 logged f(W)/d; S4: test loss and accuracy after the last
epoch), the mean |W| of the last analog layer, the learned output gains (S4) and ms per mini-batch (toy: per step);
then mean ± sd over the seeds per mode and whether the two modes agree within the seed spread
(|Δ mean| ≤ 2 √((sd_a² + sd_b²)/n)).

    python bench/bench_pulse_modes.py [--problems S1 S2 S4.1 S4.2] [--seeds 0 1 2] [--epochs 2] [--threads 1]
        [--max-batches N] [--csv FILE]
"""
import argparse
import math
import os
import statistics
import sys
import time

import pandas as pd
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import analog as A                                          # noqa: E402
from ep import estimators                                   # noqa: E402
from netClasses import Feedforward                          # noqa: E402
from papers.wu2024 import nets as wu_nets                   # noqa: E402
from papers.wu2024 import toy as wu_toy                     # noqa: E402
from suite import data, trainer                             # noqa: E402

MODES = {'default': False, 'sequential': True}
S4 = {'S4.1': (wu_nets.FCN, 10), 'S4.2': (wu_nets.LeNet, 8)}
S4_TAU, S4_LR = 0.6, 0.05


def analog_layers(model):
    return [m for m in model.modules() if isinstance(m, (A.AnalogLinear, A.AnalogConv2d))]


def gains(model):
    """The learned output gains, layer by layer ('/' between the tiles of one layer)."""
    return ' '.join('/'.join(f'{v:.3f}' for v in m.out_scale.detach().reshape(-1).tolist())
                    for m in analog_layers(model) if m.out_scale is not None)


def toy_run(problem, setting, sequential, seed):
    """S1 (α 0.1) or S2 (τ 1): the simulated curve of toy.simulate."""
    toy = wu_toy.TOYS['S1-SGD-diff-lr' if problem == 'S1' else 'S2-dynamic-verification']
    A_, Y = wu_toy.make_problem(toy, torch.Generator().manual_seed(0))
    if problem == 'S1':
        lr, tau = 0.1, toy.taus[0]
        kw = dict(w_noise=toy.sigmas[0], **(wu_toy.S1_TT if setting == 'TT-v1' else {}))
    else:
        lr, tau = toy.lrs[0], 1.0
        kw = dict(w_noise=toy.sigmas[0] / torch.linalg.svdvals(A_).mean().item())
    rpu = A.rpu_config(setting, tau, toy.preset, sequential=sequential, **kw)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    losses, layer = wu_toy.simulate(toy, A_, Y, rpu, lr, toy.iterations)
    ms = 1e3 * (time.perf_counter() - t0) / toy.iterations
    return dict(loss=losses[-wu_toy.FINAL_WINDOW:].mean().item(), acc=math.nan,
                mean_abs_w=layer.visible_weight().abs().mean().item(), gains='', ms=ms)


def s4_run(problem, setting, sequential, seed, epochs, splits, max_batches=None):
    """S4.1 / S4.2 for a few epochs on mnist5k: test loss and accuracy after the last."""
    net_fn, batch = S4[problem]
    (xtr, ytr), (xte, yte) = splits
    torch.manual_seed(seed)
    model = A.convert(net_fn(), A.rpu_config(setting, S4_TAU, 'S4', sequential=sequential))
    net = Feedforward(model, F.nll_loss)
    opt = A.AnalogSGD(model.parameters(), lr=S4_LR)
    gen = torch.Generator().manual_seed(seed)
    train_b = data.Batches(xtr, ytr, batch, True, generator=gen, max_batches=max_batches)
    test_b = data.Batches(xte, yte, batch)
    estimate, seconds = estimators.Backprop(), 0.0
    for _ in range(epochs):
        t0 = time.perf_counter()
        trainer.train(net, opt, train_b, lambda x, y: estimate(net, x, y, opt), loss=True)
        seconds += time.perf_counter() - t0
    test = trainer.evaluate(net, test_b)
    return dict(loss=test['loss'], acc=100 - test['error'], mean_abs_w=analog_layers(model)[-1].weight.abs().mean()
                .item(), gains=gains(model), ms=1e3 * seconds / (epochs * len(train_b)))


def summary(rows):
    """Per (problem, setting): mean ± sd of each mode and whether they agree within the seed spread."""
    df = pd.DataFrame(rows)
    lines = ['| problem | setting | mode | final loss | test acc % | last layer mean abs W | output gains (seed 0) '
             '| ms / mini-batch |', '|---|---|---|---|---|---|---|---|']
    verdicts = []
    for (problem, setting), g in df.groupby(['problem', 'setting'], sort=False):
        stats = {}
        for mode, m in g.groupby('mode', sort=False):
            def ms(col, fmt):
                v = m[col].tolist()
                if any(math.isnan(x) for x in v):
                    return '—'
                sd = statistics.stdev(v) if len(v) > 1 else 0.0
                return f'{statistics.mean(v):{fmt}} ± {sd:{fmt}}'
            stats[mode] = m
            lines.append(f"| {problem} | {setting} | {mode} | {ms('loss', '.3e')} | {ms('acc', '.1f')} | "
                         f"{ms('mean_abs_w', '.4f')} | {m['gains'].iloc[0] or '—'} | {ms('ms', '.1f')} |")
        if len(stats) == 2:
            a, b = stats['default'], stats['sequential']
            agree = []
            for col in ('loss', 'acc', 'mean_abs_w'):
                if a[col].isna().any():
                    continue
                n = min(len(a), len(b))
                spread = 2 * math.sqrt((a[col].var(ddof=1) + b[col].var(ddof=1)) / n) if n > 1 else 0.0
                agree.append(f"{col} {'agrees' if abs(a[col].mean() - b[col].mean()) <= spread else 'DIFFERS'}")
            verdicts.append(f'{problem} {setting}: ' + ', '.join(agree) + f"; sequential/default time "
                            f"{b['ms'].mean() / a['ms'].mean():.1f}x")
    return '\n'.join(lines + [''] + verdicts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--problems', nargs='+', default=['S1', 'S2', 'S4.1', 'S4.2'], choices=['S1', 'S2', 'S4.1', 'S4.2'])
    ap.add_argument('--settings', nargs='+', default=None, help='default: Analog SGD and TT-v1 (S2: Analog SGD)')
    ap.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    ap.add_argument('--epochs', type=int, default=2, help='S4 epochs on mnist5k')
    ap.add_argument('--max-batches', type=int, default=None, help='S4: at most this many mini-batches per epoch')
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--csv', default=None, help='also write every run as a CSV row')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    splits = [data.load('mnist5k', './data', train) for train in (True, False)]
    rows = []
    for problem in args.problems:
        settings = args.settings or (['Analog SGD'] if problem == 'S2' else ['Analog SGD', 'TT-v1'])
        for setting in settings:
            for mode, sequential in MODES.items():
                for seed in args.seeds:
                    r = (toy_run(problem, setting, sequential, seed) if problem in ('S1', 'S2')
                         else s4_run(problem, setting, sequential, seed, args.epochs, splits, args.max_batches))
                    rows.append(dict(problem=problem, setting=setting, mode=mode, seed=seed, **r))
                    print(f"{problem} {setting} {mode} seed {seed}: loss {r['loss']:.4e} acc {r['acc']:.2f} "
                          f"mean|W| {r['mean_abs_w']:.4f} gains {r['gains']} {r['ms']:.1f} ms", flush=True)
                    if args.csv:
                        pd.DataFrame(rows).to_csv(args.csv, index=False)
    print()
    print(summary(rows))


if __name__ == '__main__':
    main()

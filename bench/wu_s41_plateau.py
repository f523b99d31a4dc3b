"""Why Wu et al. 2024's S4.1 FCN stays at chance on the embedded digits: FP SGD, Analog SGD, Analog SGD without
the learned digital output scale and TT-v1 trained for a fixed number of steps, with what the network's weights and
scales do meanwhile.

Every setting is the S4.1 script's own run (papers.wu2024.classify: the FCN 784-256-128-10 with sigmoid units and
the NLL of its log-softmax, batch 10, AnalogSGD at lr 0.05, the S4 device preset at --tau; the same seeding, so the
initial weights and mini-batch order of a seed are the script's), trained by the suite's loop (trainer.train with
estimators.Backprop, trainer.evaluate) on mnist5k's 4,000 training digits (400 steps per epoch) and tested on its
1,000 test digits after every epoch and at the last step. The S4 schedule (StepLR at epoch 35) is not reached here.
'Analog SGD, no out scale' is the S4 preset with RPU.learn_out_scaling off (rpu_config's override).

Per row: test accuracy; the mean |W| of the last layer (the array the network sees: W, or C for TT-v1); the learned
output scale of each layer (1 → 3; the first layer's two tiles under the S4 preset: the mean of their gains); the
fraction of the analog weights beyond 0.9 of their bound |w|/bound.

    python bench/wu_s41_plateau.py [--steps 2000] [--seeds 0] [--tau 0.6] [--settings ...] [--threads 1]
                                   [--csv FILE]
"""
import argparse
import os
import sys
import time

import pandas as pd
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import analog                                               # noqa: E402
from ep import estimators                                   # noqa: E402
from netClasses import Feedforward                          # noqa: E402
from papers.wu2024 import classify, figures                 # noqa: E402
from suite import data, trainer                             # noqa: E402
from suite.cli import seed_everything                       # noqa: E402

SCRIPT = 'S4.1-mnist-FCN'
# setting → (the script's --SETTING, overrides of its S4 device configuration)
SETTINGS = {'FP SGD': ('FP SGD', {}), 'Analog SGD': ('Analog SGD', {}),
            'Analog SGD, no out scale': ('Analog SGD', dict(learn_out_scaling=False)), 'TT-v1': ('TT-v1', {})}


def build(setting, tau, seed):
    """The S4.1 script's model, optimiser and mini-batch generator for `setting`, seeded as classify.mnist seeds."""
    name, overrides = SETTINGS[setting]
    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    rpu = analog.rpu_config(name, tau, 'S4', **overrides)
    model = analog.convert(classify.MNIST[SCRIPT]['net'](), rpu)
    return Feedforward(model, classify.F.nll_loss), analog.AnalogSGD(model.parameters(), lr=classify.MNIST_LR), gen


def state(net):
    """Last-layer mean |W|, the output scales ('-' where a layer has none), the % of analog weights above 0.9 of
    their bound (None for a digital net)."""
    layers = list(figures.arrays(net.module).values())
    seen = [a['C' if 'C' in a else 'W'] for a in layers]
    scales = [m.out_scale for m in net.module if getattr(m, 'out_scale', None) is not None]
    sat = [figures.saturation(w, a['b_min'], a['b_max']).flatten() for w, a in zip(seen, layers) if 'b_max' in a]
    return dict(last_mean_abs_w=seen[-1].abs().mean().item(),
                out_scales='/'.join(f'{s.mean().item():.3f}' for s in scales) or '-',    # a layer's tiles: their mean
                pct_above_0_9=100 * (torch.cat(sat) > 0.9).double().mean().item() if sat else None)


def run(setting, tau, seed, steps, splits):
    """Rows after 0 steps, after every epoch and at the last step."""
    net, opt, gen = build(setting, tau, seed)
    (xtr, ytr), (xte, yte) = splits
    batch = classify.MNIST[SCRIPT]['batch_size']
    test = data.Batches(xte, yte, batch)
    estimate = estimators.Backprop()
    per_epoch = -(-len(ytr) // batch)
    rows, done, t0 = [], 0, time.perf_counter()

    def row(train_acc):
        r = dict(setting=setting, tau=None if setting == 'FP SGD' else tau, seed=seed, steps=done,
                 test_acc=100 - trainer.evaluate(net, test)['error'], train_acc=train_acc, **state(net),
                 seconds=time.perf_counter() - t0)
        print(' '.join(f'{k} {v:.4g}' if isinstance(v, float) else f'{k} {v}' for k, v in r.items()), flush=True)
        return r

    rows.append(row(None))
    while done < steps:
        n = min(per_epoch, steps - done)
        train_b = data.Batches(xtr, ytr, batch, True, generator=gen, max_batches=n)
        train = trainer.train(net, opt, train_b, lambda x, y: estimate(net, x, y, opt), desc=setting)
        done += n
        rows.append(row(100 - train['error']))
    return rows


def scales(g):
    """The mean output scale of each layer over the rows of g ('-' without one), the last layer's range when the
    rows differ."""
    if (g['out_scales'] == '-').all():
        return '–'
    per = pd.DataFrame([[float(v) for v in s.split('/')] for s in g['out_scales']])
    text = '/'.join(f'{v:.3f}' for v in per.mean())
    last = per.iloc[:, -1]
    return text + (f' (last {last.min():.3f} to {last.max():.3f})' if len(per) > 1 else '')


def table(rows, steps):
    """Markdown: per setting and step count (0, every 800 and the last), the mean over seeds (with the test
    accuracy's and the last scale's range when there are several)."""
    df = pd.DataFrame(rows)
    out = ['| setting | steps | test accuracy % | last-layer mean abs W | output scale, layers 1/2/3 | '
           '% of weights > 0.9 bound |', '|---|---|---|---|---|---|']
    keep = sorted({0, steps} | {s for s in df['steps'] if s % 800 == 0})
    for (setting, n), g in df[df['steps'].isin(keep)].groupby(['setting', 'steps'], sort=False):
        acc = g['test_acc']
        spread = f' ({acc.min():.1f}–{acc.max():.1f})' if len(g) > 1 else ''
        sat = '–' if g['pct_above_0_9'].isna().all() else f'{g["pct_above_0_9"].mean():.3f}'
        out.append(f'| {setting} | {n} | {acc.mean():.1f}{spread} | {g["last_mean_abs_w"].mean():.4f} | {scales(g)} '
                   f'| {sat} |')
    return '\n'.join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--steps', type=int, default=2000, help='training steps (mini-batches of 10) per run')
    ap.add_argument('--seeds', type=int, nargs='+', default=[0])
    ap.add_argument('--tau', type=float, default=0.6, help='device bounds ±τ (the S4.1 runs of the README: 0.6)')
    ap.add_argument('--settings', nargs='+', default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--csv', default=None, help='write every row (each epoch) to this CSV')
    ap.add_argument('--table', default=None, help='print the table of such a CSV (nothing is trained)')
    a = ap.parse_args()
    if a.table:
        rows = pd.read_csv(a.table).to_dict('records')
        print(table(rows, max(r['steps'] for r in rows)))
        return
    if a.steps < 1:
        ap.error(f'--steps {a.steps}: give at least 1')
    torch.set_num_threads(a.threads)
    splits = [data.load_mnist5k(train) for train in (True, False)]
    rows = [r for seed in a.seeds for s in a.settings for r in run(s, a.tau, seed, a.steps, splits)]
    if a.csv:
        pd.DataFrame(rows).to_csv(a.csv, index=False)
    print(table(rows, a.steps))


if __name__ == '__main__':
    main()

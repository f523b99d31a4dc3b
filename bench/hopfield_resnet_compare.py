"""Hopfield-ResNet13 trained by centered EP, VGG5 trained by centered EP, and Hopfield-ResNet13 trained by
backpropagation through the relaxation (the last --K steps), on mnist5k (4,000 train / 1,000 test digits padded to
32×32) at a reduced width and number of steps, over several seeds.

Every run is `main.main(argv)` in this process (the suite's training, evaluation and metrics.csv; nothing is
re-implemented here), with --threads, --seed and a --results-dir under --out. Read from each run's metrics.csv: test
accuracy per epoch and the seconds of each epoch (training and test pass, wall clock). Printed: a table of the final
test accuracy (mean ± std over seeds) and the mean seconds per epoch; written under --out: runs.csv (one row per run
and epoch), summary.csv (the table) and accuracy.png (test accuracy per epoch, mean ± std over seeds).

    python bench/hopfield_resnet_compare.py [--seeds 0 1 2] [--epochs 5] [--width 0.0625] [--T 60] [--K 20]
        [--batch 64] [--activation relu6] [--beta 0.1] [--lr 0.03] [--threads 2] [--settings …] [--out DIR] [--quick]
    python bench/hopfield_resnet_compare.py --from-runs A/runs.csv B/runs.csv --out DIR   (merge, table, figure)

--quick: one seed, --dry-run runs (one mini-batch, the relaxation capped to a few steps) at width 1/32: a smoke test
of seconds; its numbers mean nothing.
"""
import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time

import pandas as pd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import main as suite                                # noqa: E402

# each setting's own flags come last, so they override the common ones (e.g. --activation)
SETTINGS = {'Hopfield-ResNet13 (EP)': ['--network', 'hopfieldresnet13', '--algorithm', 'EP'],
            'VGG5 (EP)': ['--network', 'vgg5', '--algorithm', 'EP'],
            # VGG5 with bounded states and its gains read as a standard deviation (√3 times the uniform bound):
            # at the defaults its activity shrinks layer by layer and it stays at chance on mnist5k
            'VGG5 (EP, hard-sigmoid, gains ×√3)': ['--network', 'vgg5', '--algorithm', 'EP', '--activation',
                                                   'hard-sigmoid', '--weight_gains', '0.69,1.21,1.04,0.52,1.04'],
            'Hopfield-ResNet13 (BPTT)': ['--network', 'hopfieldresnet13', '--algorithm', 'BPTT']}
COLUMNS = ['setting', 'seeds', 'epochs', 'final test acc (%)', 'best test acc (%)', 's / epoch']


def command(setting, seed, a, results_dir):
    argv = ['--dataset', 'mnist5k', '--width', str(a.width), '--num_iterations_inference', str(a.T),
            '--num_iterations_training', str(a.K), '--batch_size', str(a.batch), '--epochs', str(a.epochs),
            '--activation', a.activation, '--beta', str(a.beta), '--learning_rates_weights', str(a.lr),
            '--learning_rates_biases', str(a.lr), '--threads', str(a.threads), '--seed', str(seed), '--results-dir',
            results_dir]
    return argv + SETTINGS[setting] + (['--dry-run'] if a.quick else [])


def run_one(argv):
    """One training run in this process: (its metrics.csv as a DataFrame, its folder), the run's printing kept out of
    the table's; a run the suite stops (non-finite values: exit 1 with one line) gives (None, that line)."""
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            folder = suite.main(argv)
    except SystemExit as e:
        if e.code in (0, None):
            raise
        lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
        return None, lines[-1] if lines else f'exit {e.code}'
    return pd.read_csv(os.path.join(folder, 'metrics.csv')), folder


def mean_std(values):
    if not values:
        return '–'
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f'{statistics.mean(values):.2f} ± {sd:.2f}'


def summary(runs):
    """The table's rows from the per-epoch rows of every run."""
    rows = []
    for setting in SETTINGS:
        r = runs[runs['setting'] == setting]
        if r.empty:
            continue
        last = r.sort_values('epoch').groupby('seed').tail(1)
        best = r.groupby('seed')['test_acc'].max()
        rows.append({'setting': setting, 'seeds': r['seed'].nunique(), 'epochs': int(r['epoch'].max()),
                     'final test acc (%)': mean_std(list(last['test_acc'])),
                     'best test acc (%)': mean_std(list(best)),
                     's / epoch': f'{r["epoch_seconds"].mean():.1f}'})
    return pd.DataFrame(rows, columns=COLUMNS)


def markdown(df):
    lines = ['| ' + ' | '.join(df.columns) + ' |', '|' + '---|' * len(df.columns)]
    lines += ['| ' + ' | '.join(str(v) for v in row) + ' |' for row in df.itertuples(index=False)]
    return '\n'.join(lines)


def figure(runs, path):
    """Test accuracy per epoch: every seed's run as a thin line, the mean over seeds as a thick one (a mean ± std band
    would hide runs that learn beside runs that stay at chance)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for i, setting in enumerate(s for s in SETTINGS if s in set(runs['setting'])):
        r, color = runs[runs['setting'] == setting], f'C{i}'
        for _, one in r.groupby('seed'):
            ax.plot(one['epoch'], one['test_acc'], '-', color=color, alpha=0.35, lw=1)
        m = r.groupby('epoch')['test_acc'].mean()
        ax.plot(m.index, m.values, 'o-', color=color, lw=2.2, label=f'{setting} (mean of {r["seed"].nunique()})')
    ax.set_xlabel('epoch')
    ax.set_ylabel('test accuracy (%)')
    ax.set_title('mnist5k: test accuracy per seed (thin) and mean (thick)')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--seeds', type=int, nargs='+', default=None, help='seeds (default 0 1 2; --quick: 0)')
    p.add_argument('--epochs', type=int, default=5)
    p.add_argument('--width', type=float, default=0.0625, help='multiplier of the widths 128, 256, 512, 512')
    p.add_argument('--T', type=int, default=60, help='free-phase iterations (--num_iterations_inference)')
    p.add_argument('--K', type=int, default=20, help='nudged-phase iterations, and the steps BPTT goes through')
    p.add_argument('--batch', type=int, default=64)
    p.add_argument('--activation', default='relu6')
    p.add_argument('--beta', type=float, default=0.1)
    p.add_argument('--lr', type=float, default=0.03, help='learning rate of every weight and bias')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--settings', nargs='+', default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument('--out', default=None, help='folder of runs.csv, summary.csv, accuracy.png and the run folders '
                                               '(default results/hopfield_resnet_compare; --quick: a temporary one)')
    p.add_argument('--quick', action='store_true', help='smoke test: one seed, dry runs')
    p.add_argument('--from-runs', nargs='+', default=None, metavar='CSV',
                   help='train nothing: the table and figure of the runs.csv of earlier invocations (e.g. settings '
                        'run in two processes), written under --out')
    a = p.parse_args(argv)
    if a.seeds is None:
        a.seeds = [0] if a.quick else [0, 1, 2]
    if a.quick:
        a.width, a.epochs = 0.03125, 1
    return a


def main(argv=None):
    a = parse(argv)
    with contextlib.ExitStack() as stack:
        out = a.out or (stack.enter_context(tempfile.TemporaryDirectory()) if a.quick else
                        os.path.join(ROOT, 'results', 'hopfield_resnet_compare'))
        os.makedirs(out, exist_ok=True)
        rows = [pd.read_csv(f) for f in a.from_runs or []]
        for setting in a.settings if a.from_runs is None else []:
            for seed in a.seeds:
                t0 = time.time()
                m, folder = run_one(command(setting, seed, a, os.path.join(out, 'runs')))
                if m is None:                       # (left out of the table: the printed line says so)
                    print(f'{setting}, seed {seed}: stopped, not in the table: {folder}', flush=True)
                    continue
                m = m.assign(setting=setting, seed=seed)
                rows.append(m)
                print(f'{setting}, seed {seed}: test acc {m["test_acc"].iloc[-1]:.2f} % after {len(m)} epochs, '
                      f'{time.time() - t0:.0f} s ({folder})', flush=True)
        if not rows:
            raise SystemExit('hopfield_resnet_compare.py: every run stopped (see the lines above); no table')
        runs = pd.concat(rows, ignore_index=True)
        runs = runs[['setting', 'seed', 'epoch', 'train_acc', 'test_acc', 'test_loss', 'epoch_seconds', 'lr']]
        table = summary(runs)
        runs.to_csv(os.path.join(out, 'runs.csv'), index=False)
        table.to_csv(os.path.join(out, 'summary.csv'), index=False)
        figure(runs, os.path.join(out, 'accuracy.png'))
        load = os.getloadavg()[0] if hasattr(os, 'getloadavg') else float('nan')
        if a.from_runs:
            print(f'\nthe runs of {", ".join(a.from_runs)} (their settings: the hyperparameters.txt of each run)')
        else:
            print(f'\nmnist5k, width {a.width}, T {a.T}, K {a.K}, batch {a.batch}, {a.activation}, β {a.beta}, '
                  f'lr {a.lr}, {a.threads} thread(s), load average {load:.2f}'
                  + (' (--quick: dry runs, numbers mean nothing)' if a.quick else ''))
        print(markdown(table))
        print(f'\nwritten: {os.path.join(out, "runs.csv")}, summary.csv, accuracy.png')
    return table


if __name__ == '__main__':
    main()

"""Time to a target test accuracy: the Laborieux et al. 2021 P_MLP and P_CNN of check/ on mnist5k (4,000 train /
1,000 test digits), trained with the paper's fixed steps and with the suite's faster relaxation settings.

The paper's settings are the command lines of check/train_mnist.sh (--model MLP) and check/train_mnist_cnn.sh
(--model CNN), read from those files, with --task mnist5k, without --check-thm (a diagnostic, not training),
--save, --todo and --device, and with --epochs, --seed, --threads 1 and a temporary --results-dir added. A setting
is that command line plus its flags (SETTINGS). Every run is `main.main(argv)` in this process: the suite's own
training, evaluation and metrics.csv; nothing is re-implemented here.

Clocks: this process's CPU time (time.process_time, one torch thread: the figure that other jobs' load inflates
least) is read when the run says `results: <folder>` (the run folder exists, data and net built) and when it says
`epoch k: …` (epoch k trained, tested and checkpointed), so a run's CPU seconds to epoch k are its training (and
test passes) without the start-up; the wall seconds are metrics.csv's cumulative `seconds`. Accuracies and free-step
counts are read from metrics.csv. A setting's time to target is the mean over its seeds of the clock at the first
epoch whose test accuracy reaches the target; its ratio is the paper setting's mean over its mean; its final
accuracy is the test accuracy after the last epoch (every run of a model trains the same epochs), compared with the
paper setting's on the seeds both ran (mean difference). A setting more than one point below the paper's final
accuracy, or one that misses the target, says so in the table. The settings:

    paper        the check/ line: fixed T1 / T2, synchronous
    tol          --tol 1e-4 --schedule async-free (free phase to tolerance, asynchronous; nudged phase synchronous)
    tol5-T2-5    tol + --tol-every 5 --T2 5
    T1-20-T2-5   --schedule async-free --T1 20 --T2 5 (fixed; the test passes run 20 steps too)
    T1-10-T2-5   --schedule async-free --T1 10 --T2 5
    paper-lr2.5  the paper's steps with every learning rate × 2.5 (the reference of the next)
    T1-20-T2-5-lr2.5   T1-20-T2-5 with every learning rate × 2.5 (the CNN at the paper's rates needs its 2 epochs to
                 reach the target; × 2 left one seed of three short of it after 1, × 3 and × 4 fell back 17–22
                 points in the second epoch on one seed); its note gives the ratio against paper-lr2.5, so that the
                 table separates what the steps give from what the rates give
    sym-delta    tol + --thirdphase --carry-delta (the symmetric estimate: another estimator than the paper's)

    python bench/time_to_accuracy.py [--models MLP CNN] [--seeds 0 1 2] [--cnn-paper-seeds 0]
        [--settings paper tol …] [--target-mlp 92] [--target-cnn 24] [--max-epochs N | --max-epochs-mlp 5
        --max-epochs-cnn 2] [--runs runs.jsonl] [--quick]

--runs FILE keeps every finished run (one JSON line each) and reuses those of the same command line: a table can be
printed again, with other targets, or assembled from invocations run one after another, without training again.
--quick is a smoke test of seconds: one seed, the paper and `tol` settings, --dry-run runs (one mini-batch, the
relaxation capped to a few steps), target 0; its numbers mean nothing.
"""
import argparse
import contextlib
import datetime
import io
import json
import os
import shlex
import statistics
import sys
import tempfile
import time

import pandas as pd
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import bench_scale                                  # noqa: E402  (load, machine: the load average and the CPU)
import main as suite                                # noqa: E402

CHECK = {'MLP': 'check/train_mnist.sh', 'CNN': 'check/train_mnist_cnn.sh'}
# flags of the check/ lines that a timed training run drops (value count): a diagnostic, saving (every run saves),
# the action (train is the default), the GPU, and the epochs (given per run)
DROP = {'--check-thm': 0, '--save': 0, '--todo': 1, '--device': 1, '--epochs': 1}
TOL = ['--tol', '1e-4', '--schedule', 'async-free']
SETTINGS = {
    'paper': [],                                               # the paper's fixed steps, synchronous
    'tol': TOL,                                                # free phase to tolerance, asynchronous free phase
    'tol5-T2-5': TOL + ['--tol-every', '5', '--T2', '5'],      # tolerance read every 5 steps, 5 nudged steps
    'sym-delta': TOL + ['--thirdphase', '--carry-delta'],     # the symmetric estimate, nudged states as s* + Δ
    'T1-20-T2-5': ['--schedule', 'async-free', '--T1', '20', '--T2', '5'],   # fixed, fewer steps (test passes too)
    'T1-15-T2-5': ['--schedule', 'async-free', '--T1', '15', '--T2', '5'],
    'T1-10-T2-5': ['--schedule', 'async-free', '--T1', '10', '--T2', '5'],
    'paper-lr2.5': [],                                         # the paper's steps, learning rates × 2.5
    'T1-20-T2-5-lr2.5': ['--schedule', 'async-free', '--T1', '20', '--T2', '5'],
}
# settings that also scale the paper's --lrs, and the setting each is compared with besides the paper's (the same
# learning rates, the paper's steps): the ratio against the paper then splits into what the steps and the rates give
LR_FACTOR = {'paper-lr2.5': 2.5, 'T1-20-T2-5-lr2.5': 2.5}
SAME_RATES = {'T1-20-T2-5-lr2.5': 'paper-lr2.5'}
DEFAULT_SETTINGS = {'MLP': ['paper', 'tol', 'tol5-T2-5', 'T1-20-T2-5', 'T1-10-T2-5', 'sym-delta'],
                    'CNN': ['paper', 'tol', 'tol5-T2-5', 'T1-20-T2-5', 'T1-10-T2-5']}
# targets: MLP, what the paper setting reaches in 3 of 5 epochs; CNN, the lowest accuracy of the paper setting's
# three seeds after its 2 epochs (24.3 %), rounded down
DEFAULT_TARGET = {'MLP': 92.0, 'CNN': 24.0}
DEFAULT_EPOCHS = {'MLP': 5, 'CNN': 2}
COLUMNS = ['model', 'setting', 'seeds', 'epochs to target', 'CPU s to target', 'wall s to target',
           '× less CPU than paper', '× less wall than paper', 'final test acc (%)', 'Δ final vs paper (points)',
           'free + nudged steps per mini-batch', 'note']


def paper_argv(model):
    """The check/ command line of `model` as a timed training run on mnist5k (see DROP), without --epochs."""
    with open(os.path.join(ROOT, CHECK[model])) as f:
        lines = [shlex.split(s) for s in f if s.startswith('python main.py')]
    argv = next(a[2:] for a in lines if a[a.index('--model') + 1] == model)
    out, i = [], 0
    while i < len(argv):
        if argv[i] in DROP:
            i += 1 + DROP[argv[i]]
            continue
        out.append(argv[i])
        if argv[i] == '--task':
            out.append('mnist5k')
            i += 1
        i += 1
    return out


def flag(argv, name):
    """The last value of a single-valued flag in argv (the one argparse keeps), or None."""
    at = [i for i, a in enumerate(argv) if a == name]
    return argv[at[-1] + 1] if at else None


def command(model, setting, seed, epochs, dry_run=False):
    """The argv of one run, without its --results-dir."""
    return (paper_argv(model) + SETTINGS[setting] + scaled_lrs(model, setting)
            + ['--epochs', str(epochs), '--seed', str(seed), '--threads', '1'] + (['--dry-run'] if dry_run else []))


def scaled_lrs(model, setting):
    """['--lrs', …] with the paper's learning rates times the setting's LR_FACTOR ([] without one)."""
    if setting not in LR_FACTOR:
        return []
    argv = paper_argv(model)
    i = argv.index('--lrs') + 1
    lrs = [float(v) for v in argv[i:next((j for j in range(i, len(argv)) if argv[j].startswith('--')), len(argv))]]
    return ['--lrs'] + [f'{LR_FACTOR[setting] * v:g}' for v in lrs]


def label(setting):
    """The table's name of a setting: its flags, and the learning-rate factor."""
    flags = ' '.join(SETTINGS[setting]) or ('paper (fixed steps)' if setting == 'paper' else 'paper steps')
    return flags + (f', learning rates × {LR_FACTOR[setting]:g}' if setting in LR_FACTOR else '')


class Stamps(io.TextIOBase):
    """A stdout that keeps each complete line with this process's CPU time and the wall clock when it ended."""

    def __init__(self):
        self.part, self.lines = '', []

    def writable(self):
        return True

    def write(self, s):
        self.part += s
        while '\n' in self.part:
            line, self.part = self.part.split('\n', 1)
            self.lines.append((line, time.process_time(), time.time()))
        return len(s)


def run_one(argv, root):
    """Train one command line through main.main in this process; its record: per epoch the test and train
    accuracy, the CPU seconds since the run folder was made, the cumulative wall seconds of metrics.csv and the
    free steps (under --tol), and the load average before and after."""
    out, err = Stamps(), io.StringIO()
    load_before, started = os.getloadavg(), datetime.datetime.now(datetime.timezone.utc)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            suite.main(argv + ['--results-dir', root])
        except SystemExit as e:
            if e.code:
                raise RuntimeError(f'python main.py {shlex.join(argv)} exited with {e.code}:\n{err.getvalue()[-2000:]}')
    folder, cpu0, cpu = None, None, {}
    for line, c, _ in out.lines:
        if line.startswith('results: ') and folder is None:
            folder, cpu0 = line[len('results: '):].strip(), c
        elif line.startswith('epoch ') and ':' in line and cpu0 is not None:
            cpu[int(line[len('epoch '):line.index(':')])] = c - cpu0
    metrics = pd.read_csv(os.path.join(folder, 'metrics.csv'))
    epochs = []
    for r in metrics.to_dict('records'):
        e = int(r['epoch'])
        epochs.append(dict(epoch=e, test_acc=float(r['test_acc']), train_acc=float(r['train_acc']),
                           cpu_s=cpu.get(e), wall_s=float(r['seconds']),
                           free_steps=float(r['free_steps_mean']) if 'free_steps_mean' in r else None))
    return dict(argv=argv, epochs=epochs, load_before=list(load_before), load_after=list(os.getloadavg()),
                date=started.strftime('%Y-%m-%d %H:%M UTC'))


def load_runs(path):
    """{command line: record} of the runs kept in `path` (JSON lines; absent: none)."""
    if not path or not os.path.exists(path):
        return {}
    with open(path) as f:
        recs = [json.loads(s) for s in f if s.strip()]
    return {shlex.join(r['argv']): r for r in recs}


def keep_run(path, rec):
    if path:
        with open(path, 'a') as f:
            f.write(json.dumps(rec) + '\n')


def reached(rec, target):
    """The first epoch's entry whose test accuracy is at least `target`, or None."""
    return next((e for e in rec['epochs'] if e['test_acc'] >= target), None)


def fmt(x, digits=0):
    return '–' if x is None else f'{x:.{digits}f}'


def mean_sd(xs, fmt='{:.1f}'):
    if not xs:
        return '–'
    if len(xs) == 1:
        return fmt.format(xs[0])
    return f'{fmt.format(statistics.mean(xs))} ± {fmt.format(statistics.stdev(xs))}'


def steps_per_batch(rec):
    """Free + nudged steps per training mini-batch, mean over the run's epochs."""
    T1, T2 = int(flag(rec['argv'], '--T1')), int(flag(rec['argv'], '--T2'))
    free = [e['free_steps'] if e['free_steps'] is not None else T1 for e in rec['epochs']]
    return statistics.mean(free) + T2


def summary(model, setting, recs, target, paper=None, same_rates=None):
    """One table row (a dict of COLUMNS) of a setting's runs; `paper`: the paper setting's row, for the ratios;
    `same_rates`: the row of the paper's steps at this setting's learning rates (SAME_RATES), for the note."""
    hits = [reached(r, target) for r in recs]
    ok = [h for h in hits if h is not None]
    cpu = [h['cpu_s'] for h in ok if h['cpu_s'] is not None]
    wall = [h['wall_s'] for h in ok]
    final = [r['epochs'][-1]['test_acc'] for r in recs]
    n_epochs = max(len(r['epochs']) for r in recs)
    row = {'model': model, 'setting': label(setting),
           'seeds': ' '.join(flag(r['argv'], '--seed') for r in recs),
           'epochs to target': mean_sd([h['epoch'] for h in ok]),
           'CPU s to target': mean_sd(cpu), 'wall s to target': mean_sd(wall),
           'final test acc (%)': f'{mean_sd(final, "{:.2f}")} (epoch {n_epochs})',
           'free + nudged steps per mini-batch': f'{statistics.mean(steps_per_batch(r) for r in recs):.1f}',
           '_cpu': statistics.mean(cpu) if cpu else None, '_wall': statistics.mean(wall) if wall else None,
           '_final': {flag(r['argv'], '--seed'): f for r, f in zip(recs, final)}}
    notes = []
    if len(ok) < len(recs):
        notes.append(f'target not reached by {len(recs) - len(ok)} of {len(recs)} seeds in {n_epochs} epochs')
    if paper is None:
        ref = '1.00×' if setting == 'paper' else '–'
        row.update({'× less CPU than paper': ref, '× less wall than paper': ref, 'Δ final vs paper (points)': ''})
    else:
        for col, key in (('× less CPU than paper', '_cpu'), ('× less wall than paper', '_wall')):
            row[col] = f'{paper[key] / row[key]:.2f}×' if paper[key] and row[key] else '–'
        delta, same = final_delta(row, paper), set(row['_final']) & set(paper['_final'])
        row['Δ final vs paper (points)'] = f'{delta:+.2f}' + ('' if same else ' (no common seed)')
        if delta < -1.0:
            notes.append(f'trades accuracy for speed: {-delta:.1f} points below the paper setting')
    if same_rates is not None and same_rates['_cpu'] and row['_cpu']:
        notes.append(f"against the paper's steps at the same learning rates: {same_rates['_cpu'] / row['_cpu']:.2f}× "
                     f"less CPU, final {final_delta(row, same_rates):+.2f} points")
    row['note'] = '; '.join(notes)
    return row


def final_delta(row, ref):
    """Mean final accuracy of `row` minus `ref`'s, paired over the seeds both ran (all seeds if none is common)."""
    same = [k for k in row['_final'] if k in ref['_final']]
    mine, theirs = ([d[k] for k in same] if same else list(d.values()) for d in (row['_final'], ref['_final']))
    return statistics.mean(mine) - statistics.mean(theirs)


def markdown(rows, columns):
    out = ['| ' + ' | '.join(columns) + ' |', '|' + '---|' * len(columns)]
    out += ['| ' + ' | '.join(str(r[c]) for c in columns) + ' |' for r in rows]
    return '\n'.join(out)


def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--models', nargs='+', choices=list(CHECK), default=list(CHECK))
    ap.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    ap.add_argument('--cnn-paper-seeds', nargs='+', type=int, default=None,
                    help="seeds of the CNN's paper setting (default: --seeds; its epochs cost minutes of CPU each)")
    ap.add_argument('--settings', nargs='+', choices=list(SETTINGS), default=None,
                    help='settings to run (default: MLP ' + ' '.join(DEFAULT_SETTINGS['MLP']) + '; CNN '
                         + ' '.join(DEFAULT_SETTINGS['CNN']) + '); without paper the ratios are left out')
    ap.add_argument('--target-mlp', type=float, default=DEFAULT_TARGET['MLP'], help='target test accuracy (%%)')
    ap.add_argument('--target-cnn', type=float, default=DEFAULT_TARGET['CNN'], help='target test accuracy (%%)')
    ap.add_argument('--max-epochs', type=int, default=None, help='epochs of every run (both models)')
    ap.add_argument('--max-epochs-mlp', type=int, default=None, help=f'default {DEFAULT_EPOCHS["MLP"]}')
    ap.add_argument('--max-epochs-cnn', type=int, default=None, help=f'default {DEFAULT_EPOCHS["CNN"]}')
    ap.add_argument('--runs', default=None, help='JSON-lines file of finished runs: reused, and appended to')
    ap.add_argument('--quick', action='store_true', help='smoke test: one seed, dry runs, target 0')
    a = ap.parse_args(argv)
    for m in CHECK:
        given = getattr(a, f'max_epochs_{m.lower()}')
        setattr(a, f'max_epochs_{m.lower()}', given or a.max_epochs or DEFAULT_EPOCHS[m])
    if a.quick:
        a.seeds, a.cnn_paper_seeds, a.settings = a.seeds[:1], None, ['paper', 'tol']
        a.target_mlp = a.target_cnn = 0.0
        a.max_epochs_mlp = a.max_epochs_cnn = 1
    for name in ('max_epochs_mlp', 'max_epochs_cnn'):
        if getattr(a, name) < 1:
            ap.error(f'--{name.replace("_", "-")} {getattr(a, name)}: must be at least 1')
    return a


def main(argv=None):
    a = parse(sys.argv[1:] if argv is None else argv)
    given = 'python bench/time_to_accuracy.py ' + shlex.join(sys.argv[1:] if argv is None else argv)
    kept = load_runs(a.runs)
    torch.set_num_threads(1)                        # as every run's --threads 1
    print(f'{given}\n{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; {bench_scale.machine()}; '
          f'load average (1 / 5 / 15 min) {bench_scale.load()}', flush=True)
    plan = []                                       # seed by seed, the settings interleaved (the load falls alike)
    for m in a.models:
        epochs, settings = getattr(a, f'max_epochs_{m.lower()}'), a.settings or DEFAULT_SETTINGS[m]
        for seed in dict.fromkeys(a.seeds + (a.cnn_paper_seeds or [])):
            for s in settings:
                seeds = a.cnn_paper_seeds if (m == 'CNN' and s == 'paper' and a.cnn_paper_seeds) else a.seeds
                if seed in seeds:
                    plan.append((m, s, command(m, s, seed, epochs, a.quick)))
    runs = {}
    with tempfile.TemporaryDirectory(prefix='tta-') as tmp:
        for m, s, argv in plan:
            key = shlex.join(argv)
            if key not in kept:
                t0 = time.time()
                kept[key] = run_one(argv, tmp)
                keep_run(a.runs, kept[key])
                r = kept[key]
                print(f'  {m} {s} seed {flag(argv, "--seed")}: test acc '
                      + ' / '.join(f'{e["test_acc"]:.1f}' for e in r['epochs'])
                      + f', CPU s {fmt(r["epochs"][-1]["cpu_s"], 1)}, wall s {time.time() - t0:.0f}', flush=True)
            runs.setdefault((m, s), []).append(kept[key])
    rows = []
    for m in a.models:
        target = getattr(a, f'target_{m.lower()}')
        paper = summary(m, 'paper', runs[(m, 'paper')], target) if (m, 'paper') in runs else None
        rows += [paper] if paper else []
        alone = {s: summary(m, s, recs, target) for (mm, s), recs in runs.items() if mm == m}  # for SAME_RATES
        rows += [summary(m, s, recs, target, paper, alone.get(SAME_RATES.get(s)))
                 for (mm, s), recs in runs.items() if mm == m and s != 'paper']
    print('\nTargets: ' + ', '.join(f'{m} {getattr(a, f"target_{m.lower()}"):g} %' for m in a.models)
          + '. Time to target: mean (± sd) over the seeds that reached it; CPU s: this process, one thread, from the '
            'run folder to the epoch line (training and test passes); wall s: metrics.csv. Final: after the last '
            'epoch; Δ: mean over the seeds both settings ran.\n')
    print(markdown(rows, COLUMNS))
    print('\nPer run (test accuracy % / CPU s / wall s per epoch, cumulative; load average 1 min before → after):\n')
    per = []
    for (m, s), recs in runs.items():
        for r in recs:
            per.append({'model': m, 'setting': s, 'seed': flag(r['argv'], '--seed'), 'date': r['date'],
                        'epochs': '; '.join(f'{e["test_acc"]:.1f} / {fmt(e["cpu_s"], 1)} / {e["wall_s"]:.1f}'
                                            for e in r['epochs']),
                        'load': f'{r["load_before"][0]:.1f} → {r["load_after"][0]:.1f}'})
    print(markdown(per, ['model', 'setting', 'seed', 'date', 'epochs', 'load']))
    print(f'\nload average at the end {bench_scale.load()}', flush=True)
    return rows


if __name__ == '__main__':
    main()

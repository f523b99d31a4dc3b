"""Threads: the default thread count against --threads 1 and 2, with and without busy processes beside.

    python bench/bench_threads.py [--reps 3] [--busy 0 2]

Rows: the README's main job for one epoch (P-1h with its BPTT twin, --benchmark, mnist5k; wall seconds of the whole
command) and one P_CNN mini-batch (32-64 channels, batch 100, T1 200 / T2 10, symmetric EP: the check/ CNN setting;
wall seconds of the mini-batch after one warm-up). Each measurement is a fresh process; the threads tried are
interleaved, and `--busy N` runs N busy-looping processes beside them (a loaded machine). "default" is what the
suite picks without --threads (suite.cli.threads_for).
"""
import argparse
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN_JOB = ['main.py', '--action', 'train', '--discrete', '--size_tab', '10', '512', '784', '--lr_tab', '0.04', '0.08',
            '--epochs', '1', '--T', '40', '--Kmax', '15', '--beta', '0.1', '--benchmark', '--dataset', 'mnist5k',
            '--seed', '0']
CNN_BATCH = r'''
import sys, time, torch
sys.path.insert(0, {root!r})
from suite import cli
from ep import estimators
from papers.laborieux2021.nets import P_CNN
threads = {threads!r}
torch.set_num_threads(cli.threads_for(True, 100) if threads is None else threads)
torch.manual_seed(0)
net = P_CNN(28, 1, [32, 64], [5, 5], [1, 1], [1, 1], 'mm', [10], 200, 10, 0.5, 'mysig', 'cel', softmax=True)
x, y = torch.rand(100, 1, 28, 28), net.target(torch.randint(0, 10, (100,)))
est = estimators.Symmetric(0.5)
est(net, x, y)
t0 = time.perf_counter()
est(net, x, y)
print(time.perf_counter() - t0, torch.get_num_threads())
'''


def busy():
    while True:
        pass


# the suite's own default is measured: an OMP_NUM_THREADS of the caller's shell would override it
ENV = {k: v for k, v in os.environ.items() if k != 'OMP_NUM_THREADS'}


def main_job(threads, tmp):
    """(wall seconds, the thread count its hyperparameters.txt records) of one run in a folder of its own."""
    flag = [] if threads is None else ['--threads', str(threads)]
    out = tempfile.mkdtemp(dir=tmp)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable] + MAIN_JOB + flag + ['--results-dir', out], cwd=ROOT, capture_output=True,
                       text=True, env=ENV)
    if r.returncode:
        raise SystemExit(f'bench_threads.py: error: the main job failed: {r.stderr[-300:]}')
    hyper = next(os.path.join(f, 'hyperparameters.txt') for f, _, names in os.walk(out)
                 if 'hyperparameters.txt' in names)
    chosen = next((ln.split(': ')[1].strip() for ln in open(hyper) if ln.startswith('- threads:')), '?')
    return time.perf_counter() - t0, chosen


def cnn_batch(threads):
    r = subprocess.run([sys.executable, '-c', CNN_BATCH.format(root=ROOT, threads=threads)], capture_output=True,
                       text=True, env=ENV)
    if r.returncode:
        raise SystemExit(f'bench_threads.py: error: the CNN mini-batch failed: {r.stderr[-300:]}')
    seconds, chosen = r.stdout.split()
    return float(seconds), chosen


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--reps', type=int, default=3)
    ap.add_argument('--busy', type=int, nargs='+', default=[0, 2])
    a = ap.parse_args()
    print(f'{"work":12s} {"busy":>4s} {"threads":>8s} {"chosen":>6s} {"median s":>9s} {"vs 1 thread":>11s}  load')
    for n_busy in a.busy:
        procs = [mp.Process(target=busy, daemon=True) for _ in range(n_busy)]
        for p in procs:
            p.start()
        try:
            for name, fn in (('main job', None), ('CNN batch', cnn_batch)):
                times = {1: [], 2: [], None: []}
                chosen = {}
                with tempfile.TemporaryDirectory() as tmp:
                    for _ in range(a.reps):
                        for t in times:
                            s, c = main_job(t, tmp) if fn is None else fn(t)
                            times[t].append(s)
                            chosen[t] = c
                one = statistics.median(times[1])
                for t, ts in times.items():
                    m = statistics.median(ts)
                    print(f'{name:12s} {n_busy:4d} {"default" if t is None else t:>8} {chosen[t]:>6} {m:9.2f} '
                          f'{m / one:11.2f}  {os.getloadavg()[0]:.1f}', flush=True)
        finally:
            for p in procs:
                p.terminate()


if __name__ == '__main__':
    main()

"""Start-up: how long after `python -c "import torch"` a command prints. Interleaved repetitions, medians.

    python bench/bench_startup.py [--reps 3]

Rows: `import torch` alone; `python main.py --help` (to exit); and, per paper, a --dry-run command's time to its first
printed line (`results: <folder>`, said once the run folder exists) and to its exit. Each command runs in a fresh
process from the repository root, with --threads 1; dry-run folders go to a temporary --results-dir.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
DRY = ['--dry-run', '--threads', '1', '--seed', '0']
COMMANDS = {
    'Ernoult 2019 (P-1h)': ['main.py', '--action', 'train', '--discrete', '--size_tab', '10', '512', '784', '--lr_tab',
                            '0.04', '0.08', '--T', '40', '--Kmax', '15', '--beta', '0.1', '--dataset', 'mnist5k'],
    'Laborieux 2021 (P_MLP)': ['main.py', '--model', 'MLP', '--task', 'mnist5k', '--archi', '784', '512', '10',
                               '--lrs', '0.1', '0.05', '--thirdphase'],
    'binary EP (fc)': ['main.py', '--archi', 'fc', '--layersList', '784', '64', '10', '--gamma', '1e-5', '1e-4',
                       '--gradThreshold', '5e-7', '5e-7', '--lrBias', '0.025', '0.05', '--dataset', 'mnist5k'],
    'EPLCANet': ['main.py', '--model', 'EPLCACNN', '--task', 'mnist5k', '--channels', '4', '4', '8', '--kernels', '5',
                 '5', '--paddings', '0', '0', '0', '--strides', '1', '1', '1', '--lrs', '0.05', '0.05', '0.02',
                 '--pools', 'imm', '--betas', '0.0', '0.2', '--softmax', '--loss', 'cel'],
    'Nest 2024 (Hydra)': ['main.py', '--config-name=splitting_small', 'model=splitting_small_3block',
                          'data=mnist5k'],
    'Wu 2024 (S4.1)': ['S4.1-mnist-FCN.py', '--SETTING', 'FP SGD', '--tau', '0.6'],
}


def timed(argv, first_line=False):
    """(seconds to the first stdout line or None, seconds to exit) of `python argv…` run from the root."""
    t0 = time.perf_counter()
    p = subprocess.Popen([PY] + argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    first = None
    for line in p.stdout:
        if first is None and line.strip():
            first = time.perf_counter() - t0
    p.wait()
    if p.returncode != 0:
        raise SystemExit(f'bench_startup.py: error: {" ".join(argv)} exited {p.returncode}')
    return first, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--reps', type=int, default=3)
    a = ap.parse_args()
    if a.reps < 1:
        ap.error('--reps: give at least 1')
    rows = {'import torch': [], 'main.py --help': []}
    rows.update({name: [] for name in COMMANDS})
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(a.reps):                     # interleaved: a load change affects every row alike
            rows['import torch'].append((None, timed(['-c', 'import torch'])[1]))
            rows['main.py --help'].append((None, timed(['main.py', '--help'])[1]))
            for name, argv in COMMANDS.items():
                rows[name].append(timed(argv + DRY + ['--results-dir', tmp], first_line=True))
    torch_s = statistics.median(t for _, t in rows['import torch'])
    print(f'{"command":28s} {"first line s":>13s} {"− torch s":>10s} {"exit s":>8s}   (medians of {a.reps})')
    for name, ts in rows.items():
        first = [f for f, _ in ts if f is not None]
        f = statistics.median(first) if first else None
        end = statistics.median(t for _, t in ts)
        shown = f if f is not None else end
        print(f'{name:28s} {"" if f is None else f"{f:13.2f}":>13s} {shown - torch_s:10.2f} {end:8.2f}')
    print(f'load average (1 min) at the end: {os.getloadavg()[0]:.2f}')


if __name__ == '__main__':
    main()

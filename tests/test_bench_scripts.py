"""bench/ scripts: time_to_accuracy.py (its command lines are check/'s, its --quick smoke run prints the table, and the
table's reading of the runs (time to target, ratios, accuracy notes)."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'bench'))
import time_to_accuracy as tta                      # noqa: E402


def test_paper_argv_is_the_check_line_on_mnist5k():
    assert tta.paper_argv('MLP') == [
        '--model', 'MLP', '--task', 'mnist5k', '--archi', '784', '512', '10', '--optim', 'adam', '--lrs', '5e-4',
        '5e-4', '--act', 'mysig', '--betas', '0.0', '0.1', '--T1', '30', '--T2', '10', '--mbs', '50']
    cnn = tta.paper_argv('CNN')
    assert cnn[:4] == ['--model', 'CNN', '--task', 'mnist5k']
    assert tta.flag(cnn, '--T1') == '200' and tta.flag(cnn, '--T2') == '10' and tta.flag(cnn, '--mbs') == '100'
    assert not {'--device', '--todo', '--epochs', '--save', '--check-thm'} & set(cnn)
    argv = tta.command('CNN', 'tol5-T2-5', 2, 3)
    assert tta.flag(argv, '--T2') == '5' and tta.flag(argv, '--seed') == '2' and tta.flag(argv, '--threads') == '1'


def record(seed, accs, cpu, T2='10', free=None):
    argv = ['--T1', '30', '--T2', T2, '--seed', str(seed)]
    return dict(argv=argv, epochs=[dict(epoch=i + 1, test_acc=a, cpu_s=c, wall_s=2 * c, free_steps=free)
                                   for i, (a, c) in enumerate(zip(accs, cpu))])


def test_summary_time_to_target_ratio_and_notes():
    paper = tta.summary('MLP', 'paper', [record(0, [80, 90, 93], [10, 20, 30]),
                                          record(1, [90, 91, 93], [10, 20, 30])], 90)
    assert paper['epochs to target'] == '1.5 ± 0.7' and paper['_cpu'] == 15 and paper['_final'] == {'0': 93, '1': 93}
    assert paper['free + nudged steps per mini-batch'] == '40.0'
    fast = tta.summary('MLP', 'tol', [record(0, [80, 90, 91.5], [2, 4, 6], free=10.0),
                                      record(1, [80, 85, 89.5], [2, 4, 6], free=10.0)], 90, paper)
    assert fast['× less CPU than paper'] == '3.75×' and fast['× less wall than paper'] == '3.75×'
    assert fast['Δ final vs paper (points)'] == '-2.50' and fast['free + nudged steps per mini-batch'] == '20.0'
    assert 'target not reached by 1 of 2 seeds' in fast['note'] and 'trades accuracy' in fast['note']


def test_a_learning_rate_factor_scales_the_paper_rates_and_is_compared_at_the_same_rates():
    argv = tta.command('CNN', 'T1-20-T2-5-lr2.5', 0, 2)
    assert tta.flag(argv, '--T1') == '20'
    last = len(argv) - 1 - argv[::-1].index('--lrs')                   # argparse keeps the last --lrs
    assert [float(v) for v in argv[last + 1:last + 4]] == [1.25e-4, 2.5e-5, 2e-5] and argv[last + 4] == '--epochs'
    assert tta.command('CNN', 'T1-20-T2-5', 0, 2).count('--lrs') == 1
    paper = tta.summary('CNN', 'paper', [record(0, [20, 27], [170, 340])], 24)
    same = tta.summary('CNN', 'paper-lr2.5', [record(0, [30, 35], [170, 340])], 24, paper)
    fast = tta.summary('CNN', 'T1-20-T2-5-lr2.5', [record(0, [30, 34], [20, 40])], 24, paper, same)
    assert fast['× less CPU than paper'] == '17.00×' and same['× less CPU than paper'] == '2.00×'
    assert "against the paper's steps at the same learning rates: 8.50× less CPU, final -1.00 points" in fast['note']
    assert fast['setting'].endswith('learning rates × 2.5') and same['setting'] == 'paper steps, learning rates × 2.5'


def test_quick_prints_the_table():
    r = subprocess.run([sys.executable, 'bench/time_to_accuracy.py', '--quick'], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.splitlines()
    head = next(i for i, s in enumerate(lines) if s.startswith('| model | setting |'))
    assert [c.strip() for c in lines[head].strip('|').split('|')] == tta.COLUMNS
    rows = [[c.strip() for c in s.strip('|').split('|')] for s in lines[head + 2:head + 6]]
    assert [(r[0], r[1]) for r in rows] == [('MLP', 'paper (fixed steps)'),
                                            ('MLP', '--tol 1e-4 --schedule async-free'),
                                            ('CNN', 'paper (fixed steps)'),
                                            ('CNN', '--tol 1e-4 --schedule async-free')]
    assert all(r[3] == '1.0' and r[4] != '–' and r[6].endswith('×') for r in rows)
    assert 'load average' in r.stdout and 'Per run' in r.stdout


def test_hopfield_resnet_compare_quick_prints_the_table(tmp_path):
    """bench/hopfield_resnet_compare.py --quick: four dry-run trainings, the table, runs.csv, summary.csv and
    the figure; --from-runs rebuilds the table from that runs.csv."""
    r = subprocess.run([sys.executable, 'bench/hopfield_resnet_compare.py', '--quick', '--threads', '1', '--out',
                        str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.splitlines()
    head = next(i for i, s in enumerate(lines) if s.startswith('| setting |'))
    rows = [[c.strip() for c in s.strip('|').split('|')] for s in lines[head + 2:head + 6]]
    assert [row[0] for row in rows] == ['Hopfield-ResNet13 (EP)', 'VGG5 (EP)', 'VGG5 (EP, hard-sigmoid, gains ×√3)',
                                        'Hopfield-ResNet13 (BPTT)']
    for name in ('runs.csv', 'summary.csv', 'accuracy.png'):
        assert (tmp_path / name).is_file(), name
    again = subprocess.run([sys.executable, 'bench/hopfield_resnet_compare.py', '--from-runs', str(tmp_path / 'runs.csv'),
                            '--out', str(tmp_path / 'merged')], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (tmp_path / 'merged' / 'summary.csv').read_text() == (tmp_path / 'summary.csv').read_text()


def test_bench_graph_quick_times_both_forms():
    """bench/bench_graph.py --quick: P_CNN and its energy-graph form, both schedules, equal float64 estimates."""
    r = subprocess.run([sys.executable, 'bench/bench_graph.py', '--quick'], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [s for s in r.stdout.splitlines() if s.startswith('L-CNN')]
    assert len(lines) == 2 and all('graph / P_CNN' in s for s in lines)
    assert all(float(s.split('differ by ')[1].split()[0]) < 1e-8 for s in lines)


def test_hopfield_resnet_compare_goes_on_past_a_stopped_run(tmp_path):
    """A run the suite stops (non-finite values, here from a learning rate of 1e30) is said in one line and left
    out of the table (the script goes on with the next run); with no run left, one line and exit 1."""
    r = subprocess.run([sys.executable, 'bench/hopfield_resnet_compare.py', '--quick', '--threads', '1', '--lr', '1e30',
                        '--out', str(tmp_path), '--settings', 'VGG5 (EP)'], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 1 and 'VGG5 (EP), seed 0: stopped, not in the table: main.py: non-finite' in r.stdout
    assert r.stderr.strip().endswith('every run stopped (see the lines above); no table')


def test_gpu_precision_bench_refuses_a_machine_without_cuda_and_runs_small_on_one():
    """bench/gpu_precision.py (float32 / TF32 / bf16 × CUDA graphs on the CIFAR-10 P_CNN): without a CUDA device one
    line and exit 2; with one, a tiny run prints its six rows."""
    import torch
    cmd = [sys.executable, os.path.join(ROOT, 'bench', 'gpu_precision.py')]
    if torch.cuda.is_available():
        cmd += ['--batch', '2', '--T1', '3', '--T2', '2', '--reps', '1', '--warmup', '0']
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    if torch.cuda.is_available():
        assert out.returncode == 0, out.stderr
        assert sum(line.startswith('| bf16') or line.startswith('| tf32') or line.startswith('| float32')
                   for line in out.stdout.splitlines()) == 6
    else:
        assert out.returncode == 2 and out.stdout == ''
        assert out.stderr.strip().splitlines() == [
            'gpu_precision.py: error: needs a CUDA device (none here); run it on a machine with a GPU']


def test_bench_engine_in_blocks_times_both_paths_and_refuses_a_block_of_zero():
    """bench/bench_engine.py --block N: both paths timed (a ratio line, the gradients compared), and a block below 1
    is one argparse line, exit 2."""
    cmd = [sys.executable, 'bench/bench_engine.py', '--config', 'P-1h', '--quick', '--reps', '3', '--warmup', '0',
           '--threads', '1']
    r = subprocess.run(cmd + ['--block', '2'], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'alternating every 2 mini-batch(es)' in r.stdout
    row = next(s.split() for s in r.stdout.splitlines() if s.startswith('P-1h'))
    assert row[6].endswith("x") and float(row[6][:-1]) > 0 and float(row[7]) < 1e-4     # ratio; max |Δgrad|
    bad = subprocess.run(cmd + ['--block', '0'], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and '--block 0' in bad.stderr and 'Traceback' not in bad.stderr

"""Bad input ends with one clear line naming the flag or folder, exit code 2, no traceback, nothing written."""
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, run_main

P1H = ['--action', 'train', '--discrete', '--size_tab', '10', '512', '784', '--lr_tab', '0.04', '0.08',
       '--epochs', '1', '--T', '40', '--Kmax', '15', '--beta', '0.1']

BAD = {
    'lr_tab length': (['--action', 'train', '--size_tab', '10', '512', '784', '--lr_tab', '0.1'], '--lr_tab'),
    'unknown activation': (P1H + ['--activation-function', 'relu'], '--activation-function'),
    'T < Kmax': (['--action', 'plotcurves', '--size_tab', '10', '64', '784', '--T', '5', '--Kmax', '10'], '--T'),
    'absent dataset': (P1H + ['--data-root', '/nonexistent/mnist'], '/nonexistent/mnist'),
    'bad size_tab': (['--action', 'train', '--size_tab', '10', '512', '100', '--lr_tab', '1', '1'], '--size_tab'),
    'unknown flag': (P1H + ['--nonsense', '3'], '--nonsense'),
    'unknown dataset': (P1H + ['--dataset', 'imagenet'], '--dataset'),
}


@pytest.mark.parametrize('case', list(BAD))
def test_bad_input(case, tmp_path, capsys):
    argv, flag = BAD[case]
    code, _ = run_main(argv + ['--results-dir', str(tmp_path / 'results')])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith('main.py: error:') and flag in err, err
    assert not os.path.exists(tmp_path / 'results') or not any(os.scandir(tmp_path / 'results'))


def test_bad_input_from_the_shell(tmp_path):
    r = subprocess.run([sys.executable, 'main.py', '--action', 'train', '--size_tab', '10', '512', '784',
                        '--lr_tab', '0.1', '--results-dir', str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2
    assert 'Traceback' not in r.stderr and '--lr_tab' in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_training_method_aliases_and_todo_alias():
    import main
    p = main.build_parser()
    for name in ('EP', 'eqprop', 'BPTT'):
        assert p.parse_args(['--training-method', name]).training_method == name
    assert p.parse_args(['--todo', 'receipe']).action == 'receipe'


def test_help_is_readable():
    import main
    text = main.build_parser().format_help()
    assert '--size_tab' in text and '--lr_tab' in text and '--dry-run' in text


def test_default_threads_follow_the_work_and_the_tasks_runnable_now(monkeypatch):
    """One thread for fully connected nets and small conv batches; a conv batch of 32 or more gets the CPUs that no
    other task is running on now (the 1-minute load average only where /proc/loadavg cannot be read): a process that
    ended a moment ago, still in the average, does not cost the next command its second thread."""
    from suite import cli
    monkeypatch.setattr(cli.os, 'sched_getaffinity', lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(cli.os, 'getloadavg', lambda: (1.2, 1.0, 1.0))
    for others, expected in ((0, 2), (1, 1), (3, 1)):
        monkeypatch.setattr(cli, 'runnable_others', lambda others=others: others)
        assert cli.threads_for(True, 100) == expected
        assert cli.threads_for(False, 100) == 1 and cli.threads_for(True, 16) == 1
    monkeypatch.setattr(cli, 'runnable_others', lambda: None)
    assert cli.threads_for(True, 100) == 1                    # round(2 − 1.2) = 1
    monkeypatch.setattr(cli.os, 'getloadavg', lambda: (0.1, 0.1, 0.1))
    assert cli.threads_for(True, 100) == 2


def test_runnable_others_reads_proc_loadavg(monkeypatch, tmp_path):
    """The running count of /proc/loadavg minus this process, the median of the samples; None without the file."""
    from suite import cli
    reads = iter(['0.5 0.4 0.3 3/200 1\n', '0.5 0.4 0.3 1/200 1\n', '0.5 0.4 0.3 2/200 1\n'])
    real_open = open

    def fake_open(path, *a, **kw):
        if path == '/proc/loadavg':
            f = tmp_path / 'loadavg'
            f.write_text(next(reads))
            return real_open(f, *a, **kw)
        return real_open(path, *a, **kw)
    monkeypatch.setattr('builtins.open', fake_open)
    assert cli.runnable_others(samples=3, gap=0) == 1          # counts 2, 0, 1 → median 1
    def no_proc(path, *a, **kw):
        if path == '/proc/loadavg':
            raise FileNotFoundError(path)
        return real_open(path, *a, **kw)
    monkeypatch.setattr('builtins.open', no_proc)
    assert cli.runnable_others(samples=2, gap=0) is None


def test_omp_num_threads_in_the_environment_wins_over_the_default(monkeypatch):
    from suite import cli
    monkeypatch.setattr(cli, 'threads_for', lambda conv, batch: 2)
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    torch.set_num_threads(1)
    assert cli.default_threads(None, True, 100) == 1
    monkeypatch.delenv('OMP_NUM_THREADS')
    assert cli.default_threads(None, True, 100) == 2
    assert cli.default_threads(3, True, 100) == 2           # --threads given: applied elsewhere, not changed here


def test_gpu_options_check_the_device_and_set_the_tf32_switches():
    """suite.cli.gpu_options: tf32, bf16 and --cuda-graphs are usage errors on the CPU, float32 is accepted there;
    on a CUDA device (a torch.device: nothing runs on it) --cuda-graphs with --tol is refused, and --precision sets
    torch's TF32 switches of products and convolutions (float32 and bf16 off, tf32 on)."""
    from suite.cli import UsageError, gpu_options
    cpu, cuda = torch.device('cpu'), torch.device('cuda')
    for precision, graphs, flag in (('tf32', False, '--precision tf32'), ('bf16', False, '--precision bf16'),
                                    (None, True, '--cuda-graphs')):
        with pytest.raises(UsageError, match=flag):
            gpu_options(cpu, precision, graphs)
    gpu_options(cpu, 'float32')
    with pytest.raises(UsageError, match='--tol'):
        gpu_options(cuda, None, True, tol=1e-4)
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        for precision, tf32 in (('tf32', True), ('float32', False), ('bf16', False)):
            gpu_options(cuda, precision)
            assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (tf32, tf32)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved

"""suite/entry.run, the wrapper of every entry (main.py's papers, the Nest & Ernoult 2024 Hydra lines, Wu et al.
2024's scripts): each fault is one line on stderr with its exit code and no traceback, and nothing is half-written;
run.log and runs.csv keep the run's output and its row; unknown flags get a suggestion; plotFunctions.py --compare
overlays runs."""
import errno
import os
import socket
import subprocess
import sys

import pandas as pd
import pytest
import torch

from conftest import ROOT, run_main
from suite import rundir
from suite import trainer

ERNOULT = ['--action', 'train', '--discrete', '--size_tab', '10', '32', '784', '--lr_tab', '0.04', '0.08',
           '--epochs', '1', '--T', '8', '--Kmax', '3', '--beta', '0.1', '--dataset', 'mnist5k', '--seed', '1']
LABORIEUX = ['--model', 'MLP', '--task', 'mnist5k', '--archi', '784', '16', '10', '--lrs', '0.05', '0.02',
             '--T1', '6', '--T2', '3', '--mbs', '200', '--betas', '0.0', '0.2', '--seed', '4']
NEST = ['--config-name=gdd', 'data=mnist5k', '--dry-run']
WU = ['--dataset', 'mnist5k', '--dry-run', '--seed', '0']                     # S4.1-mnist-FCN.py


def run_wu(argv, script='S4.1-mnist-FCN'):
    """A Wu et al. 2024 script in-process; returns (exit code, folder or None)."""
    from papers import wu2024
    try:
        return 0, wu2024.main(script, argv)
    except SystemExit as e:
        return e.code, None


ENTRIES = {'main.py': (lambda argv: run_main(ERNOULT + ['--dry-run'] + argv), 'main.py'),
           'nest': (lambda argv: run_main(NEST + argv), 'main.py'),
           'wu': (lambda argv: run_wu(WU + argv), 'S4.1-mnist-FCN.py')}


def one_line(capsys, prog='main.py'):
    """The single line the entry wrote on stderr (progress bars aside), with no traceback."""
    err = capsys.readouterr().err
    assert 'Traceback' not in err and 'During handling' not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith(prog)]
    assert len(lines) == 1, err
    return lines[0]


def files_under(path):
    return sorted(os.path.relpath(os.path.join(d, f), path) for d, _, fs in os.walk(path) for f in fs)


# ---------------------------------------------------------------------------------------------------------------
# --threads and --results-dir: checked in one place for every entry, before anything is written

@pytest.mark.parametrize('entry', list(ENTRIES))
def test_threads_below_one_is_refused_by_every_entry(entry, tmp_path, capsys):
    run, prog = ENTRIES[entry]
    code, _ = run(['--threads', '-1', '--results-dir', str(tmp_path)])
    line = one_line(capsys, prog)
    assert code == 2 and line.startswith(f'{prog}: error: --threads -1'), line
    assert files_under(tmp_path) == []


def _not_a_folder(tmp_path):
    (tmp_path / 'f').write_text('keep me')
    return str(tmp_path / 'f')


RESULTS_DIRS = {'a file': _not_a_folder,
                'under a file': lambda tmp_path: os.path.join(_not_a_folder(tmp_path), 'results'),
                'under /proc': lambda tmp_path: '/proc/no-results-here'}


@pytest.mark.parametrize('where', list(RESULTS_DIRS))
@pytest.mark.parametrize('entry', list(ENTRIES))
def test_a_results_dir_that_cannot_hold_results_is_one_line(entry, where, tmp_path, capsys):
    run, prog = ENTRIES[entry]
    given = RESULTS_DIRS[where](tmp_path)
    code, _ = run(['--results-dir', given])
    line = one_line(capsys, prog)
    assert code == 2 and line.startswith(f'{prog}: error: --results-dir {given}: '), line
    assert 'give a folder' in line
    assert files_under(tmp_path) == ([] if where == 'under /proc' else ['f'])
    if where != 'under /proc':
        assert (tmp_path / 'f').read_text() == 'keep me'


def test_an_unwritable_results_dir_is_one_line(tmp_path, monkeypatch, capsys):
    """(Tests run as root, whom permission bits do not stop: the write test itself is made to fail.)"""
    import tempfile

    def refuse(*a, **kw):
        raise PermissionError(errno.EACCES, 'Permission denied')
    monkeypatch.setattr(tempfile, 'mkstemp', refuse)
    code, _ = run_main(ERNOULT + ['--dry-run', '--results-dir', str(tmp_path)])
    line = one_line(capsys)
    assert code == 2 and 'not writable (Permission denied)' in line and '--results-dir' in line, line
    monkeypatch.undo()
    assert files_under(tmp_path) == []


# ---------------------------------------------------------------------------------------------------------------
# A write that fails during a run (a full disk): one line naming the folder, every file whole

def _failing_save(monkeypatch, error, at=2):
    """torch.save raises `error` from its `at`-th call on (the checkpoint after epoch 1; the one before it is fine)."""
    real, calls = torch.save, []

    def save(obj, f, *a, **kw):
        calls.append(f)
        if len(calls) >= at:
            with open(f, 'wb') as out:                  # half a file, as a full disk leaves it
                out.write(b'PK\x03\x04 half')
            raise error
        return real(obj, f, *a, **kw)
    monkeypatch.setattr(torch, 'save', save)


@pytest.mark.parametrize('error', [OSError(errno.ENOSPC, 'No space left on device'),
                                   RuntimeError('[enforce fail at inline_container.cc:672] . unexpected pos 704 vs '
                                                '598')], ids=['OSError', 'torch zip writer'])
def test_a_full_disk_mid_run_is_one_line_and_leaves_whole_files(error, tmp_path, monkeypatch, capsys):
    _failing_save(monkeypatch, error)
    code, _ = run_main(ERNOULT + ['--results-dir', str(tmp_path)])
    line = one_line(capsys)
    monkeypatch.undo()
    (folder,) = {os.path.dirname(os.path.join(tmp_path, f)) for f in files_under(tmp_path) if f.endswith('run.log')}
    assert code == 1 and line.startswith(f'main.py: error: writing to {folder} failed ('), line
    assert ('No space left on device' if isinstance(error, OSError) else 'torch.save could not write') in line
    assert line.endswith(f'resumes from its last complete checkpoint with python main.py --load-path {folder}')
    assert not [f for f in os.listdir(folder) if f.endswith('.tmp')]          # no temporary file left behind
    assert torch.load(os.path.join(folder, 'checkpoint_EP.pt'), weights_only=False)['epoch'] == 0
    runs = pd.read_csv(tmp_path / 'runs.csv')
    assert list(runs['status']) == ['failed']
    assert open(os.path.join(folder, 'run.log')).read().splitlines()[-1] == line


def test_atomic_writes_keep_the_previous_file(tmp_path, monkeypatch):
    rundir.save({'epoch': 1}, str(tmp_path / 'c.pt'))
    _failing_save(monkeypatch, OSError(errno.ENOSPC, 'No space left on device'), at=1)
    with pytest.raises(OSError):
        rundir.save({'epoch': 2}, str(tmp_path / 'c.pt'))
    monkeypatch.undo()
    assert torch.load(tmp_path / 'c.pt')['epoch'] == 1 and os.listdir(tmp_path) == ['c.pt']


# ---------------------------------------------------------------------------------------------------------------
# Ctrl-C and non-finite stops: their lines, exit codes and runs.csv statuses

def test_ctrl_c_before_the_folder_exists(tmp_path, monkeypatch, capsys):
    import main

    def interrupt(*a, **kw):
        raise KeyboardInterrupt
    monkeypatch.setattr(main, 'paper_of', interrupt)
    code, _ = run_main(ERNOULT + ['--dry-run', '--results-dir', str(tmp_path)])
    assert code == 130 and one_line(capsys) == 'main.py: interrupted'
    assert files_under(tmp_path) == []


def test_ctrl_c_in_an_epoch_is_an_interrupted_run(tmp_path, monkeypatch, capsys):
    def interrupt(*a, **kw):
        raise KeyboardInterrupt
    monkeypatch.setattr(trainer, 'train', interrupt)
    code, _ = run_main(ERNOULT + ['--results-dir', str(tmp_path)])
    line = one_line(capsys)
    assert code == 130 and 'in epoch 1' in line and 'checkpoint of epoch 0' in line, line
    runs = pd.read_csv(tmp_path / 'runs.csv')
    assert list(runs['status']) == ['interrupted'] and runs['end'].notna().all()


def test_a_non_finite_run_is_listed_as_stopped(tmp_path, capsys):
    code, _ = run_main(ERNOULT + ['--lr_tab', '3e38', '3e38', '--results-dir', str(tmp_path)])
    assert code == 1 and 'non-finite' in one_line(capsys)
    assert list(pd.read_csv(tmp_path / 'runs.csv')['status']) == ['stopped non-finite']


# ---------------------------------------------------------------------------------------------------------------
# A garbled saved command line under --load-path

GARBLED = {'lost quote': "python main.py {flag} 'unclosed\n".encode(), 'not text': b'python main.py \xff\xfe\x00\n'}


@pytest.mark.parametrize('what', list(GARBLED))
@pytest.mark.parametrize('paper', ['nest2024', 'ernoult2019'])
def test_a_garbled_saved_command_line_is_one_line_naming_the_file(paper, what, tmp_path, capsys):
    run = tmp_path / 'run'
    run.mkdir()
    if paper == 'nest2024':                            # (a config.yaml routes --load-path to Nest & Ernoult 2024)
        (run / 'config.yaml').write_text('# python main.py --config-name=gdd\n')
    (run / 'hyperparameters.txt').write_bytes(GARBLED[what].replace(b'{flag}', b'--config-name=gdd data=mnist5k'
                                                                    if paper == 'nest2024' else b'--beta 0.1'))
    code, _ = run_main(['--load-path', str(run), '--results-dir', str(tmp_path / 'r')])
    line = one_line(capsys)
    assert code == 2 and line.startswith(f'main.py: error: {run / "hyperparameters.txt"}: unreadable command line'), \
        line
    assert not (tmp_path / 'r').exists()


# ---------------------------------------------------------------------------------------------------------------
# run.log and runs.csv

def test_run_log_and_runs_csv_follow_a_run_and_its_resume(tmp_path, capsys):
    code, folder = run_main(LABORIEUX + ['--epochs', '1', '--results-dir', str(tmp_path), '--device', '7'])
    assert code == 0
    first = capsys.readouterr()
    code, again = run_main(['--load-path', folder, '--epochs', '2'])
    assert code == 0 and again == folder
    log = open(os.path.join(folder, 'run.log')).read()
    assert '\r' not in log and '%|' not in log                                  # no progress bar
    lines = log.splitlines()
    heads = [ln for ln in lines if ln.startswith('# ')]
    assert len(heads) == 2 and heads[1].endswith(f'python main.py --load-path {folder} --epochs 2')
    # everything the first run printed, stdout and stderr (its warning came before the folder existed)
    printed = [ln for ln in (first.out + first.err).splitlines() if ln.strip() and '%|' not in ln]
    assert printed and all(ln in lines[:lines.index(heads[1])] for ln in printed), (printed, lines)
    assert any('no such CUDA device' in ln for ln in printed)
    assert f'results: {folder}' in lines and any('resuming at epoch 2 of 2' in ln for ln in lines)
    runs = pd.read_csv(tmp_path / 'runs.csv')
    rel = os.path.relpath(folder, tmp_path)
    assert list(runs['folder']) == [rel, rel] and list(runs['status']) == ['done', 'done']
    assert list(runs['paper']) == ['laborieux2021'] * 2 and list(runs['epoch']) == [1, 2]
    metrics = pd.read_csv(os.path.join(folder, 'metrics.csv'))
    assert runs['test_acc'].iloc[-1] == pytest.approx(metrics['test_acc'].iloc[-1])
    assert runs['command'].iloc[1] == f'python main.py --load-path {folder} --epochs 2'
    assert (runs['start'] <= runs['end']).all()


def test_dry_runs_are_listed_apart(tmp_path):
    code, _ = run_wu(WU + ['--results-dir', str(tmp_path)])
    assert code == 0
    assert not (tmp_path / 'runs.csv').exists()
    runs = pd.read_csv(tmp_path / 'dry-run' / 'runs.csv')
    assert list(runs['paper']) == ['wu2024'] and list(runs['status']) == ['done']
    assert runs['command'].iloc[0].startswith('python S4.1-mnist-FCN.py --dataset mnist5k --dry-run')
    folder = tmp_path / 'dry-run' / runs['folder'].iloc[0]
    lines = (folder / 'run.log').read_text().splitlines()
    assert lines[0].startswith('# ') and f'results: {folder}' in lines


def test_a_resume_within_the_same_second_gets_its_own_row(tmp_path):
    """A run and its resume share the folder and, on a fast machine, the start second: each keeps its row (also two
    identical resume commands)."""
    from suite import runlog
    folder = str(tmp_path / 'run')
    argvs = [['--epochs', '1'], ['--load-path', folder, '--epochs', '2'], ['--load-path', folder, '--epochs', '2']]
    for argv in argvs:
        record = runlog.Record('main.py', argv, 'laborieux2021', str(tmp_path), folder, start='2026-12-07 16:18:07')
        runlog.update_runs(record, 'running')
        runlog.update_runs(record, 'done', end='2026-12-07 16:18:07')
    runs = pd.read_csv(tmp_path / 'runs.csv', keep_default_na=False)
    assert list(runs['status']) == ['done'] * 3 and list(runs['folder']) == ['run'] * 3
    assert list(runs['command']) == [runlog.rundir.command_line(a, 'main.py') for a in argvs]


def test_runs_csv_keeps_the_rows_of_concurrent_runs(tmp_path):
    """Rows are read, changed and written back under a lock: runs that update runs.csv at the same time (threads
    here, each with its own lock) keep each other's rows."""
    import threading
    from suite import runlog
    records = [runlog.Record('main.py', ['--n', str(i)], 'ernoult2019', str(tmp_path), str(tmp_path / f'run{i}'))
               for i in range(8)]
    for status in ('running', 'done'):
        threads = [threading.Thread(target=runlog.update_runs, args=(r, status, 'now' if status == 'done' else ''))
                   for r in records]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    runs = pd.read_csv(tmp_path / 'runs.csv', keep_default_na=False)
    assert sorted(runs['folder']) == [f'run{i}' for i in range(8)] and set(runs['status']) == {'done'}


# ---------------------------------------------------------------------------------------------------------------
# torchrun: a usage error on one rank ends every rank, each with one line

def test_a_usage_error_on_one_rank_ends_both_ranks(tmp_path):
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    argv = [sys.executable, 'main.py'] + LABORIEUX[:-2] + ['--dry-run', '--mbs', '16', '--results-dir', str(tmp_path)]
    procs = []
    for rank in (0, 1):
        env = {**os.environ, 'RANK': str(rank), 'LOCAL_RANK': str(rank), 'WORLD_SIZE': '2',
               'MASTER_ADDR': '127.0.0.1', 'MASTER_PORT': str(port), 'OMP_NUM_THREADS': '1'}
        bad = ['--threads', '0'] if rank == 1 else []                 # rank 0 goes on to its first collective
        procs.append(subprocess.Popen(argv + bad, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    try:
        out = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            p.kill()
    (_, err0), (_, err1) = out
    assert procs[1].returncode == 2 and err1.strip() == 'main.py: error: --threads 0: give at least 1 CPU thread'
    assert procs[0].returncode == 1 and 'Traceback' not in err0, err0
    assert err0.strip().splitlines()[-1].startswith('main.py: error: torchrun rank 0: another rank stopped'), err0
    assert files_under(tmp_path) == []


# ---------------------------------------------------------------------------------------------------------------
# Did you mean …?

@pytest.mark.parametrize('script,base,typo,flag', [
    (None, ERNOULT, '--size-tab', '--size_tab'), (None, ERNOULT, '--Kmx', '--Kmax'),
    ('S4.1-mnist-FCN', WU, '--data_root', '--data-root'), ('A12-resnet-finetune', ['--dry-run'], '--fft', '-FFT')])
def test_an_unknown_flag_gets_the_closest_one(script, base, typo, flag, tmp_path, capsys):
    argv = base + [typo, '3', '--results-dir', str(tmp_path)]
    code, _ = run_wu(argv, script) if script else run_main(argv)
    line = one_line(capsys, f'{script}.py' if script else 'main.py')
    assert code == 2 and f'unrecognized arguments: {typo} 3 (did you mean {flag}?)' in line, line


def test_no_suggestion_for_a_flag_like_none(tmp_path, capsys):
    code, _ = run_main(ERNOULT + ['--nonsense', '--results-dir', str(tmp_path)])
    line = one_line(capsys)
    assert code == 2 and '--nonsense' in line and 'did you mean' not in line


# ---------------------------------------------------------------------------------------------------------------
# plotFunctions.py --compare

def plot_functions(args, cwd):
    return subprocess.run([sys.executable, os.path.join(ROOT, 'plotFunctions.py')] + args, cwd=cwd,
                          capture_output=True, text=True, env={**os.environ, 'DISPLAY': '', 'MPLBACKEND': ''})


def test_compare_overlays_ep_and_bptt_at_two_betas(tmp_path):
    folders = []
    for beta in ('0.1', '0.2'):
        code, folder = run_main(ERNOULT[:-6] + ['--beta', beta] + ERNOULT[-4:] + ['--benchmark', '--dry-run',
                                                                               '--results-dir', str(tmp_path)])
        assert code == 0
        folders.append(folder)
    import plotFunctions
    labels = plotFunctions.run_labels(folders)
    assert labels == ['Trial-1: --beta 0.1', 'Trial-2: --beta 0.2']
    runs = [r for f in folders for r in plotFunctions.compare_runs(f)]
    assert sorted(curve for _, curve, _ in runs) == ['BPTT', 'BPTT', 'EP', 'EP']
    assert {'test_error', 'train_error', 'test_loss'} <= set(plotFunctions.shared_metrics([t for *_, t in runs]))
    r = plot_functions(['--compare'] + folders + ['--out', str(tmp_path / 'cmp.png')], tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == f'wrote {tmp_path / "cmp.png"}', r.stderr
    assert (tmp_path / 'cmp.png').stat().st_size > 10000
    # without arguments the copy in a run folder still redraws that folder's figures
    os.remove(os.path.join(folders[0], 'error_curves.png'))
    r = plot_functions([], folders[0])
    assert r.returncode == 0 and os.path.isfile(os.path.join(folders[0], 'error_curves.png'))
    assert not os.path.exists(os.path.join(folders[0], 'compare.png'))


def test_compare_labels_hydra_overrides_and_wu_settings(tmp_path):
    """Settings given as key=value (Nest & Ernoult 2024) and --flag=value (Wu et al. 2024) label the curves."""
    import plotFunctions
    made = {}
    for name, line, acc in (('ep', 'python main.py --config-name=splitting_small algorithm=ep --seed 0', 'test_top1'),
                            ('id', 'python main.py --config-name=splitting_small algorithm=bptt --seed 0', 'test_top1'),
                            ('sgd', "python S4.1-mnist-FCN.py '--SETTING=Analog SGD' --tau=0.6", 'test_acc'),
                            ('tt', "python S4.1-mnist-FCN.py --SETTING=TT-v1 --tau=0.6", 'test_acc')):
        d = tmp_path / name
        d.mkdir()
        (d / 'hyperparameters.txt').write_text(line + '\n- threads: 2\n')
        pd.DataFrame({'epoch': [1, 2, 3], acc: [10.0, 50.0, 80.0], 'setting': 'x', 'lr': 0.05}).to_csv(
            d / 'metrics.csv', index=False)
        made[name] = str(d)
    assert plotFunctions.run_labels([made['ep'], made['id']]) == ['ep: algorithm=ep', 'id: algorithm=bptt']
    assert plotFunctions.run_labels([made['sgd'], made['tt']]) == ['sgd: --SETTING Analog SGD',
                                                                   'tt: --SETTING TT-v1']
    assert plotFunctions.shared_metrics([pd.read_csv(os.path.join(made[n], 'metrics.csv')) for n in ('sgd', 'tt')]) \
        == ['test_acc']                                 # the constant lr is a setting, not a curve
    r = plot_functions(['--compare', made['ep'], made['sgd']], tmp_path)
    assert r.returncode == 2 and r.stderr.strip().startswith('plotFunctions.py: error: ') and 'shared' in r.stderr


def test_compare_of_a_folder_without_metrics_is_one_line(tmp_path):
    (tmp_path / 'empty').mkdir()
    r = plot_functions(['--compare', str(tmp_path / 'empty'), '--out', 'x.png'], tmp_path)
    assert r.returncode == 2 and r.stdout == ''
    assert r.stderr.strip() == (f'plotFunctions.py: error: {tmp_path / "empty"}: no metrics.csv or results.csv there '
                                f'(the per-epoch metrics of a training run); give run folders')
    assert not (tmp_path / 'x.png').exists()

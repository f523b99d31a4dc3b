"""Runs that can be picked up again, for every paper: resume equals an uninterrupted run, the saved flags are the
defaults, Ctrl-C leaves a checkpoint that resumes, a non-finite run stops within the epoch and says so."""
import os

import pandas as pd
import pytest
import torch

from suite import trainer
from conftest import run_main

ERNOULT = ['--action', 'train', '--discrete', '--size_tab', '10', '32', '784', '--lr_tab', '0.04', '0.08',
           '--T', '8', '--Kmax', '3', '--beta', '0.1', '--batch-size', '50', '--dataset', 'mnist5k', '--benchmark',
           '--seed', '3']
LABORIEUX = ['--model', 'MLP', '--task', 'mnist5k', '--archi', '784', '32', '10', '--act', 'mysig', '--optim', 'sgd',
             '--mmt', '0.9', '--lrs', '0.05', '0.02', '--T1', '8', '--T2', '3', '--mbs', '100', '--betas', '0.0', '0.2',
             '--random-sign', '--seed', '4']
BINARY = ['--archi', 'fc', '--layersList', '784', '64', '10', '--T', '8', '--Kmax', '3', '--beta', '0.3',
          '--gamma', '1e-5', '1e-4', '--gradThreshold', '5e-7', '5e-7', '--lrBias', '0.025', '0.05',
          '--learnAlpha', '1', '--lrAlpha', '0.01', '0.01', '--batchSize', '100', '--dataset', 'mnist5k', '--seed', '5']

EPLCANET = ['--model', 'EPLCACNN', '--task', 'mnist5k', '--channels', '4', '4', '8', '--kernels', '5', '5', '--paddings',
            '0', '0', '0', '--strides', '1', '1', '1', '--lrs', '0.05', '0.05', '0.02', '--pools', 'imm', '--betas',
            '0.0', '0.2', '--softmax', '--loss', 'cel', '--lca_iters', '2', '--T1', '4', '--T2', '2', '--mbs', '200',
            '--seed', '6']
DICTLEARN = ['--todo', 'dictlearn', '--task', 'mnist5k', '--lca_feats', '4', '--lca_ksize', '5', '--lca_iters', '3',
             '--mbs', '200', '--seed', '7']

# checkpoint files of each paper and the key of their weights
CHECKPOINTS = {'ernoult': (('checkpoint_EP.pt', 'model'), ('checkpoint_BPTT.pt', 'model')),
               'laborieux': (('checkpoint.tar', 'model'),), 'eplcanet': (('checkpoint.tar', 'model'),),
               'dictlearn': (('checkpoint.tar', 'model'),),
               'binary': (('checkpoint.pt', 'model'),)}
BASES = {'ernoult': ERNOULT, 'laborieux': LABORIEUX, 'binary': BINARY, 'eplcanet': EPLCANET, 'dictlearn': DICTLEARN}
METRICS = {'ernoult': 'metrics.csv', 'laborieux': 'metrics.csv', 'binary': 'results.csv', 'eplcanet': 'metrics.csv',
           'dictlearn': 'dictlearn.csv'}


def _weights(folder, paper):
    out = {}
    for name, key in CHECKPOINTS[paper]:
        ck = torch.load(os.path.join(folder, name), weights_only=False)
        out.update({f'{name}:{k}': v for k, v in ck[key].items()})
    return out


def _assert_same_run(a, b, paper):
    wa, wb = _weights(a, paper), _weights(b, paper)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    ma, mb = (pd.read_csv(os.path.join(f, METRICS[paper])) for f in (a, b))
    cols = [c for c in ma.columns if 'seconds' not in c]
    pd.testing.assert_frame_equal(ma[cols], mb[cols])


@pytest.mark.parametrize('paper', list(BASES))
def test_resume_with_the_folder_alone_equals_uninterrupted(paper, tmp_path):
    """2 epochs in one run == 1 epoch, then `--load-path <folder> --epochs 2` alone (the saved flags are the
    defaults; --epochs given again is the new total): bit-identical weights and metrics; the resume's command line is
    appended to the folder's file."""
    base = BASES[paper]
    code, full = run_main(base + ['--epochs', '2', '--results-dir', str(tmp_path / 'a')])
    assert code == 0
    code, part = run_main(base + ['--epochs', '1', '--results-dir', str(tmp_path / 'b')])
    assert code == 0
    code, resumed = run_main(['--load-path', part, '--epochs', '2'])
    assert code == 0 and resumed == part
    _assert_same_run(full, part, paper)
    m = pd.read_csv(os.path.join(part, METRICS[paper]))
    assert list(m['epoch'].unique()) == [1, 2]
    for g in ([g for _, g in m.groupby('method')] if 'method' in m else [m]):   # seconds add up across the resume
        assert (g['seconds'].diff().dropna() > 0).all()
        assert g['seconds'].iloc[-1] == pytest.approx(g['epoch_seconds'].sum())
    hyper = [f for f in os.listdir(part) if f.lower() == 'hyperparameters.txt'][0]
    lines = open(os.path.join(part, hyper)).read().splitlines()
    assert [ln for ln in lines if ln.startswith('python main.py')][-1] == \
        f'python main.py --load-path {part} --epochs 2'


def test_a_flag_given_again_overrides_the_saved_one(tmp_path):
    code, run = run_main(LABORIEUX + ['--epochs', '1', '--results-dir', str(tmp_path)])
    assert code == 0
    code, _ = run_main(['--load-path', run, '--epochs', '2', '--lrs', '0.0', '0.0', '--mmt', '0.0'])
    assert code == 0
    ck = torch.load(os.path.join(run, 'checkpoint.tar'), weights_only=False)
    assert [g['lr'] for g in ck['optimizer']['param_groups']] == [0.0, 0.0]
    # evaluate with the folder alone: the architecture, task and T1 are the run's
    code, _ = run_main(['--todo', 'evaluate', '--load-path', run])
    assert code == 0
    assert open(os.path.join(run, 'hyperparameters.txt')).read().splitlines()[-1].startswith('Test accuracy : ')


def _interrupt_in_epoch(monkeypatch, n):
    """trainer.train raises KeyboardInterrupt on its n-th call (n-th training epoch)."""
    real, calls = trainer.train, []

    def train(*a, **kw):
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt
        return real(*a, **kw)
    monkeypatch.setattr(trainer, 'train', train)


@pytest.mark.parametrize('paper', ['laborieux', 'binary', 'eplcanet', 'dictlearn'])
def test_ctrl_c_leaves_a_folder_that_resumes(paper, tmp_path, monkeypatch, capsys):
    base = BASES[paper]
    _, full = run_main(base + ['--epochs', '2', '--results-dir', str(tmp_path / 'a')])
    _interrupt_in_epoch(monkeypatch, 2)
    code, _ = run_main(base + ['--epochs', '2', '--results-dir', str(tmp_path / 'b')])
    err = _message(capsys)
    assert code == 130
    assert 'interrupted in epoch 2' in err and 'checkpoint of epoch 1' in err
    folder = err.split('--load-path ')[-1]
    monkeypatch.undo()
    code, resumed = run_main(_printed_command(err))     # the command it printed, as it printed it: ends at epoch 2
    assert code == 0 and resumed == folder
    assert 'resuming at epoch 2 of 2' in capsys.readouterr().out
    _assert_same_run(full, folder, paper)


def test_ctrl_c_in_the_first_epoch_resumes_from_epoch_0(tmp_path, monkeypatch, capsys):
    _, full = run_main(ERNOULT + ['--epochs', '1', '--results-dir', str(tmp_path / 'a')])
    _interrupt_in_epoch(monkeypatch, 1)                 # inside the BPTT twin's first epoch: EP has not started
    code, _ = run_main(ERNOULT + ['--epochs', '1', '--results-dir', str(tmp_path / 'b')])
    err = _message(capsys)
    assert code == 130 and 'checkpoint of epoch 0' in err, err
    folder = err.split('--load-path ')[-1]
    monkeypatch.undo()
    assert run_main(_printed_command(err))[0] == 0
    _assert_same_run(full, folder, 'ernoult')


def _printed_command(err):
    """The argv of the `resume with python main.py …` that an interrupted run printed."""
    cmd = err.split('resume with ')[-1].split()
    assert cmd[:2] == ['python', 'main.py'], err
    return cmd[2:]


@pytest.mark.parametrize('paper,lr', [('laborieux', ['--lrs', '3e38', '3e38']),
                                      ('ernoult', ['--lr_tab', '3e38', '3e38'])])
def test_non_finite_run_stops_and_says_so(paper, lr, tmp_path, capsys):
    code, _ = run_main(BASES[paper] + lr + ['--epochs', '3', '--results-dir', str(tmp_path)])
    err = _message(capsys)
    assert code == 1
    assert 'non-finite' in err and 'epoch 1' in err and 'epoch 0' in err
    (folder,) = {os.path.dirname(p) for p in _find(tmp_path, 'stopped.txt')}
    assert 'non-finite' in open(os.path.join(folder, 'stopped.txt')).read()
    assert 'STOPPED' in open(os.path.join(folder, 'hyperparameters.txt')).read()
    epochs = []
    for name, key in CHECKPOINTS[paper]:                # the last good checkpoints are finite; the net that failed
        ck = torch.load(os.path.join(folder, name), weights_only=False)    # keeps its initial weights
        assert all(torch.isfinite(v).all() for v in ck[key].values())
        epochs.append(ck['epoch'])
    assert min(epochs) == 0


def test_fit_checks_the_weights_after_every_epoch(tmp_path):
    """Weights that turn non-finite in epoch 2 while the metrics stay finite still stop the run there."""
    from suite import trainer
    w = torch.nn.Parameter(torch.ones(3))
    (tmp_path / 'hyperparameters.txt').write_text('python main.py\n')
    saved = []

    def run_epoch(epoch):
        if epoch == 2:
            with torch.no_grad():
                w[1] = float('nan')
        return {'loss': 0.5}
    with pytest.raises(trainer.Stopped) as e:
        trainer.fit(str(tmp_path), 3, [], run_epoch, lambda h: saved.append(len(h)), (p for p in [w]))
    assert e.value.code == 1 and 'epoch 2 (weights)' in str(e.value) and 'epoch 1' in str(e.value)
    assert saved == [0, 1]                              # nothing saved after the bad epoch
    assert (tmp_path / 'stopped.txt').exists()


def _message(capsys):
    """The one line main.py wrote on stderr (beside the progress bars), with no traceback."""
    err = capsys.readouterr().err
    assert 'Traceback' not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith('main.py')]
    assert len(lines) == 1, err
    return lines[0]


def _find(root, name):
    return [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f == name]


def test_sigint_to_a_running_command_then_the_printed_command(tmp_path):
    """The whole path from the shell: SIGINT to `python main.py …` during epoch 2 exits 130 with one line naming
    the checkpoint of epoch 1 and the command that resumes; that command, run as printed, ends at epoch 3 with the
    weights of an uninterrupted 3-epoch run."""
    import shlex
    import signal
    import subprocess
    import sys
    import time
    from conftest import ROOT
    base = LABORIEUX + ['--epochs', '3', '--threads', '1']
    _, full = run_main(base + ['--results-dir', str(tmp_path / 'a')])
    p = subprocess.Popen([sys.executable, 'main.py'] + base + ['--results-dir', str(tmp_path / 'b')], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in p.stdout:                              # wait for the end of epoch 1, then interrupt epoch 2
        if line.startswith('epoch 1:'):
            break
    time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 130, err
    lines = [ln for ln in err.splitlines() if ln.startswith('main.py')]
    assert len(lines) == 1 and 'Traceback' not in err, err
    assert 'checkpoint of epoch 1' in lines[0] or 'checkpoint of epoch 2' in lines[0], lines[0]   # (a slow signal)
    command = shlex.split(lines[0].split('resume with ')[-1])
    assert command[:2] == ['python', 'main.py']
    r = subprocess.run([sys.executable] + command[1:], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert 'resuming at epoch' in r.stdout and 'of 3' in r.stdout
    folder = command[-1]
    assert pd.read_csv(os.path.join(folder, 'metrics.csv'))['epoch'].tolist() == [1, 2, 3]
    _assert_same_run(full, folder, 'laborieux')


def test_a_binary_checkpoint_of_the_earlier_layout_resumes(tmp_path):
    """checkpoint.pt as binary EP wrote it before the one format (model_state_dict, rows, the flip rule's momenta and
    α learning rates at the top level) still resumes, to the weights of an uninterrupted run."""
    _, full = run_main(BINARY + ['--epochs', '2', '--results-dir', str(tmp_path / 'a')])
    _, part = run_main(BINARY + ['--epochs', '1', '--results-dir', str(tmp_path / 'b')])
    path = os.path.join(part, 'checkpoint.pt')
    ck = torch.load(path, weights_only=False)
    old = {'epoch': ck['epoch'], 'model_state_dict': ck['model'], 'rows': ck['history'], **ck['optimizer'],
           'generator': ck['generator'], 'torch_rng': ck['torch_rng']}
    torch.save(old, path)
    code, resumed = run_main(['--load-path', part, '--epochs', '2'])
    assert code == 0 and resumed == part
    _assert_same_run(full, part, 'binary')

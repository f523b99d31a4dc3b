"""Nest & Ernoult 2024 on the shared run layer: a training mini-batch goes through the chain's design-card methods,
Ctrl-C leaves a folder that resumes to the weights of an uninterrupted run, checkpoints of the earlier layout load,
bad Hydra keys are one usage line before any folder, and --help lists the groups and keys."""
import os

import pandas as pd
import pytest
import torch

from conftest import run_main
from papers.nest2024.nets import HopfieldChain
from suite import trainer
from test_nest2024 import small  # noqa: F401  (the fixture: models thinned 32× so that a run takes seconds)
from test_resume import _interrupt_in_epoch, _message, _printed_command

BASE = ['--config-name=splitting_small', 'model=splitting_small_3block', 'data=mnist5k', '--seed', '3',
        'trainer.limit_batches=2', 'data.config.batch_size=16', 'model.config.T1=4', 'algorithm.config.T2=2']


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def chain_calls(monkeypatch):
    """Records, in order, the calls of forward (free, nudged or the ID re-run), computeGradients and updateWeights
    on any HopfieldChain."""
    log = []
    for name in ('forward', 'computeGradients', 'updateWeights'):
        orig = getattr(HopfieldChain, name)

        def spy(self, *a, _orig=orig, _name=name, **kw):
            if _name == 'forward':
                beta = kw.get('beta', a[3] if len(a) > 3 else 0.0)
                s = kw.get('s', a[1] if len(a) > 1 else None)
                log.append('forward nudged' if isinstance(beta, tuple) or beta != 0.0 else
                           'forward free' if s is None else 'forward re-run')
            else:
                log.append(_name)
            return _orig(self, *a, **kw)
        monkeypatch.setattr(HopfieldChain, name, spy)
    return log


@pytest.mark.parametrize('algorithm', ['ep', 'bptt'])
def test_a_training_minibatch_goes_through_the_chain_methods(algorithm, small, chain_calls, tmp_path):
    """EP: the free phase, then per block (the last first) its ±β nudged phases and its estimate, then one update;
    ID: the free phase, the re-run, one update. The dry run's test batch is one more free phase."""
    code, folder = run_main(BASE + [f'algorithm={algorithm}', '--dry-run', '--results-dir', str(tmp_path)])
    assert code == 0 and folder
    one = (['forward free'] + ['forward nudged', 'computeGradients'] * 3 if algorithm == 'ep' else
           ['forward free', 'forward re-run']) + ['updateWeights']
    assert chain_calls == one + ['forward free'], chain_calls


def _weights_and_metrics(folder):
    ck = torch.load(os.path.join(folder, 'checkpoint.tar'), weights_only=False)
    m = pd.read_csv(os.path.join(folder, 'metrics.csv'))
    return ck, m[[c for c in m.columns if 'seconds' not in c]]


def _assert_same_run(a, b):
    (ca, ma), (cb, mb) = _weights_and_metrics(a), _weights_and_metrics(b)
    assert ca['epoch'] == cb['epoch'] and ca['model'].keys() == cb['model'].keys()
    for k in ca['model']:
        assert torch.equal(ca['model'][k], cb['model'][k]), k
    pd.testing.assert_frame_equal(ma, mb)
    assert ca['best_top1'] == cb['best_top1']


def test_ctrl_c_leaves_a_folder_that_resumes_to_the_uninterrupted_weights(small, tmp_path, monkeypatch, capsys):
    """Interrupted in epoch 2 of 3: exit 130 and one line; the command it prints, as printed, resumes at epoch 2
    and ends at epoch 3 with the weights, metrics and best top-1 of an uninterrupted run."""
    code, full = run_main(BASE + ['trainer.epochs=3', '--results-dir', str(tmp_path / 'a')])
    assert code == 0
    capsys.readouterr()
    real = trainer.train
    _interrupt_in_epoch(monkeypatch, 2)
    code, _ = run_main(BASE + ['trainer.epochs=3', '--results-dir', str(tmp_path / 'b')])
    err = _message(capsys)
    assert code == 130 and 'interrupted in epoch 2' in err and 'checkpoint of epoch 1' in err, err
    monkeypatch.setattr(trainer, 'train', real)                   # (the thinned models stay)
    argv = _printed_command(err)
    assert argv[0] == '--load-path' and len(argv) == 2
    code, resumed = run_main(argv)
    assert code == 0 and resumed == argv[1]
    assert 'resuming at epoch 2 of 3' in capsys.readouterr().out
    _assert_same_run(full, resumed)
    assert list(pd.read_csv(os.path.join(resumed, 'metrics.csv'))['epoch']) == [1, 2, 3]


def test_a_checkpoint_of_the_earlier_layout_resumes(small, tmp_path):
    """checkpoint.tar as the hand-written loop saved it (no format, no config) resumes like today's."""
    code, full = run_main(BASE + ['trainer.epochs=2', '--results-dir', str(tmp_path / 'a')])
    code, part = run_main(BASE + ['trainer.epochs=1', '--results-dir', str(tmp_path / 'b')])
    path = os.path.join(part, 'checkpoint.tar')
    ck = torch.load(path, weights_only=False)
    torch.save({k: ck[k] for k in ('epoch', 'model', 'optimizer', 'scheduler', 'history', 'best_top1', 'generator',
                                   'torch_rng')}, path)
    code, resumed = run_main(['--load-path', part, 'trainer.epochs=2'])
    assert code == 0 and resumed == part
    _assert_same_run(full, part)


@pytest.mark.parametrize('override, key', [
    ('algorithm.config.beta=nan', 'algorithm.config.beta'), ('trainer.lr=nan', 'trainer.lr'),
    ('trainer.lr=inf', 'trainer.lr'), ('trainer.epochs=-1', 'trainer.epochs'),
    ('algorithm.config.T2=0', 'algorithm.config.T2'), ('model.config.V=-1e-3', 'model.config.V'),
    ('trainer.epoch=1', 'trainer.epoch'), ('+trainer.epoch=1', 'trainer.epoch'),
    ('+trainer.foo=1', 'trainer.foo'), ('+algorithm.beta=0.1', 'algorithm.beta'),
    ('model.config.asynchronous=3', 'model.config.asynchronous'),
    ('+model.config.depth=18', 'model.config.depth')])
def test_bad_keys_are_one_line_naming_the_key_and_no_folder(override, key, tmp_path, capsys):
    code, _ = run_main(BASE + [override, '--results-dir', str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith(f'main.py: error: {key}') and '\n' not in err, err
    assert not tmp_path.exists() or not os.listdir(tmp_path)
    if override.lstrip('+').startswith('trainer.epoch='):
        assert err.endswith('(did you mean trainer.epochs?)'), err
    if override == '+algorithm.beta=0.1':
        assert err.endswith('(did you mean algorithm.config.beta?)'), err


@pytest.mark.parametrize('argv', [['--config-name=splitting_small', '--help'],
                                  ['--help', '--config-name=gdd', 'model=resnet18']])
def test_help_lists_the_groups_and_the_typed_keys(argv, capsys):
    code, folder = run_main(argv)
    out = capsys.readouterr().out
    assert code == 0 and folder is None
    for group in ('model/', 'data/', 'algorithm/', 'trainer/'):
        assert group in out
    assert 'splitting_small_3block' in out and 'mnist5k' in out and 'bptt' in out
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.startswith('  ') and ln.split()}
    assert lines['trainer.epochs'].split()[1:] == ['int', '(≥', '1)', '200' if 'gdd' not in argv[1] else '300']
    assert 'float (≠ 0)' in lines['algorithm.config.beta']
    resnet = 'model=resnet18' in argv
    assert ('model.config.depth' in lines) == resnet and ('model.config.blocks' in lines) != resnet
    assert ('gdd.batches' in lines) == resnet

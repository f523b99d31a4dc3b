"""Runs a user picks up again: dry runs in their own folder, receipe.png, sampled GDU traces, file permissions, --threads."""
import os
import stat

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import torch

from suite import rundir
from conftest import redraw, run_main

GDU = ['--action', 'plotcurves', '--discrete', '--batch-size', '20', '--size_tab', '10', '64', '784',
       '--activation-function', 'tanh', '--beta', '0.01', '--T', '20', '--Kmax', '5', '--dataset', 'mnist5k',
       '--seed', '0']


def first_part(folder, root):
    return os.path.relpath(folder, root).split(os.sep)[0]


# ---------------------------------------------------------------------------------------------------------------
# --dry-run

@pytest.mark.parametrize('argv', [
    ['--action', 'train', '--discrete', '--size_tab', '10', '32', '784', '--lr_tab', '0.1', '0.1'],
    ['--action', 'receipe', '--discrete', '--size_tab', '10', '32', '784'],
    ['--model', 'MLP', '--task', 'mnist5k', '--archi', '784', '32', '10', '--lrs', '0.1', '0.1', '--epochs', '1'],
    ['--archi', 'fc', '--layersList', '784', '32', '10', '--gamma', '1e-5', '1e-4', '--gradThreshold', '5e-7',
     '5e-7', '--lrBias', '0.025', '0.05', '--epochs', '1', '--dataset', 'mnist5k'],
], ids=['ernoult-train', 'ernoult-receipe', 'laborieux', 'laydevant'])
def test_dry_runs_write_under_dry_run(argv, tmp_path):
    code, folder = run_main(argv + ['--dry-run', '--results-dir', str(tmp_path)])
    assert code == 0
    assert first_part(folder, tmp_path) == 'dry-run'
    assert os.listdir(tmp_path) == ['dry-run']


def test_dry_run_says_what_it_synthesised(tmp_path, capsys):
    code, folder = run_main(['--action', 'train', '--discrete', '--size_tab', '10', '32', '784', '--lr_tab', '0.1',
                             '0.1', '--dataset', 'mnist', '--data-root', str(tmp_path / 'nothing'), '--dry-run',
                             '--results-dir', str(tmp_path)])
    assert code == 0
    lines = [x for x in capsys.readouterr().out.splitlines() if 'synthesised' in x]
    assert len(lines) == 2                                       # train and test data
    assert 'mnist' in lines[0] and '(64, 1, 28, 28)' in lines[0] and 'train' in lines[0] and 'test' in lines[1]


def test_real_data_is_not_announced_as_synthetic(tmp_path, capsys):
    code, _ = run_main(['--action', 'receipe', '--discrete', '--size_tab', '10', '32', '784', '--dataset', 'mnist5k',
                        '--dry-run', '--results-dir', str(tmp_path)])
    assert code == 0 and 'synthesised' not in capsys.readouterr().out


def test_dry_run_dictionary_is_never_the_default(tmp_path):
    from papers import eplcanet
    dl = ['--todo', 'dictlearn', '--task', 'mnist5k', '--lca_feats', '4', '--lca_ksize', '5', '--lca_iters', '2',
          '--mbs', '100', '--epochs', '1', '--seed', '0', '--results-dir', str(tmp_path)]
    code, dry = run_main(dl + ['--dry-run'])
    assert code == 0 and first_part(dry, tmp_path) == 'dry-run' and os.path.isfile(os.path.join(dry, 'dictionary.pt'))
    assert eplcanet.newest_dictionary(str(tmp_path)) is None
    assert eplcanet.newest_dictionary(str(tmp_path / 'dry-run')) is None     # also when looking from inside it
    # a real dictionary (older than the dry run's) is the default, also for a dry run
    real = tmp_path / 'dictlearn' / 'd' / 't'
    real.mkdir(parents=True)
    torch.save({'weights': torch.zeros(4, 1, 5, 5)}, real / 'dictionary.pt')
    os.utime(real / 'dictionary.pt', (0, 0))
    assert eplcanet.newest_dictionary(str(tmp_path)) == str(real / 'dictionary.pt')
    from types import SimpleNamespace
    from suite import cli
    args = cli.finalise_suite_args(SimpleNamespace(threads=None, dry_run=True, results_dir=str(tmp_path),
                                                   dictionary=None, dict_training='pretrained'))
    assert args.results_dir == os.path.join(str(tmp_path), 'dry-run') and args.results_root == str(tmp_path)

    class LCA:
        def assign_weight_values(self, w):
            self.w = w
    lca = LCA()
    eplcanet.load_dictionary(args, lca)
    assert args.dictionary == str(real / 'dictionary.pt') and lca.w.shape == (4, 1, 5, 5)


def test_finalise_is_idempotent(tmp_path):
    from types import SimpleNamespace
    from suite import cli
    args = SimpleNamespace(threads=None, dry_run=True, results_dir=str(tmp_path))
    cli.finalise_suite_args(cli.finalise_suite_args(args))
    assert args.results_dir == os.path.join(str(tmp_path), 'dry-run')
    assert not os.listdir(tmp_path)                             # the folder is made by the run, not here


# ---------------------------------------------------------------------------------------------------------------
# receipe.png

def test_receipe_draws_its_figure(tmp_path):
    code, folder = run_main(['--action', 'receipe', '--discrete', '--size_tab', '10', '32', '784', '--T', '10',
                             '--Kmax', '3', '--dataset', 'mnist5k', '--seed', '0', '--results-dir', str(tmp_path)])
    assert code == 0
    assert 'receipe.png' in os.listdir(folder)
    before, after = redraw(folder)
    assert before == after == ['receipe.png']


# ---------------------------------------------------------------------------------------------------------------
# plotcurves: a sampled subset of the traces, statistics and figures of the full ones

def test_gdu_traces_are_sampled_and_figures_unchanged(tmp_path):
    code, full = run_main(GDU + ['--save-all-traces', '--results-dir', str(tmp_path / 'full')])
    assert code == 0
    code, part = run_main(GDU + ['--results-dir', str(tmp_path / 'part')])
    assert code == 0
    tf = torch.load(os.path.join(full, 'gdu.pt'), weights_only=False)
    tp = torch.load(os.path.join(part, 'gdu.pt'), weights_only=False)
    assert 'units' not in tf and tf['nT']['w.1.weight'].shape == (5, 64, 784)
    assert os.path.getsize(os.path.join(part, 'gdu.pt')) < os.path.getsize(os.path.join(full, 'gdu.pt')) / 20
    assert tp['shapes']['nT']['w.1.weight'] == (5, 64, 784) and tp['shapes']['nS'][1] == (5, 64)
    for i, idx in enumerate(tp['units']['nS']):
        assert len(idx) == (10, 50)[i] and len(set(idx.tolist())) == len(idx)
        for key in ('nS', 'dS'):
            assert torch.equal(tp[key][i], tf[key][i].flatten(1)[:, idx])
    for k, idx in tp['units']['nT'].items():
        assert len(idx) == min(50, tf['nT'][k][0].numel())
        for key in ('nT', 'dT', 'NT', 'DT'):
            assert torch.equal(tp[key][k], tf[key][k].flatten(1)[:, idx])
    # the statistics are those of every unit, and the figures are the same images
    assert pd.read_csv(os.path.join(part, 'gdu_stats.csv')).equals(pd.read_csv(os.path.join(full, 'gdu_stats.csv')))
    pngs = ['gdu_neurons.png', 'gdu_rmse.png', 'gdu_synapses.png']

    def images(folder):
        return [mpimg.imread(os.path.join(folder, f)) for f in pngs]
    first = images(full)
    for a, b in zip(first, images(part)):
        assert np.array_equal(a, b)
    _, after = redraw(part)                                    # the folder's own copy of plotFunctions.py
    assert after == pngs
    for a, b in zip(first, images(part)):
        assert np.array_equal(a, b)


def test_sampled_subset_is_fixed():
    from papers import ernoult2019
    tr = {'nS': [torch.randn(3, 4, 30), torch.randn(3, 4, 100)], 'nT': {'w.0.weight': torch.randn(3, 30, 100)}}
    tr['dS'] = [v + 1 for v in tr['nS']]
    tr['dT'] = {k: v + 1 for k, v in tr['nT'].items()}
    tr['NT'] = {k: v.cumsum(0) for k, v in tr['nT'].items()}
    tr['DT'] = {k: v.cumsum(0) for k, v in tr['dT'].items()}
    a, b = ernoult2019.sample_traces(tr), ernoult2019.sample_traces(tr)
    for x, y in zip(a['units']['nS'] + [a['units']['nT']['w.0.weight']],
                    b['units']['nS'] + [b['units']['nT']['w.0.weight']]):
        assert torch.equal(x, y) and len(x) == 50
    assert set(range(5)) <= set(a['units']['nS'][0].tolist())   # the output units the figure draws


# ---------------------------------------------------------------------------------------------------------------
# permissions

@pytest.mark.parametrize('umask, mode', [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_get_the_users_umask(umask, mode, tmp_path):
    old = os.umask(umask)
    try:
        rundir.write_text(str(tmp_path / 'a.txt'), 'x')
        rundir.save({'a': 1}, str(tmp_path / 'b.pt'))
        rundir.write_csv(str(tmp_path / 'c.csv'), pd.DataFrame({'a': [1]}))
        assert rundir.current_umask() == umask
        plain = tmp_path / 'plain.txt'
        open(plain, 'w').close()
    finally:
        os.umask(old)
    for name in ('a.txt', 'b.pt', 'c.csv', 'plain.txt'):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == mode, name


def test_rewritten_file_keeps_its_permissions(tmp_path):
    path = str(tmp_path / 'metrics.csv')
    rundir.write_text(path, 'a\n')
    os.chmod(path, 0o640)
    rundir.write_text(path, 'b\n')
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640 and open(path).read() == 'b\n'


def test_run_folder_files_are_not_private(tmp_path):
    old = os.umask(0o022)
    try:
        code, folder = run_main(GDU + ['--results-dir', str(tmp_path)])
    finally:
        os.umask(old)
    assert code == 0
    for name in ('gdu.pt', 'gdu_stats.csv', 'hyperparameters.txt', 'gdu_rmse.png'):
        assert stat.S_IMODE(os.stat(os.path.join(folder, name)).st_mode) == 0o644, name


# ---------------------------------------------------------------------------------------------------------------
# --threads

def test_threads_is_applied_and_recorded(tmp_path):
    code, folder = run_main(['--action', 'receipe', '--discrete', '--size_tab', '10', '32', '784', '--dataset',
                             'mnist5k', '--dry-run', '--threads', '1', '--results-dir', str(tmp_path)])
    assert code == 0
    assert torch.get_num_threads() == 1                        # (conftest sets 2 again for the next test)
    assert '- threads: 1' in open(os.path.join(folder, 'hyperparameters.txt')).read().splitlines()


def test_threads_default_is_torchs_and_recorded(tmp_path):
    n = torch.get_num_threads()
    code, folder = run_main(['--action', 'receipe', '--discrete', '--size_tab', '10', '32', '784', '--dataset',
                             'mnist5k', '--dry-run', '--results-dir', str(tmp_path)])
    assert code == 0 and torch.get_num_threads() == n
    assert f'- threads: {n}' in open(os.path.join(folder, 'hyperparameters.txt')).read().splitlines()


def test_threads_zero_is_one_line(tmp_path, capsys):
    code, _ = run_main(['--action', 'receipe', '--threads', '0', '--results-dir', str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and '--threads' in err[0]
    assert not os.listdir(tmp_path)

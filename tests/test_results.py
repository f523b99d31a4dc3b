"""Result folders: contents, never overwritten, and plotFunctions.py redraws the figures inside them."""
import os

import pandas as pd
import torch

from suite import rundir
from conftest import redraw, run_main

SMALL = ['--discrete', '--size_tab', '10', '64', '784', '--lr_tab', '0.04', '0.08', '--T', '20', '--Kmax', '5',
         '--beta', '0.1', '--dataset', 'mnist5k', '--seed', '0', '--batch-size', '50']


def test_train_folder_and_redraw(tmp_path):
    argv = ['--action', 'train', '--epochs', '2', '--benchmark'] + SMALL + ['--results-dir', str(tmp_path)]
    code, folder = run_main(argv)
    assert code == 0
    assert os.path.dirname(os.path.dirname(folder)).endswith(os.path.join('ernoult2019', 'ep_disc_1hidden'))
    assert os.path.basename(os.path.dirname(folder)) == rundir.today()
    files = set(os.listdir(folder))
    assert {'hyperparameters.txt', 'metrics.csv', 'checkpoint_EP.pt', 'checkpoint_BPTT.pt', 'plotFunctions.py',
            'error_curves.png'} <= files
    assert not [f for f in files if f.endswith('.tmp')]
    hp = open(os.path.join(folder, 'hyperparameters.txt')).read().splitlines()
    assert hp[0].startswith('python main.py --action train --epochs 2 --benchmark --discrete')
    assert '- learning rates: [0.04, 0.08]' in hp
    df = pd.read_csv(os.path.join(folder, 'metrics.csv'))
    assert list(df['method']) == ['BPTT', 'BPTT', 'EP', 'EP'] and list(df['epoch']) == [1, 2, 1, 2]
    ck = torch.load(os.path.join(folder, 'checkpoint_EP.pt'))
    assert ck['epoch'] == 2 and set(ck['model']) == {'w.0.weight', 'w.0.bias', 'w.1.weight', 'w.1.bias'}
    before, after = redraw(folder)
    assert after == before == ['error_curves.png']


def test_plotcurves_folder_and_redraw(tmp_path):
    argv = ['--action', 'plotcurves', '--no-clamp', '--size_tab', '10', '32', '784', '--activation-function',
            'tanh', '--dt', '0.08', '--beta', '0.001', '--T', '800', '--Kmax', '10', '--dataset', 'mnist5k',
            '--results-dir', str(tmp_path), '--seed', '0']
    code, folder = run_main(argv)
    assert code == 0
    files = set(os.listdir(folder))
    assert {'gdu.pt', 'gdu_stats.csv', 'gdu_neurons.png', 'gdu_synapses.png', 'gdu_rmse.png'} <= files
    tr = torch.load(os.path.join(folder, 'gdu.pt'))
    assert tr['nS'][0].shape == (10, 10) and tr['nT']['w.1.weight'].shape == (10, 50)    # sampled units (test_runs)
    assert tr['shapes']['nT']['w.1.weight'] == (10, 32, 784)
    stats = pd.read_csv(os.path.join(folder, 'gdu_stats.csv'))
    assert (stats['rmse_mean'] < 0.1).all()
    _, after = redraw(folder)
    assert after == ['gdu_neurons.png', 'gdu_rmse.png', 'gdu_synapses.png']


def test_receipe_writes_sign_statistics(tmp_path, capsys):
    argv = ['--action', 'receipe', '--discrete', '--size_tab', '10', '32', '784', '--activation-function', 'tanh',
            '--beta', '0.01', '--T', '60', '--Kmax', '6', '--dataset', 'mnist5k', '--results-dir', str(tmp_path)]
    code, folder = run_main(argv)
    assert code == 0
    df = pd.read_csv(os.path.join(folder, 'receipe.csv'))
    assert len(df) == 20 * 2 and set(df['key']) == {'w.0.weight', 'w.1.weight'}
    summary = pd.read_csv(os.path.join(folder, 'receipe_summary.csv'))
    assert (summary['total_mean'] > 80).all()
    assert 'same sign (total)' in capsys.readouterr().out


def test_trial_numbers_never_overwrite(tmp_path):
    made = [rundir.claim_run_dir(str(tmp_path)) for _ in range(12)]
    assert [os.path.basename(p) for p in made] == [f'Trial-{k}' for k in range(1, 13)]
    os.rmdir(made[4])                                              # a gap is not reused below the maximum
    assert os.path.basename(rundir.claim_run_dir(str(tmp_path))) == 'Trial-13'


def test_neural_activity_histogram_of_a_saturated_layer(tmp_path):
    """A layer saturated at 1 with one value a float32 step off (numpy: 'Too many bins for data range' on its own
    range) and a constant layer still give neural_activity.png; a spread layer keeps its own range."""
    import plotFunctions
    torch.save({'s0': torch.tensor([1.0, 1.0000001, 1.0]), 's1': torch.zeros(7), 's2': torch.rand(50)},
               tmp_path / 'neural_activity.pt')
    assert os.path.isfile(plotFunctions.plot_neural_activity(str(tmp_path))[0])
    x, kw = plotFunctions._hist_args(torch.tensor([0.25, 0.75]))
    assert kw['range'] == (0.25, 0.75)

"""Binary EP (Laydevant et al. 2021): ±α weights, the flip rule, learning on the embedded digits, α learning,
the typo-tolerant command line and bad input."""
import math
import os

import pandas as pd
import pytest
import torch

import netFunctions as nf
import Tools_fc
from conftest import redraw, run_main
from Network_conv import Network_conv_bin_W, Network_conv_bin_W_N
from Network_fc import BinaryOptimizer, Network_fc_bin_W, Network_fc_bin_W_N

FC = ['--archi', 'fc', '--activationFun', 'hardsigm', '--T', '30', '--Kmax', '10', '--beta', '0.3',
      '--gamma', '1e-5', '1e-4', '--gradThreshold', '5e-7', '5e-7', '--dataset', 'mnist5k', '--lrBias', '0.025',
      '0.05', '--batchSize', '64', '--seed', '0']


def _assert_pm_alpha(net):
    for w, _, alpha, per_channel, _ in net.binary_layers():
        a = alpha.view(-1, *[1] * (w.dim() - 1)) if per_channel else alpha
        assert torch.equal(w.abs(), a.expand_as(w)), 'weights must be exactly ±α'


def _batches(mnist5k, conv, n=256, bs=32):
    (x, y), _ = mnist5k
    x = x[:n] if conv else x[:n].flatten(1)
    return [(x[i:i + bs], y[i:i + bs]) for i in range(0, n, bs)]


@pytest.mark.parametrize('kind', ['fc_W', 'fc_WN', 'conv_W', 'conv_WN'])
@pytest.mark.parametrize('learn_alpha', [False, True])
def test_weights_stay_plus_minus_alpha(mnist5k, kind, learn_alpha):
    torch.manual_seed(0)
    net = {'fc_W': lambda: Network_fc_bin_W([784, 64, 10], 10, 4, 0.3),
           'fc_WN': lambda: Network_fc_bin_W_N([784, 64, 20], 10, 4, 1.0, expand_output=2),
           'conv_W': lambda: Network_conv_bin_W([10], [8, 4, 1], 10, 4, 0.3, padding=1),
           'conv_WN': lambda: Network_conv_bin_W_N([20], [8, 4, 1], 10, 4, 1.0, padding=1, expand_output=2)}[kind]()
    n = len(net.binary_layers())
    opt = BinaryOptimizer(net.binary_layers(), [0.01] * n, [1e-2] * n, [1e-7] * n, [1e-2] * n, learn_alpha)
    _assert_pm_alpha(net)
    alphas0 = opt.alphas()
    for x, label in _batches(mnist5k, kind.startswith('conv')):
        nf.ep_step(net, x, net.target(label), 0.3, 'random-sign')
        net.updateWeights(opt)
        _assert_pm_alpha(net)
    assert sum(opt.flips) > 0
    assert (opt.alphas() != alphas0) == learn_alpha


def test_flip_rule_hand_computed():
    """m ← γΔW then (1−γ)m + γΔW; flip where −sign(W)·m > τ; m is not reset; |W| = α is kept."""
    w = torch.nn.Parameter(torch.tensor([[0.5, -0.5, 0.5, -0.5]]))
    alpha = torch.tensor(0.5)
    opt = BinaryOptimizer([(w, None, alpha, False, 0.5)], [0.0], [0.5], [0.3])
    w.grad = -torch.tensor([[-1.0, 1.0, -0.4, 0.4]])        # ΔW = −grad
    opt.step()                                               # m = 0.5ΔW = [-0.5, 0.5, -0.2, 0.2]
    assert w.tolist() == [[-0.5, 0.5, 0.5, -0.5]] and opt.flips == [2]
    w.grad = -torch.tensor([[0.0, 0.0, -0.6, 0.6]])
    opt.step()                                               # m = [-0.25, 0.25, -0.4, 0.4]
    assert torch.allclose(opt.momentum[0], torch.tensor([[-0.25, 0.25, -0.4, 0.4]]))
    assert w.tolist() == [[-0.5, 0.5, -0.5, 0.5]] and opt.flips == [4]   # first two: same sign as m, no flip


def test_flip_counts_in_csv_match_sign_changes(mnist5k, tmp_path):
    from papers import laydevant2021
    import main
    args = main.build_parser().parse_args(FC + ['--layersList', '784', '64', '10', '--learnAlpha', '0'])
    laydevant2021.check_args(args)
    torch.manual_seed(0)
    net = laydevant2021.build_net(args, 28)
    opt = laydevant2021.make_optimizer(net, args)
    before = [w.detach().sign().clone() for w, *_ in net.binary_layers()]
    batches = _batches(mnist5k, False, n=64, bs=64)          # one update: every flip changes a sign
    train = Tools_fc.train_bin(net, opt, batches, args, torch.Generator().manual_seed(0))
    changed = [(w.detach().sign() != b).sum().item() for (w, *_), b in zip(net.binary_layers(), before)]
    row = Tools_fc.results_row(net, opt, train, train, args)
    assert opt.flips == changed and sum(changed) > 0
    for k, (w, *_) in enumerate(net.binary_layers()):
        assert row[f'Nb_Change_Weights_{k}'] == pytest.approx(math.log(changed[k] / w.numel() + 1e-9))


def test_fc_bin_w_reaches_85_percent(tmp_path):
    code, folder = run_main(FC + ['--layersList', '784', '512', '10', '--epochs', '3', '--learnAlpha', '0',
                                  '--results-dir', str(tmp_path)])
    assert code == 0
    df = pd.read_csv(os.path.join(folder, 'results.csv'))
    assert 100 - df['Ave_Test_Error'].iloc[-1] >= 85.0
    assert df['epoch'].tolist() == [1, 2, 3]
    assert (df.drop(columns='epoch').dtypes == 'float64').all()   # real numbers, not tensor reprs
    date_folder = os.path.dirname(folder)
    assert os.path.basename(folder) == 'S-1' and 'plotFunctions.py' in os.listdir(date_folder)
    hp = open(os.path.join(folder, 'Hyperparameters.txt')).read().splitlines()
    assert hp[0].startswith('python main.py --archi fc') and hp[1] == 'Binary Weights Equilibrium Propagation '
    before, after = redraw(date_folder)
    assert after == before == ['alpha.png', 'errors.png', 'errors_mean_std.png', 'flips.png', 'losses.png',
                               'losses_mean_std.png']


def test_bin_w_n_and_bptt_learn(tmp_path):
    code, folder = run_main(['--archi', 'fc', '--layersList', '784', '512', '100', '--expand_output', '10',
                             '--activationFun', 'heaviside', '--binary_settings', 'bin_W_N', '--T', '20', '--Kmax',
                             '10', '--beta', '2', '--gamma', '2e-6', '2e-6', '--gradThreshold', '2.5e-7', '2e-7',
                             '--lrBias', '1e-7', '1e-7', '--dataset', 'mnist5k', '--epochs', '2', '--learnAlpha',
                             '0', '--seed', '0', '--results-dir', str(tmp_path)])
    assert code == 0
    df = pd.read_csv(os.path.join(folder, 'results.csv'))
    assert 100 - df['Ave_Test_Error'].iloc[-1] > 50.0        # chance is 10 %
    # the BPTT twin of the README's FC 1h (784-4096-10); with few hidden units most hardsigm units die under BPTT
    code, folder = run_main(FC + ['--layersList', '784', '4096', '10', '--epochs', '1', '--learnAlpha', '0',
                                  '--T', '50', '--optim', 'bptt', '--results-dir', str(tmp_path)])
    assert code == 0
    assert 100 - pd.read_csv(os.path.join(folder, 'results.csv'))['Ave_Test_Error'].iloc[-1] > 85.0


def test_learned_alpha_moves_and_weights_follow():
    torch.manual_seed(0)
    net = Network_fc_bin_W([784, 128, 10], 20, 5, 0.3)
    a0 = net.alpha.clone()
    opt = BinaryOptimizer(net.binary_layers(), [0.025, 0.05], [1e-5, 1e-4], [5e-7, 5e-7], [1e-1, 1e-1], True)
    for x, label in [(torch.rand(16, 784), torch.arange(16) % 10)] * 3:
        nf.ep_step(net, x, net.target(label), 0.3)
        net.updateWeights(opt)
    assert not torch.equal(net.alpha, a0)
    assert opt.alphas() == pytest.approx(net.alpha.tolist())
    _assert_pm_alpha(net)


def test_decay_lr_alpha_takes_effect_at_its_epoch(tmp_path):
    code, folder = run_main(FC + ['--layersList', '784', '32', '10', '--epochs', '3', '--learnAlpha', '1',
                                  '--lrAlpha', '1e-1', '1e-1', '--decayLrAlpha', '10', '--epochDecayLrAlpha', '2',
                                  '--results-dir', str(tmp_path), '--T', '4', '--Kmax', '2', '--batchSize', '500'])
    assert code == 0
    ck = torch.load(os.path.join(folder, 'checkpoint.pt'), weights_only=False)
    assert ck['optimizer']['lr_alpha'] == pytest.approx([1e-2, 1e-2])


def test_typo_tolerant_command_line():
    import main
    from suite import commandline
    p = main.build_parser()
    argv = commandline.normalise_argv(['--archi', 'conv', '--', 'layersList', '700', '--classi_threshold',
                                       '8e-8--conv_threshold', '8e-8', '2e-7'], p)
    args = p.parse_args(argv)
    assert args.layersList == [700] and args.classi_threshold == [8e-8] and args.conv_threshold == [8e-8, 2e-7]
    assert main.paper_of(argv).NAME == 'laydevant2021'


@pytest.mark.parametrize('extra,flag', [
    (['--layersList', '784', '64', '10', '--gradThreshold', '5e-7'], '--gradThreshold'),
    (['--layersList', '784', '64', '10', '--convList', '32', '1'], '--convList'),
    (['--layersList', '784', '64', '10', '--optim', 'adam'], '--optim'),
])
def test_bad_binary_input(extra, flag, tmp_path, capsys):
    argv = [a for a in FC if a not in ('--gradThreshold', '5e-7')] if flag == '--gradThreshold' else FC
    code, _ = run_main(argv + extra + ['--results-dir', str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and flag in err[-1] and len(err) == 1, err
    assert list(tmp_path.iterdir()) == []


def test_readme_cifar_command_with_padding_0_stops_clearly(tmp_path, capsys):
    argv = ['--device', '0', '--archi', 'conv', '--', 'layersList', '10', '--convList', '256', '256', '128', '64',
            '3', '--padding', '0', '--kernelSize', '5', '--Fpool', '2', '--activationFun', 'hardsigm', '--T', '150',
            '--Kmax', '10', '--beta', '0.3', '--gamma', '2e-7', '2e-7', '2e-7', '2e-7', '2e-7', '--gradThreshold',
            '1e-8', '1e-8', '1e-8', '1e-8', '1e-8', '--dataset', 'cifar10', '--lrBias', '0.001', '0.002', '0.025',
            '0.05', '0.1', '--epochs', '500', '--learnAlpha', '0', '--dry-run', '--results-dir', str(tmp_path)]
    code, _ = run_main(argv)
    err = capsys.readouterr().err
    assert code == 2 and 'vanishes' in err and '--padding' in err

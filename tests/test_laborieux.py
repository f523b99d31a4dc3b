"""Laborieux et al. 2021 family: dynamics oracle, GDU (theorem) check, estimators, training, resume, evaluate."""
import os

import pandas as pd
import pytest
import torch

import netFunctions as nf
from conftest import assert_resume_equals_uninterrupted, redraw, run_main
from papers.laborieux2021.nets import P_CNN, P_MLP, VF_CNN, VF_MLP

NETS = {
    'mlp-mse': lambda: P_MLP([784, 32, 16, 10], 5, 3, 0.1, 'tanh', 'mse'),
    'mlp-cel': lambda: P_MLP([784, 32, 10], 5, 3, 0.1, 'mysig', 'cel'),
    'cnn-max-avg': lambda: P_CNN(28, 1, [8, 6], [5, 3], [1, 1], [0, 1], 'ma', [10], 5, 3, 0.1, 'hard_sigmoid'),
    'cnn-stride-readout': lambda: P_CNN(28, 1, [8, 6, 4], [3, 3, 3], [1, 2, 1], [1, 1, 0], 'mim', [12, 10], 5, 3,
                                        0.1, 'my_hard_sig', 'cel', softmax=True),
    'cnn-cifar-readout': lambda: P_CNN(32, 3, [8, 6], [3, 3], [1, 1], [1, 1], 'mm', [10], 5, 3, 0.1,
                                       'ctrd_hard_sig', 'cel', softmax=True),
    'cnn-identity-cel': lambda: P_CNN(32, 3, [8, 6], [3, 3], [1, 1], [1, 1], 'ai', [20, 10], 5, 3, 0.1, 'sigmoid',
                                      'cel'),
}


def _x(net, B, gen):
    if isinstance(net, P_MLP):
        return torch.rand(B, 1, 28, 28, generator=gen).double()
    n = 28 if net.ch[0] == 1 else 32
    return torch.rand(B, net.ch[0], n, n, generator=gen).double()


@pytest.mark.parametrize('name', list(NETS))
def test_closed_form_equals_autograd_of_phi(name):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    net = NETS[name]().double()
    B = 4
    x = _x(net, B, gen)
    y = nf.one_hot(torch.randint(0, 10, (B,), generator=gen), 10).double()
    s = [torch.rand(si.shape, generator=gen).double() for si in net.init_state(B)]
    col = torch.tensor([[0.3], [0.3], [-0.3], [-0.3]], dtype=torch.float64)
    for yy, bb in ((None, 0.0), (y, 0.5), (y, col)):
        _assert_steps_equal_oracle(net, x, s, yy, bb)
    with torch.no_grad():                                   # a whole relaxation of the engine (fused steps)
        a = nf.relax(net, x, net.init_state(B), y, col, 12)
    for ai, oi in zip(a, nf.relax_autograd(net, x, net.init_state(B), y, col, 12)):
        torch.testing.assert_close(ai, oi, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize('name', ['mlp-mse', 'mlp-cel'])
def test_mlp_closed_form_ep_rule_equals_autograd_of_phi(name):
    """P_MLP's closed-form EP update is the autograd-of-Φ rule (netFunctions.phi_param_grads, the oracle)."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    net = NETS[name]().double()
    x = _x(net, 5, gen)
    y = nf.one_hot(torch.randint(0, 10, (5,), generator=gen), 10).double()
    with torch.no_grad():
        s0 = net.free_phase(x)
        pos, neg = net.forward(x, s0, y, (0.2, -0.2))
    for a, b, ba, bb in ((s0, pos, 0.0, 0.2), (neg, pos, -0.2, 0.2)):
        for c, o in zip(net.ep_param_grads(x, a, b, ba, bb, y), nf.phi_param_grads(net, x, a, b, ba, bb, y)):
            torch.testing.assert_close(c, o, rtol=1e-10, atol=1e-12)


def _assert_steps_equal_oracle(net, x, s, yy, bb):
    """stepper and the step that relaxations run without a graph (phase_step: the MLP's fused step, the CNN's
    channels-last maps) equal the autograd-of-Φ step."""
    with torch.no_grad():
        fused = net.phase_step(net.drive(x), yy, bb)(s)
    for a, f, o in zip(net.stepper(s, net.drive(x), yy, bb), fused, net.stepper_autograd(x, s, yy, bb)):
        torch.testing.assert_close(a, o, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(f, o, rtol=1e-10, atol=1e-12)


def _mnist(mnist5k, n):
    (x, lab), _ = mnist5k
    return x[:n].double(), nf.one_hot(lab[:n], 10).double()


def _bars(net, x, y, T1, T2, beta):
    right = nf.gdu_traces(net, x, y, T1, T2, beta)
    left = nf.gdu_traces(net, x, y, T1, T2, -beta)
    out = {}
    for k in right['NT']:
        if k.endswith('weight'):
            b, r, lf = right['NT'][k][-1], right['DT'][k][-1], left['DT'][k][-1]
            den = (r - b).abs() + (lf - b).abs()
            q = torch.where(den > 0, 2 * ((r + lf) / 2 - b).abs() / den.clamp_min(1e-30), torch.ones_like(den))
            out[k] = q.mean().item()
    return out


GDU_NETS = {
    'mlp': lambda: P_MLP([784, 512, 10], 30, 10, 0.01, 'tanh', 'mse'),
    # average pooling: with max pooling the synchronous tanh dynamics of this small net falls into a 2-cycle
    # (argmax switches between steps), and the theorem assumes a fixed point
    'cnn': lambda: P_CNN(28, 1, [8, 16], [5, 5], [1, 1], [0, 0], 'aa', [10], 100, 10, 0.01, 'tanh', 'mse'),
    'cnn-readout': lambda: P_CNN(28, 1, [8, 16], [5, 5], [1, 1], [0, 0], 'aa', [10], 100, 10, 0.01, 'tanh', 'cel',
                                 softmax=True),
}


@pytest.mark.parametrize('name', list(GDU_NETS))
def test_gdu_small_beta_and_symmetric_beats_one_sided(mnist5k, name):
    torch.manual_seed(0)
    net = GDU_NETS[name]().double()
    x, y = _mnist(mnist5k, 20)
    tr = nf.gdu_traces(net, x, y, net.T, net.Kmax, 0.01)
    for r in nf.gdu_table(tr):
        assert r['rmse_mean'] < (0.15 if r['kind'] == 'neurons' else 0.05), r
    ratios = _bars(net, x, y, net.T, net.Kmax, 0.1)
    assert all(v < 1.0 for v in ratios.values()), ratios
    assert max(ratios.values()) < 0.8, ratios


def test_batched_pm_beta_equals_sequential_with_readout():
    torch.manual_seed(0)
    net = NETS['cnn-stride-readout']().double()
    gen = torch.Generator().manual_seed(0)
    x = _x(net, 3, gen)
    y = nf.one_hot(torch.tensor([1, 2, 3]), 10).double()
    s0 = nf.free_phase(net, x, 10)
    pos, neg = nf.nudged_phases(net, x, y, s0, [0.5, -0.5], 4)
    (p1,) = nf.nudged_phases(net, x, y, s0, [0.5], 4)
    (n1,) = nf.nudged_phases(net, x, y, s0, [-0.5], 4)
    for a, b in zip(pos + neg, p1 + n1):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_readout_gets_the_averaged_cross_entropy_gradient():
    """Symmetric estimator, readout weights: ½[∂ℓ/∂W_out(s^β) + ∂ℓ/∂W_out(s^−β)]."""
    torch.manual_seed(0)
    net = NETS['cnn-cifar-readout']().double()
    gen = torch.Generator().manual_seed(1)
    x = _x(net, 4, gen)
    y = nf.one_hot(torch.tensor([0, 1, 2, 3]), 10).double()
    s0 = nf.free_phase(net, x, 8)
    pos, neg = nf.nudged_phases(net, x, y, s0, [0.5, -0.5], 4)
    g = dict(zip([n for n, _ in net.named_parameters()], nf.ep_param_grads(net, x, neg, pos, -0.5, 0.5, y)))
    W = net.readout.weight
    expect = 0
    for s in (pos, neg):
        expect = expect + 0.5 * torch.autograd.grad(net.cost(s, y).mean(), W)[0]
    torch.testing.assert_close(g['synapses.2.weight'], expect)


# ---------------------------------------------------------------------------------------------------------------
# Through main.py on the embedded digits

MLP = ['--model', 'MLP', '--task', 'mnist5k', '--archi', '784', '512', '10', '--optim', 'adam', '--lrs', '5e-4',
       '5e-4', '--act', 'mysig', '--todo', 'train', '--T1', '30', '--T2', '10', '--mbs', '50', '--seed', '0']


def _acc(folder):
    return pd.read_csv(os.path.join(folder, 'metrics.csv'))['test_acc'].iloc[-1]


@pytest.mark.parametrize('extra', [['--betas', '0.0', '0.1', '--thirdphase', '--loss', 'mse'],
                                   ['--betas', '0.0', '0.5', '--thirdphase', '--loss', 'cel'],
                                   ['--alg', 'BPTT', '--loss', 'mse']], ids=['EP-sym-mse', 'EP-sym-cel', 'BPTT'])
def test_train_mnist_mlp_two_epochs_beats_90(tmp_path, extra):
    code, folder = run_main(MLP + ['--epochs', '2', '--results-dir', str(tmp_path)] + extra)
    assert code == 0
    assert _acc(folder) > 90.0
    files = set(os.listdir(folder))
    assert {'hyperparameters.txt', 'metrics.csv', 'checkpoint.tar', 'best_checkpoint.tar', 'model.pt',
            'final_model.pt', 'train-test_acc.png', 'neural_activity.png', 'plotFunctions.py'} <= files
    before, after = redraw(folder)
    assert after == before == ['neural_activity.png', 'train-test_acc.png']


def test_cep_learns(tmp_path):
    """check/train_mnist_cep.sh for one epoch of the embedded digits (the paper trains 100 epochs at these small
    learning rates): well above chance."""
    argv = ['--model', 'MLP', '--alg', 'CEP', '--task', 'mnist5k', '--archi', '784', '512', '10', '--optim', 'sgd',
            '--lrs', '0.0056', '0.0028', '--epochs', '1', '--act', 'mysig', '--betas', '0.0', '0.2', '--T1', '40',
            '--T2', '15', '--mbs', '20', '--thirdphase', '--seed', '0', '--results-dir', str(tmp_path)]
    code, folder = run_main(argv)
    assert code == 0 and _acc(folder) > 60.0


def test_resume_equals_uninterrupted(tmp_path):
    base = MLP + ['--betas', '0.0', '0.1', '--random-sign', '--optim', 'sgd', '--mmt', '0.9', '--lr-decay',
                  '--lrs', '0.05', '0.02', '--T1', '10', '--T2', '4']
    assert_resume_equals_uninterrupted(base, tmp_path)


def test_evaluate_appends_and_gducheck_writes(tmp_path):
    _, folder = run_main(MLP + ['--epochs', '1', '--betas', '0.0', '0.1', '--results-dir', str(tmp_path)])
    code, _ = run_main(['--model', 'MLP', '--task', 'mnist5k', '--todo', 'evaluate', '--T1', '30', '--mbs', '200',
                        '--load-path', folder])
    assert code == 0
    lines = open(os.path.join(folder, 'hyperparameters.txt')).read().splitlines()
    assert lines[-2].startswith('Train accuracy : ') and lines[-1].startswith('Test accuracy : ')
    assert float(lines[-1].split(':')[1]) > 85
    code, gdu = run_main(['--model', 'MLP', '--task', 'mnist5k', '--archi', '784', '512', '10', '--act', 'tanh',
                          '--todo', 'gducheck', '--betas', '0.0', '0.1', '--T1', '30', '--T2', '10', '--mbs', '50',
                          '--loss', 'mse', '--thirdphase', '--seed', '0', '--results-dir', str(tmp_path)])
    assert code == 0
    files = set(os.listdir(gdu))
    assert {'gdu_laborieux.pt', 'gdu_stats.csv', 'bars.png', 'bars.csv', 'synapses_0_weight.png',
            'neurons_0.png', 'BPTT.tar', 'EP.tar', 'EP_2.tar'} <= files
    bptt = torch.load(os.path.join(gdu, 'BPTT.tar'))
    assert bptt['synapses.0.weight'].shape == (10, 512, 784) and bptt['neurons_1'].shape == (10, 10)
    assert (pd.read_csv(os.path.join(gdu, 'bars.csv'))['ratio'] < 1).all()


@pytest.mark.parametrize('argv,flag', [
    (['--model', 'CNN', '--loss', 'mse', '--softmax', '--lrs', '1', '1', '1'], '--softmax'),
    (['--model', 'MLP', '--archi', '784', '512', '10', '--lrs', '0.1'], '--lrs'),
    (['--model', 'CNN', '--pools', 'mmm', '--lrs', '1', '1', '1'], '--pools'),
    (['--model', 'CNN', '--kernels', '5', '--lrs', '1', '1', '1'], '--kernels'),
    (['--model', 'MLP', '--archi', 'fc', '--lrs', '0.1'], '--archi'),
])
def test_bad_flag_combinations(argv, flag, tmp_path, capsys):
    code, _ = run_main(argv + ['--task', 'mnist5k', '--results-dir', str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and flag in err and len(err.splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------------------------
# Asymmetric (vector-field) networks

VF_NETS = {
    'vfmlp': lambda: VF_MLP([784, 32, 16, 10], 5, 3, 0.1, 'tanh', 'mse'),
    'vfcnn': lambda: VF_CNN(28, 1, [8, 6], [5, 3], [1, 1], [0, 1], 'ma', [12, 10], 5, 3,
                                                       0.1, 'hard_sigmoid'),
    'vfcnn-readout': lambda: VF_CNN(32, 3, [8, 6], [3, 3], [1, 1], [1, 1], 'mm', [10], 5,
                                                               3, 0.1, 'my_hard_sig', loss='cel', softmax=True),
}


@pytest.mark.parametrize('name', list(VF_NETS))
def test_vf_field_equals_autograd_of_layerwise_phi(name):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    net = VF_NETS[name]().double()
    x = _x(net, 3, gen) if name != 'vfmlp' else torch.rand(3, 1, 28, 28, generator=gen).double()
    y = nf.one_hot(torch.tensor([1, 2, 3]), 10).double()
    s = [torch.rand(si.shape, generator=gen).double() for si in net.init_state(3)]
    for yy, bb in ((None, 0.0), (y, 0.4)):
        _assert_steps_equal_oracle(net, x, s, yy, bb)


def test_vf_mixed_rule_is_hebbian_with_free_presynaptic_states(mnist5k):
    """ĝ_{W_k} = −(1/β) mean_b (s^β_k − s*_k) s*_{k−1}ᵀ and ĝ_{B_k} = −(1/β) mean_b s*_{k+1}ᵀ (s^β_k − s*_k)."""
    torch.manual_seed(0)
    net = VF_NETS['vfmlp']().double()
    x, y = _mnist(mnist5k, 6)
    s0 = nf.free_phase(net, x, 20)
    (sb,) = nf.nudged_phases(net, x, y, s0, [0.2], 5)
    g = dict(zip([n for n, _ in net.named_parameters()], nf.ep_param_grads(net, x, s0, sb, 0.0, 0.2, y, s0)))
    d1 = sb[1] - s0[1]
    torch.testing.assert_close(g['synapses.1.weight'], -(d1.T @ s0[0]) / (0.2 * 6))
    torch.testing.assert_close(g['B_syn.1.weight'], -(s0[2].T @ d1) / (0.2 * 6))


def test_vf_same_update_keeps_mirrored_weights_equal(tmp_path):
    """With --same-update, B_k and W_{k+1} get the same update: started equal, they stay equal (angle 0)."""
    from papers.laborieux2021 import nets as laborieux_nets
    torch.manual_seed(0)
    net = laborieux_nets.VF_MLP([784, 64, 10], 20, 5, 0.1, 'mysig', 'mse', same_update=True)
    with torch.no_grad():
        net.B_syn[0].weight.copy_(net.synapses[1].weight)
    opt = torch.optim.SGD(net.lr_groups([0.05, 0.05]), lr=0.05)
    x = torch.rand(10, 1, 28, 28)
    y = nf.one_hot(torch.arange(10), 10)
    for _ in range(3):
        nf.ep_step(net, x, y, 0.1, 'symmetric')
        opt.step()
        opt.zero_grad()
    torch.testing.assert_close(net.B_syn[0].weight, net.synapses[1].weight)
    assert net.angles()[0] < 1e-2


def test_vfmlp_trains_and_logs_angles(tmp_path):
    argv = ['--model', 'VFMLP'] + MLP[2:] + ['--epochs', '2', '--betas', '0.0', '0.1', '--thirdphase',
                                             '--results-dir', str(tmp_path)]
    code, folder = run_main(argv)
    assert code == 0 and _acc(folder) > 88.0
    df = pd.read_csv(os.path.join(folder, 'metrics.csv'))
    assert 'angle_0' in df and df['angle_0'].iloc[-1] < 90


@pytest.mark.parametrize('estimator', ['one-sided', 'symmetric'])
def test_ep_gradients_are_laid_out_as_their_parameters_and_fused_adam_equals_adam(estimator):
    """The CNN relaxes on channels-last maps, so its closed-form conv gradients come out channels-last; .grad must be
    laid out as the parameter (torch's fused CPU Adam, suite.cli.adam, reads it with the parameter's strides: a
    channels-last gradient scrambled the second conv's update, 2e-3 off at lr 1e-3, and cost 5 points of test accuracy
    after one mnist5k epoch of check/train_mnist_cnn.sh's net). One Adam step, fused and not, then agrees to float
    rounding."""
    import copy
    from suite.cli import adam
    torch.manual_seed(0)
    net = P_CNN(28, 1, [8, 16], [5, 5], [1, 1], [0, 0], 'mm', [10], 6, 3, 0.4, 'hard_sigmoid')
    assert net.channels_last_wins(40)
    x, y = torch.rand(40, 1, 28, 28), nf.one_hot(torch.randint(0, 10, (40,)), 10)
    nf.ep_step(net, x, y, net.beta, estimator=estimator)
    assert all(p.grad.stride() == p.stride() for p in net.parameters())
    a, b = copy.deepcopy(net), copy.deepcopy(net)
    for m in (a, b):
        for p, p0 in zip(m.parameters(), net.parameters()):
            p.grad = p0.grad.clone(memory_format=torch.preserve_format)
    opts = torch.optim.Adam(a.parameters(), lr=1e-3), adam(b.parameters(), lr=1e-3)
    for o in opts:
        o.step()
    for p, q, p0 in zip(a.parameters(), b.parameters(), net.parameters()):
        assert (p - p0).abs().max() > 5e-4                     # (every tensor moved by about lr)
        torch.testing.assert_close(p, q, rtol=0, atol=1e-7)

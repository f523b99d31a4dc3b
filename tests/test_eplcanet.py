"""EPLCANet: the LCA front end in the EP engine (oracle, EP vs BPTT dictionary gradient), training on real digits,
dictionary learning, attacks, adversarial training, resume, CIFAR-10-C, bad input."""
import os

import numpy as np
import pandas as pd
import pytest
import torch

from papers.eplcanet import attacks
import netFunctions as nf
from conftest import assert_resume_equals_uninterrupted, redraw, run_main
from papers.eplcanet.nets import LCANet

LCA = dict(out_neurons=6, kernel_size=5, stride=1, lambda_=0.1, tau=10.0, eta=0.01, lca_iters=40, pad='valid')


def small_net(gamma=1.0, dict_class=True, pools='iaa'):
    """LCA (6 features) → sparse layer → two conv layers → readout: every layer receives feedback."""
    torch.manual_seed(0)
    return LCANet(16, 1, LCA, [6, 6, 8, 8], [5, 3, 3], [1, 1, 1], [0, 1, 1], pools, [10], 60, 20, 0.01, 'tanh', 'cel',
                  True, gamma, dict_class).double()


def batch(n=4):
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 1, 16, 16, generator=g, dtype=torch.float64), \
        nf.one_hot(torch.arange(n) % 10, 10).double()


def test_closed_form_step_is_the_gradient_of_phi():
    net = small_net(pools='imm')
    x, y = batch()
    with torch.no_grad():
        a = net.front(x)
    s = [torch.rand_like(t) for t in net.init_state(4)]
    beta = torch.tensor([0.3, 0.3, -0.3, -0.3], dtype=torch.float64).view(-1, 1)
    fast = net.stepper(s, net.drive(a), y, beta)
    slow = net.stepper_autograd(a, s, y, beta)
    for f, o in zip(fast, slow):
        assert torch.allclose(f, o, atol=1e-12)


@pytest.mark.parametrize('gamma', [1.0, 0.5, 0.0])
def test_ep_dictionary_gradient_equals_bptt(gamma):
    """EP inside the network, backprop through the unrolled LCA: the symmetric EP estimate of ∂L/∂D (and of every
    synapse) equals BPTT's when the network has converged and β is small. γ = 0.5 is not a gradient system (the
    feedback into the sparse layer is scaled): the estimate then only points the same way."""
    net = small_net(gamma)
    x, y = batch()
    nf.bptt_step(net, x, y, 100, 100)
    bptt = {n: p.grad.clone() for n, p in net.named_parameters()}
    net.zero_grad()
    nf.ep_step(net, x, y, 1e-3, 'symmetric', 100, 100)
    for n, p in net.named_parameters():
        rel = ((p.grad - bptt[n]).norm() / bptt[n].norm()).item()
        cos = ((p.grad * bptt[n]).sum() / (p.grad.norm() * bptt[n].norm())).item()
        assert (rel < 1e-4) if gamma in (0.0, 1.0) else (cos > 0.95), (n, rel, cos)
    assert bptt['lca.weights'].norm() > 1e-3


def test_without_feedback_the_sparse_layer_is_feed_forward():
    net = small_net(gamma=0.0).eval()
    x, _ = batch()
    with torch.no_grad():
        code = net.lca(x)[0]
        assert torch.allclose(net.front(x), net.act.rho(code), rtol=1e-12)
    assert len(net.state_shapes()) == 2                    # the conv layers only: the readout is outside


def test_lca_gradient_window():
    """Only the last grad_iters LCA iterations carry the graph; with all of them the gradient is the full one."""
    net = small_net()
    x, y = batch()
    grads = {}
    for w in (None, 40, 5):
        net.lca.grad_iters = w
        net.zero_grad()
        nf.bptt_step(net, x, y, 40, 40)
        grads[w] = net.lca.weights.grad.clone()
    assert torch.allclose(grads[None], grads[40], rtol=1e-9, atol=1e-14)
    assert not torch.allclose(grads[None], grads[5])


# ---------------------------------------------------------------------------------------------------------------
# Command lines on the embedded digits

C1 = ['--model', 'EPLCACNN', '--task', 'mnist5k', '--alg', 'EP', '--channels', '16', '16', '32', '--kernels', '5', '5',
      '--paddings', '0', '0', '0', '--strides', '1', '1', '1', '--optim', 'sgd', '--mmt', '0.9', '--lrs', '0.05',
      '0.05', '0.02', '--pools', 'imm', '--act', 'mysig', '--betas', '0.0', '0.2', '--T1', '20', '--T2', '5',
      '--mbs', '32', '--lca_lambda', '0.25', '--tau', '50', '--softmax', '--loss', 'cel', '--seed', '2',
      '--lca_iters', '2', '--thirdphase']


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp('eplcanet')
    code, folder = run_main(C1 + ['--epochs', '1', '--dict_loss', 'recon', '--results-dir', str(root)])
    assert code == 0
    return folder


def test_eplcanet_learns_and_logs_lca_metrics(trained):
    df = pd.read_csv(os.path.join(trained, 'metrics.csv'))
    assert df['test_acc'].iloc[-1] > 80, df
    assert 0 < df['train_sparsity'].iloc[-1] < 0.5
    assert df['test_recon_mse'].iloc[-1] > 0
    w = torch.load(os.path.join(trained, 'dictionary.pt'))['weights']
    assert torch.allclose(w.flatten(1).norm(dim=1), torch.ones(w.shape[0]), atol=1e-5)
    before, after = redraw(trained)
    for png in ('accuracy.png', 'recon_error.png', 'sparsity.png', 'lca_weights.png'):
        assert png in after
    assert before == after


def test_pgd_accuracy_falls_with_eps(trained, tmp_path):
    code, folder = run_main(['--todo', 'attack', '--model', 'EPLCACNN', '--load-path', trained, '--task', 'mnist5k',
                             '--attack-samples', '50', '--attack-iters', '4', '--attack-step', '10',
                             '--predict-step', '20', '--results-dir', str(tmp_path)])
    assert code == 0
    df = pd.read_csv(os.path.join(folder, 'accuracy_vs_eps.csv'))
    assert list(df['eps']) == sorted(attacks.eps_grid(2))
    acc = df['adv_acc'].to_numpy()
    assert (np.diff(acc) <= 2.0 + 1e-9).all(), acc          # non-increasing up to one image of 50
    assert acc[-1] < df['clean_acc'].iloc[0] - 10
    x_adv = np.load(os.path.join(folder, 'White_Norm_2_Adversarial_Images_Eps_3000_Attack_T_10_Predict_T_20.npy'))
    assert x_adv.shape == (50, 1, 28, 28) and x_adv.min() >= 0 and x_adv.max() <= 1
    assert 'accuracy_vs_eps.png' in os.listdir(folder)


def test_square_attack_respects_the_ball(trained, tmp_path):
    code, folder = run_main(['--todo', 'hsj-attack', '--attack-norm', '100', '--model', 'EPLCACNN', '--load-path',
                             trained, '--task', 'mnist5k', '--attack-samples', '20', '--queries', '8',
                             '--predict-step', '20', '--results-dir', str(tmp_path)])
    assert code == 0
    df = pd.read_csv(os.path.join(folder, 'accuracy_vs_eps.csv'))
    from suite import data
    x = data.load_mnist5k(False)[0][:20].numpy()
    for eps in df['eps']:
        adv = np.load(os.path.join(folder, f'Square_Norm_inf_Adversarial_Images_Eps_{int(1000 * eps)}_Attack_T_29_'
                                           f'Predict_T_20.npy'))
        assert np.abs(adv - x).max() <= eps + 1e-6
    assert (df['adv_acc'] <= df['clean_acc'] + 1e-9).all()


def test_square_margin_only_improves():
    net = small_net()
    clf = attacks.Classifier(net, predict_steps=20)
    x, y = batch(6)
    label = y.argmax(1)
    m0 = attacks.margin(clf.logits(x), label)
    xa = attacks.square(clf, x, label, 0.3, attacks.INF, queries=20, generator=torch.Generator().manual_seed(0))
    assert (xa - x).abs().max() <= 0.3 + 1e-12
    assert attacks.margin(clf.logits(xa), label).sum() < m0.sum()


def test_image_print(trained, tmp_path):
    code, folder = run_main(['--todo', 'image-print', '--model', 'EPLCACNN', '--load-path', trained, '--task',
                             'mnist5k', '--attack-iters', '3', '--attack-step', '5', '--predict-step', '10',
                             '--results-dir', str(tmp_path)])
    assert code == 0
    d = np.load(os.path.join(folder, 'image_print.npz'))
    imgs = d['images']
    assert imgs.shape[0] == 6
    for e, img in zip(d['eps'][1:], imgs[1:]):
        assert np.linalg.norm(img - imgs[0]) <= e + 1e-5
    assert 'image_print.png' in os.listdir(folder)


def test_adversarial_training_replaces_every_batch(tmp_path):
    code, folder = run_main(C1 + ['--todo', 'advtrain', '--eps', '0.5', '--train-attack-step', '2', '--attack-iters',
                                  '2', '--dry-run', '--results-dir', str(tmp_path)])
    assert code == 0
    assert pd.read_csv(os.path.join(folder, 'metrics.csv'))['adv_replaced'].iloc[-1] == 1.0
    # the replaced batch lies in the L2 ball of radius eps around the clean one, and differs from it
    from papers import eplcanet
    from types import SimpleNamespace
    from papers.laborieux2021.nets import P_CNN
    net = P_CNN(16, 1, [4], [3], [1], [1], 'm', [10], 10, 3, 0.1, 'mysig', 'cel', softmax=True).double()
    A = SimpleNamespace(eps=0.5, attack_iters=3, train_attack_step=3)
    ext = eplcanet.LCAExtension(A, net, attacks.Classifier(net, predict_steps=10, attack_steps=10))
    x, y = batch()
    xa = ext.prepare(x, y)
    d = (xa - x).flatten(1).norm(dim=1)
    assert (d > 0).all() and (d <= 0.5 + 1e-9).all()


def test_resume_equals_uninterrupted(tmp_path):
    base = C1[:C1.index('--channels')] + ['--channels', '4', '4', '8', '--kernels', '5', '5', '--paddings', '0',
                                          '0', '0', '--strides', '1', '1', '1', '--optim', 'adam', '--lrs', '1e-3',
                                          '1e-3', '1e-3', '--pools', 'imm', '--act', 'mysig', '--betas', '0.0', '0.2',
                                          '--T1', '5', '--T2', '2', '--mbs', '400', '--softmax', '--loss', 'cel',
                                          '--seed', '3', '--lca_iters', '1', '--random-sign', '--dict_loss', 'combo',
                                          '--eta', '0.01']
    assert_resume_equals_uninterrupted(base, tmp_path)


def test_dictionary_learning_then_pretrained_and_finetuned(tmp_path):
    code, folder = run_main(['--todo', 'dictlearn', '--task', 'mnist5k', '--lca_feats', '8', '--lca_ksize', '5',
                             '--lca_iters', '20', '--lca_tau', '10', '--lca_lambda', '0.3', '--lca_eta', '0.05',
                             '--mbs', '200', '--epochs', '2', '--seed', '0', '--results-dir', str(tmp_path)])
    assert code == 0
    df = pd.read_csv(os.path.join(folder, 'dictlearn.csv'))
    assert df['recon_mse'].iloc[1] < df['recon_mse'].iloc[0]
    assert len(np.load(os.path.join(folder, 'train_indices.npy'))) == 2000
    assert {'dictlearn.png', 'lca_weights.png'} <= set(os.listdir(folder))
    D = torch.load(os.path.join(folder, 'dictionary.pt'))['weights']
    c2 = ['--model', 'LCACNN', '--task', 'mnist5k', '--lca_feats', '8', '--lca_ksize', '5', '--lca_iters', '20',
          '--lca_tau', '10', '--lca_lambda', '0.3', '--channels', '8', '16', '--kernels', '3', '3', '--paddings', '1',
          '1', '--strides', '1', '1', '--pools', 'im', '--fc', '10', '--lrs', '0', '0.05', '0.02', '--T1', '8',
          '--T2', '3', '--betas', '0.0', '0.2', '--thirdphase', '--softmax', '--loss', 'cel', '--act', 'mysig',
          '--dry-run', '--seed', '0', '--results-dir', str(tmp_path)]
    for mode, same in (('pretrained', True), ('finetune', False)):
        code, run = run_main(c2 + ['--dict_training', mode])         # the newest dictlearn result by default
        assert code == 0
        w = torch.load(os.path.join(run, 'final_model.pt'))['model']['lca.weights']
        assert torch.allclose(w, D, atol=1e-6) == same, mode
    # an attack on the saved run needs none of its LCA flags
    code, _ = run_main(['--todo', 'attack', '--load-path', run, '--task', 'mnist5k', '--dry-run',
                        '--results-dir', str(tmp_path)])
    assert code == 0


def test_corruptions_on_cifar10c_files(tmp_path):
    root = tmp_path / 'data' / 'CIFAR-10-C'
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ('fog', 'gaussian_noise'):
        np.save(root / f'{name}.npy', rng.integers(0, 256, (5 * 4, 32, 32, 3), dtype=np.uint8))
    np.save(root / 'labels.npy', np.tile(np.arange(4), 5))
    code, folder = run_main(['--todo', 'corruptions', '--model', 'CNN', '--task', 'CIFAR10', '--channels', '4',
                             '--kernels', '3', '--paddings', '1', '--strides', '1', '--pools', 'm', '--fc', '10',
                             '--softmax', '--loss', 'cel', '--dry-run', '--data-root', str(tmp_path / 'data'),
                             '--results-dir', str(tmp_path)])
    assert code == 0
    df = pd.read_csv(os.path.join(folder, 'corruptions.csv'))
    assert len(df) == 10 and set(df['severity']) == {1, 2, 3, 4, 5}
    assert {'corruptions.png', 'Corruption_Accuracy.txt'} <= set(os.listdir(folder))


@pytest.mark.parametrize('argv, flag', [
    (['--model', 'LCACNN', '--task', 'mnist5k', '--lca_feats', '8', '--channels', '8', '16'], '--dict_training'),
    (['--model', 'EPLCACNN', '--task', 'mnist5k', '--channels', '8', '16', '32', '--kernels', '5', '5', '--lrs',
      '1', '1', '1'], 'sparse-copy'),
    (['--todo', 'attack', '--model', 'CNN', '--task', 'mnist5k'], '--load-path'),
    (['--model', 'LCACNN', '--task', 'mnist5k', '--lca_feats', '8', '--channels', '8', '16', '--kernels', '3', '3',
      '--paddings', '1', '1', '--strides', '1', '1', '--pools', 'im', '--lrs', '0', '1', '1', '--dict_training',
      'pretrained', '--dictionary', 'nowhere.pt'], '--dictionary'),
    (['--todo', 'corruptions', '--model', 'CNN', '--task', 'CIFAR10', '--dry-run', '--data-root', 'nowhere'],
     'CIFAR-10-C'),
    (['--todo', 'attack', '--attack-norm', '3', '--model', 'CNN', '--dry-run'], '--attack-norm'),
])
def test_bad_input_is_one_line(argv, flag, tmp_path, capsys):
    code, _ = run_main(argv + ['--results-dir', str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and flag in err[0], err
    assert not os.listdir(tmp_path)

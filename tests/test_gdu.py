"""GDU property (Ernoult et al. 2019, Thm 1): EP neural/synaptic updates in the nudged phase match, step by step,
the BPTT gradients of the loss taken backward in time."""
import pytest
import torch

import netFunctions as nf
from netClasses import EPcont, EPdisc, convEP, toyEPcont


def _linear_regime(net):
    """Small weights, biases at 0.5: every hardsigm unit stays inside (0, 1), so the prototypical dynamics
    s ← σ(∂Φ/∂s) is exactly the gradient dynamics of the bilinear Φ and the theorem holds up to O(β)."""
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith('weight'):
                p.mul_(0.05)
            else:
                p.fill_(0.5)
    return net


def _batch(mnist5k, n, conv):
    (x, lab), _ = mnist5k
    x = x[:n].double()
    return (x if conv else x.flatten(1)), nf.one_hot(lab[:n], 10).double()


def _stats(tr):
    return {r['key']: r for r in nf.gdu_table(tr)}


def _check(tr, rmse_max, sign_min):
    for key, r in _stats(tr).items():
        assert r['rmse_mean'] < rmse_max, (key, r)
        assert r['sign_pct'] + r['zero_pct'] > sign_min, (key, r)


def test_energy_based_gdu_is_tight(mnist5k):
    """EB-1h of Fig. 3 (tanh, no clamp, dt 0.08), small β: RMSE per layer ≪ 1 and signs agree."""
    torch.manual_seed(0)
    net = EPcont([10, 64, 784], T=800, Kmax=20, beta=1e-3, activation='tanh', dt=0.08, clamp=False).double()
    x, y = _batch(mnist5k, 8, False)
    tr = nf.gdu_traces(net, x, y)
    _check(tr, rmse_max=0.02, sign_min=99.0)


def test_energy_based_two_hidden_layers(mnist5k):
    torch.manual_seed(1)
    net = EPcont([10, 32, 32, 784], T=6000, Kmax=25, beta=1e-3, activation='tanh', dt=0.08, clamp=False).double()
    x, y = _batch(mnist5k, 4, False)
    _check(nf.gdu_traces(net, x, y), rmse_max=0.05, sign_min=98.0)


def test_toy_model_gdu():
    torch.manual_seed(0)
    net = toyEPcont([10, 50, 5], T=2000, Kmax=40, beta=1e-3, activation='tanh', dt=0.08, clamp=False).double()
    x = torch.rand(4, 5).double()
    y = nf.one_hot(torch.full((4,), 3), 10).double()
    _check(nf.gdu_traces(net, x, y), rmse_max=0.05, sign_min=99.0)


@pytest.mark.parametrize('conv', [False, True])
def test_prototypical_gdu_exact_in_linear_regime(mnist5k, conv):
    """EPdisc and convEP (max-pool, transposed-conv feedback) match BPTT step by step when σ is linear."""
    torch.manual_seed(0)
    if conv:
        net = convEP([10], [8, 4, 1], T=60, Kmax=8, beta=1e-4, activation='hardsigm', Fconv=5)
    else:
        net = EPdisc([10, 64, 32, 784], T=60, Kmax=8, beta=1e-4, activation='hardsigm')
    net = _linear_regime(net.double())
    x, y = _batch(mnist5k, 6, conv)
    _check(nf.gdu_traces(net, x, y), rmse_max=1e-3, sign_min=99.0)


@pytest.mark.parametrize('conv', [False, True])
def test_prototypical_gdu_approximate_at_default_init(mnist5k, conv):
    """With a saturating σ the P dynamics only approximately derive from Φ (the paper's prototypical setting):
    the traces differ by the factors σ'(h) but keep their sign."""
    torch.manual_seed(0)
    if conv:
        net = convEP([10], [16, 8, 1], T=300, Kmax=8, beta=1e-3, activation='sigm', Fconv=5)
    else:
        net = EPdisc([10, 128, 784], T=150, Kmax=10, beta=1e-3, activation='tanh')
    x, y = _batch(mnist5k, 8, conv)
    _check(nf.gdu_traces(net.double(), x, y), rmse_max=0.7, sign_min=85.0)


def test_sign_and_time_index_errors_would_be_caught(mnist5k):
    """The comparison has teeth: a flipped sign or a one-step shift of the EP traces fails it."""
    torch.manual_seed(0)
    net = EPcont([10, 64, 784], T=800, Kmax=20, beta=1e-3, activation='tanh', dt=0.08, clamp=False).double()
    x, y = _batch(mnist5k, 4, False)
    tr = nf.gdu_traces(net, x, y)
    for n, d in zip(tr['nS'], tr['dS']):
        assert nf.rmse(n, d)[0] < 0.02
        assert nf.rmse(n, -d)[0] > 1.0                              # sign convention off
        assert nf.rmse(n[1:], d[:-1])[0] > 0.05                      # EP traces one step late
    k = 'w.0.weight'
    assert nf.rmse(tr['nT'][k][1:], tr['dT'][k][:-1])[0] > 0.05


def test_cumulative_traces_equal_truncated_bptt_and_ep_update(mnist5k):
    """NT[K−1] is the BPTT gradient through the last K steps and DT[K−1] the EP update. (EPdisc's training BPTT
    keeps the graph for K + 1 steps, as the original, so NT[K−1] is its gradient at K − 1.)"""
    torch.manual_seed(0)
    net = EPdisc([10, 32, 784], T=30, Kmax=6, beta=0.05, activation='sigm').double()
    x, y = _batch(mnist5k, 5, False)
    tr = nf.gdu_traces(net, x, y)
    nf.bptt_step(net, x, y, K=net.Kmax - 1)
    for name, p in net.named_parameters():
        torch.testing.assert_close(tr['NT'][name][-1], p.grad, rtol=1e-9, atol=1e-12)
    net.zero_grad()
    nf.ep_step(net, x, y, net.beta)
    for name, p in net.named_parameters():
        torch.testing.assert_close(tr['DT'][name][-1], p.grad, rtol=1e-6, atol=1e-9)
    nT, dT = nf.compute_nTdT(tr['NT'], tr['DT'])
    for name in nT:
        torch.testing.assert_close(nT[name], tr['nT'][name])
        torch.testing.assert_close(dT[name], tr['dT'][name])


def test_ep_update_is_the_closed_form_hebbian_rule(mnist5k):
    """EPdisc: ĝ(W_{i,i+1}) = −(1/(βB)) Σ_b [s_i^β s_{i+1}^βᵀ − s_i^0 s_{i+1}^0ᵀ] (gradient sign)."""
    torch.manual_seed(0)
    net = EPdisc([10, 32, 784], T=20, Kmax=5, beta=0.2, activation='sigm').double()
    x, y = _batch(mnist5k, 5, False)
    s0 = nf.free_phase(net, x)
    (sb,) = nf.nudged_phases(net, x, y, s0, [0.2], 5)
    g = nf.ep_param_grads(net, x, s0, sb, 0.0, 0.2)
    expect_w0 = -(sb[0].T @ sb[1] - s0[0].T @ s0[1]) / (0.2 * 5)
    expect_wx = -((sb[1] - s0[1]).T @ x) / (0.2 * 5)
    torch.testing.assert_close(g[0], expect_w0)
    torch.testing.assert_close(g[2], expect_wx)


def test_batched_pm_beta_phases_equal_sequential(mnist5k):
    torch.manual_seed(0)
    net = EPcont([10, 32, 784], T=30, Kmax=8, beta=0.3, activation='sigm').double()
    x, y = _batch(mnist5k, 6, False)
    s0 = nf.free_phase(net, x)
    pos, neg = nf.nudged_phases(net, x, y, s0, [0.3, -0.3], 8)
    (pos1,) = nf.nudged_phases(net, x, y, s0, [0.3], 8)
    (neg1,) = nf.nudged_phases(net, x, y, s0, [-0.3], 8)
    for a, b in zip(pos + neg, pos1 + neg1):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_closed_form_ep_rule_equals_autograd_of_phi(mnist5k):
    """The closed-form EP update of the fully connected nets is the autograd-of-Φ rule (the oracle)."""
    torch.manual_seed(0)
    x, y = _batch(mnist5k, 5, False)
    for net in (EPdisc([10, 32, 16, 784], 20, 5, 0.2, 'sigm').double(),
                EPcont([10, 32, 16, 784], 20, 5, 0.2, 'tanh', clamp=False).double()):
        s0 = nf.free_phase(net, x)
        pos, neg = nf.nudged_phases(net, x, y, s0, [0.2, -0.2], 5)
        for a, b, ba, bb in ((s0, pos, 0.0, 0.2), (neg, pos, -0.2, 0.2)):
            closed = net.ep_param_grads(x, a, b, ba, bb)
            oracle = nf.phi_param_grads(net, x, a, b, ba, bb)
            for c, o in zip(closed, oracle):
                torch.testing.assert_close(c, o, rtol=1e-10, atol=1e-12)


def test_original_api_names_agree_with_the_engine(mnist5k):
    """compute_nSdSDT / compute_NT (original names) return the gdu_traces quantities; computeGradients writes the
    EP rule; initHidden is the zero state."""
    torch.manual_seed(0)
    net = EPdisc([10, 32, 784], T=30, Kmax=5, beta=0.05, activation='sigm').double()
    x, y = _batch(mnist5k, 4, False)
    tr = nf.gdu_traces(net, x, y)
    nS, dS, DT, s_star = nf.compute_nSdSDT(net, x, y)
    NT = nf.compute_NT(net, x, y)
    for a, b in zip(nS + dS, tr['nS'] + tr['dS']):
        torch.testing.assert_close(a, b)
    for k in DT:
        torch.testing.assert_close(DT[k], tr['DT'][k])
        torch.testing.assert_close(NT[k], tr['NT'][k])
    assert all((s == 0).all() for s in net.initHidden(3)) and len(s_star) == 2
    s0 = nf.free_phase(net, x)
    (sb,) = nf.nudged_phases(net, x, y, s0, [0.05], 5)
    net.computeGradients(x, s0, sb, 0.0, 0.05)
    for p, g in zip(net.parameters(), nf.phi_param_grads(net, x, s0, sb, 0.0, 0.05)):
        torch.testing.assert_close(p.grad, g)

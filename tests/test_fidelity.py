"""Fidelity to the original codes. Every expected value is computed independently of the code
under test: by hand on a tiny net, or by an explicit per-step loop written here on the autograd-of-Φ oracle."""
import pytest
import torch

import netFunctions as nf
from papers.eplcanet.lca import LCAConv2D
from netClasses import EPcont, EPdisc, convEP, toyEPcont
from Network_conv import Network_conv_bin_W
from Network_fc import BinaryOptimizer, Network_fc_bin_W
from papers.laborieux2021.nets import P_CNN, P_MLP


def _rel(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


# ---------------------------------------------------------------------------------------------------------------
# 1–2. Continual EP: the −β phase and the softmax readout


def _cep_oracle(net, x, y, beta, lrs, wds, T, K, thirdphase):
    """The original's CEP written out step by step on the autograd-of-Φ oracle: its compute_syn_grads between
    consecutive states, (φ(s_{k+1}; β_2) − φ(s_k; β_1))/(β_1 − β_2) with φ = mean_b Φ, then one SGD step with weight
    decay (θ ← θ − lr (g + wd θ)); in the +β phase g is divided by (1 − lr wd)^(K−1−k), not in the −β phase."""
    params = list(net.parameters())
    groups = [[p for p in m.parameters()] for m in net.synapses]

    def lr_wd(p):
        k = next(i for i, g in enumerate(groups) if any(p is q for q in g))
        return lrs[k], wds[k]

    def relax(s, b, n):
        for _ in range(n):
            s = [si.detach() for si in net.stepper_autograd(x, s, y if b != 0 else None, b)]
        return s

    def learn(s, b1, b2, b_dyn, decayed):
        for k in range(K):
            s_next = relax(s, b_dyn, 1)
            phi = lambda st, b: net.phi(x, st, y, b).mean()             # noqa: E731
            g = torch.autograd.grad((phi(s_next, b2) - phi(s, b1)) / (b1 - b2), params, allow_unused=True)
            with torch.no_grad():
                for p, gp in zip(params, g):
                    gp = torch.zeros_like(p) if gp is None else gp
                    lr, wd = lr_wd(p)
                    if decayed:
                        gp = gp / (1 - lr * wd) ** (K - 1 - k)
                    p -= lr * (gp + wd * p)
            s = s_next
        return s

    s = relax(net.init_state(x.shape[0]), 0.0, T)
    s = learn(s, 0.0, beta, beta, True)
    if thirdphase:
        s = relax(s, 0.0, K)
        learn(s, beta, -beta, -beta, False)


def _cep_nets():
    return {
        'mlp-mse': lambda: P_MLP([12, 7, 4], 0, 0, 0.2, 'mysig', 'mse'),
        'cnn-readout': lambda: P_CNN(6, 1, [2], [3], [1], [0], 'm', [5, 3], 0, 0, 0.2, 'tanh', 'cel',
                                     softmax=True),
    }


@pytest.mark.parametrize('name', ['mlp-mse', 'cnn-readout'])
@pytest.mark.parametrize('thirdphase', [False, True])
def test_cep_matches_the_original_step_by_step(name, thirdphase):
    """Items 1 and 2: after a CEP mini-batch the weights are the original's (−β phase at 1/(2β), no decay division;
    the readout gets the full cross-entropy gradient at every step). The old suite gave the −β phase 1/β with the
    decay division (twice the original) and the readout only ℓ(s_{k+1}) − ℓ(s_k)."""
    torch.manual_seed(0)
    net = _cep_nets()[name]().double()
    gen = torch.Generator().manual_seed(3)
    B, T, K, beta = 3, 12, 5, 0.2
    x = torch.rand(B, 12, generator=gen).double() if name == 'mlp-mse' else \
        torch.rand(B, 1, 6, 6, generator=gen).double()
    y = nf.one_hot(torch.tensor([0, 2, 1]), 4 if name == 'mlp-mse' else 3).double()
    lrs, wds = [0.3, 0.2, 0.1][:len(net.synapses)], [0.05, 0.1, 0.02][:len(net.synapses)]
    oracle = _cep_nets()[name]().double()
    oracle.load_state_dict(net.state_dict())
    start = [p.detach().clone() for p in net.parameters()]
    _cep_oracle(oracle, x, y, beta, lrs, wds, T, K, thirdphase)
    opt = torch.optim.SGD(net.lr_groups(lrs, wds), lr=lrs[0])
    nf.cep_step(net, x, y, beta, opt, T, K, thirdphase=thirdphase)
    for (n, p), q, p0 in zip(net.named_parameters(), oracle.parameters(), start):
        moved = (q - p0).norm()
        assert moved > 0, n
        assert (p - q).norm() / moved < 1e-9, (n, ((p - q).norm() / moved).item())


def test_cep_readout_moves_by_the_cross_entropy_gradient():
    """Item 2, by hand: with the hidden layers frozen (lr 0) and no weight decay, one +β phase moves the readout by
    −lr Σ_k ∂ℓ(s_{k+1})/∂W_out, the states s_k being those of the (θ-fixed) nudged phase."""
    torch.manual_seed(0)
    net = _cep_nets()['cnn-readout']().double()
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(3, 1, 6, 6, generator=gen).double()
    y = nf.one_hot(torch.tensor([0, 2, 1]), 3).double()
    T, K, beta = 12, 4, 0.2
    W = net.readout.weight
    lr = 1e-7     # the readout's own moves perturb the nudged trajectory at second order in lr only
    s = nf.free_phase(net, x, T)
    expect = torch.zeros_like(W)
    for _ in range(K):
        s = net.stepper_autograd(x, s, y, beta)
        expect -= lr * torch.autograd.grad(net.cost(s, y).mean(), W)[0]
    W0 = W.detach().clone()
    opt = torch.optim.SGD(net.lr_groups([0.0, 0.0, lr]), lr=lr)
    nf.cep_step(net, x, y, beta, opt, T, K)
    assert _rel(W.detach() - W0, expect) < 1e-5


# ---------------------------------------------------------------------------------------------------------------
# 3. Binary EP: Δα from the weights before the flips; conv nets flip on ≥ τ


def test_alpha_gradient_uses_the_weights_before_the_flips():
    """By hand: W = α[+1, −1, +1, −1], α = 0.5, ΔW = −grad = [−1, 1, −0.4, 0.4], γ = 0.5, τ = 0.3: m = [−0.5, 0.5,
    −0.2, 0.2], the first two weights flip. Δα = ½ ⟨W_before, ΔW⟩ = ½ · 0.5 · (−1 − 1 − 0.4 − 0.4) = −0.7;
    α ← 0.5 + 0.1 · (−0.7) = 0.43; W = 0.43 [−1, +1, +1, −1]. (With the flipped weights Δα would be
    ½ · 0.5 · (1 + 1 − 0.4 − 0.4) = +0.3 and α = 0.53.)"""
    w = torch.nn.Parameter(torch.tensor([[0.5, -0.5, 0.5, -0.5]], dtype=torch.float64))
    alpha = torch.tensor(0.5, dtype=torch.float64)
    opt = BinaryOptimizer([(w, None, alpha, False, 0.5)], [0.0], [0.5], [0.3], [0.1], True)
    w.grad = -torch.tensor([[-1.0, 1.0, -0.4, 0.4]], dtype=torch.float64)
    opt.step()
    assert opt.flips == [1 + 1]
    assert alpha.item() == pytest.approx(0.43, abs=1e-15)
    torch.testing.assert_close(w.detach(), 0.43 * torch.tensor([[-1.0, 1.0, 1.0, -1.0]], dtype=torch.float64),
                               rtol=0, atol=1e-15)


def test_alpha_of_a_conv_layer_per_channel_before_the_flips():
    """Per output channel, by hand: channel 0 = 0.25[+1, +1], channel 1 = 0.5[+1, −1]; ΔW = [[−2, 1], [4, 1]];
    γ = 1, τ = 1.5: flips where −sign(W)ΔW ≥ 1.5, i.e. W[0, 0] (2 ≥ 1.5) only. Δα = ⟨W_before, ΔW⟩ per channel =
    [0.25 (−2 + 1), 0.5 (4 − 1)] = [−0.25, 1.5]; lrAlpha 0.1: α = [0.225, 0.65]."""
    w = torch.nn.Parameter(torch.tensor([[[[0.25, 0.25]]], [[[0.5, -0.5]]]], dtype=torch.float64))
    alpha = torch.tensor([0.25, 0.5], dtype=torch.float64).view(2, 1, 1, 1)
    opt = BinaryOptimizer([(w, None, alpha, True, 1.0)], [0.0], [1.0], [1.5], [0.1], True)
    w.grad = -torch.tensor([[[[-2.0, 1.0]]], [[[4.0, 1.0]]]], dtype=torch.float64)
    opt.step()
    torch.testing.assert_close(alpha.flatten(), torch.tensor([0.225, 0.65], dtype=torch.float64), rtol=0,
                               atol=1e-15)
    torch.testing.assert_close(w.detach(), torch.tensor([[[[-0.225, 0.225]]], [[[0.65, -0.65]]]],
                                                        dtype=torch.float64), rtol=0, atol=1e-15)


def test_conv_nets_flip_on_the_threshold_fc_nets_above_it():
    """The original's conv nets flip when −sign(W) m ≥ τ, its fc nets when > τ: with m exactly τ (γ = ½, powers of
    two), a conv weight flips and an fc weight does not."""
    torch.manual_seed(0)
    for net, expect in ((Network_conv_bin_W([10], [2, 1], 3, 1, 0.3, kernel_size=3, in_size=8), 1),
                        (Network_fc_bin_W([4, 3, 2], 3, 1, 0.3), 0)):
        layers = net.binary_layers()
        n = len(layers)
        opt = BinaryOptimizer(layers, [0.0] * n, [0.5] * n, [0.25] * n)
        for k, (w, b, *_) in enumerate(layers):
            w.grad = torch.zeros_like(w)
            if k == n - 1:
                w.grad.view(-1)[0] = 0.5 * torch.sign(w.view(-1)[0])       # m = −½ grad = −½ sign(W): opposes W
        sign0 = [w.detach().sign().clone() for w, *_ in layers]
        opt.step()
        changed = sum((w.detach().sign() != s0).sum().item() for (w, *_), s0 in zip(layers, sign0))
        assert changed == expect, type(net).__name__


# ---------------------------------------------------------------------------------------------------------------
# 4. Truncated BPTT: the graph covers K + 1 steps for Ernoult's and Laydevant's fc nets, K for the others


def _bptt_by_hand_p1h(W0, b0, W1, b1, x, y, T, window):
    """EPdisc with one hidden layer written out: s_0 ← σ(W_0 s_1 + b_0), s_1 ← σ(W_1 x + b_1 + W_0ᵀ s_0),
    σ = sigm; the graph is kept for the last `window` steps; L = (1/2B) Σ ||s_0 − y||²."""
    sig = lambda v: torch.sigmoid(4 * (v - 0.5))                         # noqa: E731
    B = x.shape[0]
    s0, s1 = torch.zeros(B, W0.shape[0], dtype=x.dtype), torch.zeros(B, W0.shape[1], dtype=x.dtype)
    for t in range(T):
        if t == T - window:
            s0, s1 = s0.detach(), s1.detach()
        with torch.set_grad_enabled(t >= T - window):
            s0, s1 = sig(s1 @ W0.T + b0), sig(x @ W1.T + b1 + s0 @ W0)
    L = 0.5 * ((s0 - y) ** 2).sum() / B
    g = torch.autograd.grad(L, [W0, b0, W1, b1], allow_unused=True)
    return [torch.zeros_like(p) if gi is None else gi for p, gi in zip([W0, b0, W1, b1], g)]


@pytest.mark.parametrize('K', [0, 3, 11, 12])
def test_bptt_keeps_k_plus_one_steps_for_ernoult_fc_by_hand(K):
    """EPdisc: Ernoult's 'withgrad' detaches at step T − 1 − K, so the graph covers the last K + 1 steps; with
    K + 1 ≥ T (here K = 11, 12 with T = 12) the whole phase from zeros. The old suite differentiated K steps."""
    torch.manual_seed(0)
    net = EPdisc([3, 5, 6], T=12, Kmax=K, beta=0.1, activation='sigm').double()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(4, 6, generator=gen, dtype=torch.float64)
    y = nf.one_hot(torch.tensor([0, 1, 2, 1]), 3).double()
    nf.bptt_step(net, x, y)
    expect = _bptt_by_hand_p1h(net.w[0].weight, net.w[0].bias, net.w[1].weight, net.w[1].bias, x, y, 12,
                               min(K + 1, 12))
    for p, e in zip([net.w[0].weight, net.w[0].bias, net.w[1].weight, net.w[1].bias], expect):
        torch.testing.assert_close(torch.zeros_like(p) if p.grad is None else p.grad, e, rtol=1e-12, atol=1e-15)


def _bptt_loop(net, x, y, T, window):
    """Truncated BPTT written out with the net's step: T − window steps without graph, `window` with it."""
    drive = net.drive(x)
    s = net.init_state(x.shape[0])
    with torch.no_grad():
        for _ in range(T - window):
            s = net.stepper(s, drive, None, 0.0)
    s = [si.detach() for si in s]
    for _ in range(window):
        s = net.stepper(s, drive, None, 0.0)
    params = [p for p in net.parameters()]
    return torch.autograd.grad(net.cost(s, y).mean(), params, allow_unused=True)


NETS_BPTT = {    # name: (net, input shape, classes, graph steps beyond K kept by the original)
    'EPcont (Ernoult, K+1)': (lambda: EPcont([3, 5, 6], 10, 3, 0.1, 'sigm'), (4, 6), 3, 1),
    'EPdisc 2h (Ernoult, K+1)': (lambda: EPdisc([3, 5, 4, 6], 10, 3, 0.1, 'tanh'), (4, 6), 3, 1),
    'bin_W fc (Laydevant, K+1)': (lambda: Network_fc_bin_W([6, 5, 3], 10, 3, 0.3), (4, 6), 3, 1),
    'toy (Ernoult, K)': (lambda: toyEPcont([3, 5, 6], 10, 3, 0.1, 'tanh', clamp=False), (4, 6), 3, 0),
    'convEP (Ernoult, K)': (lambda: convEP([3], [2, 1], 10, 3, 0.1, 'hardsigm', Fconv=3, in_size=8), (4, 1, 8, 8),
                            3, 0),
    'bin_W conv (Laydevant, K)': (lambda: Network_conv_bin_W([3], [2, 1], 10, 3, 0.3, kernel_size=3, in_size=8),
                                  (4, 1, 8, 8), 3, 0),
    'P_MLP (Laborieux, K)': (lambda: P_MLP([6, 5, 3], 10, 3, 0.1, 'tanh'), (4, 6), 3, 0),
}


@pytest.mark.parametrize('name', list(NETS_BPTT))
def test_bptt_window_of_every_family(name):
    make, shape, n, extra = NETS_BPTT[name]
    torch.manual_seed(0)
    net = make().double()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(*shape, generator=gen, dtype=torch.float64)
    y = net.target(torch.tensor([0, 1, 2, 1]))
    nf.bptt_step(net, x, y)
    expect = _bptt_loop(net, x, y, 10, 3 + extra)
    for (pn, p), e in zip(net.named_parameters(), expect):
        if e is not None:
            torch.testing.assert_close(p.grad, e, rtol=1e-12, atol=1e-15, msg=f'{name}: {pn}')


# ---------------------------------------------------------------------------------------------------------------
# 6. LCA: the code returned after N iterations is T(u_{N−1}), as lca-pytorch


def test_lca_returns_the_activation_before_the_last_update_by_hand():
    """One unit-norm 1×1 feature on a 1×1 image (no lateral inhibition): u_i = u_{i−1} + (x − u_{i−1})/τ. With x = 2,
    τ = 4, λ = ½: u_1 = 0.5, u_2 = 0.875, u_3 = 1.15625. lca-pytorch returns after 3 iterations the activation of
    the third one, T(u_2) = 0.375, and the state u_3 (the old suite returned T(u_3) = 0.65625); after 1 iteration,
    T(u_0) = 0."""
    lca = LCAConv2D(1, 1, kernel_size=1, lambda_=0.5, tau=4, input_zero_mean=False, input_unit_var=False).double()
    lca.assign_weight_values(torch.ones(1, 1, 1, 1))
    x = torch.full((1, 1, 1, 1), 2.0, dtype=torch.float64)
    acts, recon, err, u = lca.encode(x, iters=3)
    assert acts.item() == 0.375 and u.item() == 1.15625
    assert recon.item() == 0.375 and err.item() == 2.0 - 0.375
    acts, _, _, u = lca.encode(x, iters=1)
    assert acts.item() == 0.0 and u.item() == 0.5
    acts, _, _, u = lca.encode(x, initial_states=u, iters=2)                 # warm start continues the sequence
    assert acts.item() == 0.375 and u.item() == 1.15625


def test_receipe_compares_with_the_training_bptt_gradient():
    """Ernoult's receipe compares the EP update after Kmax nudged steps with its training 'withgrad' gradient,
    i.e. BPTT through Kmax + 1 steps for EPdisc (written out by hand here); the old suite used Kmax steps."""
    torch.manual_seed(0)
    net = EPdisc([3, 5, 6], T=12, Kmax=1, beta=0.05, activation='sigm').double()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(8, 6, generator=gen, dtype=torch.float64)
    y = nf.one_hot(torch.tensor([0, 1, 2, 1, 0, 2, 2, 1]), 3).double()
    bptt = _bptt_by_hand_p1h(net.w[0].weight, net.w[0].bias, net.w[1].weight, net.w[1].bias, x, y, 12, 2)
    nf.ep_step(net, x, y, net.beta)
    ep = [net.w[0].weight.grad, net.w[1].weight.grad]
    stats = nf.receipe(net, lambda: (x, y), n_trials=1)
    for name, n, d in zip(['w.0.weight', 'w.1.weight'], [bptt[0], bptt[2]], ep):
        same = ((torch.sign(n) == torch.sign(d)) & (n != 0) & (d != 0)).double().mean().item()
        assert stats[name][0, 0].item() == pytest.approx(100 * same, abs=1e-4), name
    assert stats['w.1.weight'][0, 0] > 0          # through Kmax = 1 step only, BPTT would give W_1 exactly 0

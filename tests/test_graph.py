"""Energies over a graph of layers (ep/graph.py): closed forms vs autograd of Φ, the colouring, centered EP vs BPTT
on a small Hopfield-ResNet13 and VGG5, and Laborieux's P_CNN written as a graph."""
import pytest
import torch

import netFunctions as nf
from ep import estimators, graph
from papers.hopfield_resnet import nets
from papers.laborieux2021.nets import P_CNN

B = 3


pytestmark = pytest.mark.usefixtures('one_thread')


def _rand(*shape, gen):
    return torch.rand(B, *shape, generator=gen, dtype=torch.float64) - 0.3


COUPLINGS = {
    'dense': (lambda: graph.Dense(0, 1, 4 * 3 * 3, 7), (4, 3, 3), (7,)),
    'conv-s1-p1': (lambda: graph.Conv(0, 1, 3, 5, 3, 1, 1), (3, 8, 8), (5, 8, 8)),
    'conv-s2-p1': (lambda: graph.Conv(0, 1, 3, 5, 3, 2, 1), (3, 8, 8), (5, 4, 4)),
    'conv-s2-p1-odd': (lambda: graph.Conv(0, 1, 3, 5, 3, 2, 1), (3, 7, 7), (5, 4, 4)),
    'conv-1x1-s2': (lambda: graph.Conv(0, 1, 3, 5, 1, 2, 0), (3, 8, 8), (5, 4, 4)),
    'convpool': (lambda: graph.ConvPool(0, 1, 3, 5, 3, 1, 1), (3, 8, 8), (5, 4, 4)),
    'convpool-p0': (lambda: graph.ConvPool(0, 1, 2, 4, 3, 1, 0), (2, 9, 9), (4, 3, 3)),
    'identity': (lambda: graph.Identity(0, 1), (4, 3, 3), (4, 3, 3)),
}


def test_stride_one_adjoint_follows_every_new_value_of_the_weight():
    """The flipped kernel of a stride-1 adjoint is made once per value of W (a phase reuses it): after an in-place
    update (an optimiser step), a loaded state and a change of dtype the adjoint is still the transposed convolution
    of the current W."""
    torch.manual_seed(0)
    e = graph.Conv(0, 1, 3, 5, 3, 1, 1)
    g = torch.randn(B, 5, 8, 8)

    def reference():
        return torch.nn.functional.conv_transpose2d(g.to(e.weight.dtype), e.weight.detach(), None, 1, 1)

    with torch.no_grad():
        assert torch.allclose(e.adjoint(g, g.shape), reference(), atol=1e-5)
        e.weight.add_(1.0)                                          # in place, as an optimiser step
        assert torch.allclose(e.adjoint(g, g.shape), reference(), atol=1e-5)
        e.load_state_dict({'weight': torch.randn_like(e.weight)})
        assert torch.allclose(e.adjoint(g, g.shape), reference(), atol=1e-5)
        e.double()
        out = e.adjoint(g.double(), g.shape)
        assert out.dtype == torch.float64 and torch.allclose(out, reference(), atol=1e-12)


@pytest.mark.parametrize('name', list(COUPLINGS))
def test_coupling_closed_forms_equal_autograd(name):
    make, sa, sb = COUPLINGS[name]
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    e = make().double()
    a, b = _rand(*sa, gen=gen).requires_grad_(), _rand(*sb, gen=gen).requires_grad_()
    c = torch.randn(B, generator=gen, dtype=torch.float64)
    params = list(e.parameters())
    ga, gb, *gp = torch.autograd.grad((c * e.energy(a, b)).sum(), [a, b] + params)
    up, ctx = e(a.detach())
    torch.testing.assert_close(up * c.view(-1, *[1] * (up.dim() - 1)), gb, rtol=1e-12, atol=1e-12)
    down = e.adjoint((c.view(-1, *[1] * (b.dim() - 1)) * b).detach(), ctx if e.needs_context else a.shape)
    torch.testing.assert_close(down, ga, rtol=1e-12, atol=1e-12)
    closed = e.param_grads(a.detach(), b.detach(), c)
    assert len(closed) == len(gp)
    for u, v in zip(closed, gp):
        torch.testing.assert_close(u, v, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('layer_shape,bias_shape', [((5, 4, 4), (5,)), ((7,), (7,)), ((5, 4, 4), (5, 4, 4))])
def test_bias_closed_forms_equal_autograd(layer_shape, bias_shape):
    gen = torch.Generator().manual_seed(2)
    bias = graph.Bias(1, bias_shape).double()
    bias.init_gain(0.5, gen)
    s = _rand(*layer_shape, gen=gen).requires_grad_()
    c = torch.randn(B, generator=gen, dtype=torch.float64)
    gs, gb = torch.autograd.grad((c * bias.energy(s)).sum(), [s, bias.bias])
    torch.testing.assert_close(c.view(-1, *[1] * len(layer_shape)) * bias.field(layer_shape).expand_as(s), gs,
                               rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(bias.param_grads(s.detach(), c)[0], gb, rtol=1e-12, atol=1e-12)


def test_greedy_coloring_has_no_edge_inside_a_group():
    pairs = [(0, 1), (1, 2), (0, 2), (2, 3), (3, 4), (2, 4), (4, 5)]
    groups = graph.greedy_coloring(6, pairs)
    assert sorted(i for g in groups for i in g) == list(range(6))
    for g in groups:
        assert not any(a in g and b in g for a, b in pairs)


@pytest.mark.parametrize('network', nets.NETWORKS)
def test_network_groups_are_independent(network):
    net = nets.build(network, 1, 10, 1 / 32, 'hard-sigmoid', in_size=16)
    for group in net.groups:
        layers = {l + 1 for l in group}
        assert not any(e.pre in layers and e.post in layers for e in net.couplings)
    assert len(list(net.couplings)) == nets.N_WEIGHTS[network]
    if network == 'hopfieldresnet13':
        # graph layers {1, 3, 5, 7, 9}, {2, 6}, {4, 8}: the skips join the even layers, so odd/even is not valid
        assert [[l + 1 for l in g] for g in net.groups] == [[1, 3, 5, 7, 9], [2, 6], [4, 8]]


@pytest.mark.parametrize('network', nets.NETWORKS)
@pytest.mark.parametrize('act', ['hard-sigmoid', 'reluclip'])
@pytest.mark.parametrize('lossfn', ['MSE', 'CE'])
def test_step_and_ep_rule_equal_autograd_of_phi(network, act, lossfn):
    gen = torch.Generator().manual_seed(3)
    net = nets.build(network, 1, 10, 1 / 32, act, lossfn, in_size=16, generator=gen).double()
    x = torch.rand(B, 1, 16, 16, generator=gen, dtype=torch.float64)
    y = nf.one_hot(torch.tensor([1, 4, 9]), 10).double()
    s = [torch.rand(B, *sh, generator=gen, dtype=torch.float64) for sh in net.state_shapes()]
    col = torch.tensor([[0.3], [-0.3], [0.2]], dtype=torch.float64)
    for sched in (True, False):
        net.set_relaxation(asynchronous=sched)
        for yy, bb in ((None, 0.0), (y, 0.4), (y, col)):
            for u, v in zip(net.stepper(s, net.drive(x), yy, bb), net.stepper_autograd(x, s, yy, bb)):
                torch.testing.assert_close(u, v, rtol=1e-10, atol=1e-12)
    sb = [torch.rand(B, *sh, generator=gen, dtype=torch.float64) for sh in net.state_shapes()]
    for u, v in zip(net.ep_param_grads(x, s, sb, -0.1, 0.1, y), nf.phi_param_grads(net, x, s, sb, -0.1, 0.1, y)):
        torch.testing.assert_close(u, v, rtol=1e-10, atol=1e-12)


def test_reluclip_c_is_in_the_state_dict():
    gen = torch.Generator().manual_seed(4)
    net = nets.build('vgg5', 1, 10, 1 / 32, 'reluclip', in_size=16, generator=gen)
    cs = {k: v.item() for k, v in net.state_dict().items() if k.endswith('rho.hi')}
    assert len(cs) == 4 and all(1 <= c <= 10 for c in cs.values())
    other = nets.build('vgg5', 1, 10, 1 / 32, 'reluclip', in_size=16, generator=torch.Generator().manual_seed(5))
    other.load_state_dict(net.state_dict())
    assert [lay.rho._hi for lay in other.layers[1:-1]] == list(cs.values())


@pytest.mark.parametrize('network', nets.NETWORKS)
def test_centered_ep_matches_bptt(network):
    """At small β and a converged relaxation, the symmetric (centered) EP estimate is the BPTT gradient. ρ is
    piecewise linear: at β = 0.01 some units of this tiny net already cross a bound of their box between the ±β
    phases (cosines down to 0.75 on some draws), hence β = 1e−4 in float64; T = 300 steps suffice from this draw
    (other draws need up to 500 for the residual to fall below 1e−6)."""
    gen = torch.Generator().manual_seed(0)
    T, K, beta = 300, 150, 1e-4
    net = nets.build(network, 1, 10, 1 / 16, 'hard-sigmoid', in_size=16, T=T, K=K, beta=beta,
                     generator=gen).double()
    x = torch.rand(4, 1, 16, 16, generator=gen, dtype=torch.float64)
    y = nf.one_hot(torch.tensor([1, 2, 3, 4]), 10).double()
    estimators.Symmetric(beta, T, K)(net, x, y)
    ep = [p.grad.clone() for p in net.parameters()]
    net.zero_grad(set_to_none=True)
    estimators.TruncatedBPTT(T, K)(net, x, y)
    for (name, p), g in zip(net.named_parameters(), ep):
        cos = torch.nn.functional.cosine_similarity(g.flatten(), p.grad.flatten(), 0).item()
        assert cos >= 0.99, (name, cos)


def test_pcnn_as_a_graph_has_the_same_states():
    torch.manual_seed(0)
    net = P_CNN(28, 1, [8, 6], [5, 3], [1, 1], [0, 1], 'mm', [10], 30, 10, 0.1, 'hard_sigmoid').double()
    g = nets.pcnn_graph(net, 28)
    gen = torch.Generator().manual_seed(6)
    x = torch.rand(5, 1, 28, 28, generator=gen, dtype=torch.float64)
    y = nf.one_hot(torch.tensor([0, 1, 2, 3, 4]), 10).double()
    for mode in (False, 'free'):             # synchronous; colored free phase (even/odd of a chain) then synchronous
        net.set_relaxation(asynchronous=mode)
        g.set_relaxation(asynchronous=mode)
        with torch.no_grad():
            s1, s2 = net.free_phase(x), g.free_phase(x)
            for u, v in zip(s1, s2):
                torch.testing.assert_close(u, v, rtol=1e-10, atol=1e-12)
            n1, n2 = net.forward(x, s1, y, (0.1, -0.1)), g.forward(x, s2, y, (0.1, -0.1))
            for a, b in zip(n1, n2):
                for u, v in zip(a, b):
                    torch.testing.assert_close(u, v, rtol=1e-10, atol=1e-12)
        ga = net.ep_param_grads(x, n1[1], n1[0], -0.1, 0.1, y)
        gb = g.ep_param_grads(x, n2[1], n2[0], -0.1, 0.1, y)
        # P_CNN: weight, bias per synapse; the graph: the weights, then the biases
        k = len(net.synapses)
        for i in range(k):
            torch.testing.assert_close(ga[2 * i], gb[i], rtol=1e-9, atol=1e-12)
            torch.testing.assert_close(ga[2 * i + 1], gb[k + i], rtol=1e-9, atol=1e-12)

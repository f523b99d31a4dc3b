"""Closed-form steppers == autograd-of-Φ oracle, for every class (float64)."""
import pytest
import torch

from netClasses import EPcont, EPdisc, convEP, toyEPcont
from netFunctions import one_hot, relax, relax_autograd

CASES = {
    'EPdisc': lambda: EPdisc([10, 32, 20, 784], 5, 3, 0.1, 'tanh'),
    'EPdisc-leaky': lambda: EPdisc([10, 32, 784], 5, 3, 0.1, 'sigm', dt=0.3),
    'EPcont-clamp': lambda: EPcont([10, 32, 20, 784], 5, 3, 0.1, 'sigm', dt=0.2, clamp=True),
    'EPcont-noclamp': lambda: EPcont([10, 32, 784], 5, 3, 0.1, 'tanh', dt=0.08, clamp=False),
    'EPcont-hardsigm': lambda: EPcont([10, 32, 784], 5, 3, 0.1, 'hardsigm'),
    'toyEPcont': lambda: toyEPcont([10, 50, 5], 5, 3, 0.1, 'tanh', dt=0.08, clamp=False),
    'convEP': lambda: convEP([10], [16, 8, 1], 5, 3, 0.1, 'hardsigm'),
    'convEP-pad-fc': lambda: convEP([10, 20], [16, 8, 1], 5, 3, 0.1, 'tanh', Fconv=3, padding=1),
    'convEP-3conv': lambda: convEP([10], [8, 8, 4, 1], 5, 3, 0.1, 'sigm', Fconv=3, padding=1),
}


def _inputs(net, B, gen):
    if isinstance(net, convEP):
        x = torch.rand(B, 1, 28, 28, generator=gen)
    else:
        x = torch.rand(B, net.size_tab[-1], generator=gen)
    y = one_hot(torch.randint(0, 10, (B,), generator=gen), 10)
    return x.double(), y.double()


@pytest.mark.parametrize('name', list(CASES))
def test_closed_form_step_equals_autograd_of_phi(name):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    net = CASES[name]().double()
    B = 4
    x, y = _inputs(net, B, gen)
    s = [torch.rand(si.shape, generator=gen).double() * 1.2 - 0.1 for si in net.init_state(B)]
    beta = torch.tensor([[0.3], [0.3], [-0.3], [-0.3]], dtype=torch.float64)     # batched ±β column
    for y_, b_ in ((None, 0.0), (y, 0.7), (y, beta)):
        a = net.stepper(s, net.drive(x), y_, b_)
        o = net.stepper_autograd(x, s, y_, b_)
        for ai, oi in zip(a, o):
            torch.testing.assert_close(ai, oi, rtol=1e-10, atol=1e-12)
    # and over a whole relaxation from zeros
    a = relax(net, x, net.init_state(B), y, 0.2, 12)
    o = relax_autograd(net, x, net.init_state(B), y, 0.2, 12)
    for ai, oi in zip(a, o):
        torch.testing.assert_close(ai.detach(), oi, rtol=1e-9, atol=1e-11)


def test_oracle_detects_a_wrong_closed_form():
    """The comparison above has teeth: dropping the feedback term of one layer breaks it."""
    torch.manual_seed(0)
    net = EPdisc([10, 32, 784], 5, 3, 0.1, 'tanh').double()
    x = torch.rand(3, 784).double()
    s = [torch.rand_like(si) for si in net.init_state(3)]
    h = net.dphi_ds(s, net.drive(x))
    h[1] = net.w[1](x)                               # missing W_01ᵀ s_0
    wrong = net.update(s, h, None, 0.0)
    right = net.stepper_autograd(x, s)
    assert (wrong[1] - right[1]).abs().max() > 1e-3


def test_discrete_default_dt_is_one_and_dt_flag_is_leaky():
    torch.manual_seed(0)
    net = EPdisc([10, 32, 784], 5, 3, 0.1, 'sigm').double()
    x = torch.rand(2, 784).double()
    s = [torch.rand_like(si) for si in net.init_state(2)]
    full = net.stepper(s, net.drive(x))
    torch.testing.assert_close(full[1], net.act.rho(net.w[1](x) + s[0] @ net.w[0].weight))
    net.dt = 0.2
    leaky = net.stepper(s, net.drive(x))
    torch.testing.assert_close(leaky[1], s[1] + 0.2 * (full[1] - s[1]))

"""The shared parts of every paper's networks (netClasses.py): the activation table and the conv-pool synapse."""
import pytest
import torch

from netClasses import ACTIVATIONS


@pytest.mark.parametrize('name', sorted(set(ACTIVATIONS) - {'heaviside'}))
def test_rhop_is_the_derivative_of_rho(name):
    """ρ' (and ρ' from r = ρ(s)) equal autograd's derivative of ρ, kinks included (clamp's convention)."""
    act = ACTIVATIONS[name]
    x = torch.linspace(-3, 3, 601, dtype=torch.float64).requires_grad_(True)
    g, = torch.autograd.grad(act.rho(x).sum(), x)
    x = x.detach()
    torch.testing.assert_close(act.rhop(x), g)
    torch.testing.assert_close(act.rhop_r(x, act.rho(x)), g)


def test_heaviside_pseudo_derivative_is_the_boxcar():
    act = ACTIVATIONS['heaviside']
    x = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0])
    assert act.rho(x).tolist() == [0, 0, 1, 1, 1]
    assert act.rhop(x).tolist() == [0, 1, 1, 1, 0]

"""The shared parts of every paper's networks (netClasses.py): the activation table and the conv-pool synapse."""
import pytest
import torch

from netClasses import ACTIVATIONS, ConvPool, conv_pool_sizes


@pytest.mark.parametrize('name', sorted(set(ACTIVATIONS) - {'heaviside'}))
def test_rhop_is_the_derivative_of_rho(name):
    """ρ' (and ρ' from r = ρ(s)) equal autograd's derivative of ρ, kinks included (clamp's convention)."""
    act = ACTIVATIONS[name]
    x = torch.linspace(-3, 3, 601, dtype=torch.float64).requires_grad_(True)
    g, = torch.autograd.grad(act.rho(x).sum(), x)
    x = x.detach()
    torch.testing.assert_close(act.rhop(x), g)
    torch.testing.assert_close(act.rhop_r(x, act.rho(x)), g)


@pytest.mark.parametrize('name', sorted(n for n, a in ACTIVATIONS.items() if a.affine))
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_affine_form_is_rho(name, dtype):
    """ρ(x) = f(a x + c), the form the fused steps fold into their products (Activation.affine), to the bit."""
    a, c, f_ = ACTIVATIONS[name].affine
    x = torch.linspace(-3, 3, 6001, dtype=dtype)
    assert torch.equal(f_(a * x + c), ACTIVATIONS[name].rho(x))


def test_heaviside_pseudo_derivative_is_the_boxcar():
    act = ACTIVATIONS['heaviside']
    x = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0])
    assert act.rho(x).tolist() == [0, 0, 1, 1, 1]
    assert act.rhop(x).tolist() == [0, 1, 1, 1, 0]


@pytest.mark.parametrize('pool', ['m', 'a', 'i'])
@pytest.mark.parametrize('stride, padding, pool_size, n', [(1, 0, 2, 13), (2, 1, 2, 15), (1, 2, 3, 11)])
def test_conv_pool_adjoint_is_the_input_gradient(pool, stride, padding, pool_size, n):
    """adjoint(g) = ∂/∂a ⟨P(W ⋆ a + b), g⟩ (autograd), with odd maps whose last row and column the pooling drops; the
    output side is the size formula's."""
    torch.manual_seed(0)
    syn = ConvPool(3, 4, 3, stride, padding, pool, pool_size).double()
    a = torch.randn(2, 3, n, n, dtype=torch.float64, requires_grad=True)
    p, ctx = syn(a)
    assert p.shape[-1] == conv_pool_sizes(n, [3], [stride], [padding], pool, pool_size)[-1]
    g = torch.randn_like(p)
    expected, = torch.autograd.grad((p * g).sum(), a)
    torch.testing.assert_close(syn.adjoint(g, ctx), expected)

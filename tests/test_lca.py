"""The LCA sparse coder (lca.py), the front end of EPLCANet."""
import pytest
import torch

from papers.eplcanet.lca import LCAConv2D, times_active_by_feature
from plotFunctions import feature_grid


def test_identity_dictionary_codes_a_sparse_input_as_itself():
    torch.manual_seed(0)
    lca = LCAConv2D(3, 3, kernel_size=1, lambda_=0.1, tau=10, lca_iters=400, transfer_func='hard_threshold',
                    input_zero_mean=False, input_unit_var=False).double()
    lca.assign_weight_values(torch.eye(3).view(3, 3, 1, 1))
    x = torch.zeros(2, 3, 6, 6, dtype=torch.float64)
    mask = torch.rand(2, 3, 6, 6) < 0.2
    x[mask] = 0.5 + 0.5 * torch.rand(int(mask.sum()), dtype=torch.float64)
    acts, recon, err, _ = lca(x)
    torch.testing.assert_close(acts, x, rtol=0, atol=1e-10)
    assert err.abs().max() < 1e-10


@pytest.mark.parametrize('stride,nonneg', [(1, True), (1, False), (2, True)])
def test_energy_decreases_over_iterations(stride, nonneg):
    torch.manual_seed(0)
    lca = LCAConv2D(8, 1, kernel_size=5, stride=stride, lambda_=0.2, tau=20, nonneg=nonneg).double()
    x = lca.preprocess(torch.rand(2, 1, 16, 16, dtype=torch.float64))
    u, energies = None, []
    for _ in range(60):
        a, _, _, u = lca.encode(x, initial_states=u, iters=1)
        energies.append(lca.energy(x, a).sum().item())
    diffs = torch.tensor(energies[1:]) - torch.tensor(energies[:-1])
    assert (diffs <= 1e-9 * abs(energies[0])).all(), diffs.max()
    assert energies[-1] < 0.9 * energies[1]


def test_inhibition_is_the_gram_operator_without_self_connection():
    torch.manual_seed(0)
    lca = LCAConv2D(4, 2, kernel_size=3, stride=2).double()
    x = torch.rand(1, 2, 9, 9, dtype=torch.float64)
    a = torch.rand_like(lca.drive(x)).requires_grad_(True)
    g = torch.autograd.grad(0.5 * (lca.reconstruct(a, x.shape) ** 2).sum(), a)[0]
    torch.testing.assert_close(lca.inhibition(a.detach(), x.shape), g - a.detach())
    assert lca.reconstruct(a, x.shape).shape == x.shape


def test_warm_start_continues_the_dynamics():
    torch.manual_seed(0)
    lca = LCAConv2D(6, 1, kernel_size=5, lambda_=0.1, tau=10).double()
    x = lca.preprocess(torch.rand(2, 1, 12, 12, dtype=torch.float64))
    a20, *_ = lca.encode(x, iters=20)
    _, _, _, u10 = lca.encode(x, iters=10)
    a_warm, *_ = lca.encode(x, initial_states=u10, iters=10)
    torch.testing.assert_close(a_warm, a20)


def test_dictionary_update_keeps_unit_norm_and_lowers_the_error():
    torch.manual_seed(0)
    lca = LCAConv2D(8, 1, kernel_size=5, lambda_=0.1, tau=10, lca_iters=50, eta=0.05).double()
    x = torch.rand(8, 1, 12, 12, dtype=torch.float64)
    for _ in range(3):
        acts, _, err, _ = lca(x)
        before = (err ** 2).sum()
        lca.update_weights(acts, err)
        norms = lca.weights.flatten(1).norm(dim=1)
        torch.testing.assert_close(norms, torch.ones_like(norms))
        after = ((lca.preprocess(x) - lca.reconstruct(acts, x.shape)) ** 2).sum()
        assert after < before
    assert times_active_by_feature(acts).shape == (8,)
    assert feature_grid(lca.weights).shape == (1, 3 * 6 + 1, 3 * 6 + 1)

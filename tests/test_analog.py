"""The analog simulator (analog/, Wu et al. 2024): pulse statistics against the closed forms, device bounds, IO,
Tiki-Taka's transfer, the paper's central claim on its S1 toy problem, the per-sample drift of the pulse trains, configuration
errors, state dicts and convert."""
import copy
import dataclasses
import math
import os

import pandas as pd
import pytest
import torch
import torch.nn as nn

import analog as A
from conftest import assert_resume_equals_uninterrupted, run_main

pytestmark = pytest.mark.usefixtures('one_thread')


IDEAL = dict(dw_min_dtod=0.0, dw_min_std=0.0, w_bound_dtod=0.0, up_down=0.0, up_down_dtod=0.0)


def _ideal_tile(weight, tau, dw_min, **device):
    dev = A.Device(tau=tau, dw_min=dw_min, **{**IDEAL, **device})
    return A.Tile(weight, dev, torch.Generator().manual_seed(0))


# ---------------------------------------------------------------------------------------------------------------
# Pulse statistics

@pytest.mark.parametrize('method', ['coincidence', 'binomial'])
def test_pulse_counts_are_binomial(method):
    """Each element's count over R replicates of one vector pair: mean BL p_x p_d = lr|x_j d_i|/Δw_min, variance
    BL p (1 − p) (the law of the stochastic pulse trains), down where x_j d_i > 0."""
    torch.manual_seed(0)
    R, lr, dw_min = 4000, 0.05, 1e-3
    x = torch.tensor([0.5, -1.0, 0.2, 0.0])
    d = torch.tensor([0.1, -0.3, 0.05])
    upd = A.Update(desired_bl=31)
    n_up, n_dn = A.pulse_counts(x.repeat(R, 1), d.repeat(R, 1), lr, dw_min, upd, method=method, per_vector=True)
    expected = lr * (d[:, None] * x[None, :]).abs() / dw_min               # k = 15 < 31: no clipping
    bl = math.ceil(lr * 1.0 * 0.3 / dw_min)
    p = expected / bl
    n = n_up + n_dn
    se = (bl * p * (1 - p) / R).sqrt()
    assert ((n.mean(0) - expected).abs() <= 4 * se + 1e-9).all()
    assert torch.allclose(n.var(0), bl * p * (1 - p), rtol=0.1, atol=1e-3)
    down = (d[:, None] * x[None, :]) > 0
    assert (n_dn[:, ~down] == 0).all() and (n_up[:, down] == 0).all()
    assert (n[:, :, 3] == 0).all()                                          # x_j = 0: no pulse


def test_update_management_clips_at_desired_bl():
    """k > desired_bl: at most desired_bl pulses per vector on the largest product, and the x side keeps p ≤ 1."""
    bl, p_x, p_d = A.pulse_probabilities(torch.tensor([[1.0, 0.5]]), torch.tensor([[2.0, 0.1]]), 1.0, 1e-3,
                                         A.Update(desired_bl=31))
    assert bl.item() == 31 and p_x.max() <= 1 and p_d.max() <= 1
    assert torch.isclose(p_x[0, 0] * p_d[0, 0], torch.tensor(1.0))


def test_mean_update_equals_the_closed_form():
    """E[W after one pulse train] = the exact binomial expectation b − (b − w)(1 − p(1 − ρ))^BL, and to first order
    the paper's A-ALD step W − lr g − (lr/τ)|g| W with g = d xᵀ (one sample)."""
    torch.manual_seed(1)
    tau, dw_min, lr, R = 1.0, 1e-3, 0.05, 20000
    W = torch.tensor([[0.5, -0.6, 0.1], [-0.2, 0.7, 0.0]])
    x, d = torch.tensor([0.8, -0.5, 1.0]), torch.tensor([0.25, -0.1])
    tile = _ideal_tile(W.repeat(R, 1), tau, dw_min)                         # R independent replicates as rows
    tile.pulse(x[None], d.repeat(R)[None], lr, A.Update(desired_bl=31))
    mean = tile.weight.view(R, 2, 3).mean(0)
    g = d[:, None] * x[None, :]
    bl = math.ceil(lr * 1.0 * 0.25 / dw_min)
    p = lr * g.abs() / (dw_min * bl)
    b = torch.where(g < 0, tau, -tau)                                       # g < 0: up pulses toward +τ
    exact = b - (b - W) * (1 - p * dw_min / tau) ** bl
    se = (tile.weight.view(R, 2, 3).var(0) / R).sqrt()
    assert ((mean - exact).abs() <= 4 * se + 1e-7).all()
    ald = A.ald_step(W, g, lr, tau)
    assert torch.allclose(mean - W, ald - W, rtol=0.02, atol=2e-5)


def test_n_pulse_closed_form_and_interleaving():
    """apply_pulses: n pulses of one sign equal n single pulses; mixed counts sit between the two orders."""
    tau, s = 0.6, 1e-2
    w = torch.tensor([0.3, -0.5, 0.0])
    consts = (torch.full_like(w, -tau), torch.full_like(w, tau), torch.full_like(w, s), torch.full_like(w, s))
    seq = w.clone()
    for _ in range(7):
        seq = seq + s * (1 - seq / tau)
    assert torch.allclose(A.apply_pulses(w, torch.full_like(w, 7.), torch.zeros_like(w), *consts), seq, atol=1e-6)
    up_then_down, down_then_up = w.clone(), w.clone()
    for _ in range(5):
        up_then_down = up_then_down + s * (1 - up_then_down / tau)
        down_then_up = down_then_up - s * (1 + down_then_up / tau)
    for _ in range(5):
        up_then_down = up_then_down - s * (1 + up_then_down / tau)
        down_then_up = down_then_up + s * (1 - down_then_up / tau)
    mixed = A.apply_pulses(w, torch.full_like(w, 5.), torch.full_like(w, 5.), *consts)
    lo, hi = torch.minimum(up_then_down, down_then_up), torch.maximum(up_then_down, down_then_up)
    assert ((mixed >= lo - 1e-7) & (mixed <= hi + 1e-7)).all()
    assert (mixed.abs() < w.abs() + 1e-7).all()                             # 10 pulses: drift toward 0


def test_summed_counts_equal_sequential_vectors():
    """One mini-batch of 8 vectors from the same W, R replicates: the mean weights with summed counts (default) equal
    those of the toolkit's vector-by-vector order, and the per-sample A-ALD (drift Σ_b |Δ_b|, not |Σ_b Δ_b|)."""
    torch.manual_seed(2)
    tau, dw_min, lr, R = 1.0, 1e-3, 0.02, 5000
    W = torch.tensor([[0.6, -0.4, 0.1]])
    x = torch.randn(8, 3)
    d = torch.randn(8, 1) * 0.2
    means = {}
    for seq in (False, True):
        tile = _ideal_tile(W.repeat(R, 1), tau, dw_min)
        tile.pulse(x, d.repeat(1, R), lr, A.Update(desired_bl=31, sequential=seq))
        means[seq] = tile.weight.mean(0)
    per_sample = W[0].clone()
    for b in range(8):
        per_sample = A.ald_step(per_sample, d[b, 0] * x[b], lr, tau)
    assert torch.allclose(means[False], means[True], atol=3e-4)
    assert torch.allclose(means[False], per_sample, atol=1e-3)
    batch = A.ald_step(W[0], (d * x).sum(0), lr, tau)
    assert (means[False] - batch).abs().max() > 3 * (means[False] - per_sample).abs().max()


def test_sequential_trains_have_the_per_pulse_noise_law():
    """Sequential mode, trains of exactly n = 20 down pulses per element (k = lr/Δw_min = n: BL = n, p_x = p_d = 1),
    c2c σ = 0.3, over R replicate rows from w0 = (−0.3, 0, 0.2): one train gives the closed-form mean
    b_min + (w0 − b_min) ρⁿ and the per-pulse noise variance σ² Δw² (1 − ρ^{2n})/(1 − ρ²); two vectors in one
    mini-batch give those of 2n pulses; a literal pulse-by-pulse loop (w ← w − Δw(1 + w/τ + σξ), clipped) has the
    same mean and variance."""
    torch.manual_seed(14)
    tau, dw, n, R, sigma = 0.6, 0.01, 20, 40000, 0.3
    rho = 1 - dw / tau
    w0 = torch.tensor([-0.3, 0.0, 0.2])
    for trains in (1, 2):
        tile = _ideal_tile(w0.repeat(R, 1), tau, dw, dw_min_std=sigma)
        tile.pulse(torch.ones(trains, 3), torch.ones(trains, R), n * dw, A.Update(desired_bl=31, sequential=True))
        m = n * trains
        mean = -tau + (w0 + tau) * rho ** m
        var = sigma ** 2 * dw ** 2 * (1 - rho ** (2 * m)) / (1 - rho ** 2)
        se = math.sqrt(var / R)
        assert ((tile.weight.mean(0) - mean).abs() < 4 * se).all(), (tile.weight.mean(0), mean)
        assert torch.allclose(tile.weight.var(0), torch.full((3,), var), rtol=0.04), (tile.weight.var(0), var)
    w = w0.repeat(R, 1)
    for _ in range(2 * n):
        w = (w - dw * (1 + w / tau + sigma * torch.randn_like(w))).clamp(-tau, tau)
    assert ((w.mean(0) - mean).abs() < 4 * se).all() and torch.allclose(w.var(0), torch.full((3,), var), rtol=0.04)


def test_sequential_mode_applies_the_vectors_in_turn():
    """Sequential mode (no c2c noise): the weights are those of apply_pulses applied vector after vector to the
    per-vector counts, in the mini-batch's order (apply_trains composes the trains' affine maps)."""
    torch.manual_seed(15)
    W = torch.rand(4, 5) - 0.5
    x, d = torch.randn(6, 5), torch.randn(6, 4) * 0.3
    lr, dw, upd = 0.05, 1e-3, A.Update(desired_bl=31, sequential=True)
    tile = _ideal_tile(W, 0.6, dw)
    torch.manual_seed(16)
    tile.pulse(x, d, lr, upd)
    torch.manual_seed(16)
    n_up, n_dn = A.pulse_counts(x, d, lr, dw, upd, per_vector=True)
    ref = W.clone()
    for b in range(6):
        ref = A.apply_pulses(ref, n_up[b], n_dn[b], tile.b_min, tile.b_max, tile.s_up, tile.s_dn)
    assert torch.allclose(tile.weight, ref, atol=1e-6) and (tile.weight - W).abs().max() > 1e-3


def test_bound_management_stops_as_the_toolkit():
    """Iterative bound management on an output that saturates at every reduction: the last round is the first
    reduction f > max_bm_factor (1024 without input quantisation) or f > max_bm_res / (2 inp_bound inp_res)
    (16 at the default 7-bit input), and the output is out_bound · f · max|x|. Without the resolution stop a 7-bit
    input is quantised to 0 at f = 128, and the output with it."""
    x, W = torch.full((2, 8), 0.5), torch.full((3, 8), 1e4)
    clean = dict(out_res=0.0, out_noise=0.0)
    for io, f in ((A.IO(inp_res=0.0, **clean), 1024), (A.IO(**clean), 16), (A.IO(max_bm_factor=100, **clean), 16),
                  (A.IO(inp_res=0.0, max_bm_factor=100, **clean), 128), (A.IO(max_bm_res=float('inf'), **clean), 0)):
        assert torch.allclose(A.mvm(x, W, io), torch.full((2, 3), 12.0 * f * 0.5)), (io, f)
    assert A.tiles.bm_limit(A.IO()) == pytest.approx(0.25 * 126 / 2) and A.tiles.bm_limit(A.IO(inp_res=0)) == 1000


# ---------------------------------------------------------------------------------------------------------------
# Device bounds

@pytest.mark.parametrize('setting', ['Analog SGD', 'TT-v1'])
def test_weights_never_leave_the_device_bounds(setting):
    """Large steps with c2c noise and device-to-device variation (S4 device, τ = 0.3): every array stays in its
    per-element [b_min, b_max] and the bounds have b_min ≤ 0 ≤ b_max."""
    torch.manual_seed(3)
    layer = A.convert(nn.Linear(12, 6, bias=False), A.rpu_config(setting, 0.3, fast_lr=0.5, dw_min=0.02,
                                                                 learn_out_scaling=False))
    opt = A.AnalogSGD(layer.parameters(), lr=2.0)
    for _ in range(30):
        loss = (layer(torch.rand(16, 12)) - 5).pow(2).mean()          # pushes every weight up
        opt.zero_grad()
        loss.backward()
        opt.step()
        for tile in layer.tiles.values():
            assert ((tile.weight >= tile.b_min) & (tile.weight <= tile.b_max)).all()
            assert (tile.b_min <= 0).all() and (tile.b_max >= 0).all()
    saturated = [(t.weight - t.b_max).abs().min() < 1e-6 for t in layer.tiles.values()]
    assert any(saturated)                                                  # the bounds were reached


# ---------------------------------------------------------------------------------------------------------------
# IO

def test_mvm_io_non_idealities():
    torch.manual_seed(4)
    W = torch.randn(5, 8) * 0.3
    x = torch.randn(4000, 8)
    exact = x @ W.T
    assert torch.equal(A.mvm(x, W, A.IO(is_perfect=True)), exact)
    clean = A.IO(inp_res=0, out_res=0, out_noise=0)
    assert torch.allclose(A.mvm(x, W, clean), exact, atol=1e-5)             # abs-max scaling is undone
    alpha = x.abs().amax(1, keepdim=True)
    noisy = A.mvm(x, W, A.IO(inp_res=0, out_res=0))
    assert torch.allclose(((noisy - exact) / alpha).std(), torch.tensor(0.06), rtol=0.05)
    wn = A.mvm(x, W, A.IO(is_perfect=False, inp_res=0, out_res=0, out_noise=0, w_noise=0.02,
                          noise_management='none', inp_bound=100.0))
    assert torch.allclose(((wn - exact) / x.norm(dim=1, keepdim=True)).std(), torch.tensor(0.02), rtol=0.05)
    q = A.mvm(x, W, A.IO(out_noise=0))                                      # 7-bit input, 9-bit output
    err = (q - exact).abs().max()
    assert 1e-4 < err < 0.2
    big = torch.full((3, 8), 1.0)
    Wb = torch.full((2, 8), 3.0)                                            # W x = 24 > out_bound 12
    bm = A.mvm(big, Wb, A.IO(inp_res=0, out_res=0, out_noise=0))
    no_bm = A.mvm(big, Wb, A.IO(inp_res=0, out_res=0, out_noise=0, bound_management='none'))
    assert torch.allclose(bm, torch.full((3, 2), 24.0)) and torch.allclose(no_bm, torch.full((3, 2), 12.0))


def test_backward_goes_through_the_backward_io_and_records_pairs():
    torch.manual_seed(5)
    lin = nn.Linear(6, 3)
    layer = A.convert(copy.deepcopy(lin), A.rpu_config('Analog SGD', 5.0, is_perfect=True, w_bound_dtod=0.0))
    x = torch.randn(7, 6, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    layer(x).pow(2).sum().backward()
    lin(x2).pow(2).sum().backward()
    assert torch.allclose(x.grad, x2.grad, atol=1e-5)
    (tile, xr, dr), = layer._pairs
    assert tile == 0 and torch.equal(xr, x.detach()) and torch.allclose(dr, 2 * lin(x2).detach(), atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# Tiki-Taka

def test_tt_transfer_visits_every_column_in_turn():
    """With fast_lr 0 (A frozen at distinct values), transfer i writes column (i·n_reads) mod n_in, …, of A into C
    (C[:, j] += lr Â[:, j]), every transfer_every mini-batches, cycling through all columns."""
    torch.manual_seed(6)
    rpu = A.rpu_config('TT-v1', 1.0, fast_lr=0.0, n_reads_per_transfer=2, transfer_every=2,
                       transfer_io=A.IO(is_perfect=True), **IDEAL)
    layer = A.AnalogLinear(5, 3, rpu=rpu, weight=torch.zeros(3, 5))
    layer.A.weight.copy_(torch.linspace(0.1, 0.5, 5).repeat(3, 1))
    opt = A.AnalogSGD(layer.parameters(), lr=0.5)
    visited = []
    for step in range(10):
        before = layer.C.weight.clone()
        layer(torch.randn(4, 5)).sum().backward()
        opt.step()
        changed = ((layer.C.weight - before).abs() > 0).any(0).nonzero().flatten().tolist()
        if step % 2 == 0:
            assert changed == []
        else:
            visited.append(changed)
    assert visited == [[0, 1], [2, 3], [0, 4], [1, 2], [3, 4]]
    assert torch.equal(layer.A.weight, torch.linspace(0.1, 0.5, 5).repeat(3, 1))
    assert (layer.C.weight > 0).all()                                       # C[:, j] moved toward +lr A[:, j]
    more = A.AnalogLinear(5, 3, rpu=dataclasses.replace(rpu, n_reads_per_transfer=7, transfer_every=1),
                          weight=torch.zeros(3, 5))
    more.A.weight.fill_(0.5)
    more(torch.randn(4, 5)).sum().backward()
    A.AnalogSGD(more.parameters(), lr=0.5).step()                            # columns 0 … 4, 0, 1 in one transfer
    assert (more.C.weight > 0).all() and more._column == 2


def test_tt_fast_lr_is_absolute_and_network_sees_c_plus_gamma_a():
    """A's step is fast_lr whatever the SGD lr (aihwkit 0.9.0); the lr scales only the transfer to C."""
    rpu = A.rpu_config('TT-v1', 1.0, gamma=0.5, transfer_io=A.IO(is_perfect=True), is_perfect=True, **IDEAL)
    results = {}
    for lr in (1.0, 1e-3):
        layer = A.AnalogLinear(4, 2, rpu=rpu, weight=torch.full((2, 4), 0.1))
        layer.A.weight.fill_(0.2)
        assert torch.allclose(layer(torch.eye(4)), torch.full((4, 2), 0.2))      # C + 0.5 A
        torch.manual_seed(7)
        layer(torch.ones(3, 4)).sum().backward()
        A.AnalogSGD(layer.parameters(), lr=lr).step()
        results[lr] = layer.A.weight.clone(), layer.C.weight.clone()
    assert torch.equal(results[1.0][0], results[1e-3][0])
    assert (results[1.0][0] < 0.2).all()                                          # A moved down (d x > 0)
    dc_big, dc_small = (results[1.0][1] - 0.1).abs().sum(), (results[1e-3][1] - 0.1).abs().sum()
    assert dc_big > 10 * dc_small


# ---------------------------------------------------------------------------------------------------------------
# Tiles of a layer (the toolkit's mapping)

def test_tile_split_shapes_and_per_tile_scales():
    """The toolkit's split (⌈size/max⌉ tiles, sizes differing by at most one): the S4 FCN's 784 inputs under
    max_input_size 512 go to two tiles of 392 columns, each with its gain; 256 inputs stay on one tile (a scalar
    gain, as before tiling); a preset without max_input_size keeps one tile; rows split by max_output_size."""
    split = A.tiles.split_sizes
    assert split(784, 512) == [392, 392] and split(256, 512) == [256] and split(1025, 512) == [342, 342, 341]
    assert split(784, 0) == [784] and split(512, 512) == [512]
    rpu = A.rpu_config('Analog SGD', 0.6)
    assert rpu.max_input_size == rpu.max_output_size == 512 == A.rpu_config('TT-v1', 0.8, 'S5').max_input_size
    fcn = A.convert(nn.Sequential(nn.Linear(784, 256), nn.Linear(256, 128)), rpu)
    assert [(r.stop - r.start, c.stop - c.start) for r, c in fcn[0].blocks] == [(256, 392), (256, 392)]
    assert fcn[0].out_scale.shape == (2,) and len(fcn[1].blocks) == 1 and fcn[1].out_scale.shape == ()
    assert fcn[0].W.weight.shape == (256, 784)                            # the arrays stay whole
    assert len(A.convert(nn.Linear(784, 10), A.rpu_config('Analog SGD', 0.6, 'S2')).blocks) == 1
    tall = A.AnalogLinear(6, 10, rpu=A.rpu_config('Analog SGD', 0.6, max_input_size=4, max_output_size=4))
    assert [(r.start, r.stop, c.start, c.stop) for r, c in tall.blocks] == [
        (0, 4, 0, 3), (4, 7, 0, 3), (7, 10, 0, 3), (0, 4, 3, 6), (4, 7, 3, 6), (7, 10, 3, 6)]


def test_tiles_draw_their_devices_from_the_construction_seed():
    """Each tile draws its device constants from construction_seed, as the toolkit's tiles: the two halves of a
    784-input layer have the same constants, and a one-tile layer draws those of before tiling."""
    layer = A.AnalogLinear(784, 8, rpu=A.rpu_config('TT-v1', 0.6))
    one = A.AnalogLinear(392, 8, rpu=A.rpu_config('TT-v1', 0.6), weight=layer.C.weight[:, :392].clone())
    for name in ('b_min', 'b_max', 's_up', 's_dn'):
        for arr in ('A', 'C'):
            full = getattr(getattr(layer, arr), name)
            assert torch.equal(full[:, :392], full[:, 392:]) and torch.equal(full[:, :392], getattr(getattr(one, arr),
                                                                                                    name))


@pytest.mark.parametrize('io', [dict(is_perfect=True), {}])
def test_layer_output_is_the_sum_of_its_tiles(io):
    """y = Σ_t α_t mvm(x_t, W_t) + b, each tile through its own IO (noise and bound management of its slice of the
    input, its output noise), the tiles of an input split stacked along the outputs; backward: each tile records
    (x_t, α_t ∂L/∂y on its rows) and ∂L/∂x is the concatenation of the tiles' backward MVMs."""
    torch.manual_seed(16)
    rpu = A.rpu_config('Analog SGD', 0.6, max_input_size=4, max_output_size=4, **io)
    layer = A.AnalogLinear(6, 10, rpu=rpu)
    with torch.no_grad():
        layer.out_scale.copy_(torch.linspace(0.5, 1.5, 6))
        layer.bias.normal_()
    x = torch.randn(5, 6)
    x[:, 3:] *= 20                                                        # the second input split is much larger
    x.requires_grad_(True)
    torch.manual_seed(17)
    y = layer(x)
    torch.manual_seed(17)
    W, parts = layer.W.weight, []
    for t, (r, c) in enumerate(layer.blocks):
        parts.append((r, A.mvm(x.detach()[:, c], W[r, c], rpu.forward) * layer.out_scale[t].detach()))
    manual = layer.bias.detach().repeat(5, 1)
    for r, part in parts:
        manual[:, r] += part
    assert torch.allclose(y, manual, atol=1e-5)
    g = torch.randn(5, 10)
    y.backward(g)
    assert sorted(p[0] for p in layer._pairs) == list(range(6))
    grad = torch.zeros(5, 6)
    for t, xt, dt in layer._pairs:
        r, c = layer.blocks[t]
        assert torch.equal(xt, x.detach()[:, c]) and torch.allclose(dt, g[:, r] * layer.out_scale[t].detach())
        grad[:, c] += dt @ W[r, c]
    if io:                                                                # perfect IO: the exact chain rule
        assert torch.allclose(x.grad, grad, atol=1e-5)


def _tt_tiled(max_input_size, fast_lr=0.0):
    rpu = A.rpu_config('TT-v1', 1.0, fast_lr=fast_lr, transfer_io=A.IO(is_perfect=True), max_input_size=max_input_size,
                       **IDEAL)
    layer = A.AnalogLinear(6, 3, rpu=rpu, weight=torch.zeros(3, 6))
    layer.A.weight.copy_(torch.linspace(0.1, 0.6, 6).repeat(3, 1))
    return layer, A.AnalogSGD(layer.parameters(), lr=0.5)


def test_tt_column_pointer_per_tile():
    """TT-v1 on two tiles of 3 columns (6 inputs, max_input_size 4): each transfer writes the next column of each
    tile, so every column reaches C once every 3 mini-batches (not 6); the pointers are saved per tile."""
    torch.manual_seed(18)
    layer, opt = _tt_tiled(4)
    visited = []
    for _ in range(4):
        before = layer.C.weight.clone()
        layer(torch.randn(4, 6)).sum().backward()
        opt.step()
        visited.append(((layer.C.weight - before).abs() > 0).any(0).nonzero().flatten().tolist())
    assert visited == [[0, 3], [1, 4], [2, 5], [0, 3]]
    assert layer._column == [1, 1] and layer.get_extra_state() == {'batches': 4, 'column': [1, 1]}


def test_one_tile_checkpoints_load_into_tiled_layers():
    """A state dict of a layer on one tile loads into the same layer on several: the whole arrays, the gain on every
    tile (the same function), each TT-v1 pointer at (transfers · n_reads) mod its columns; a tiled state dict into a
    layer on another number of tiles is one line (ValueError)."""
    torch.manual_seed(19)
    one, opt = _tt_tiled(0, fast_lr=0.01)
    for _ in range(4):
        one(torch.randn(4, 6)).sum().backward()
        opt.step()
    assert one._column == 4
    tiled, _ = _tt_tiled(4)
    tiled.load_state_dict(one.state_dict())
    assert torch.equal(tiled.A.weight, one.A.weight) and torch.equal(tiled.C.b_max, one.C.b_max)
    assert tiled._column == [1, 1] and tiled._batches == 4
    scaled = A.rpu_config('Analog SGD', 0.6, max_input_size=0)
    src = A.AnalogLinear(784, 8, rpu=scaled)
    with torch.no_grad():
        src.out_scale.fill_(0.7)
    dst = A.AnalogLinear(784, 8, rpu=dataclasses.replace(scaled, max_input_size=512))
    dst.load_state_dict(src.state_dict())
    assert torch.equal(dst.out_scale, torch.full((2,), 0.7)) and torch.equal(dst.W.weight, src.W.weight)
    x = torch.rand(3, 784)
    perfect = dataclasses.replace(scaled, forward=A.IO(is_perfect=True))
    src.rpu, dst.rpu = perfect, dataclasses.replace(perfect, max_input_size=512)
    assert torch.allclose(src(x), dst(x), atol=1e-5)
    for bad_dst, bad_src in ((src, dst), (one, tiled)):
        with pytest.raises(ValueError) as e:
            bad_dst.load_state_dict(bad_src.state_dict())
        assert '\n' not in str(e.value) and 'max_input_size' in str(e.value)


def test_one_tile_default_is_unchanged():
    """The S4 FCN with max_input_size 0 and max_bm_res inf (one tile per layer, bound management up to factor 1024):
    Σ|W| of each layer after 3 mini-batches equals, bit for bit, what the simulator gave before tiling, per-pulse
    noise and the toolkit's bound-management stop (commit fe845ec)."""
    before = {'Analog SGD': [3579.472662069247, 1024.2979256263752, 55.47976216660027],
              'TT-v1': [3580.9023712254857, 1026.46224751489, 56.40636144246673]}
    for setting, sums in before.items():
        torch.manual_seed(0)
        model = A.convert(nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.Sigmoid(), nn.Linear(256, 128),
                                        nn.Sigmoid(), nn.Linear(128, 10), nn.LogSoftmax(dim=1)),
                          A.rpu_config(setting, 0.6, max_input_size=0, max_bm_res=float('inf')))
        opt = A.AnalogSGD(model.parameters(), lr=0.05)
        g = torch.Generator().manual_seed(1)
        for _ in range(3):
            x, y = torch.rand(10, 1, 28, 28, generator=g), torch.randint(0, 10, (10,), generator=g)
            opt.zero_grad()
            nn.functional.nll_loss(model(x), y).backward()
            opt.step()
        assert [float(model[i].weight.double().abs().sum()) for i in (1, 3, 5)] == sums, setting


# ---------------------------------------------------------------------------------------------------------------
# The paper's claims on its toy problems

def _s1_problem(seed=0, d=40, n=100):
    g = torch.Generator().manual_seed(seed)
    x_star = 0.45 * torch.randn(d, generator=g)
    a = torch.randn(n, d, generator=g)
    return a, a @ x_star


def _s1_error(setting, lr, iters, seed=1, **overrides):
    """S1 (the paper's first toy problem): d 40, N 100, MSE, full batch, τ 3, σ = 1e-2/√40 (digital: on the gradient; analog: w_noise in
    the forward and backward MVMs), from W = 0; mean of the last 20 values of f(W)/d at the visible weights."""
    a, y = _s1_problem()
    d = a.shape[1]
    torch.manual_seed(seed)
    lin = nn.Linear(d, 1)
    nn.init.zeros_(lin.weight)
    nn.init.zeros_(lin.bias)
    rpu = A.rpu_config(setting, 3.0, 'S1', **overrides)
    model = A.convert(lin, rpu)
    opt = A.AnalogSGD(model.parameters(), lr=lr)
    errors = []
    for _ in range(iters):
        loss = ((model(a).squeeze(1) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        if rpu is None:
            model.weight.grad += 1e-2 / math.sqrt(d) * torch.randn_like(model.weight)
        opt.step()
        with torch.no_grad():
            errors.append(((a @ model.weight.reshape(-1) + model.bias - y) ** 2).mean() / d)
    return torch.stack(errors[-20:]).mean().item()


def test_s1_analog_sgd_stalls_and_tiki_taka_reaches_digital_sgd():
    """The paper's central claim at a small step size (lr 0.1, 1200 iterations): Analog SGD stalls at an error
    floor far above digital SGD (measured: ~65×), Tiki-Taka reaches digital SGD's level (measured ~2.5×).

    TT-v1 needs γ > 0 here: with γ = 0 (the 2024 scripts' toolkit default) A integrates the gradient like momentum
    without friction and C integrates A, an undamped oscillator whose only damping is A's drift (fast_lr |g|/τ),
    negligible near the optimum; the closed-form dynamic (P ← ALD(P, g), W ← ALD(W, −P)) behaves the same, so this
    is the algorithm, not the simulator (README, Wu et al. 2024). γ = 0.4 (the paper's W̄ = W + γP, the 2025 code's
    value) damps it; fast_lr 0.1."""
    lr, iters = 0.1, 1200
    digital = _s1_error('FP SGD', lr, iters)
    analog = _s1_error('Analog SGD', lr, iters)
    tt = _s1_error('TT-v1', lr, iters, gamma=0.4, fast_lr=0.1)
    assert analog > 20 * digital, (analog, digital)
    assert tt < 6 * digital, (tt, digital)
    assert tt < analog / 8, (tt, analog)


def _s2():
    """S2 (the paper's second toy problem): d 40, N 100, x* = 0.3 N(0, I), A = N(0, 1)/2, Y = A x*."""
    g = torch.Generator().manual_seed(0)
    x_star = 0.3 * torch.randn(40, generator=g)
    a = torch.randn(100, 40, generator=g) / 2
    y = a @ x_star
    return a, y


def test_s2_per_sample_drift_dominates_the_batch_closed_form():
    """The Wu 2024 spec's S2 table (S2 problem, τ 1, lr 0.03, 1500 full-batch steps, Δw_min = τ/300, ideal IO, no noise): the
    pulsed simulation (per-sample drift Σ_b |Δ_b|) ends far above the batch closed form (A-ALD with the batch
    gradient), near the per-sample closed form, and the batch closed form above digital GD."""
    tau, lr, iters = 1.0, 0.03, 1500
    a, y = _s2()
    f = lambda w: 0.5 * ((a @ w - y) ** 2).mean().item()
    torch.manual_seed(1)
    model = A.convert(nn.Linear(40, 1, bias=False), A.rpu_config('Analog SGD', tau, 'S2'))
    model.W.weight.zero_()
    opt = A.AnalogSGD(model.parameters(), lr=lr)
    w_batch, w_sample, w_digital = torch.zeros(40), torch.zeros(40), torch.zeros(40)
    for _ in range(iters):
        loss = 0.5 * ((model(a).squeeze(1) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        w_digital = w_digital - lr * a.T @ (a @ w_digital - y) / 100
        w_batch = A.ald_step(w_batch, a.T @ (a @ w_batch - y) / 100, lr, tau)
        per_sample = a * (a @ w_sample - y)[:, None] / 100
        w_sample = w_sample - lr * per_sample.sum(0) - (lr / tau) * per_sample.abs().sum(0) * w_sample
    sim = f(model.weight.reshape(-1))
    assert sim > 10 * f(w_batch), (sim, f(w_batch))
    assert 0.5 < sim / f(w_sample) < 2.5, (sim, f(w_sample))
    assert f(w_batch) > 2 * f(w_digital)


# ---------------------------------------------------------------------------------------------------------------
# Configuration, state, convert

@pytest.mark.parametrize('args, kwargs', [
    (('SGD', 0.6), {}), (('Analog SGD', 0.0), {}), (('TT-v1', -1.0), {}), (('Analog SGD', float('nan')), {}),
    (('Analog SGD', 0.6), {'preset': 'S9'}), (('Analog SGD', 0.6), {'colour': 1}),
    (('TT-v1', 0.6), {'desired_bl': 0}), (('Analog SGD', 0.6), {'noise_management': 'max'})])
def test_rpu_config_rejects_bad_settings(args, kwargs):
    with pytest.raises(ValueError) as e:
        A.rpu_config(*args, **kwargs)
    assert '\n' not in str(e.value)


def test_rpu_config_presets():
    assert A.rpu_config('FP SGD', 0.6) is None
    s4 = A.rpu_config('Analog SGD', 0.6)
    assert s4.device == A.Device(tau=0.6) and s4.forward == A.IO() and s4.update == A.Update()
    tt = A.rpu_config('TT-v1', 0.8, 'S5')
    assert tt.algorithm == 'tt-v1' and tt.fast_lr == 0.01 and tt.n_reads_per_transfer == 1 and tt.gamma == 0
    assert tt.device.dw_min == pytest.approx(0.8 / 600) and tt.transfer_io.noise_management == 'none'
    s2 = A.rpu_config('Analog SGD', 1.5, 'S2', w_noise=0.01)
    assert s2.device.dw_min == pytest.approx(0.005) and s2.update.desired_bl == 5000
    assert s2.forward.w_noise == s2.backward.w_noise == 0.01 and s2.forward.noise_management == 'none'
    assert A.rpu_config('Analog SGD', 3, 'S1').update.desired_bl == 800
    assert A.rpu_config('Analog SGD', 1, 'S3.3').forward.bound_management == 'iterative'


def _trained_tt(seed=8):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.Flatten(), nn.Linear(3 * 4 * 4, 4))
    net = A.convert(net, A.rpu_config('TT-v1', 0.6))
    opt = A.AnalogSGD(net.parameters(), lr=0.1)
    for _ in range(3):
        net(torch.rand(5, 1, 6, 6)).pow(2).sum().backward()
        opt.step()
        opt.zero_grad()
    return net, opt


def test_state_dict_round_trip_is_exact():
    net, _ = _trained_tt()
    sd = copy.deepcopy(net.state_dict())
    other, opt2 = _trained_tt(seed=9)                                      # different weights, counters, devices?
    other.load_state_dict(sd)
    for k, v in net.state_dict().items():
        if torch.is_tensor(v):
            assert torch.equal(v, other.state_dict()[k]), k
    assert other[2]._column == net[2]._column == 3 and other[2]._batches == 3
    opt1 = A.AnalogSGD(net.parameters(), lr=0.1)
    x = torch.rand(5, 1, 6, 6)
    for model, opt in ((net, opt1), (other, opt2)):                        # the same step from the same state
        torch.manual_seed(10)
        model(x).pow(2).sum().backward()
        opt.step()
    for k, v in net.state_dict().items():
        if torch.is_tensor(v):
            assert torch.equal(v, other.state_dict()[k]), k


def test_convert_keeps_outputs_with_perfect_io():
    torch.manual_seed(11)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, stride=2), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 4 * 4, 5),
                        nn.Sigmoid(), nn.Linear(5, 3))
    x = torch.randn(6, 2, 8, 8)
    ref = net(x)
    rpu = A.rpu_config('Analog SGD', 2.0, is_perfect=True, w_bound_dtod=0.0)
    analog = A.convert(copy.deepcopy(net), rpu)
    assert isinstance(analog[0], A.AnalogConv2d) and isinstance(analog[5], A.AnalogLinear)
    assert torch.allclose(analog(x), ref, atol=1e-5)
    assert torch.equal(analog[0].weight, net[0].weight.detach())
    assert A.convert(net, None) is net
    tt = A.convert(copy.deepcopy(net), A.rpu_config('TT-v1', 2.0, is_perfect=True, w_bound_dtod=0.0))
    assert torch.allclose(tt(x), ref, atol=1e-5) and (tt[3].A.weight == 0).all()


def test_convert_clips_to_the_bounds_and_steplr_drives_the_lr():
    lin = nn.Linear(3, 2)
    nn.init.constant_(lin.weight, 5.0)
    layer = A.convert(lin, A.rpu_config('Analog SGD', 0.6))
    assert torch.equal(layer.weight, layer.bounds()[1].expand_as(layer.weight).clone())
    opt = A.AnalogSGD(layer.parameters(), lr=0.05)
    sched = torch.optim.lr_scheduler.StepLR(opt, 2, 0.1)
    for _ in range(4):
        opt.step()
        sched.step()
    assert opt.param_groups[0]['lr'] == pytest.approx(0.0005)


def test_digital_parameters_take_plain_sgd():
    torch.manual_seed(12)
    layer = A.convert(nn.Linear(3, 2), A.rpu_config('Analog SGD', 1.0))
    b0, s0 = layer.bias.detach().clone(), layer.out_scale.detach().clone()
    layer(torch.randn(4, 3)).sum().backward()
    gb, gs = layer.bias.grad.clone(), layer.out_scale.grad.clone()
    A.AnalogSGD(layer.parameters(), lr=0.1).step()
    assert torch.allclose(layer.bias, b0 - 0.1 * gb) and torch.allclose(layer.out_scale, s0 - 0.1 * gs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='no GPU')
def test_runs_on_the_gpu():
    net = A.convert(nn.Sequential(nn.Linear(8, 4), nn.Sigmoid(), nn.Linear(4, 2)), A.rpu_config('TT-v1', 0.6)).cuda()
    opt = A.AnalogSGD(net.parameters(), lr=0.1)
    net(torch.rand(5, 8, device='cuda')).sum().backward()
    opt.step()
    assert net[0].C.weight.is_cuda


def test_against_aihwkit_on_s2():
    """Optional: the native simulator and aihwkit agree on the S2 problem (mean over seeds within run-to-run noise);
    runs only where aihwkit imports (it is not a dependency)."""
    pytest.importorskip('aihwkit')
    from aihwkit.nn import AnalogLinear as KitLinear
    from aihwkit.optim import AnalogSGD as KitSGD
    from aihwkit.simulator.configs import SingleRPUConfig
    from aihwkit.simulator.configs.devices import SoftBoundsReferenceDevice

    tau, lr, iters = 1.0, 0.03, 600
    a, y = _s2()

    def final(kit, seed):
        torch.manual_seed(seed)
        if kit:
            cfg = SingleRPUConfig(device=SoftBoundsReferenceDevice(
                dw_min=tau / 300, w_max=tau, w_min=-tau, w_max_dtod=0, w_min_dtod=0, dw_min_dtod=0, dw_min_std=0,
                up_down_dtod=0, construction_seed=10))
            cfg.forward.is_perfect = cfg.backward.is_perfect = True
            cfg.update.desired_bl = 5000
            model = KitLinear(40, 1, bias=False, rpu_config=cfg)
            model.set_weights(torch.zeros(1, 40))
            opt = KitSGD(model.parameters(), lr=lr)
            opt.regroup_param_groups(model)
        else:
            model = A.convert(nn.Linear(40, 1, bias=False), A.rpu_config('Analog SGD', tau, 'S2', is_perfect=True))
            model.W.weight.zero_()
            opt = A.AnalogSGD(model.parameters(), lr=lr)
        for _ in range(iters):
            opt.zero_grad()
            (0.5 * ((model(a).squeeze(1) - y) ** 2).mean()).backward()
            opt.step()
        w = model.get_weights()[0] if kit else model.weight
        return 0.5 * ((a @ w.reshape(-1) - y) ** 2).mean().item()

    ours = torch.tensor([final(False, s) for s in range(4)])
    kit = torch.tensor([final(True, s) for s in range(4)])
    spread = 3 * torch.sqrt(ours.var() / 4 + kit.var() / 4) + 0.1 * kit.mean()
    assert (ours.mean() - kit.mean()).abs() < spread, (ours, kit)


# ---------------------------------------------------------------------------------------------------------------
# EP nets on devices (DeviceSGD, --analog on the Ernoult 2019 / Laborieux 2021 / EPLCANet command lines)

def test_device_sgd_elementwise_write_follows_the_closed_form():
    """A weight written element-wise (pulse_elementwise: stochastically rounded pulse counts |Δ|/Δw_min) moves on
    average by the A-ALD step; biases take plain SGD."""
    torch.manual_seed(13)
    R, tau, lr = 20000, 1.0, 0.05
    w0 = torch.tensor([0.5, -0.6, 0.1, 0.0])
    weight = nn.Parameter(w0.repeat(R, 1))
    bias = nn.Parameter(torch.zeros(R))
    opt = A.DeviceSGD([{'params': [weight, bias], 'lr': lr}], rpu=A.rpu_config('Analog SGD', tau, **IDEAL))
    g = torch.tensor([0.3, -0.2, 0.05, -0.4])
    weight.grad, bias.grad = g.repeat(R, 1), torch.ones(R)
    opt.step()
    assert torch.allclose(weight.mean(0) - w0, A.ald_step(w0, g, lr, tau) - w0, rtol=0.02, atol=2e-5)
    assert weight[:, 2].unique().numel() == 2                          # 2.5 pulses: 2 or 3
    assert torch.allclose(bias, torch.full((R,), -lr))
    assert A.bounds_of(opt, bias) is None and A.bounds_of(opt, weight)[1].max() == tau


LAB_ANALOG = ['--model', 'MLP', '--task', 'mnist5k', '--archi', '784', '64', '10', '--lrs', '0.1', '0.05', '--betas',
              '0.0', '0.5', '--T1', '15', '--T2', '4', '--mbs', '50', '--act', 'mysig', '--seed', '0',
              '--analog-tau', '0.6', '--threads', '1']             # small nets: one thread is faster
TT_FLAGS = ['--analog', 'TT-v1', '--analog-reads', '32', '--analog-fast-lr', '0.1']


def _check_in_bounds(folder):
    """Every device array of the run's last checkpoint inside its per-element bounds; the network's weights are the
    visible array (W, or C with γ = 0)."""
    ck = torch.load(os.path.join(folder, 'checkpoint.tar'), weights_only=False)
    params = list(ck['model'].values())
    n_arrays = 0
    for index, state in ck['optimizer']['state'].items():
        for tile in ('W', 'A', 'C'):
            if tile in state:
                w, lo, hi = state[tile], state[f'{tile}.b_min'], state[f'{tile}.b_max']
                assert ((w >= lo) & (w <= hi)).all(), (index, tile)
                n_arrays += 1
        visible = state['W'] if 'W' in state else state['C']
        assert torch.equal(visible.view_as(params[index]), params[index])
    return n_arrays


@pytest.mark.parametrize('flags, least', [(['--analog', 'Analog SGD'], 70.0), (TT_FLAGS, 25.0)])
def test_p_mlp_trains_on_analog_devices(flags, least, tmp_path):
    """Laborieux's P_MLP on mnist5k, one epoch with its weights on S4 devices: the run works, the arrays stay in
    their bounds, it learns above chance (10 %; measured 85.0 % Analog SGD, 41.2 % TT-v1 with 32 columns per
    transfer), and hyperparameters.txt records the analog flags."""
    code, folder = run_main(LAB_ANALOG + flags + ['--epochs', '1', '--results-dir', str(tmp_path)])
    assert code == 0
    assert _check_in_bounds(folder) == (2 if flags[1] == 'Analog SGD' else 4)
    acc = pd.read_csv(os.path.join(folder, 'metrics.csv'))['test_acc'].iloc[-1]
    assert acc > least, acc
    text = open(os.path.join(folder, 'hyperparameters.txt')).read()
    assert f'- analog: {flags[1]}' in text and '- analog tau: 0.6' in text


def test_p_mlp_on_devices_resumes_exactly(tmp_path):
    """1 epoch + a resumed epoch = 2 epochs in one run (TT-v1: A, C, the device constants and the transfer column are
    in the optimiser's checkpoint)."""
    assert_resume_equals_uninterrupted(LAB_ANALOG + TT_FLAGS + ['--archi', '784', '16', '10', '--mbs', '200'],
                                       tmp_path)


@pytest.mark.parametrize('argv', [
    ['--action', 'train', '--discrete', '--size_tab', '10', '32', '784', '--lr_tab', '0.04', '0.08', '--T', '8',
     '--Kmax', '4', '--beta', '0.1', '--dataset', 'mnist5k', '--benchmark'],
    ['--model', 'EPLCACNN', '--task', 'mnist5k', '--channels', '8', '8', '16', '--kernels', '5', '5', '--paddings', '0',
     '0', '0', '--strides', '1', '1', '1', '--lrs', '0.05', '0.05', '0.02', '--pools', 'imm', '--act', 'mysig',
     '--betas', '0.0', '0.2', '--T1', '8', '--T2', '4', '--mbs', '16', '--softmax', '--loss', 'cel', '--lca_iters',
     '2', '--dict_loss', 'recon']])
def test_ernoult_and_eplcanet_take_analog_devices(argv, tmp_path):
    code, folder = run_main(argv + ['--analog', 'TT-v1', '--analog-tau', '0.6', '--dry-run', '--seed', '0',
                                    '--threads', '1', '--results-dir', str(tmp_path)])
    assert code == 0
    text = open(os.path.join(folder, 'hyperparameters.txt')).read()
    assert '- analog: TT-v1' in text

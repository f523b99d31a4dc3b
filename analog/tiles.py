"""Tiles: crossbar arrays of devices, read by a noisy MVM and written by pulse trains (aihwkit's analog tile).

Update (aihwkit's pulsed SGD, STOCHASTIC_COMPRESSED): W ← W − lr Σ_b d_b x_bᵀ over the vector pairs (x_b, d_b) of a
mini-batch (a sample, or for a convolution every patch of every sample). For each pair a bit length BL_b and
probabilities p_x, p_d are set by update / bit-length management; element ij receives Binomial(BL_b, p_x_j p_d_i)
pulses, down when x_j d_i > 0, up otherwise, so that E[pulses] = lr |x_j d_i| / Δw_min (`pulse_counts`). The counts
come from the toolkit's own scheme, coincidences of Bernoulli bit trains (one matmul over the batch's time slots),
or, where that would draw more random numbers than the array has elements × vectors (long trains on small arrays:
the toy problems), from a per-element binomial draw; both have the per-element law Binomial(BL_b, p_x_j p_d_i).

Per-sample drift: the toolkit applies the vectors one after the other, so the ALD's drift is Σ_b |ΔW_b| ⊙ W/τ, not
|Σ_b ΔW_b| ⊙ W/τ (20–100× larger on the S2 problem). `Update(sequential=True)` does what the toolkit does: the
vectors' pulse trains in turn (each an affine map of the weights, composed at once by `devices.apply_trains`), each
element's train of one sign with the exact law of its per-pulse cycle-to-cycle noise. The default sums each
element's up and down counts over the vectors and applies them with the closed form of an interleaved pulse
sequence (`devices.apply_pulses`) and one Gaussian of the summed noise variance: the drift of every pulse is kept,
only the order of up and down pulses within one mini-batch is averaged (an O(Δw_min²) effect per pulse pair).
Both clip to the bounds once per mini-batch, the toolkit after every pulse. bench/bench_pulse_modes.py compares the
two modes on S1, S2, S4.1 and S4.2.

Tiles (aihwkit's mapping): a layer whose weight has more than max_input_size columns or max_output_size rows is
split over tiles as the toolkit's TileModuleArray splits it (`split_sizes`: 784 columns under 512 → 392 + 392);
each tile has its own IO (noise and bound management of its slice of the input), learned output gain, pulse trains
(update management on its slice) and TT-v1 column pointer, and the layer's output is the sum of its tiles' outputs.

Tiki-Taka (TT-v1, aihwkit 0.9.0 semantics), in Wu et al. 2024's notation with the fast array A = P and the slow
array C = W:

    P_{k+1} = P_k − α ∇f(W̄_k; ξ_k) − (α/τ) |∇f(W̄_k; ξ_k)| ⊙ P_k           (A's pulsed update, α = fast_lr)
    W_{k+1} = W_k + β P_{k+1} − (β/τ) |P_{k+1}| ⊙ W_k,   W̄_k = W_k + γ P_k     (the transfer, β = lr·transfer_lr)

where, as in the toolkit, every `transfer_every` mini-batches only the next `n_reads_per_transfer` columns of A
(cycling 0, 1, 2, …) are read through `transfer_io` (a forward read with e_j) and written to C by a pulsed update
with x = e_j, d = −Â[:, j] (`tt_v1_transfer`, `transfer_columns`). The network sees W̄ = C + γA (`visible`).

IO (each switchable): abs-max noise management, input clipping and quantisation, weight noise per MVM, output
noise, output clipping and quantisation, iterative bound management (forward only) (`mvm`).

Randomness (pulses, IO noise) uses torch's global generator on the weights' device, so a run resumed from a
checkpoint that restores the RNG states continues exactly.
"""
import itertools

import torch
import torch.nn as nn
import torch.nn.functional as F

from .configs import _check
from .devices import RESPONSE, TINY, apply_pulses, apply_trains, device_state, response_constants

COUNT_METHOD = 'auto'           # pulse_counts' default: 'auto' | 'coincidence' | 'binomial' (bench_analog.py compares)


# ---------------------------------------------------------------------------------------------------------------
# Pulse trains (aihwkit's stochastic-compressed update: bit length, probabilities, bit trains, coincidences)

def pulse_probabilities(x, d, lr, dw_min, update):
    """Per vector b: bit length BL_b and probabilities p_x (V, in), p_d (V, out) of the stochastic pulse trains.

    k = lr·x_max·d_max/Δw_min; bit-length management BL = min(⌈k⌉, desired_bl) (else desired_bl);
    a = √(lr/(Δw_min BL)); update management: if k > desired_bl, d_max ← d_max desired_bl/k, and
    p_x = a √(d_max/x_max) |x|, p_d = a √(x_max/d_max) |d| (else p_x = a|x|, p_d = a|d|), each clipped to 1.
    Then BL p_x_j p_d_i = lr |x_j d_i| / Δw_min unless clipped."""
    bl_max = update.desired_bl
    x_max = x.abs().amax(1).clamp(min=TINY)
    d_max = d.abs().amax(1).clamp(min=TINY)
    k = lr * x_max * d_max / dw_min
    bl = torch.ceil(k).clamp(max=bl_max) if update.update_bl_management else torch.full_like(k, bl_max)
    a = (lr / (dw_min * bl.clamp(min=1))).sqrt()
    if update.update_management:
        d_max = torch.where(k > bl_max, d_max * bl_max / k, d_max)
        ratio = (d_max / x_max).sqrt()
        p_x, p_d = (a * ratio)[:, None] * x.abs(), (a / ratio)[:, None] * d.abs()
    else:
        p_x, p_d = a[:, None] * x.abs(), a[:, None] * d.abs()
    return bl, p_x.clamp(max=1), p_d.clamp(max=1)


def pulse_counts(x, d, lr, dw_min, update, method=None, per_vector=False):
    """Up and down pulse counts of W ← W − lr Σ_b d_b x_bᵀ for vectors x (V, in), d (V, out): (n_up, n_dn) of shape
    (out, in) summed over the vectors, or (V, out, in) with per_vector. A pulse is down where x_j d_i > 0.

    method 'coincidence': Bernoulli bit trains of desired_bl slots (slots t ≥ BL_b off) for every row and column,
    a pulse where the bits of row i and column j coincide (the toolkit's scheme): counts = D_bitsᵀ X_bits, one
    matmul over the vectors' time slots, signed and unsigned. 'binomial': Binomial(BL_b, p_x_j p_d_i) per element
    and vector. Both have that binomial law per element; 'auto' takes the one drawing fewer random numbers. None:
    the module's COUNT_METHOD."""
    method = method or COUNT_METHOD
    bl, p_x, p_d = pulse_probabilities(x, d, lr, dw_min, update)
    V, n_in, n_out = x.shape[0], x.shape[1], d.shape[1]
    if method == 'auto':
        method = 'coincidence' if update.desired_bl * (n_in + n_out) <= 4 * n_in * n_out else 'binomial'
    if method == 'binomial':
        sx, sd = torch.sign(x), torch.sign(d)
        p = p_d[:, :, None] * p_x[:, None, :]
        n = torch.binomial(bl[:, None, None].expand_as(p).contiguous(), p)
        down = (sd[:, :, None] * sx[:, None, :]) > 0
        n_dn, n_up = n * down, n * ~down              # n = 0 where x_j d_i = 0 (p = 0)
        return (n_up, n_dn) if per_vector else (n_up.sum(0), n_dn.sum(0))
    _check(method == 'coincidence', f"method {method!r}: give 'auto', 'coincidence' or 'binomial'")
    # time slots drawn: desired_bl, or on the CPU (where reading a value waits for no device) only up to the
    # largest BL_b of the mini-batch, often a few of the 31 (the slots beyond never fire)
    T = int(bl.max()) if x.device.type == 'cpu' else update.desired_bl
    slots = (torch.arange(T, device=x.device)[None, :, None] < bl[:, None, None]).to(x.dtype)
    # signed bits: sign(x_j) where the bit of column j fires in slot t (slots t ≥ BL_b never fire), else 0
    sbx = torch.where(torch.rand(V, T, n_in, device=x.device) < p_x[:, None, :] * slots, torch.sign(x)[:, None, :],
                      0.0)
    sbd = torch.where(torch.rand(V, T, n_out, device=x.device) < p_d[:, None, :] * slots, torch.sign(d)[:, None, :],
                      0.0)
    bx, bd = sbx.abs(), sbd.abs()
    if per_vector:
        total, signed = bd.transpose(1, 2) @ bx, sbd.transpose(1, 2) @ sbx
    else:
        total = bd.reshape(-1, n_out).T @ bx.reshape(-1, n_in)
        signed = sbd.reshape(-1, n_out).T @ sbx.reshape(-1, n_in)
    return (total - signed) / 2, (total + signed) / 2


# ---------------------------------------------------------------------------------------------------------------
# MVM with IO non-idealities

def _quantise(v, bound, res):
    if res <= 0:
        return v
    step = 2 * bound * (1 / res if res > 1 else res)
    return torch.round(v / step) * step


def _noisy_mvm(x, W, io):
    """One pass of the analog MVM on an already scaled input: (output, per-vector saturation flag)."""
    x = _quantise(x.clamp(-io.inp_bound, io.inp_bound), io.inp_bound, io.inp_res)
    y = x @ W.T
    if io.w_noise > 0:
        # fresh N(0, w_noise²) on every weight of this MVM ⇔ N(0, w_noise² ||x||²) on every output
        y = y + io.w_noise * x.norm(dim=1, keepdim=True) * torch.randn_like(y)
    if io.out_noise > 0:
        y = y + io.out_noise * torch.randn_like(y)
    saturated = (y.abs() >= io.out_bound).any(1, keepdim=True)
    return _quantise(y.clamp(-io.out_bound, io.out_bound), io.out_bound, io.out_res), saturated


def bm_limit(io):
    """The toolkit's stop of iterative bound management: after the round at input reduction f (1, 2, 4, …) no more
    rounds once f > max_bm_factor or, with input quantisation of step r = 2·inp_bound·inp_res, f > max_bm_res / r.
    Returns the largest f after which another round runs (1000: up to f = 1024; 7-bit input: 15.75, up to 16)."""
    step = 1 / io.inp_res if io.inp_res > 1 else io.inp_res
    step *= 2 * io.inp_bound
    return min(io.max_bm_factor, io.max_bm_res / step) if step > 0 else io.max_bm_factor


def mvm(x, W, io, bound_management=True):
    """y = W x for the rows of x (N, in), W (out, in), through the IO: abs-max noise management scales each input
    vector by α = max|x| (and the output back), then input clipping ±inp_bound and quantisation, weight noise,
    output noise, clipping ±out_bound and quantisation. Iterative bound management (forward only): a vector whose
    output saturates is recomputed with its input halved, until the toolkit's stop (`bm_limit`; one host check per
    round)."""
    if io.is_perfect:
        return x @ W.T
    scale = (x.abs().amax(1, keepdim=True).clamp(min=TINY) if io.noise_management == 'abs_max'
             else torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device))
    y, saturated = _noisy_mvm(x / scale, W, io)
    if bound_management and io.bound_management == 'iterative':
        f, limit = 1.0, bm_limit(io)
        while f <= limit:
            if not bool(saturated.any()):
                break
            f *= 2
            scale = torch.where(saturated, 2 * scale, scale)
            y_new, sat_new = _noisy_mvm(x / scale, W, io)
            y, saturated = torch.where(saturated, y_new, y), saturated & sat_new
    return y * scale


# ---------------------------------------------------------------------------------------------------------------
# Writing an array by pulses

def _device_args(dev):
    """apply_pulses' device arguments from a device dict."""
    return dev['b_min'], dev['b_max'], dev['s_up'], dev['s_dn'], dev['c2c_std'], {k: dev[k] for k in RESPONSE}


def pulse_vectors(w, dev, x, d, lr, update):
    """W ← W − lr Σ_b d_b x_bᵀ by pulse trains (w: (out, in)), vector by vector (update.sequential, the toolkit's
    order: devices.apply_trains, each element's train of one sign with its per-pulse noise) or with the vectors'
    counts summed (apply_pulses). `dev`: b_min, b_max, s_up, s_dn, the response constants, dw_min and c2c_std of the
    array. Returns the new weights."""
    consts = _device_args(dev)
    if update.sequential:
        n_up, n_dn = pulse_counts(x, d, lr, dev['dw_min'], update, per_vector=True)
        return apply_trains(w, n_up, n_dn, *consts)
    n_up, n_dn = pulse_counts(x, d, lr, dev['dw_min'], update)
    return apply_pulses(w, n_up, n_dn, *consts)


def pulse_elementwise(w, dev, delta, update):
    """W ← W + Δ element-wise by pulses, for an update that is no outer product (the EP estimate of a mini-batch):
    a write that programs each element with its own pulse count, n_ij = m_ij rounded stochastically (⌊m⌋ + 1 with
    probability m − ⌊m⌋), m_ij = min(|Δ_ij|/Δw_min, desired_bl) (at most desired_bl pulses per write, as the
    toolkit's update management bounds a pulse train), up where Δ > 0; E[n] = |Δ|/Δw_min unless clipped. The pulses
    act through the device's closed-form response (apply_pulses). Returns the new weights."""
    m = (delta.abs() / dev['dw_min']).clamp_(max=update.desired_bl)
    n = m.floor()
    n += torch.rand_like(m) < m - n
    return apply_pulses(w, n * (delta > 0), n * (delta < 0), *_device_args(dev), per_pulse=update.sequential)


def transfer_columns(A, C, dev_C, column, lr, rpu):
    """The reads and writes of one TT-v1 transfer (A, C: (out, in)): read the n_reads_per_transfer columns
    j = column, column + 1, … (mod in) of A through transfer_io (input e_j) and write them to C with a pulsed update
    x = e_j, d = −Â[:, j] at rate lr, i.e. W ← W + β P on those columns (β = lr; the ALD adds the drift
    −(β/τ)|P| ⊙ W). Only column j of x = e_j is non-zero, so the pulse trains are those of x = (1) and d on
    that column alone, placed there (the columns are disjoint, so their order does not matter). Returns (new C, the
    next column)."""
    n_in, n = A.shape[1], rpu.n_reads_per_transfer
    cols = (column + torch.arange(n, device=A.device)) % n_in
    read = mvm(F.one_hot(cols, n_in).to(A.dtype), A, rpu.transfer_io)
    n_up, n_dn = pulse_counts(read.new_ones(n, 1), -read, lr, dev_C['dw_min'], rpu.update, per_vector=True)
    if n <= n_in:                                      # distinct columns: update those alone
        on_cols = {k: v[:, cols] if torch.is_tensor(v) else v for k, v in dev_C.items()}
        C = C.clone()
        C[:, cols] = apply_pulses(C[:, cols], n_up[:, :, 0].T, n_dn[:, :, 0].T, *_device_args(on_cols),
                                  per_pulse=rpu.update.sequential)
    else:                                              # a column read twice: its counts add up (in either mode)
        n_up = torch.zeros_like(C).index_add_(1, cols, n_up[:, :, 0].T)
        n_dn = torch.zeros_like(C).index_add_(1, cols, n_dn[:, :, 0].T)
        C = apply_pulses(C, n_up, n_dn, *_device_args(dev_C))
    return C, (column + n) % n_in


# ---------------------------------------------------------------------------------------------------------------
# The arrays of one weight matrix: W (Analog SGD), or A and C (TT-v1)

def array_names(rpu):
    """The arrays of one weight matrix, in the order their device constants are drawn: W (Analog SGD), or A (fast,
    P in Wu et al. 2024) and C (slow, W there; TT-v1)."""
    return ('A', 'C') if rpu.algorithm == 'tt-v1' else ('W',)


def initial_weight(name, weight):
    """What array `name` starts at: A at 0, W and C at the weights."""
    return torch.zeros_like(weight) if name == 'A' else weight


def seen_array(rpu):
    """The array whose device bounds bound the weights the network sees: W, or C (TT-v1)."""
    return 'C' if rpu.algorithm == 'tt-v1' else 'W'


def visible(rpu, weights):
    """What the network sees of the arrays `weights` (a dict by name): W, or W̄ = C + γA (TT-v1)."""
    if rpu.algorithm == 'tt-v1':
        return weights['C'] + rpu.gamma * weights['A'] if rpu.gamma else weights['C']
    return weights['W']


def tt_v1_transfer(A, C, dev_C, batches, column, lr, rpu, blocks=None):
    """TT-v1's slow update, after A's pulsed update of a mini-batch (the one place both analog layers and DeviceSGD
    run it): the mini-batch counter grows by one, and when transfer_every divides it the next n_reads_per_transfer
    columns of A go to C (transfer_columns) at rate β = lr·transfer_lr, W_{k+1} = W_k + β P_{k+1} − (β/τ) |P_{k+1}| ⊙
    W_k on those columns (C = W, A = P). `batches`, `column`: the counters before. A layer on several tiles gives
    their `blocks` (tile_blocks) and one column pointer per tile: each tile transfers its own next columns. Returns
    (C, batches, column) after (C itself when nothing was transferred)."""
    batches += 1
    if batches % rpu.transfer_every:
        return C, batches, column
    if blocks is None:
        C, column = transfer_columns(A, C, dev_C, column, lr * rpu.transfer_lr, rpu)
        return C, batches, column
    C, column = C.clone(), list(column)
    for k, (rows, cols) in enumerate(blocks):
        C[rows, cols], column[k] = transfer_columns(A[rows, cols], C[rows, cols], block_dev(dev_C, rows, cols),
                                                    column[k], lr * rpu.transfer_lr, rpu)
    return C, batches, column


# ---------------------------------------------------------------------------------------------------------------
# Tiles of a layer (aihwkit's mapping onto several crossbars)

def split_sizes(size, max_size):
    """The toolkit's split of a logical dimension over tiles: n = ⌈size / max_size⌉ tiles of ⌊size/n⌋ elements, the
    first size mod n of them one more (784 under 512: 392 + 392); [size] when max_size ≤ 0."""
    if max_size <= 0:
        return [size]
    n = -(-size // max_size)
    base, extra = divmod(size, n)
    return [base + (i < extra) for i in range(n)]


def tile_blocks(out_size, in_size, rpu):
    """(rows, cols) slices of the tiles of an (out, in) weight in the toolkit's order: input splits outer, output
    splits inner (its TileModuleArray.array[i][j])."""
    def slices(sizes):
        return [slice(e - n, e) for n, e in zip(sizes, itertools.accumulate(sizes))]
    return [(rows, cols) for cols in slices(split_sizes(in_size, rpu.max_input_size))
            for rows in slices(split_sizes(out_size, rpu.max_output_size))]


def block_dev(dev, rows, cols):
    """A device dict (Tile.dev) restricted to one tile's rows and columns (views)."""
    return {k: v[rows, cols] if torch.is_tensor(v) else v for k, v in dev.items()}


class Tile(nn.Module):
    """One array of a layer (W, A or C): its weights `weight` (out, in) and the per-element device constants
    (buffers), drawn from `generator` or given as `consts` (a layer on several tiles assembles its tiles' draws; the
    weight is then taken as it is)."""

    def __init__(self, weight, device, generator=None, consts=None):
        super().__init__()
        if consts is None:
            weight, consts = device_state(device, weight, generator)
        for name, v in consts.items():
            self.register_buffer(name, v)
        self.register_buffer('weight', weight)
        self.dw_min, self.c2c_std = device.dw_min, device.dw_min_std
        self._response()
        self.register_load_state_dict_post_hook(lambda module, keys: module._response())

    def _response(self):
        """Derived device constants (not saved: recomputed from the saved ones after load_state_dict)."""
        for name, v in response_constants(self.b_min, self.b_max, self.s_up, self.s_dn).items():
            self.register_buffer(name, v, persistent=False)

    @property
    def dev(self):
        """The device dict that pulse_vectors, pulse_elementwise and transfer_columns take."""
        return {k: getattr(self, k) for k in ('b_min', 'b_max', 's_up', 's_dn', 'dw_min', 'c2c_std') + RESPONSE}

    def pulse(self, x, d, lr, update, block=None):
        """W ← W − lr Σ_b d_b x_bᵀ by pulse trains (pulse_vectors), on the (rows, cols) `block` of one tile if given."""
        if block is None:
            self.weight.copy_(pulse_vectors(self.weight, self.dev, x, d, lr, update))
            return
        rows, cols = block
        self.weight[rows, cols] = pulse_vectors(self.weight[rows, cols], block_dev(self.dev, rows, cols), x, d, lr,
                                                update)

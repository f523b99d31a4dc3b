"""Analog in-memory training simulator (Wu, Gokmen, Rasch & Chen, NeurIPS 2024) in plain PyTorch, CPU or GPU.

Weights live on crossbar arrays of resistive devices and are changed only by pulses. The paper's device is the
asymmetric linear device (ALD), a soft-bounds device with bounds ±τ (spec §1, §4):

    one up pulse:    w ← w + Δw_up (1 − w/b_max + σ_c2c ξ)       one down pulse:  w ← w − Δw_dn (1 − w/b_min + σ_c2c ξ)

with per-element b_max, b_min, Δw_up, Δw_dn drawn once (device-to-device variation) and ξ ~ N(0, 1) per pulse
(cycle-to-cycle noise). n pulses of one sign have the closed form w_n = b − (b − w) ρⁿ, ρ = 1 − Δw/|b|, so pulse
trains are never looped over. To first order in Δw_min a desired change Δ becomes (A-ALD)

    w ← w + Δ − (|Δ|/τ) w,

whose drift term −(|Δ|/τ) w pulls every weight toward the symmetric point 0 (`ald_step`, the paper's dynamic).

Update (spec §4, the IBM toolkit's pulsed SGD W ← W − lr Σ_b d_b x_bᵀ): for every vector pair (x_b, d_b) of a
mini-batch (a sample, or for a convolution every patch of every sample) a bit length BL_b and probabilities p_x, p_d
are set by update / bit-length management; element ij receives Binomial(BL_b, p_x_j p_d_i) pulses, down when
x_j d_i > 0, up otherwise, so that E[pulses] = lr |x_j d_i| / Δw_min. The counts come from the toolkit's own scheme,
coincidences of Bernoulli bit trains (one matmul over the batch's time slots), or, where that would draw more random
numbers than the array has elements × vectors (long trains on small arrays: the toy problems), from a per-element
binomial draw; both have the per-element law Binomial(BL_b, p_x_j p_d_i).

Per-sample drift: the toolkit applies the vectors one after the other, so the drift is Σ_b |Δ_b| ⊙ w/τ, not
|Σ_b Δ_b| ⊙ w/τ (20–100× larger on the S2 problem). `Update(sequential=True)` does exactly that (a loop over the
vectors); the default sums each element's up and down counts over the vectors and applies them with the closed form
of an interleaved pulse sequence (`apply_pulses`): the drift of every pulse is kept, only the order of up and down
pulses within one mini-batch is averaged (an O(Δw_min²) effect per pulse pair). tests/test_analog.py checks that both
give the same loss on the S2 problem.

Tiki-Taka (TT-v1, spec §2, aihwkit 0.9.0 semantics): array A receives the pulsed update at the absolute rate
fast_lr; every `transfer_every` mini-batches the next `n_reads_per_transfer` columns of A (cycling 0, 1, 2, …) are read
through `transfer_io` (a forward read with e_j) and written to array C by a pulsed update with x = e_j, d = −Â[:, j]
at rate lr·transfer_lr. The network sees C + γA.

IO (each switchable, spec §4): abs-max noise management, input clipping and quantisation, weight noise per MVM,
output noise, output clipping and quantisation, iterative bound management (forward only).

EP nets (`DeviceSGD`, `--analog` on the Ernoult 2019, Laborieux 2021 and EPLCANet command lines): their relaxation
reads the weights directly, so the analog part is the update path: every weight tensor lives on devices and the EP
estimate of a mini-batch (p.grad) is written element-wise by pulses (`pulse_elementwise`), into W or, for TT-v1,
into A with the transfer to C.

Randomness (pulses, IO noise) uses torch's global generator on the weights' device, so a run resumed from a
checkpoint that restores the RNG states continues exactly; device constants use a generator seeded by
`construction_seed` (the same for every tile, as the toolkit).
"""
import copy
import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

TINY = 1e-30
COUNT_METHOD = 'auto'           # pulse_counts' default: 'auto' | 'coincidence' | 'binomial' (bench_analog.py compares)
MAX_BM_ROUNDS = 10              # iterative bound management halves the input at most 10 times (factor 1024)


def _check(ok, message):
    if not ok:
        raise ValueError(message)


def _finite_positive(name, v):
    _check(isinstance(v, (int, float)) and math.isfinite(v) and v > 0, f'{name} {v}: give a finite value > 0')


# ---------------------------------------------------------------------------------------------------------------
# Configuration (spec §3)

@dataclass(frozen=True)
class Device:
    """Soft-bounds reference device (aihwkit SoftBoundsReferenceDevice, additive c2c noise); per-element values are
    drawn once from `construction_seed`."""
    tau: float                       # bounds ±tau (w_max = tau, w_min = -tau)
    dw_min: float = 1e-3
    dw_min_dtod: float = 0.3         # device-to-device spread of the step
    dw_min_std: float = 0.3          # cycle-to-cycle noise (additive)
    w_bound_dtod: float = 0.3        # device-to-device spread of the bounds
    up_down: float = 0.0
    up_down_dtod: float = 0.01
    construction_seed: int = 10

    def __post_init__(self):
        _finite_positive('tau', self.tau)
        _finite_positive('dw_min', self.dw_min)
        for name in ('dw_min_dtod', 'dw_min_std', 'w_bound_dtod', 'up_down_dtod'):
            v = getattr(self, name)
            _check(math.isfinite(v) and v >= 0, f'{name} {v}: give a finite value >= 0')


@dataclass(frozen=True)
class IO:
    """Forward/backward MVM non-idealities (aihwkit IOParameters); is_perfect=True switches all off. inp_res and
    out_res are fractions of the full range 2·bound (1/126: 7 bits), a value > 1 a number of steps, 0 none."""
    is_perfect: bool = False
    inp_bound: float = 1.0
    inp_res: float = 1 / 126
    out_bound: float = 12.0
    out_res: float = 1 / 510
    out_noise: float = 0.06
    w_noise: float = 0.0             # Gaussian noise on every weight per MVM (ADDITIVE_CONSTANT)
    noise_management: str = 'abs_max'   # or 'none'
    bound_management: str = 'iterative'  # or 'none'

    def __post_init__(self):
        _check(self.noise_management in ('abs_max', 'none'),
               f"noise_management {self.noise_management!r}: give 'abs_max' or 'none'")
        _check(self.bound_management in ('iterative', 'none'),
               f"bound_management {self.bound_management!r}: give 'iterative' or 'none'")
        for name in ('inp_bound', 'out_bound'):
            _finite_positive(name, getattr(self, name))
        for name in ('inp_res', 'out_res', 'out_noise', 'w_noise'):
            v = getattr(self, name)
            _check(math.isfinite(v) and v >= 0, f'{name} {v}: give a finite value >= 0')


@dataclass(frozen=True)
class Update:
    """Pulse-train update (aihwkit UpdateParameters, STOCHASTIC_COMPRESSED). `sequential` applies the vectors of a
    mini-batch one after the other (exact toolkit order, a Python loop); the default sums their counts (see the
    module docstring)."""
    desired_bl: int = 31
    update_management: bool = True
    update_bl_management: bool = True
    sequential: bool = False

    def __post_init__(self):
        _check(isinstance(self.desired_bl, int) and self.desired_bl >= 1,
               f'desired_bl {self.desired_bl}: give an integer >= 1')


ALGORITHMS = ('analog sgd', 'tt-v1')


@dataclass(frozen=True)
class RPU:
    """What a tile is: one array (Analog SGD) or Tiki-Taka's two arrays A (fast) and C (slow)."""
    algorithm: str                   # 'analog sgd' | 'tt-v1'
    device: Device
    forward: IO = IO()
    backward: IO = IO()
    update: Update = Update()
    fast_lr: float = 0.01            # TT-v1: absolute learning rate of A (aihwkit 0.9.0 semantics)
    gamma: float = 0.0               # TT-v1: the network sees C + gamma * A
    transfer_every: int = 1          # mini-batches between transfers
    n_reads_per_transfer: int = 1    # columns of A read per transfer
    transfer_lr: float = 1.0         # times the current SGD lr
    transfer_io: IO = IO(noise_management='none', bound_management='none')
    learn_out_scaling: bool = False  # a digital scalar gain per layer, trained by plain SGD (aihwkit mapping)

    def __post_init__(self):
        _check(self.algorithm in ALGORITHMS, f'algorithm {self.algorithm!r}: give one of {", ".join(ALGORITHMS)}')
        for name in ('fast_lr', 'gamma', 'transfer_lr'):
            v = getattr(self, name)
            _check(math.isfinite(v) and v >= 0, f'{name} {v}: give a finite value >= 0')
        for name in ('transfer_every', 'n_reads_per_transfer'):
            v = getattr(self, name)
            _check(isinstance(v, int) and v >= 1, f'{name} {v}: give an integer >= 1')


SETTINGS = ('FP SGD', 'Analog SGD', 'TT-v1')
PRESETS = ('S1', 'S2', 'S3.1', 'S3.2', 'S3.3', 'S4', 'S5')

_TOY_IO = IO(inp_bound=10.0, out_bound=10.0, inp_res=0.0, out_res=0.0, out_noise=0.0,
             noise_management='none', bound_management='none')
_ZERO_VARIATION = dict(dw_min_dtod=0.0, dw_min_std=0.0, w_bound_dtod=0.0, up_down=0.0, up_down_dtod=0.0)


def _preset(preset, tau, tt):
    """(Device kwargs, forward/backward IO, Update, RPU kwargs) of a spec §3 row."""
    if preset == 'S1':
        return (dict(dw_min=1e-4, **_ZERO_VARIATION), dataclasses.replace(_TOY_IO, w_noise=1e-2 / math.sqrt(40)),
                Update(desired_bl=800), dict(transfer_io=_TOY_IO))
    if preset in ('S2', 'S3.1'):
        return dict(dw_min=tau / 300, **_ZERO_VARIATION), _TOY_IO, Update(desired_bl=5000), dict(transfer_io=_TOY_IO)
    if preset == 'S3.2':
        return dict(dw_min=1e-4, **_ZERO_VARIATION), _TOY_IO, Update(desired_bl=5000), dict(transfer_io=_TOY_IO)
    if preset == 'S3.3':
        io = IO(inp_bound=1.0, out_bound=10.0, inp_res=0.0, out_res=0.0, out_noise=0.0,
                w_noise=1e-2 / math.sqrt(50))
        return dict(dw_min=1e-4, **_ZERO_VARIATION), io, Update(desired_bl=400), dict(transfer_io=_TOY_IO)
    seed = dict(construction_seed=123) if tt else {}      # build_config('ttv1', ..., construction_seed=123)
    dw = dict(dw_min=tau / 600) if preset == 'S5' else {}
    return {**dw, **seed}, IO(), Update(), dict(learn_out_scaling=True)


def rpu_config(setting, tau, preset='S4', **overrides):
    """The configuration of spec §3 for a setting ('FP SGD' → None, 'Analog SGD', 'TT-v1') of a script (`preset`:
    S1, S2 (= S3.1), S3.2, S3.3, S4, S5) at dynamic-range radius τ. `overrides` replace any field of Device, of
    Update, of RPU, or of IO (then in both the forward and the backward IO, e.g. w_noise = σ of the toy problems);
    an unknown setting, preset or field, τ ≤ 0, or a bad value raises ValueError with one line."""
    _check(setting in SETTINGS, f'setting {setting!r}: give one of ' + ', '.join(repr(s) for s in SETTINGS))
    _check(isinstance(tau, (int, float)) and math.isfinite(tau) and tau > 0,
           f'tau {tau}: give a dynamic-range radius > 0')
    _check(preset in PRESETS, f'preset {preset!r}: give one of {", ".join(PRESETS)}')
    if setting == 'FP SGD':
        return None
    tt = setting == 'TT-v1'
    dev_kw, io, update, rpu_kw = _preset(preset, tau, tt)
    names = {cls: {f.name for f in dataclasses.fields(cls)} for cls in (Device, IO, Update, RPU)}
    unknown = set(overrides) - set().union(*names.values()) - {'algorithm', 'tau'}
    _check(not unknown, f'unknown setting {", ".join(sorted(unknown))}: give fields of Device, IO, Update or RPU')
    pick = lambda cls: {k: v for k, v in overrides.items() if k in names[cls]}
    device = Device(tau=tau, **{**dev_kw, **pick(Device)})
    io = dataclasses.replace(io, **pick(IO))
    update = dataclasses.replace(update, **pick(Update))
    return RPU(algorithm='tt-v1' if tt else 'analog sgd', device=device, forward=io, backward=io, update=update,
               **{**rpu_kw, **pick(RPU)})


def ald_step(W, grad, lr, tau):
    """The paper's closed-form analog step (A-ALD) with Δ = −lr·g: W ← W − lr g − (lr/τ) |g| ⊙ W (no noise)."""
    return W - lr * grad - (lr / tau) * grad.abs() * W


# ---------------------------------------------------------------------------------------------------------------
# Device: construction and the closed-form pulse response

def sample_device(device, shape, generator):
    """Per-element device constants (spec §4): b_max = w_max(1 + dtod ξ), b_min = w_min(1 + dtod ξ) (b_max ≥ 0 ≥
    b_min), gain g = 1 + dw_min_dtod ξ, asymmetry r = up_down_dtod ξ, Δw_up = |up_bias + g + r| dw_min,
    Δw_dn = |down_bias + g − r| dw_min. Returns a dict of float32 CPU tensors."""
    xi = lambda: torch.randn(shape, generator=generator)
    tau = device.tau
    b_max = (tau * (1 + device.w_bound_dtod * xi())).clamp(min=0)
    b_min = (-tau * (1 + device.w_bound_dtod * xi())).clamp(max=0)
    gain = 1 + device.dw_min_dtod * xi()
    r = device.up_down_dtod * xi()
    up_bias, down_bias = min(device.up_down, 0.0), -max(device.up_down, 0.0)
    s_up = ((up_bias + gain + r) * device.dw_min).abs()
    s_dn = ((down_bias + gain - r) * device.dw_min).abs()
    return dict(b_min=b_min, b_max=b_max, s_up=s_up, s_dn=s_dn)


def response_constants(b_min, b_max, s_up, s_dn):
    """What the closed-form response needs of a device, computed once per tile: log ρ_up = log(1 − Δw_up/b_max),
    log ρ_dn = log(1 − Δw_dn/|b_min|) (ρ clipped to [1e-12, 1]: a step beyond the bound lands on it), 1/b_max,
    1/|b_min|, Δw_up², Δw_dn²."""
    inv_up, inv_dn = 1 / b_max.clamp(min=TINY), 1 / (-b_min).clamp(min=TINY)
    return dict(log_rho_up=(1 - s_up * inv_up).clamp(1e-12, 1).log(), log_rho_dn=(1 - s_dn * inv_dn).clamp(1e-12, 1).log(),
                inv_up=inv_up, inv_dn=inv_dn, s_up2=s_up * s_up, s_dn2=s_dn * s_dn)


def apply_pulses(w, n_up, n_dn, b_min, b_max, s_up, s_dn, c2c_std=0.0, response=None):
    """The weights after n_up up and n_dn down pulses per element (float counts, broadcastable).

    One sign: up w_n = b_max − (b_max − w) ρ_up^n, ρ_up = 1 − Δw_up/b_max (down likewise toward b_min), exact.
    Both signs (the summed counts of a mini-batch): the pulses are taken as interleaved, so w relaxes toward the
    balance point w_eq = (n_up Δw_up − n_dn Δw_dn) / (n_up Δw_up/b_max + n_dn Δw_dn/|b_min|) with the exact total
    contraction L = ρ_up^n_up ρ_dn^n_dn: every pulse's pull toward its bound is kept, the order of the pulses within
    the mini-batch is averaged. Additive c2c noise Δw σ ξ per pulse, each damped by the later pulses: a Gaussian of
    variance σ² (n_up Δw_up² + n_dn Δw_dn²) h, h = (1 − L²)/(−2 log L) the mean squared damping of pulses spread
    evenly (1 when L = 1). The result is clipped to [b_min, b_max]. `response`: response_constants of the device."""
    r = response or response_constants(b_min, b_max, s_up, s_dn)
    log_L = torch.addcmul(n_up * r['log_rho_up'], n_dn, r['log_rho_dn'])
    a_up, a_dn = n_up * s_up, n_dn * s_dn
    pull = torch.addcmul(a_up * r['inv_up'], a_dn, r['inv_dn']).clamp_(min=TINY)
    w_eq = (a_up - a_dn).div_(pull)
    w_new = torch.addcmul(w_eq, w - w_eq, log_L.exp())
    if c2c_std > 0:
        u2 = 2 * log_L.clamp(max=-1e-12)                          # h → 1 as L → 1
        var = torch.addcmul(n_up * r['s_up2'], n_dn, r['s_dn2']).mul_(torch.expm1(u2).div_(u2))
        w_new.addcmul_(var.sqrt_(), torch.randn_like(w_new), value=c2c_std)
    return torch.clamp(w_new, b_min, b_max, out=w_new)


# ---------------------------------------------------------------------------------------------------------------
# Pulse trains (spec §4, steps 1–4)

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
    sbx = torch.where(torch.rand(V, T, n_in, device=x.device) < p_x[:, None, :] * slots, torch.sign(x)[:, None, :], 0.0)
    sbd = torch.where(torch.rand(V, T, n_out, device=x.device) < p_d[:, None, :] * slots, torch.sign(d)[:, None, :],
                      0.0)
    bx, bd = sbx.abs(), sbd.abs()
    if per_vector:
        total, signed = bd.transpose(1, 2) @ bx, sbd.transpose(1, 2) @ sbx
    else:
        total, signed = bd.reshape(-1, n_out).T @ bx.reshape(-1, n_in), sbd.reshape(-1, n_out).T @ sbx.reshape(-1, n_in)
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


def mvm(x, W, io, bound_management=True):
    """y = W x for the rows of x (N, in), W (out, in), through the IO: abs-max noise management scales each input
    vector by α = max|x| (and the output back), then input clipping ±inp_bound and quantisation, weight noise,
    output noise, clipping ±out_bound and quantisation. Iterative bound management (forward only): a vector whose
    output saturates is recomputed with its input halved, up to 10 times (one host check per round)."""
    if io.is_perfect:
        return x @ W.T
    scale = (x.abs().amax(1, keepdim=True).clamp(min=TINY) if io.noise_management == 'abs_max'
             else torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device))
    y, saturated = _noisy_mvm(x / scale, W, io)
    if bound_management and io.bound_management == 'iterative':
        for _ in range(MAX_BM_ROUNDS):
            if not bool(saturated.any()):
                break
            scale = torch.where(saturated, 2 * scale, scale)
            y_new, sat_new = _noisy_mvm(x / scale, W, io)
            y, saturated = torch.where(saturated, y_new, y), saturated & sat_new
    return y * scale


class AnalogContext(nn.Parameter):
    """A zero-size parameter through which AnalogSGD finds its analog layer among model.parameters(); a deep copy
    of the model points the copy's handle at the copied layer."""

    def __deepcopy__(self, memo):
        new = AnalogContext(self.data.clone(), self.requires_grad)
        memo[id(self)] = new
        new.analog_layer = copy.deepcopy(self.analog_layer, memo)
        return new


class _AnalogMVM(torch.autograd.Function):
    """Forward y = W x through the forward IO; backward ∂L/∂x = Wᵀ ∂L/∂y through the backward IO, and hands the pair
    (x, d = ∂L/∂y) to the layer for its pulsed update (the weights get no autograd gradient: the optimiser pulses)."""

    @staticmethod
    def forward(ctx, x, handle, W, layer):
        ctx.save_for_backward(x, W)
        ctx.layer = layer
        return mvm(x, W, layer.rpu.forward)

    @staticmethod
    def backward(ctx, d):
        x, W = ctx.saved_tensors
        ctx.layer._pairs.append((x, d))
        grad_x = mvm(d, W.T, ctx.layer.rpu.backward, bound_management=False) if ctx.needs_input_grad[0] else None
        return grad_x, torch.zeros_like(ctx.layer.analog_ctx), None, None


# ---------------------------------------------------------------------------------------------------------------
# Tiles and layers

RESPONSE = ('log_rho_up', 'log_rho_dn', 'inv_up', 'inv_dn', 's_up2', 's_dn2')


def _device_args(dev):
    """apply_pulses' device arguments from a device dict."""
    return dev['b_min'], dev['b_max'], dev['s_up'], dev['s_dn'], dev['c2c_std'], {k: dev[k] for k in RESPONSE}


def pulse_vectors(w, dev, x, d, lr, update):
    """W ← W − lr Σ_b d_b x_bᵀ by pulse trains (w: (out, in)), vector by vector (update.sequential, the toolkit's
    order) or with the vectors' counts summed (apply_pulses). `dev`: b_min, b_max, s_up, s_dn, the response
    constants, dw_min and c2c_std of the array. Returns the new weights."""
    consts = _device_args(dev)
    if update.sequential:
        n_up, n_dn = pulse_counts(x, d, lr, dev['dw_min'], update, per_vector=True)
        for b in range(x.shape[0]):
            w = apply_pulses(w, n_up[b], n_dn[b], *consts)
        return w
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
    return apply_pulses(w, n * (delta > 0), n * (delta < 0), *_device_args(dev))


def transfer_columns(A, C, dev_C, column, lr, rpu):
    """TT-v1 transfer (A, C: (out, in)): read the n_reads_per_transfer columns j = column, column + 1, … (mod in) of A
    through transfer_io (input e_j) and write them to C with a pulsed update x = e_j, d = −Â[:, j] at rate lr, i.e.
    C[:, j] += lr Â[:, j]. Only column j of x = e_j is non-zero, so the pulse trains are those of x = (1) and d on
    that column alone, placed there (the columns are disjoint, so their order does not matter). Returns (new C, the
    next column)."""
    n_in, n = A.shape[1], rpu.n_reads_per_transfer
    cols = (column + torch.arange(n, device=A.device)) % n_in
    read = mvm(F.one_hot(cols, n_in).to(A.dtype), A, rpu.transfer_io)
    n_up, n_dn = pulse_counts(read.new_ones(n, 1), -read, lr, dev_C['dw_min'], rpu.update, per_vector=True)
    if n <= n_in:                                      # distinct columns: update those alone
        on_cols = {k: v[:, cols] if torch.is_tensor(v) else v for k, v in dev_C.items()}
        C = C.clone()
        C[:, cols] = apply_pulses(C[:, cols], n_up[:, :, 0].T, n_dn[:, :, 0].T, *_device_args(on_cols))
    else:                                              # a column read twice: its counts add up
        n_up = torch.zeros_like(C).index_add_(1, cols, n_up[:, :, 0].T)
        n_dn = torch.zeros_like(C).index_add_(1, cols, n_dn[:, :, 0].T)
        C = apply_pulses(C, n_up, n_dn, *_device_args(dev_C))
    return C, (column + n) % n_in


def device_state(device, weight, generator):
    """The per-element constants of an array holding `weight` (on its device and dtype) and the weight clipped to
    their bounds: (weight, {b_min, b_max, s_up, s_dn})."""
    consts = {k: v.to(weight.device, weight.dtype) for k, v in sample_device(device, weight.shape, generator).items()}
    return torch.minimum(torch.maximum(weight.detach().clone(), consts['b_min']), consts['b_max']), consts


class Tile(nn.Module):
    """One crossbar array: visible weights `weight` (out, in) and the per-element device constants (buffers)."""

    def __init__(self, weight, device, generator):
        super().__init__()
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
        return {k: getattr(self, k) for k in ('b_min', 'b_max', 's_up', 's_dn', 'dw_min', 'c2c_std') + RESPONSE}

    def pulse(self, x, d, lr, update):
        """W ← W − lr Σ_b d_b x_bᵀ by pulse trains (pulse_vectors)."""
        self.weight.copy_(pulse_vectors(self.weight, self.dev, x, d, lr, update))


class _AnalogLayer(nn.Module):
    """Shared by AnalogLinear and AnalogConv2d: the tiles (W, or A and C), the digital bias and out scale, the MVM,
    the recorded (x, d) pairs and the pulsed update that AnalogSGD calls."""

    def _build(self, weight, rpu):
        self.rpu = rpu
        gen = torch.Generator().manual_seed(rpu.device.construction_seed)
        if rpu.algorithm == 'tt-v1':
            self.A = Tile(torch.zeros_like(weight), rpu.device, gen)      # device 0: fast, starts at 0
            self.C = Tile(weight, rpu.device, gen)                        # device 1: holds the weights
        else:
            self.W = Tile(weight, rpu.device, gen)
        self.analog_ctx = AnalogContext(weight.new_zeros(0))
        self.analog_ctx.analog_layer = self
        self.out_scale = nn.Parameter(weight.new_ones(())) if rpu.learn_out_scaling else None
        self._pairs = []
        self._batches, self._column = 0, 0          # TT-v1 counters (mini-batches updated, next column of A)

    @property
    def tiles(self):
        return {'A': self.A, 'C': self.C} if self.rpu.algorithm == 'tt-v1' else {'W': self.W}

    def visible_weight(self):
        """What the MVM uses: W, or C + γ A (TT-v1)."""
        if self.rpu.algorithm == 'tt-v1':
            return self.C.weight + self.rpu.gamma * self.A.weight if self.rpu.gamma else self.C.weight
        return self.W.weight

    @property
    def weight(self):
        return self.visible_weight()

    def weights(self):
        return {name: t.weight for name, t in self.tiles.items()}

    def bounds(self):
        """(b_min, b_max) of the array whose weights the network sees (W, or C for TT-v1)."""
        t = self.C if self.rpu.algorithm == 'tt-v1' else self.W
        return t.b_min, t.b_max

    def _mvm(self, rows):
        y = _AnalogMVM.apply(rows, self.analog_ctx, self.visible_weight(), self)
        return y * self.out_scale if self.out_scale is not None else y

    def pulsed_update(self, lr):
        """The analog step of the vectors recorded since the last one (AnalogSGD.step)."""
        if not self._pairs:
            return
        x = torch.cat([p[0] for p in self._pairs])
        d = torch.cat([p[1] for p in self._pairs])
        self._pairs = []
        rpu = self.rpu
        if rpu.algorithm == 'analog sgd':
            self.W.pulse(x, d, lr, rpu.update)
            return
        self.A.pulse(x, d, rpu.fast_lr, rpu.update)
        self._batches += 1
        if self._batches % rpu.transfer_every == 0:
            self.transfer(lr * rpu.transfer_lr)

    def transfer(self, lr):
        """TT-v1 transfer of the next columns of A to C (transfer_columns)."""
        c, self._column = transfer_columns(self.A.weight, self.C.weight, self.C.dev, self._column, lr, self.rpu)
        self.C.weight.copy_(c)

    def get_extra_state(self):
        return {'batches': self._batches, 'column': self._column}

    def set_extra_state(self, state):
        self._batches, self._column = state['batches'], state['column']


class AnalogLinear(_AnalogLayer):
    """y = W x + b with W on analog tiles (rpu) and a digital bias b."""

    def __init__(self, in_features, out_features, bias=True, rpu=None, weight=None):
        super().__init__()
        _check(rpu is not None, 'AnalogLinear needs an rpu (rpu_config)')
        self.in_features, self.out_features = in_features, out_features
        if weight is None:
            weight = nn.Linear(in_features, out_features, bias=False).weight.detach()
        self._build(weight, rpu)
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=weight.dtype, device=weight.device)) if bias else None

    def forward(self, x):
        lead = x.shape[:-1]
        y = self._mvm(x.reshape(-1, self.in_features)).reshape(*lead, self.out_features)
        return y + self.bias if self.bias is not None else y

    def extra_repr(self):
        return f'{self.in_features}, {self.out_features}, bias={self.bias is not None}, {self.rpu.algorithm}'


class AnalogConv2d(_AnalogLayer):
    """nn.Conv2d on analog tiles: the kernel is an (out, in·k·k) array, the input is unfolded into patches and every
    patch of every sample is one vector of the MVM and of the pulsed update (as the toolkit). Digital bias."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
                 padding_mode='zeros', rpu=None, weight=None):
        super().__init__()
        _check(rpu is not None, 'AnalogConv2d needs an rpu (rpu_config)')
        _check(groups == 1 and padding_mode == 'zeros', 'AnalogConv2d: only groups=1 and zero padding')
        pair = nn.modules.utils._pair
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.dilation = pair(kernel_size), pair(stride), pair(dilation)
        self.padding = pair(padding)
        if weight is None:
            weight = nn.Conv2d(in_channels, out_channels, kernel_size, bias=False).weight.detach()
        self._build(weight.reshape(out_channels, -1), rpu)
        self.bias = nn.Parameter(torch.zeros(out_channels, dtype=weight.dtype, device=weight.device)) if bias else None

    def forward(self, x):
        B, _, H, W = x.shape
        kh, kw = self.kernel_size
        oh = (H + 2 * self.padding[0] - self.dilation[0] * (kh - 1) - 1) // self.stride[0] + 1
        ow = (W + 2 * self.padding[1] - self.dilation[1] * (kw - 1) - 1) // self.stride[1] + 1
        cols = F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)     # (B, C k k, L)
        y = self._mvm(cols.transpose(1, 2).reshape(B * oh * ow, -1))
        y = y.reshape(B, oh * ow, self.out_channels).transpose(1, 2).reshape(B, self.out_channels, oh, ow)
        return y + self.bias.view(1, -1, 1, 1) if self.bias is not None else y

    @property
    def weight(self):
        kh, kw = self.kernel_size
        return self.visible_weight().reshape(self.out_channels, self.in_channels, kh, kw)

    def extra_repr(self):
        return (f'{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, '
                f'padding={self.padding}, {self.rpu.algorithm}')


def convert(model, rpu):
    """Every nn.Linear / nn.Conv2d of `model` (recursively, in place) replaced by its analog twin with the same
    weights (clipped to the device bounds) and bias; rpu None returns the model unchanged (FP SGD)."""
    if rpu is None:
        return model
    if isinstance(model, (nn.Linear, nn.Conv2d)):
        return _analog_twin(model, rpu)
    for name, child in model.named_children():
        setattr(model, name, convert(child, rpu))
    return model


def _analog_twin(m, rpu):
    w = m.weight.detach()
    if isinstance(m, nn.Linear):
        new = AnalogLinear(m.in_features, m.out_features, m.bias is not None, rpu=rpu, weight=w)
    else:
        new = AnalogConv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation, m.groups,
                           m.bias is not None, m.padding_mode, rpu=rpu, weight=w)
    if m.bias is not None:
        new.bias.data.copy_(m.bias.detach())
    return new


# ---------------------------------------------------------------------------------------------------------------
# The optimiser

class AnalogSGD(torch.optim.Optimizer):
    """SGD whose analog layers update by pulses: each analog layer (found through its `analog_ctx` handle among the
    parameters) applies its pulsed update at the group's lr (Analog SGD: W ← W − lr Σ_b d_b x_bᵀ; TT-v1: A at
    fast_lr, then the transfer to C at lr·transfer_lr); every other parameter (biases, out scales, a digital net)
    takes plain SGD θ ← θ − lr ∂L/∂θ. Works with torch.optim.lr_scheduler."""

    def __init__(self, params, lr=0.01):
        _check(math.isfinite(lr) and lr >= 0, f'lr {lr}: give a finite value >= 0')
        super().__init__(params, dict(lr=lr))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group['params']:
                self._update(p, group)
        return loss

    def _update(self, p, group):
        layer = getattr(p, 'analog_layer', None)
        if layer is not None:
            layer.pulsed_update(group['lr'])
        elif p.grad is not None:
            p.add_(p.grad, alpha=-group['lr'])


class DeviceSGD(AnalogSGD):
    """SGD for networks that read their weights directly (the EP nets: the relaxation uses W itself, there is no MVM
    to route through a tile): every weight tensor (2-D or more, not in `digital`) lives on soft-bounds devices and
    changes only by pulses; other parameters (biases, `digital` ones) take plain SGD. The device state lives in the
    optimiser's state (saved with its state_dict), one tile per tensor viewed as (out, rest).

    The update is the EP estimate ĝ of the mini-batch as computed by the network (p.grad), Δ = −lr (ĝ + wd θ),
    written element-wise (pulse_elementwise): Analog SGD pulses Δ into W; TT-v1 pulses −fast_lr (ĝ + wd θ) into A,
    then every transfer_every steps the next column(s) of A go to C (transfer_columns, rate lr·transfer_lr), and the
    network's weights become C + γA. An element-wise write of the batch estimate has the drift |Σ_b Δ_b|/τ, the
    per-sample trains of the toolkit Σ_b |Δ_b|/τ: the two agree at mini-batch 1 (README, Wu et al. 2024)."""

    def __init__(self, params, lr=0.01, rpu=None, digital=()):
        _check(rpu is not None, 'DeviceSGD needs an rpu (rpu_config)')
        super().__init__(params, lr)
        self.rpu, self._digital = rpu, {id(p) for p in digital}
        self._analog = {id(p) for p in self._analog_params()}
        self._response = {}
        gen = torch.Generator().manual_seed(rpu.device.construction_seed)
        with torch.no_grad():
            for p in self._analog_params():
                w = p.detach().reshape(p.shape[0], -1)
                state = self.state[p]
                tiles = ('A', 'C') if rpu.algorithm == 'tt-v1' else ('W',)
                for name in tiles:
                    start = torch.zeros_like(w) if name == 'A' else w
                    weight, consts = device_state(rpu.device, start, gen)
                    state[name] = weight
                    state.update({f'{name}.{k}': v for k, v in consts.items()})
                if rpu.algorithm == 'tt-v1':
                    state['batches'], state['column'] = 0, 0
                p.copy_(self._visible(state).view_as(p))

    def _analog_params(self):
        return [p for g in self.param_groups for p in g['params'] if p.dim() >= 2 and id(p) not in self._digital]

    def _visible(self, state):
        if self.rpu.algorithm == 'tt-v1':
            return state['C'] + self.rpu.gamma * state['A'] if self.rpu.gamma else state['C']
        return state['W']

    def _dev(self, p, name):
        """The device of tile `name` of p: its saved constants and the derived response constants (cached)."""
        state = self.state[p]
        dev = {k: state[f'{name}.{k}'] for k in ('b_min', 'b_max', 's_up', 's_dn')}
        key = (id(p), name)
        if key not in self._response:
            self._response[key] = response_constants(**dev)
        return {**dev, **self._response[key], 'dw_min': self.rpu.device.dw_min, 'c2c_std': self.rpu.device.dw_min_std}

    def load_state_dict(self, state_dict):
        tiles = {'A', 'C'} if self.rpu.algorithm == 'tt-v1' else {'W'}
        for s in state_dict['state'].values():
            _check(tiles <= set(s), f"the saved optimiser state has no {' and '.join(sorted(tiles))} array: it was "
                                    f"not trained with {self.rpu.algorithm}")
        super().load_state_dict(state_dict)
        self._response = {}

    def _update(self, p, group):
        if p.grad is None:
            return
        lr, wd, rpu = group['lr'], group.get('weight_decay', 0.0), self.rpu
        g = p.grad.add(p, alpha=wd) if wd else p.grad
        if id(p) not in self._analog:
            p.add_(g, alpha=-lr)
            return
        state = self.state[p]
        g = g.reshape(p.shape[0], -1)
        if rpu.algorithm == 'analog sgd':
            state['W'] = pulse_elementwise(state['W'], self._dev(p, 'W'), -lr * g, rpu.update)
        else:
            state['A'] = pulse_elementwise(state['A'], self._dev(p, 'A'), -rpu.fast_lr * g, rpu.update)
            state['batches'] += 1
            if state['batches'] % rpu.transfer_every == 0:
                state['C'], state['column'] = transfer_columns(state['A'], state['C'], self._dev(p, 'C'),
                                                               state['column'], lr * rpu.transfer_lr, rpu)
        p.copy_(self._visible(state).view_as(p))


def bounds_of(optimizer, p):
    """(b_min, b_max) of the array whose weights the network sees for parameter p of a DeviceSGD (W, or C), shaped
    as p; None for a digital parameter."""
    state = optimizer.state.get(p, {})
    name = 'C' if optimizer.rpu.algorithm == 'tt-v1' else 'W'
    if f'{name}.b_min' not in state:
        return None
    return state[f'{name}.b_min'].view_as(p), state[f'{name}.b_max'].view_as(p)

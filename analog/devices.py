"""Soft-bounds devices: their per-element constants and their closed-form response to n pulses.

Wu et al. 2024 write a device's response to a pulse of signed size Δw through the response functions q_+(w)
(up) and q_−(w) (down); an update ΔW then acts as

    W ← W + ΔW ⊙ F(W) − |ΔW| ⊙ G(W),   F = (q_− + q_+)/2,   G = (q_− − q_+)/2.

Their asymmetric linear device (ALD) has q_±(w) = 1 ∓ w/τ (bounds ±τ), so F = 1, G = W/τ and (A-ALD)

    W ← W + ΔW − (|ΔW|/τ) ⊙ W,

whose drift −(|ΔW|/τ) ⊙ W pulls every weight toward the symmetric point 0. The device simulated here is aihwkit's
soft-bounds device, whose single pulses are

    up:  w ← w + Δw_up (1 − w/b_max + σ_c2c ξ)        down:  w ← w − Δw_dn (1 − w/b_min + σ_c2c ξ),

the ALD when b_max = −b_min = τ and Δw_up = Δw_dn = Δw_min, with per-element b_max, b_min, Δw_up, Δw_dn drawn
once (device-to-device variation, `sample_device`) and ξ ~ N(0, 1) per pulse (cycle-to-cycle noise). n pulses of
one sign have the closed form w_n = b − (b − w) ρⁿ, ρ = 1 − Δw/|b| (`apply_pulses`), so pulse trains are never
looped over.
"""
import torch

TINY = 1e-30
RESPONSE = ('log_rho_up', 'log_rho_dn', 'inv_up', 'inv_dn', 's_up2', 's_dn2')   # the keys of response_constants


def sample_device(device, shape, generator):
    """Per-element constants of aihwkit's soft-bounds device: b_max = w_max(1 + dtod ξ), b_min = w_min(1 + dtod ξ)
    (b_max ≥ 0 ≥ b_min), gain g = 1 + dw_min_dtod ξ, asymmetry r = up_down_dtod ξ, Δw_up = |up_bias + g + r| dw_min,
    Δw_dn = |down_bias + g − r| dw_min, with w_max = −w_min = τ and ξ ~ N(0, 1) per element. Returns a dict of
    float32 CPU tensors."""
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
    return dict(log_rho_up=(1 - s_up * inv_up).clamp(1e-12, 1).log(),
                log_rho_dn=(1 - s_dn * inv_dn).clamp(1e-12, 1).log(), inv_up=inv_up, inv_dn=inv_dn,
                s_up2=s_up * s_up, s_dn2=s_dn * s_dn)


def _geometric(log_rho, n):
    """Σ_{k<n} ρ^{2k} = (1 − ρ^{2n}) / (1 − ρ²), the summed squared damping of n pulses (n where ρ = 1)."""
    den = torch.expm1(2 * log_rho)
    moving = den < 0
    return torch.where(moving, torch.expm1(2 * n * log_rho) / torch.where(moving, den, -1.0), n)


def apply_pulses(w, n_up, n_dn, b_min, b_max, s_up, s_dn, c2c_std=0.0, response=None, per_pulse=False):
    """The weights after n_up up and n_dn down pulses per element (float counts, broadcastable).

    One sign: up w_n = b_max − (b_max − w) ρ_up^n, ρ_up = 1 − Δw_up/b_max (down likewise toward b_min), exact.
    Both signs (the summed counts of a mini-batch): the pulses are taken as interleaved, so w relaxes toward the
    balance point w_eq = (n_up Δw_up − n_dn Δw_dn) / (n_up Δw_up/b_max + n_dn Δw_dn/|b_min|) with the exact total
    contraction L = ρ_up^n_up ρ_dn^n_dn: every pulse's pull toward its bound is kept, the order of the pulses within
    the mini-batch is averaged. Additive c2c noise Δw σ ξ_k per pulse k, each damped by the later pulses: a Gaussian
    of variance σ² (n_up Δw_up² + n_dn Δw_dn²) h, h = (1 − L²)/(−2 log L) the mean squared damping of pulses spread
    evenly (1 when L = 1). per_pulse (one sign per element, one rank-1 pulse train): the exact law of the per-pulse
    noise, Σ_k Δw σ ξ_k ρ^{n−k} ~ N(0, σ² Δw² (1 − ρ^{2n})/(1 − ρ²)). The result is clipped to [b_min, b_max] (once,
    not after every pulse). `response`: response_constants of the device."""
    r = response or response_constants(b_min, b_max, s_up, s_dn)
    log_L = torch.addcmul(n_up * r['log_rho_up'], n_dn, r['log_rho_dn'])
    a_up, a_dn = n_up * s_up, n_dn * s_dn
    pull = torch.addcmul(a_up * r['inv_up'], a_dn, r['inv_dn']).clamp_(min=TINY)
    w_eq = (a_up - a_dn).div_(pull)
    w_new = torch.addcmul(w_eq, w - w_eq, log_L.exp())
    if c2c_std > 0:
        if per_pulse:
            var = torch.addcmul(r['s_up2'] * _geometric(r['log_rho_up'], n_up), r['s_dn2'],
                                _geometric(r['log_rho_dn'], n_dn))
        else:
            u2 = 2 * log_L.clamp(max=-1e-12)                      # h → 1 as L → 1
            var = torch.addcmul(n_up * r['s_up2'], n_dn, r['s_dn2']).mul_(torch.expm1(u2).div_(u2))
        w_new.addcmul_(var.sqrt_(), torch.randn_like(w_new), value=c2c_std)
    return torch.clamp(w_new, b_min, b_max, out=w_new)


def apply_trains(w, n_up, n_dn, b_min, b_max, s_up, s_dn, c2c_std=0.0, response=None):
    """The weights after the pulse trains of V vectors applied in turn (n_up, n_dn: (V, *w.shape), one sign per
    element and vector, as a rank-1 train has), as the toolkit applies a mini-batch. Train b moves an element by n_b
    pulses toward the bound b_s of their sign, w ← L_b w + (1 − L_b) b_s + ε_b, L_b = ρ_s^{n_b}, with its per-pulse
    noise ε_b ~ N(0, σ² Δw_s² (1 − L_b²)/(1 − ρ_s²)) (apply_pulses); in sequence,

        w_V = e^{S_V} w_0 + Σ_b [(1 − L_b) b_s + ε_b] e^{S_V − S_b},   S_b = Σ_{b' ≤ b} log L_b',

    summed per element over its trains alone (the pulses are sparse: under 1 % of vector × element pairs on the
    S4.2 convolutions), the noise drawn as one Gaussian of variance Σ_b var(ε_b) e^{2(S_V − S_b)} (its exact law),
    then clipped to [b_min, b_max] (once per mini-batch, not after every pulse)."""
    r = response or response_constants(b_min, b_max, s_up, s_dn)
    flat = lambda t: t.expand_as(w).reshape(-1)
    n_up, n_dn = n_up.reshape(len(n_up), -1), n_dn.reshape(len(n_dn), -1)
    vec, el = (n_up + n_dn).nonzero(as_tuple=True)               # the trains, in (vector, element) order
    el, order = torch.sort(el, stable=True)                        # grouped by element, each group in vector order
    vec = vec[order]
    up = n_up[vec, el] > 0
    log_rho = torch.where(up, flat(r['log_rho_up'])[el], flat(r['log_rho_dn'])[el]).double()
    n = (n_up[vec, el] + n_dn[vec, el]).double()
    log_L = n * log_rho
    C = log_L.cumsum(0)
    _, counts = torch.unique_consecutive(el, return_counts=True)
    later = (C[counts.cumsum(0) - 1].repeat_interleave(counts) - C).exp_()    # e^{S_V − S_b}, within each element
    em = torch.expm1(log_L)                                                    # L_b − 1
    c = em.neg().mul_(later)                                                   # (1 − L_b) e^{S_V − S_b}
    zeros = lambda: torch.zeros(w.numel(), dtype=torch.float64, device=w.device)
    bound = torch.where(up, flat(b_max)[el], flat(b_min)[el]).double()
    w_new = zeros().index_add_(0, el, log_L).exp_().mul_(flat(w).double()).index_add_(0, el, c * bound)
    if c2c_std > 0:
        s2 = torch.where(up, flat(r['s_up2'])[el], flat(r['s_dn2'])[el]).double()
        den = torch.expm1(2 * log_rho)                                         # ρ² − 1
        moving = den < 0
        # (1 − L_b²) e^{2(S_V − S_b)} Δw²/(1 − ρ²); n Δw² e^{2(S_V − S_b)} where ρ = 1
        g = torch.where(moving, c * (2 + em) * later * s2 / torch.where(moving, -den, 1.0), n * s2 * later ** 2)
        var = zeros().index_add_(0, el, g)
        w_new.addcmul_(var.sqrt_(), torch.randn_like(w).reshape(-1).double(), value=c2c_std)
    return torch.clamp(w_new.to(w.dtype).view_as(w), b_min, b_max)


def device_state(device, weight, generator):
    """The per-element constants of an array holding `weight` (on its device and dtype) and the weight clipped to
    their bounds: (weight, {b_min, b_max, s_up, s_dn})."""
    consts = {k: v.to(weight.device, weight.dtype) for k, v in sample_device(device, weight.shape, generator).items()}
    return torch.minimum(torch.maximum(weight.detach().clone(), consts['b_min']), consts['b_max']), consts

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


def device_state(device, weight, generator):
    """The per-element constants of an array holding `weight` (on its device and dtype) and the weight clipped to
    their bounds: (weight, {b_min, b_max, s_up, s_dn})."""
    consts = {k: v.to(weight.device, weight.dtype) for k, v in sample_device(device, weight.shape, generator).items()}
    return torch.minimum(torch.maximum(weight.detach().clone(), consts['b_min']), consts['b_max']), consts

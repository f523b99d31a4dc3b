"""Precision of the EP estimate (issue 13 §3): per parameter tensor, the relative error ‖ĝ32 − ĝ64‖ / ‖ĝ64‖ of the
float32 symmetric EP estimate against the float64 one (same weights, same mini-batch of mnist5k), at the β of the
Laborieux et al. 2021 MNIST commands (check/train_mnist.sh, check/train_mnist_cnn.sh):

    ĝ_θ = −(1/2β) mean_b [∂Φ/∂θ(s^β) − ∂Φ/∂θ(s^{−β})]

'engine' is the suite's estimate (estimators.Symmetric: states s^{±β} relaxed from s*, then the Φ difference by
autograd of one Φ over the 2B stacked states). 'carried' computes the same quantity with the nudged states written
s^{±β} = s* + Δ^{±β}, Δ relaxed in its own tensor, so that no step subtracts two nearly equal states:

    Δ_{t+1} = r + [ρ(h* + δh_t) − ρ(h*)],   r = ρ(h*) − s*,   δh_t = h(s* + Δ_t) − h(s*) (linear in Δ for fixed
    max-pool argmaxes; the argmax changes enter as z*[I_new] − z*[I_old], exactly 0 where they agree),
    ρ(a + d) − ρ(a) in closed form (sigmoid: σ(a + d) σ(−a) (−expm1(−d)); clamp: clamp(a − c + d, −c, 1 − c));

    ∂Φ/∂θ(s* + Δ^β) − ∂Φ/∂θ(s* + Δ^{−β}) from Φ_k = ⟨P_I(W_k ⋆ a_k + b_k), s_{k+1}⟩ expanded in Δ (the s* ⊗ s*
    terms cancel before any sum over the batch).

'carried 64' against 'engine 64' checks that the rewrite computes the same estimate.

    python bench/precision.py [--config MLP CNN] [--batch N] [--T1 N] [--seed 0] [--threads N]
"""
import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F
from torch.nn.grad import conv2d_input, conv2d_weight

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import data                                        # noqa: E402
import estimators                                  # noqa: E402
from netLaborieux import P_CNN, P_MLP              # noqa: E402

# the Laborieux 2021 MNIST configurations of check/train_mnist.sh and check/train_mnist_cnn.sh
CONFIGS = {
    'MLP': dict(beta=0.1, T=30, K=10, batch=50,
                build=lambda T, K, b: P_MLP([784, 512, 10], T, K, b, 'mysig')),
    'CNN': dict(beta=0.4, T=200, K=10, batch=100,
                build=lambda T, K, b: P_CNN(28, 1, [32, 64], [5, 5], [1, 1], [0, 0], 'mm', [10], T, K, b,
                                            'hard_sigmoid')),
}


# ---------------------------------------------------------------------------------------------------------------
# The engine's estimate

def engine(net, x, y, beta, T, K):
    estimators.Symmetric(beta, T, K)(net, x, y)
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad(set_to_none=True)
    return grads


# ---------------------------------------------------------------------------------------------------------------
# The carried-difference estimate (prototype, P_MLP and P_CNN with max pooling and the squared error)

def gather(z, idx):
    """z at the max-pool argmaxes idx (flat indices within each H×W plane)."""
    return z.flatten(2).gather(2, idx.flatten(2)).view_as(idx)


def unpool(g, idx, shape):
    return F.max_unpool2d(g, idx, 2, 2, output_size=shape[-2:])


def drho(act, h, dh):
    """ρ(h + dh) − ρ(h) without subtracting two rounded values of ρ."""
    if act.name == 'sigm':                                   # ρ(h) = σ(4h − 2)
        a, d = 4 * h - 2, 4 * dh
        return torch.sigmoid(a + d) * torch.sigmoid(-a) * -torch.expm1(-d)
    if act.name == 'hardsigm':                               # ρ(h) = clamp(h, 0, 1)
        c = h.clamp(0, 1)
        return torch.clamp((h - c) + dh, -c, 1 - c)
    raise ValueError(f'activation {act.name}: no closed-form difference here')


def free_context(net, x, s):
    """z*_k = W_k ⋆ s*_{k−1} + b_k and its argmaxes I*_k for every conv synapse fed by a state (k ≥ 1)."""
    out = {}
    for k in range(1, getattr(net, 'ncv', 0)):
        z = F.conv2d(s[k - 1], net.synapses[k].weight, net.synapses[k].bias)
        out[k] = (z, F.max_pool2d(z, 2, 2, return_indices=True)[1])
    return out


def argmaxes(net, d, ctx):
    """(W_k ⋆ Δ_{k−1}, the argmaxes I_k of the state s* + Δ) of every conv synapse fed by a state."""
    out = {}
    for k, (z, _) in ctx.items():
        dz = F.conv2d(d[k - 1], net.synapses[k].weight)
        out[k] = (dz, F.max_pool2d(z + dz, 2, 2, return_indices=True)[1])
    return out


def delta_field(net, s, d, ctx, y, beta):
    """δh = h(s* + Δ) − h(s*) per layer (the nudge −β ∂ℓ/∂s_L included)."""
    syn, L, ncv = net.synapses, len(s), getattr(net, 'ncv', 0)
    up, new = [torch.zeros_like(d[0])], argmaxes(net, d, ctx)
    idx = {k: i for k, (_, i) in new.items()}
    for k in range(1, L):
        if k < ncv:
            (z, i_star), (dz, i_new) = ctx[k], new[k]
            up.append(gather(z, i_new) - gather(z, i_star) + gather(dz, i_new))
        else:
            up.append(F.linear(d[k - 1].flatten(1), syn[k].weight))
    dh = []
    for k in range(L):
        h = up[k]
        if k + 1 < ncv:
            z, i_star = ctx[k + 1]
            g = unpool(s[k + 1], idx[k + 1], z.shape) - unpool(s[k + 1], i_star, z.shape) + \
                unpool(d[k + 1], idx[k + 1], z.shape)
            h = h + conv2d_input(d[k].shape, syn[k + 1].weight, g)
        elif k + 1 < L:
            h = h + (d[k + 1] @ syn[k + 1].weight).view_as(d[k])
        dh.append(h)
    dh[-1] = dh[-1] + net.nudge([s[-1] + d[-1]], y, beta)
    return dh


def synapse_grads(syn, conv, a, da, s, dd, c, i_star=None, idx=None, z=None):
    """∂/∂(W, b) of c · Σ_b [Φ_k(phase +) − Φ_k(phase −)], Φ_k = ⟨P(W ⋆ (a + δa) + b), s + Δ⟩ expanded in (δa, Δ):
    dz* = c [P_{I+}ᵀ s* − P_{I−}ᵀ s* + P_{I+}ᵀ Δ+ − P_{I−}ᵀ Δ−] (exact zeros where the argmaxes agree) against a*,
    plus c [P_{I+}ᵀ(s* + Δ+) against δa+ − P_{I−}ᵀ(s* + Δ−) against δa−]. da, dd, idx: (phase +, phase −)."""
    (dp, dm), (ip, im) = dd, (idx if idx else (None, None))
    if conv:
        g = (unpool(s, ip, z.shape) - unpool(s, im, z.shape)) + (unpool(dp, ip, z.shape) - unpool(dm, im, z.shape))
        gw = conv2d_weight(a, syn.weight.shape, c * g)
        gb = (c * g).sum((0, 2, 3))
        if da is not None:
            back = torch.cat([unpool(s + dp, ip, z.shape), -unpool(s + dm, im, z.shape)])
            gw = gw + conv2d_weight(torch.cat(da), syn.weight.shape, c * back)
        return [gw, gb]
    g = c * (dp - dm)
    a = a.flatten(1)
    gw = g.t() @ a
    if da is not None:
        gw = gw + c * (torch.cat([s + dp, -(s + dm)]).t() @ torch.cat(da).flatten(1))
    return [gw, g.sum(0)]


def carried(net, x, y, beta, T, K):
    """The symmetric EP estimate with Δ = s^{±β} − s* carried in its own tensor (see the module docstring)."""
    B, ncv = x.shape[0], getattr(net, 'ncv', 0)
    with torch.no_grad():
        drive = net.drive(x)
        s = net.forward(x, steps=T, drive=drive)
        h = net.dphi_ds(s, drive)
        r = [net.act.rho(hi) - si for hi, si in zip(h, s)]
        ctx = free_context(net, x, s)
        rep = lambda t: torch.cat([t, t])                                 # noqa: E731 (the ±β phases, stacked)
        s2, h2, r2, y2 = [rep(t) for t in s], [rep(t) for t in h], [rep(t) for t in r], rep(y)
        ctx2 = {k: (rep(z), rep(i)) for k, (z, i) in ctx.items()}
        b2 = torch.cat([torch.full((B, 1), beta, dtype=x.dtype), torch.full((B, 1), -beta, dtype=x.dtype)])
        d = [torch.zeros_like(t) for t in s2]
        for _ in range(K):
            dh = delta_field(net, s2, d, ctx2, y2, b2)
            d = [ri + drho(net.act, hi, dhi) for ri, hi, dhi in zip(r2, h2, dh)]
        idx = {k: i for k, (_, i) in argmaxes(net, d, ctx2).items()}      # the final states' (as the engine's Φ)
        halves = lambda t: (t[:B], t[B:])                                # noqa: E731
        c = -1.0 / (2 * beta * B)
        grads, prev = [], [x] + s[:-1]
        for k, syn in enumerate(net.synapses):
            conv = k < ncv
            da = None if k == 0 else halves(d[k - 1])
            z = (ctx[k][0] if k in ctx else F.conv2d(x, syn.weight, syn.bias)) if conv else None
            i_star = (ctx[k][1] if k in ctx else F.max_pool2d(z, 2, 2, return_indices=True)[1]) if conv else None
            ik = (halves(idx[k]) if k in idx else (i_star, i_star)) if conv else None
            grads += synapse_grads(syn, conv, prev[k], da, s[k], halves(d[k]), c, i_star, ik, z)
    return grads


# ---------------------------------------------------------------------------------------------------------------

def rel(a, b):
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


def measure(name, cfg, batch, T, seed):
    torch.manual_seed(seed)
    net64 = cfg['build'](T, cfg['K'], cfg['beta']).double()
    net32 = cfg['build'](T, cfg['K'], cfg['beta']).float()
    net32.load_state_dict({k: v.float() for k, v in net64.state_dict().items()})
    x, label = data.load_mnist5k(True)
    g = torch.Generator().manual_seed(seed)
    i = torch.randperm(len(label), generator=g)[:batch]
    x, label = x[i], label[i]
    if name == 'MLP':
        x = x.flatten(1)
    out = {}
    for tag, net in (('64', net64), ('32', net32)):
        xx, y = x.to(next(net.parameters()).dtype), net.target(label)
        t0 = time.perf_counter()
        out['engine ' + tag] = engine(net, xx, y, cfg['beta'], T, cfg['K'])
        t1 = time.perf_counter()
        out['carried ' + tag] = carried(net, xx, y, cfg['beta'], T, cfg['K'])
        out['seconds ' + tag] = (t1 - t0, time.perf_counter() - t1)
    names = [n for n, _ in net64.named_parameters()]
    rows = []
    for k, n in enumerate(names):
        ref = out['engine 64'][k]
        rows.append((f'{name} {n}', tuple(ref.shape), ref.double().norm().item(), rel(out['engine 32'][k], ref),
                     rel(out['carried 32'][k], ref), rel(out['carried 64'][k], ref)))
    return rows, out


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--config', nargs='+', default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument('--batch', type=int, default=None, help='mini-batch size (default: the command\'s)')
    p.add_argument('--T1', type=int, default=None, help='free-phase steps (default: the command\'s)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--threads', type=int, default=None)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    print('| config, parameter | shape | ‖ĝ64‖ | engine: ‖ĝ32 − ĝ64‖/‖ĝ64‖ | carried Δ, float32 | carried Δ, float64 |')
    print('|---|---|---|---|---|---|')
    for name in a.config:
        cfg = CONFIGS[name]
        rows, out = measure(name, cfg, a.batch or cfg['batch'], a.T1 or cfg['T'], a.seed)
        for n, shape, norm, e32, c32, c64 in rows:
            print(f'| {n} | {shape} | {norm:.3e} | {e32:.2e} | {c32:.2e} | {c64:.2e} |')
        sys.stderr.write(f'{name}: seconds (engine, carried): float64 {out["seconds 64"]}, float32 '
                         f'{out["seconds 32"]}\n')


if __name__ == '__main__':
    main()

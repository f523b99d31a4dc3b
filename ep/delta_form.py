"""The symmetric EP estimate with the nudged states carried as differences from the free state
(`--carry-delta`), for the layered nets of Laborieux et al. 2021 (papers.laborieux2021.nets: P_MLP, P_CNN).

In float32 the engine's estimate −(1/2β) mean_b [∂Φ/∂θ(s^β) − ∂Φ/∂θ(s^{−β})] subtracts two nearly equal states
(s^{±β} − s* is O(β) small where the signal is weak, e.g. the first conv layer): rounding of O(1) states then
dominates the O(β) difference. Here every nudged state is written s^{±β} = s* + Δ^{±β} and Δ is relaxed in its own
tensor, so that no step subtracts two rounded O(1) values:

    Δ_0 = 0,   Δ_{t+1} = r + [ρ(h* + δh_t) − ρ(h*)],   r = ρ(h*) − s*,   h* = ∂Φ/∂s(s*) (β = 0)
    δh_t = h(s* + Δ_t) − h(s*) − β ∂ℓ/∂s_L(s* + Δ_t): linear in Δ for fixed pooling contexts; a max pool whose
           argmax moves contributes z*[I_new] − z*[I*] (exactly 0 where they agree)
    ρ(a + d) − ρ(a) in closed form (`DRHO`)

and the Φ difference of Φ_k = ⟨P_I(W_k ⋆ a_k + b_k), s_k⟩ is expanded in (δa, Δ) so that the s* ⊗ s* terms cancel
before any sum over the batch (`param_grads`). In float64 it equals the engine's estimate to rounding
(tests/test_precision.py); the asynchronous schedule is followed as in the engine (groups of `net.schedule`).
Supported: P_MLP and P_CNN (with or without a softmax readout), pools max / average / identity, the activations of
`DRHO`. A readout's parameters sit inside ℓ: their estimate ½ mean_b [∂ℓ/∂θ(s^β) + ∂ℓ/∂θ(s^{−β})] is a sum, not a
difference, and is taken from the full states.
"""
import torch
import torch.nn.functional as F
from torch.nn.grad import conv2d_input, conv2d_weight


def unsupported(net):
    """Why `net` cannot run in Δ form (a sentence for the flag's error message), or None."""
    ok = getattr(net, 'delta_form', False)         # True, or why not (a net's own reason)
    if ok is not True:
        return f'{type(net).__name__}: {ok or "not a symmetric layered net (P_MLP or P_CNN)"}'
    if net.act.name not in DRHO:
        return f'activation {net.act.name} has no closed-form difference (supported: {", ".join(DRHO)})'
    return None


def check(net):
    """ValueError naming why, for a net that the Δ form cannot expand."""
    why = unsupported(net)
    if why:
        raise ValueError(f'the Δ form of the EP estimate: {why}')


# ---------------------------------------------------------------------------------------------------------------
# ρ(a + d) − ρ(a) without subtracting two rounded values of ρ

def _sigmoid_diff(a, d):
    """σ(a + d) − σ(a) = σ(a + d) σ(−a) (1 − e^{−d})."""
    return torch.sigmoid(a + d) * torch.sigmoid(-a) * -torch.expm1(-d)


def _clamp_diff(alpha, lo, hi):
    """ρ(h) = clamp(α h, lo, hi): clamp(u − c + α d, lo − c, hi − c) with u = α h, c = ρ(h)."""
    def diff(h, d):
        u = alpha * h
        c = u.clamp(lo, hi)
        return torch.minimum(torch.maximum((u - c) + alpha * d, lo - c), hi - c)
    return diff


DRHO = {
    'sigm': lambda h, d: _sigmoid_diff(4 * h - 2, 4 * d),                      # σ(4h − 2)
    'sigmoid': _sigmoid_diff,
    'tanh': lambda h, d: torch.tanh(d) * (1 - torch.tanh(h) * torch.tanh(h + d)),
    'hardsigm': _clamp_diff(1.0, 0.0, 1.0),
    'my_hard_sig': _clamp_diff(0.5, 0.0, 1.0),
    'ctrd_hard_sig': _clamp_diff(1.0, -0.5, 0.5),
}


# ---------------------------------------------------------------------------------------------------------------
# Pooling: P_{I_new}(z* + δz) − P_{I*}(z*) and P_{I_new}ᵀ(s* + Δ) − P_{I*}ᵀ s*

def _gather(z, idx):
    """z at the max-pool argmaxes idx (flat indices within each H×W plane)."""
    return z.flatten(2).gather(2, idx.flatten(2)).view_as(idx)


def _pool_diff(pool, z, dz, i_star, i_new):
    if pool.kind != 'm':                                   # linear, no context
        return pool(dz)[0]
    return (_gather(z, i_new) - _gather(z, i_star)) + _gather(dz, i_new)


def _unpool_diff(pool, s, d, i_star, i_new, shape):
    if pool.kind != 'm':
        return pool.adjoint(d, None, shape)
    return (pool.adjoint(s, i_new, shape) - pool.adjoint(s, i_star, shape)) + pool.adjoint(d, i_new, shape)


class DeltaForm:
    """The free state's quantities the Δ relaxation reads (computed once), for a batch of n stacked phases."""

    def __init__(self, net, x, s_free, drive, y, betas):
        check(net)
        n, B = len(betas), x.shape[0]
        rep = (lambda t: t.repeat(n, *([1] * (t.dim() - 1))))
        self.net, self.B, self.n = net, B, n
        self.ncv = getattr(net, 'ncv', 0)
        self.x, self.s1 = x, s_free
        h = net.dphi_ds(s_free, drive)
        r = [net.update_layer(l, s_free, hl, None, 0.0) - sl for l, (hl, sl) in enumerate(zip(h, s_free))]
        self.s, self.h, self.r = [rep(t) for t in s_free], [rep(t) for t in h], [rep(t) for t in r]
        self.y1, self.y = y, (None if y is None else rep(y))
        self.beta = torch.tensor(betas, dtype=x.dtype, device=x.device).repeat_interleave(B).view(-1, 1)
        # z*_k = W_k ⋆ s*_{k−1} + b_k and its argmaxes I*_k, for every conv synapse (k = 0: fed by x)
        self.z, self.i_star = {}, {}
        for k in range(self.ncv):
            syn = net.synapses[k]
            z = F.conv2d(x if k == 0 else s_free[k - 1], syn.weight, syn.bias, syn.stride, syn.padding)
            idx = syn.pool(z)[1]
            self.z[k], self.i_star[k] = (z, idx) if k == 0 else (rep(z), None if idx is None else rep(idx))

    def drho(self, l, h, dh):
        """The step's update s_l = ρ(h_l) (h_l itself on a cross-entropy output layer, LabNet.update_layer) as a
        difference: ρ(h* + δh) − ρ(h*)."""
        net = self.net
        identity = net.loss != 'mse' and net.readout is None and l == len(self.s1) - 1
        return dh if identity else DRHO[net.act.name](h, dh)

    def argmaxes(self, d, synapses=None):
        """(W_k ⋆ Δ_{k−1}, the argmaxes I_k at s* + Δ) of the conv synapses k fed by a state (those given, else all)."""
        out = {}
        for k in (range(1, self.ncv) if synapses is None else synapses):
            syn = self.net.synapses[k]
            dz = F.conv2d(d[k - 1], syn.weight, None, syn.stride, syn.padding)
            out[k] = (dz, syn.pool(self.z[k] + dz)[1] if syn.pool.kind == 'm' else None)
        return out

    def field(self, d, layers):
        """δh_l = h_l(s* + Δ) − h*_l of the given layers (the nudge −β ∂ℓ/∂s_L(s* + Δ) included)."""
        syn, L, ncv = self.net.synapses, len(d), self.ncv
        # the conv synapses these layers read: the one below each (its drive), the one above (its feedback's argmax)
        new = self.argmaxes(d, {j for k in layers for j in (k, k + 1) if 1 <= j < ncv})
        out = []
        for k in layers:
            if k == 0:
                dh = torch.zeros_like(d[0])                             # the input drive does not move
            elif k < ncv:
                dz, i_new = new[k]
                dh = _pool_diff(syn[k].pool, self.z[k], dz, self.i_star[k], i_new)
            else:
                dh = F.linear(d[k - 1].flatten(1), syn[k].weight).view_as(d[k])
            if k + 1 < ncv:
                above = syn[k + 1]
                g = _unpool_diff(above.pool, self.s[k + 1], d[k + 1], self.i_star[k + 1], new[k + 1][1],
                                 self.z[k + 1].shape)
                dh = dh + conv2d_input(d[k].shape, above.weight, g, above.stride, above.padding)
            elif k + 1 < L:
                dh = dh + (d[k + 1] @ syn[k + 1].weight).view_as(d[k])
            elif self.y is not None:
                # (ℓ reads the last layer only: the others are not summed)
                dh = dh + self.net.nudge(self.s[:-1] + [self.s[-1] + d[-1]], self.y, self.beta)
            out.append(dh)
        return out

    def relax(self, steps):
        """Δ after `steps` nudged steps from Δ = 0, in the net's schedule (odd layers first when asynchronous)."""
        d = [torch.zeros_like(t) for t in self.s]
        groups = self.net.schedule(len(d), True)
        for _ in range(steps):
            for layers in groups:
                new = [self.r[l] + self.drho(l, self.h[l], dh) for l, dh in zip(layers, self.field(d, layers))]
                d = list(d)
                for l, v in zip(layers, new):
                    d[l] = v
        return d

    def states(self, d):
        """The full states s* + Δ of each phase (for what is not expanded in Δ)."""
        B = self.B
        return [[si + di[k * B:(k + 1) * B] for si, di in zip(self.s1, d)] for k in range(self.n)]

    def readout_grads(self, d, beta_a, beta_b):
        """The readout's part of ĝ: Φ ∋ −β ℓ(readout(s_L)), so
        −(1/(β_b − β_a)) mean_b [−β_b ∂ℓ/∂θ(s_b) + β_a ∂ℓ/∂θ(s_a)] (½ mean of the two ∂ℓ/∂θ for β_a = −β_b), by
        autograd of ℓ at the full states s* + Δ."""
        (s_b, s_a), net = self.states(d), self.net
        params = list(net.readout.parameters())
        with torch.enable_grad():
            obj = (beta_b * net.cost(s_b, self.y1).sum() - beta_a * net.cost(s_a, self.y1).sum()) / \
                ((beta_b - beta_a) * self.B)
            return list(torch.autograd.grad(obj, params))

    def param_grads(self, d, beta_a, beta_b):
        """ĝ_θ = −(1/(β_b − β_a)) mean_b [∂Φ/∂θ(s* + Δ_b) − ∂Φ/∂θ(s* + Δ_a)], phases b = the first B rows of d, a
        the next B, Φ_k expanded in Δ:
            conv: ∂/∂W ⟨W ⋆ a + b, P_Iᵀ s⟩: a* against [P_{I_b}ᵀ s_b − P_{I_a}ᵀ s_a] (its s* part an exact 0 where
                  the argmaxes agree), plus δa_b against P_{I_b}ᵀ s_b and −δa_a against P_{I_a}ᵀ s_a;
            fc:   (Δ_b − Δ_a) ⊗ a* + s_b ⊗ δa_b − s_a ⊗ δa_a."""
        B, ncv, syn = self.B, self.ncv, self.net.synapses
        half = (lambda t: (t[:B], t[B:2 * B]))
        c = -1.0 / ((beta_b - beta_a) * B)
        new = self.argmaxes(d)                                     # the final states' contexts (as the engine's Φ)
        grads, prev = [], [self.x] + list(self.s1[:-1])
        for k, w in enumerate(syn):
            if w is self.net.readout:
                grads += self.readout_grads(d, beta_a, beta_b)
                continue
            s, (db, da) = self.s1[k], half(d[k])
            dprev = None if k == 0 else half(d[k - 1])
            if k < ncv:
                pool, z = w.pool, self.z[k][:B]
                if k == 0:                                         # fed by x: the free phase's argmaxes
                    i_b = i_a = self.i_star[0]
                else:
                    i_b, i_a = half(new[k][1]) if pool.kind == 'm' else (None, None)
                if pool.kind == 'm':
                    g = (pool.adjoint(s, i_b, z.shape) - pool.adjoint(s, i_a, z.shape)) + \
                        (pool.adjoint(db, i_b, z.shape) - pool.adjoint(da, i_a, z.shape))
                else:
                    g = pool.adjoint(db - da, None, z.shape)
                gw = conv2d_weight(prev[k], w.weight.shape, c * g, w.stride, w.padding)
                if dprev is not None:
                    back = torch.cat([pool.adjoint(s + db, i_b, z.shape), -pool.adjoint(s + da, i_a, z.shape)])
                    gw = gw + conv2d_weight(torch.cat(dprev), w.weight.shape, c * back, w.stride, w.padding)
                grads += [gw, (c * g).sum((0, 2, 3))]
            else:
                g = c * (db - da)
                gw = g.t() @ prev[k].flatten(1)
                if dprev is not None:
                    gw = gw + c * (torch.cat([s + db, -(s + da)]).t() @ torch.cat(dprev).flatten(1))
                grads += [gw, g.sum(0)]
        return grads


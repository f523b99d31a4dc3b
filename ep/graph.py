"""Energies over a graph of layers: Φ as a sum of interactions between named layers (Scellier et al.'s
energy-based-learning library; Hopfield-ResNet, Elayedam & Srinivasan 2025).

    Φ(x, s; θ) = Σ_{(a, b) ∈ edges} ⟨ s_b, M_ab(s_a) ⟩ + Σ_l ⟨ b_l, s_l ⟩  − β ℓ(s_out, y),        s_0 = x (clamped)

M_ab is linear in s_a: a dense product W s_a, a convolution W ⋆ s_a (stride, padding), a convolution followed by a
2×2 max-pool P(W ⋆ s_a) (VGG5, Laborieux's P_CNN), or the identity. Each interaction gives, in closed form, its share
of ∂Φ/∂s of both ends and of ∂Φ/∂θ:

    ∂/∂s_b ⟨s_b, M(s_a)⟩ = M(s_a),   ∂/∂s_a ⟨s_b, M(s_a)⟩ = Mᵀ(s_b)  (the adjoint: transposed product / convolution,
                                                                       after un-pooling to the current argmax)
    ∂/∂W ⟨s_b, W s_a⟩ = s_b s_aᵀ,   ∂/∂W ⟨s_b, W ⋆ s_a⟩ = the convolution's weight gradient of (s_a, s_b),
    ∂/∂b_l ⟨b_l, s_l⟩ = s_l        (summed over positions for a per-channel bias).

The network (`EnergyGraph`) is an EPNet: each free layer is set to the coordinate-wise minimiser of the energy
E = ½ Σ_l ||s_l||² − Φ given the other layers,

    s_l ← ρ_l(∂Φ/∂s_l)          ρ_l = clamp to the activation's box (hard-sigmoid [0, 1], relu6 [0, 6], relu [0, ∞),
                                 reluclip [0, c_l]); identity for a linear output layer,

a group of layers at a time: the groups of a greedy colouring of the free layers' graph, so that no group holds both
ends of an interaction (each group's update is then an exact block minimisation, E never increases). With the
skips of Hopfield-ResNet13 (0–2–4–6–8) an odd/even split is not such a colouring. The nudge is the suite's: the field
of the output layer gets −β ∂ℓ/∂s_out (EPNet.nudge), and `phi` holds −β ℓ, so the autograd oracle agrees.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.grad import conv2d_weight

from netClasses import EPNet, Memo, Pool, capturing, conv_adjoint
import netFunctions as nf


# ---------------------------------------------------------------------------------------------------------------
# Activations: the box of a layer's state

class Clamp(nn.Module):
    """ρ(h) = clamp(h, lo, hi): the minimiser of ½ s² − h s over s ∈ [lo, hi]. `hi` is a buffer (reluclip's c is
    drawn once and must survive a checkpoint); inf for relu."""

    def __init__(self, name, lo=0.0, hi=1.0):
        super().__init__()
        self.name, self.lo = name, lo
        self.register_buffer('hi', torch.tensor(float(hi)))
        self._hi = float(hi)                      # (a host copy: no device read per step)

    def _load_from_state_dict(self, state, prefix, *a, **kw):
        super()._load_from_state_dict(state, prefix, *a, **kw)
        if prefix + 'hi' in state:
            self._hi = float(state[prefix + 'hi'])

    def forward(self, h):
        return h.clamp(self.lo, None) if math.isinf(self._hi) else h.clamp(self.lo, self._hi)

    def extra_repr(self):
        return f'{self.name}: [{self.lo}, {self._hi:g}]'


ACTIVATIONS = ('hard-sigmoid', 'relu6', 'relu', 'reluclip')


def activation(name, generator=None):
    """The Clamp of a name; reluclip draws its c uniformly in [1, 10] (from `generator`)."""
    if name in ('hard-sigmoid', 'hardsigm', 'hard_sigmoid'):
        return Clamp('hard-sigmoid', 0.0, 1.0)
    if name == 'relu6':
        return Clamp('relu6', 0.0, 6.0)
    if name == 'relu':
        return Clamp('relu', 0.0, math.inf)
    if name == 'reluclip':
        return Clamp('reluclip', 0.0, 1.0 + 9.0 * torch.rand((), generator=generator).item())
    raise ValueError(f'activation {name!r}: one of {", ".join(ACTIVATIONS)}')


class Layer(nn.Module):
    """A named layer: its shape (without the batch) and ρ (a Clamp, a netClasses.Activation, or None: linear)."""

    def __init__(self, name, shape, rho=None):
        super().__init__()
        self.name, self.shape = name, tuple(shape)
        self.rho = rho if isinstance(rho, nn.Module) or rho is None else None
        self._act = rho if self.rho is None else None          # a netClasses.Activation (no state of its own)

    def forward(self, h):
        if self.rho is not None:
            return self.rho(h)
        return self._act.rho(h) if self._act is not None else h

    def extra_repr(self):
        return f'{self.name} {self.shape}' + (f', {self._act}' if self._act is not None else '')


# ---------------------------------------------------------------------------------------------------------------
# Interactions

def _per_sample(t):
    return t.flatten(1).sum(1)


def _uniform_(t, bound, generator=None):
    with torch.no_grad():
        return t.uniform_(-bound, bound, generator=generator)


class Coupling(nn.Module):
    """Φ_ab = ⟨s_b, M(s_a)⟩ between the layers `pre` = a and `post` = b (indices of the graph's layer list).

    forward(a) → (M(a), context of the adjoint); adjoint(g, ctx) = Mᵀ g, of the shape of a; param_grads(a, b, c) =
    Σ_r c_r ∂Φ_ab(a_r, b_r)/∂θ (c a weight per sample), one tensor per parameter."""
    needs_context = False       # whether the adjoint depends on a (max-pool's argmax): then forward(a) gives it

    def __init__(self, pre, post):
        super().__init__()
        self.pre, self.post = pre, post

    def energy(self, a, b):
        return _per_sample(b * self.forward(a)[0])

    def init_gain(self, gain, generator=None):
        """weight ~ U(−g/√fan_in, g/√fan_in): g times the bound of PyTorch's default Linear / Conv2d initialisation,
        the form of the bias gains 0.5/√fan_in. (A standard deviation of g/√fan_in, √3 larger, saturates most units
        of Hopfield-ResNet13 at the paper's gains and slows its relaxation several-fold.)"""
        w = getattr(self, 'weight', None)
        if w is not None:
            _uniform_(w, gain / math.sqrt(w[0].numel()), generator)


class Dense(Coupling):
    """⟨s_b, W flatten(s_a)⟩, W of shape (n_b, n_a)."""

    def __init__(self, pre, post, n_in, n_out):
        super().__init__(pre, post)
        self.weight = nn.Parameter(torch.empty(n_out, n_in))
        self.init_gain(1.0)

    def forward(self, a):
        return a.flatten(1) @ self.weight.T, a.shape

    def adjoint(self, g, ctx):
        return (g @ self.weight).view(ctx)

    def param_grads(self, a, b, c):
        return [(c.view(-1, 1) * b).T @ a.flatten(1)]


class Conv(Coupling):
    """⟨s_b, W ⋆ s_a⟩ (stride, padding; no bias: biases are interactions of their own). Adjoint Wᵀ ⋆ g: the
    transposed convolution with the same kernel, its output padding set so that it returns a's shape (at stride 1,
    the convolution of g with the kernel flipped in space and transposed in channels, padding k − 1 − p)."""

    def __init__(self, pre, post, c_in, c_out, kernel, stride=1, padding=0):
        super().__init__(pre, post)
        self.stride, self.padding = stride, padding
        self.weight = nn.Parameter(torch.empty(c_out, c_in, kernel, kernel))
        self.init_gain(1.0)

    def forward(self, a):
        return F.conv2d(a, self.weight, None, self.stride, self.padding), a.shape

    def adjoint(self, g, ctx):
        k, s, p = self.weight.shape[-1], self.stride, self.padding
        if s == 1 and p <= k - 1:
            # the same map as a plain convolution with the flipped, transposed kernel: CPU libraries run it several
            # times faster than a transposed convolution when the channels are few
            return F.conv2d(g, self._flipped(), None, 1, k - 1 - p)
        return conv_adjoint(g, self.weight, ctx, (s, s), (p, p))

    def _flipped(self):
        """W flipped in space and transposed in channels, made once per value of W: a phase reads it at every step
        (under autograd it is recomputed, so that the graph is the caller's). The cache keeps a view of the W it was
        made from, so that no other tensor can take that address while it is held: address and version counter
        (bumped by every in-place write: an optimiser step, a loaded state) then identify the value."""
        w = self.weight
        if torch.is_grad_enabled() or capturing(w):
            return w.flip(2, 3).transpose(0, 1)
        hit = self.__dict__.get('_flip')
        if hit is None or hit[0].data_ptr() != w.data_ptr() or hit[1] != w._version:
            src = w.detach()
            hit = self.__dict__['_flip'] = (src, w._version, src.flip(2, 3).transpose(0, 1))
        return hit[2]

    def param_grads(self, a, b, c):
        return [conv2d_weight(a, self.weight.shape, c.view(-1, 1, 1, 1) * b, self.stride, self.padding)]


class ConvPool(Conv):
    """⟨s_b, P(W ⋆ s_a)⟩ with P a 2×2 max-pool (stride 2): the adjoint routes each g to the current argmax of its
    window (un-pooling), then the transposed convolution: Wᵀ ⋆ Pᵀ g (netClasses.ConvPool's form)."""
    needs_context = True

    def __init__(self, pre, post, c_in, c_out, kernel, stride=1, padding=0, pool=2):
        super().__init__(pre, post, c_in, c_out, kernel, stride, padding)
        self.pool = Pool('m', pool)

    def forward(self, a):
        z = F.conv2d(a, self.weight, None, self.stride, self.padding)
        p, idx = self.pool(z)
        return p, (a.shape, z.shape, idx)

    def adjoint(self, g, ctx):
        a_shape, z_shape, idx = ctx
        return Conv.adjoint(self, self.pool.adjoint(g, idx, z_shape), a_shape)

    def param_grads(self, a, b, c):
        _, (_, z_shape, idx) = self.forward(a)
        g = self.pool.adjoint(c.view(-1, 1, 1, 1) * b, idx, z_shape)
        return [conv2d_weight(a, self.weight.shape, g, self.stride, self.padding)]


class Identity(Coupling):
    """⟨s_b, s_a⟩ (same shapes, no parameter)."""

    def forward(self, a):
        return a, None

    def adjoint(self, g, ctx):
        return g

    def param_grads(self, a, b, c):
        return []


class Bias(nn.Module):
    """⟨b, s⟩ on one layer: b per unit, or per channel (shape (C,)) broadcast over the positions of a (C, H, W)
    layer. Its field b is constant: the graph adds it to the drive of the phase."""

    def __init__(self, layer, shape):
        super().__init__()
        self.layer = layer
        self.bias = nn.Parameter(torch.zeros(*shape))

    def init_gain(self, gain, generator=None):
        """b ~ U(−gain, gain)."""
        _uniform_(self.bias, gain, generator)

    def field(self, shape):
        """b broadcast to a layer of `shape` (without the batch)."""
        return self.bias.view(*self.bias.shape, *([1] * (len(shape) - self.bias.dim())))

    def energy(self, s):
        return _per_sample(s * self.field(s.shape[1:]))

    def param_grads(self, s, c):
        g = c.view(-1, *([1] * (s.dim() - 1))) * s
        return [g.sum(0).flatten(self.bias.dim()).sum(-1) if g.dim() > self.bias.dim() + 1 else g.sum(0)]


# ---------------------------------------------------------------------------------------------------------------
# Colouring

def greedy_coloring(n, pairs):
    """Groups of the nodes 0 … n−1 such that no pair of `pairs` lies inside a group: node i (in order) gets the
    smallest colour that none of its already coloured neighbours has."""
    nbrs = [set() for _ in range(n)]
    for a, b in pairs:
        nbrs[a].add(b)
        nbrs[b].add(a)
    color = []
    for i in range(n):
        used = {color[j] for j in nbrs[i] if j < i}
        color.append(next(k for k in range(n) if k not in used))
    return [[i for i in range(n) if color[i] == k] for k in range(max(color) + 1)] if n else []


# ---------------------------------------------------------------------------------------------------------------
# The network

class EnergyGraph(EPNet):
    """An EPNet whose Φ is a sum of interactions over `layers` (layer 0: the clamped input; the others free, the last
    the output read by the cost). State list s = [s_1, …, s_L] (input-first order, `out_index` −1).

    One step updates the groups of `groups` in turn (greedy colouring; `set_relaxation(asynchronous=False)` gives the
    synchronous Jacobi step instead, 'free' colours the free phase only). The drive of a phase, computed once, is
    every free layer's constant field: the messages of the input's interactions plus the biases."""
    out_index = -1
    input_first = True
    asynchronous = True

    def __init__(self, layers, couplings, biases=(), T=20, Kmax=4, beta=0.1, criterion=None):
        super().__init__(T, Kmax, beta, lambda h: h, criterion)
        self.layers = nn.ModuleList(layers)
        self.couplings = nn.ModuleList(couplings)
        self.biases = nn.ModuleList(biases)
        n = len(layers)
        for e in self.couplings:
            if not (0 <= e.pre < n and 0 < e.post < n and e.pre != e.post):
                raise ValueError(f'{e}: the ends {e.pre} → {e.post} must be two layers of 0 … {n - 1}, the input (0) '
                                 f'only as the pre-synaptic end')
        self.into = [[k for k, e in enumerate(self.couplings) if e.post == g and e.pre > 0] for g in range(n)]
        self.out_of = [[k for k, e in enumerate(self.couplings) if e.pre == g] for g in range(n)]
        self.from_input = [[k for k, e in enumerate(self.couplings) if e.post == g and e.pre == 0] for g in range(n)]
        self.groups = greedy_coloring(n - 1, [(e.pre - 1, e.post - 1) for e in self.couplings if e.pre > 0])

    # -- structure ------------------------------------------------------------------------------------------------
    def state_shapes(self):
        return [lay.shape for lay in self.layers[1:]]

    def schedule(self, n, nudged):
        if not self.asynchronous or (nudged and self.asynchronous == 'free'):
            return [range(n)]
        return self.groups

    # -- Φ and its gradients --------------------------------------------------------------------------------------
    def drive(self, x):
        """The constant field of each free layer in a phase: Σ over the input's interactions M(x) + b_l."""
        out = []
        for g, lay in enumerate(self.layers):
            if g == 0:
                continue
            h = None
            for k in self.from_input[g]:
                m = self.couplings[k](x)[0]
                h = m if h is None else h + m
            for bias in self.biases:
                if bias.layer == g:
                    f = bias.field(lay.shape)
                    h = f.expand(x.shape[0], *lay.shape) if h is None else h + f
            out.append(h)
        return out

    def dphi_ds_layers(self, s, drive, y, beta, layers):
        full = [None] + list(s)
        edges = self.couplings
        # a max-pool interaction is evaluated once per value of its pre-synaptic layer: message up and argmax down
        fwd = Memo(lambda k: self.carry(edges[k], full[edges[k].pre]) if edges[k].needs_context
                   else edges[k](full[edges[k].pre]))
        h = []
        for l in layers:
            g = l + 1
            hl = drive[l]
            for k in self.into[g]:
                m = fwd[k][0]
                hl = m if hl is None else hl + m
            for k in self.out_of[g]:
                e = edges[k]
                m = e.adjoint(full[e.post], fwd[k][1] if e.needs_context else full[g].shape)
                hl = m if hl is None else hl + m
            if g == len(self.layers) - 1 and y is not None:
                hl = hl + self.nudge(s, y, beta)
            h.append(torch.zeros_like(s[l]) if hl is None else hl)
        return h

    def update_layer(self, l, s, h, y, beta):
        """s_l = ρ_l(∂Φ/∂s_l): the minimiser of ½||s_l||² − Φ over the layer's box (identity: a linear layer)."""
        return self.layers[l + 1](h)

    def phi(self, x, s, y=None, beta=0.0):
        full = [x] + list(s)
        total = sum(e.energy(full[e.pre], full[e.post]) for e in self.couplings)
        for b in self.biases:
            total = total + b.energy(full[b.layer])
        return total + self.phi_nudge(s, y, beta)

    def ep_param_grads(self, x, s_a, s_b, beta_a, beta_b, y=None, s_free=None, phi_betas=None):
        """ĝ_θ = −(1/(β_b − β_a)) mean_b [∂Φ/∂θ(s_b) − ∂Φ/∂θ(s_a)] in closed form (the cost holds no θ), both
        states as one batch weighted ±1/(B(β_b − β_a))."""
        c, _ = nf.pair_weights(x, beta_a, beta_b, phi_betas)
        full = [torch.cat([x, x])] + [torch.cat([a, b]) for a, b in zip(s_a, s_b)]
        grads = []
        for e in self.couplings:
            grads += e.param_grads(full[e.pre], full[e.post], c)
        for b in self.biases:
            grads += b.param_grads(full[b.layer], c)
        return grads

    def lr_groups(self, lrs_weights, lrs_biases, weight_decay=0.0):
        """One optimiser group per weight tensor and per bias, each with its learning rate (one rate per tensor:
        a shorter list would leave tensors out of the optimiser)."""
        weighted = [e for e in self.couplings if any(True for _ in e.parameters())]
        if len(lrs_weights) != len(weighted) or len(lrs_biases) != len(self.biases):
            raise ValueError(f'{len(lrs_weights)} weight and {len(lrs_biases)} bias learning rates for '
                             f'{len(weighted)} weight tensors and {len(self.biases)} biases')
        return ([{'params': list(e.parameters()), 'lr': lr, 'weight_decay': weight_decay}
                 for e, lr in zip(weighted, lrs_weights)]
                + [{'params': list(b.parameters()), 'lr': lr, 'weight_decay': weight_decay}
                   for b, lr in zip(self.biases, lrs_biases)])

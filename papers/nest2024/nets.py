"""Feedforward-tied energy-based models (ff-EBMs) of Nest & Ernoult 2024: a chain of Hopfield blocks, each an EPNet
of the suite, tied by feedforward (digital) ops; EP inside each block, backprop between blocks.

Block k (layers s_1 … s_n, s_0 ≡ x_k its input, x_{k+1} = s^k_n at equilibrium) has the per-sample primitive

    Φ_k(x, s; β) = ⟨F_k(x), s_1⟩ + Σ_{l=2..n_conv} ⟨P_l(W_l ⋆ s_{l−1} + b_l), s_l⟩
                   + Σ_{fc} ⟨W_l flat(s_{l−1}) + b_l, s_l⟩ − β ℓ_k(s_n),

F_k(x) = BN(P_1(W_1 ⋆ x)) the feedforward op (BN frozen and non-affine, Conv_1 without bias when there is a BN),
ℓ_K = CE(readout(s_n), y) for the last block and ℓ_k = ⟨g_k, s_n⟩ (netClasses.ErrorCurrent) for the others, with
g_k the error current sent back by block k+1. Dynamics: the fixed-point iteration s_l ← σ(∂Φ_k/∂s_l), σ(u) =
clamp(a·u, 0, 1) (slope a), the last layer linear (s_n ← ∂Φ/∂s_n) unless clamp_last, asynchronous: layers 1, 3, … then
2, 4, … (0-based even then odd) in the free phase, odd first in the nudged phases.

Sign convention of the error current (stated once, used everywhere): g_k = B·∂L/∂x_{k+1} (gradient sign, L the
batch-mean loss, so that g is the per-sample gradient of Σ_b ℓ_b); the nudging force on block k's last layer is
−β g_k. The paper's δ_k is −g_k (its stepper adds +β δ): same dynamics, and Φ's nudging term −β⟨g, s_n⟩ agrees with
that force (the original's autograd stepper had the opposite sign, spec quirk 10).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

import netFunctions as nf
from ep import estimators
from netClasses import Activation, ConvPool, CrossEntropy, EPNet, ErrorCurrent, Feedforward, conv_pool_sizes

POOLS = {'m': 'm', 's': 'i', '-': 'i'}          # 's' is MaxPool(1, 1), the identity; '-' no pool


def hard_sigmoid(slope):
    """σ(u) = clamp(a·u, 0, 1)."""
    return Activation(f'hardsigm(a={slope})', lambda u: (slope * u).clamp(0, 1), None)


def goe_(weight, V, k=3):
    """GOE init of a conv kernel: each slice W[o, i] (k×k) is A = tril(G) + tril(G)ᵀ with G iid N(0, V/k), its
    diagonal then multiplied by √2 (off-diagonal variance V/k, diagonal 8V/k)."""
    with torch.no_grad():
        g = torch.randn_like(weight) * math.sqrt(V / k)
        low = torch.tril(g)
        a = low + low.transpose(-1, -2)
        eye = torch.eye(weight.shape[-1], dtype=torch.bool, device=weight.device)
        weight.copy_(torch.where(eye, a * math.sqrt(2.0), a))
    return weight


def goe_convs_(block, V):
    """GOE init (goe_) of every Conv2d kernel of a block, k its side; conv biases to 0. Linears keep PyTorch's."""
    for m in block.modules():
        if isinstance(m, nn.Conv2d):
            goe_(m.weight, V, m.kernel_size[0])
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def frozen_bn(bn, z, training, update_stats=False):
    """The frozen, non-affine BatchNorm: batch statistics in training (the running statistics updated only when
    asked: once per block and mini-batch, in the free phase), running statistics in eval mode."""
    if not training:
        return F.batch_norm(z, bn.running_mean, bn.running_var, training=False, eps=bn.eps)
    rm, rv = (bn.running_mean, bn.running_var) if update_stats else (None, None)
    return F.batch_norm(z, rm, rv, training=True, momentum=bn.momentum, eps=bn.eps)


class HopfieldBlock(EPNet):
    """What every block of a chain shares: the readout (last block) or the error-current nudge, the activation (the
    last layer linear unless clamp_last), the asynchronous schedule, the closed-form stepper and its autograd-of-Φ
    oracle, and the EP estimate. A subclass gives state_shapes, ff (the feedforward op: the drive of the block,
    constant in a phase), dphi_ds_layers (∂Φ/∂s_l in closed form), ff_term (the terms of Φ that hold the drive, linear
    in s) and phi_rest (the others, with the nudge), features (what the readout reads of s_n) and features_adjoint."""
    input_first = True
    constant_feedback = False    # set by HopfieldChain.rerun for ID's feedback=constant (feedback_weight)

    def __init__(self, slope, T1, T2, beta, n_classes, clamp_last, asynchronous, use_autograd):
        super().__init__(T1, T2, beta, hard_sigmoid(slope), CrossEntropy() if n_classes else ErrorCurrent())
        self.clamp_last, self.asynchronous = clamp_last, asynchronous
        self.use_autograd = use_autograd        # model.config.use_autograd: the oracle step in every phase

    def feedback_weight(self, m):
        """The weight W_{l+1} of a top-down term W_{l+1}ᵀ s_{l+1}: W_{l+1} itself, or, with constant_feedback, its
        value as a constant (no gradient path to W_{l+1} through the feedback; the state Jacobian is unchanged)."""
        return m.weight.detach() if self.constant_feedback else m.weight

    def logits(self, s):
        """The readout z = W_r features(s_n) + b_r (last block), else the last layer itself (what ⟨g, ·⟩ reads)."""
        return self.readout(self.features(s[-1])) if self.readout is not None else s[-1]

    @property
    def output_size(self):
        return self.readout.out_features

    def nudge(self, s, y, beta):
        """−β ∂ℓ/∂s_n: through the readout, featuresᵀ(−β (softmax(z) − y) W_r); for an error current g, −β g."""
        if self.readout is None:
            b = beta.view(-1, *[1] * (y.dim() - 1)) if torch.is_tensor(beta) else beta
            return -b * y
        return self.features_adjoint((-beta * self.criterion.grad(self.logits(s), y)) @ self.readout.weight, s[-1])

    def drive(self, x):
        return self.ff(x, update_stats=self.training)

    def update_layer(self, l, s, u, y, beta):
        """σ(u), except the last layer, linear unless clamp_last (the nudge is in u)."""
        return u if (l == self.n_layers - 1 and not self.clamp_last) else self.act.rho(u)

    def feedforward(self, x):
        """The block's feedforward twin (algorithm=bp): its fixed point replaced by one pass from the input, layer
        after layer, s_l = σ(bottom_up_l(s_{l−1})) with bottom_up_1 = F_k(x) (the same weights, BN and pools; the
        last layer linear unless clamp_last), i.e. the free dynamics without their top-down terms, run once. With
        graph; BN's running statistics are updated once (training mode)."""
        d, s = self.drive(x), []
        for l in range(self.n_layers):
            s.append(self.update_layer(l, s, self.bottom_up(l, s, d), None, 0.0))
        return s

    def stepper(self, s, drive, y=None, beta=0.0):
        """One iteration of the schedule (EPNet.schedule: even then odd, odd first when nudged), closed-form fields
        (autograd of Φ with use_autograd)."""
        if self.use_autograd:
            return self.autograd_step(lambda s_: self.phi_drive(drive, s_, y, beta), s, y, beta,
                                      keep=torch.is_grad_enabled())
        return super().stepper(s, drive, y, beta)

    def stepper_autograd(self, x, s, y=None, beta=0.0):
        """The same iteration with ∂Φ/∂s by autograd of `phi` (the oracle; a graph through it when grad is enabled,
        so that ID can differentiate the oracle dynamics too)."""
        return self.autograd_step(lambda s_: self.phi_drive(self.ff(x), s_, y, beta), s, y, beta,
                                  keep=torch.is_grad_enabled())

    def phi(self, x, s, y=None, beta=0.0):
        return self.phi_drive(self.ff(x), s, y, beta)

    def phi_drive(self, drive, s, y=None, beta=0.0):
        """Φ with the feedforward op already computed: ff_term(drive, s) + phi_rest(s)."""
        return self.ff_term(drive, s) + self.phi_rest(s, y, beta)

    def phi_rest(self, s, y=None, beta=0.0):
        """The terms of Φ without the drive: Σ ⟨syn(s_i), s_o⟩ over the couplings, − β ℓ(s_n), per sample."""
        total = self.phi_nudge(s, y, beta)
        for m, i, o in self.couplings():
            total = total + (syn_out(m, s[i]).view_as(s[o]) * s[o]).flatten(1).sum(1)
        return total

    def ep_param_grads(self, x, s_a, s_b, beta_a, beta_b, y=None, s_free=None, phi_betas=None, x_grad=False):
        """ĝ = −(1/(β_b − β_a)) mean_b [∂Φ/∂θ(x, s_b; β_b) − ∂Φ/∂θ(x, s_a; β_a)] per parameter (and, with x_grad,
        the same difference with respect to x, per sample, appended): netFunctions.phi_param_grads's estimate, with
        the difference taken before the backward pass instead of after it (two nudged halves subtracted):
            ⟨F(x), s_b⟩ − ⟨F(x), s_a⟩ = ⟨F(x), s_b − s_a⟩   (the feedforward terms, linear in s),
            ⟨syn(a_b), c_b⟩ − ⟨syn(a_a), c_a⟩ = ⟨syn(a_b), c_b − c_a⟩ + ⟨syn(a_b) − syn(a_a), c_a⟩   (see syn_diff),
        and the nudging terms, −β_b ℓ(s_b) + β_a ℓ(s_a), on the halves (a sum for ±β). Mathematically the same; in
        float32 the halves are not: through F_k(x) = BN(P(W_1 ⋆ x)) each half's ∂Φ/∂W_1 was ~10⁷ times their
        difference on splitting_small at β = 0.2 (rounding noise 70 times the gradient), and the in-block weights
        lost the same way at β ≤ 0.01."""
        params, B = list(self.parameters()), x.shape[0]
        c, beta = nf.pair_weights(x, beta_a, beta_b, phi_betas)
        s_a, s_b = [a.detach() for a in s_a], [b.detach() for b in s_b]
        with torch.enable_grad():
            xx = x.detach().requires_grad_(x_grad)
            d = self.ff_term(self.ff(xx), [b - a for a, b in zip(s_a, s_b)])
            for m, i, o in self.couplings():
                d = d + (syn_out(m, s_b[i]).view_as(s_b[o]) * (s_b[o] - s_a[o])).flatten(1).sum(1)
                d = d + (syn_diff(m, s_a[i], s_b[i]).view_as(s_a[o]) * s_a[o]).flatten(1).sum(1)
            obj = -d.sum() / (B * (beta_b - beta_a))
            if y is not None:
                s_cat = [torch.cat([a, b]) for a, b in zip(s_a, s_b)]
                obj = obj + (c * self.phi_nudge(s_cat, torch.cat([y, y]), beta)).sum()
            return nf._grads(obj, params + ([xx] if x_grad else []))

    def weight_names(self):
        """Names of the conv and fc weight tensors of the block (what GDD compares: no bias, BN or readout), in
        layer order."""
        return [n for n, p in self.named_parameters() if p.dim() > 1 and not n.startswith('readout.')]


class ConvPoolBlock(HopfieldBlock):
    """One VGG Hopfield block: conv layers (ConvPool synapses with their adjoint) then fc layers; optionally the
    readout (last block). channels = [c_in, c_1, …, c_nconv], pools one letter per conv ('m', 's' or '-')."""

    def __init__(self, in_size, channels, pools, fc=(), norm=True, clamp_last=False, slope=1.0, T1=20, T2=5,
                 beta=0.2, n_classes=None, asynchronous=True, V=None, use_autograd=False):
        super().__init__(slope, T1, T2, beta, n_classes, clamp_last, asynchronous, use_autograd)
        self.ncv = len(channels) - 1
        kinds = [POOLS[p] for p in pools]         # 3×3 convs, stride 1, padding 1 keep the side; 'm' halves it
        self.sizes = conv_pool_sizes(in_size, [3] * len(kinds), [1] * len(kinds), [1] * len(kinds), kinds)[1:]
        if len(self.sizes) < len(kinds) or min(self.sizes) < 1:
            raise ValueError(f'the feature maps vanish ({self.sizes}) for an input of size {in_size}')
        self.channels = list(channels)
        convs = [ConvPool(channels[k], channels[k + 1], 3, 1, 1, POOLS[pools[k]], bias=not (k == 0 and norm))
                 for k in range(self.ncv)]
        fc_in = [channels[-1] * self.sizes[-1] ** 2] + list(fc)
        self.fc_sizes = list(fc)
        self.n_layers = self.ncv + len(self.fc_sizes)
        self.synapses = nn.ModuleList(convs + [nn.Linear(a, b) for a, b in zip(fc_in[:-1], fc_in[1:])])
        self.bn = nn.BatchNorm2d(channels[1], affine=False) if norm else None
        self.readout = nn.Linear(fc_in[-1], n_classes) if n_classes else None
        if V is not None:
            goe_convs_(self, V)

    def state_shapes(self):
        return [(c, n, n) for c, n in zip(self.channels[1:], self.sizes)] + [(f,) for f in self.fc_sizes]

    @property
    def out_size(self):
        return self.sizes[-1]

    def features(self, s_n):
        return s_n.flatten(1)

    def features_adjoint(self, g, s_n):
        return g.view_as(s_n)

    def ff(self, x, update_stats=False):
        """F_k(x) = BN(P_1(W_1 ⋆ x)) (see frozen_bn)."""
        z = self.synapses[0](x)[0]
        return z if self.bn is None else frozen_bn(self.bn, z, self.training, update_stats)

    def bottom_up(self, l, s, drive):
        """The field of s_l from the layer below: F_k(x) (l = 1), P_l(W_l ⋆ s_{l−1} + b_l), W_l flat(s_{l−1}) + b_l."""
        if l == 0:
            return drive
        if l < self.ncv:
            return self.synapses[l](s[l - 1])[0]
        return self.synapses[l](s[l - 1].flatten(1))

    def _top_down(self, l, s):
        """∂/∂s_l ⟨syn_{l+1}(s_l), s_{l+1}⟩: the adjoint of the next synapse at the current s_l (unpool to the
        argmax of its max-pool, then transposed conv; Wᵀ s_{l+1} for a Linear)."""
        m = self.synapses[l + 1]
        if l + 1 < self.ncv:
            ctx = m(s[l])[1] if m.pool.kind == 'm' else (s[l].shape, None, None)   # no pool: no forward needed
            return m.adjoint(s[l + 1], ctx, self.feedback_weight(m))
        return (s[l + 1] @ self.feedback_weight(m)).view_as(s[l])

    def dphi_ds_layers(self, s, drive, y, beta, layers):
        """∂Φ/∂s_l in closed form for the given layers, all read from the same state s."""
        n, out = len(s), []
        for l in layers:
            u = self.bottom_up(l, s, drive)
            if l + 1 < n:
                u = u + self._top_down(l, s)
            elif y is not None:
                u = u + self.nudge(s, y, beta)
            out.append(u)
        return out

    def ff_term(self, drive, s):
        """⟨F_k(x), s_1⟩ per sample."""
        return (drive * s[0]).flatten(1).sum(1)

    def couplings(self):
        """(synapse, its input layer, its output layer) of every term ⟨syn_l(s_{l−1}), s_l⟩, l ≥ 2."""
        return [(self.synapses[l], l - 1, l) for l in range(1, len(self.synapses))]


class BasicBlock(HopfieldBlock):
    """A ResNet BasicBlock as a 2-layer Hopfield block (the paper's ResNet chains), s_1 and s_2 of `planes` channels:

        Φ(x, s; β) = ⟨BN(W_1 ⋆_stride h), s_1⟩ + ⟨W_2 ⋆ s_1 + b_2, s_2⟩ + ⟨skip(h), s_2⟩ − β ℓ(s_2),

    h = x, or stem(x) = MaxPool_{3/2}(BN(W_0 ⋆_{7/2} x)) in the first block (the stem is part of its feedforward op);
    skip(h) = h, or BN(W_d ⋆_{1×1, stride} h) when the stride or the width changes. The feedforward op is the pair
    (BN(W_1 ⋆ h), skip(h)), constant in a phase. Closed form: s_1 ← σ(BN(W_1 ⋆ h) + W_2ᵀ ⋆ s_2), s_2 ← W_2 ⋆ s_1 +
    b_2 + skip(h) (+ the nudge; σ with clamp_last). The readout (last block) is Linear(mean over H×W of s_2).
    channels = [c_in, planes], or [3, stem width, planes] with the stem."""

    def __init__(self, in_size, channels, stride=1, stem=False, clamp_last=False, slope=1.0, T1=20, T2=5, beta=0.2,
                 n_classes=None, asynchronous=True, V=None, use_autograd=False):
        super().__init__(slope, T1, T2, beta, n_classes, clamp_last, asynchronous, use_autograd)
        c_in, planes = channels[-2], channels[-1]
        self.stem = None
        if stem:
            self.stem = nn.Conv2d(channels[0], c_in, 7, 2, 3, bias=False)
            self.stem_bn = nn.BatchNorm2d(c_in, affine=False)
            in_size = (in_size + 6 - 7) // 2 + 1
            in_size = (in_size + 2 - 3) // 2 + 1                     # MaxPool 3, stride 2, padding 1
        self.size = (in_size + 2 - 3) // stride + 1
        if self.size < 1:
            raise ValueError(f'the feature maps vanish for an input of size {in_size}')
        self.planes, self.n_layers = planes, 2
        self.conv1 = ConvPool(c_in, planes, 3, stride, 1, 'i', bias=False)
        self.conv2 = ConvPool(planes, planes, 3, 1, 1, 'i')
        self.bn1 = nn.BatchNorm2d(planes, affine=False)
        self.down = None
        if stride != 1 or c_in != planes:
            self.down = nn.Conv2d(c_in, planes, 1, stride, bias=False)
            self.down_bn = nn.BatchNorm2d(planes, affine=False)
        self.readout = nn.Linear(planes, n_classes) if n_classes else None
        if V is not None:
            goe_convs_(self, V)

    def state_shapes(self):
        return [(self.planes, self.size, self.size)] * 2

    @property
    def out_size(self):
        return self.size

    def features(self, s_n):
        return s_n.mean((2, 3))

    def features_adjoint(self, g, s_n):
        return (g / (s_n.shape[2] * s_n.shape[3]))[:, :, None, None].expand_as(s_n)

    def ff(self, x, update_stats=False):
        """(BN(W_1 ⋆ h), skip(h)), h = x or stem(x) (see frozen_bn)."""
        def bn(m, z):
            return frozen_bn(m, z, self.training, update_stats)
        h = x if self.stem is None else F.max_pool2d(bn(self.stem_bn, self.stem(x)), 3, 2, 1)
        skip = h if self.down is None else bn(self.down_bn, self.down(h))
        return bn(self.bn1, self.conv1(h)[0]), skip

    def bottom_up(self, l, s, drive):
        """The field of s_l from below: BN(W_1 ⋆ h) (l = 1), W_2 ⋆ s_1 + b_2 + skip(h) (l = 2)."""
        return drive[0] if l == 0 else self.conv2(s[0])[0] + drive[1]

    def dphi_ds_layers(self, s, drive, y, beta, layers):
        """∂Φ/∂s_l in closed form for the given layers (0: s_1, 1: s_2), all read from the same state s."""
        out = []
        for l in layers:
            u = self.bottom_up(l, s, drive)
            if l == 0:
                out.append(u + self.conv2.adjoint(s[1], (s[0].shape, None, None), self.feedback_weight(self.conv2)))
            else:
                out.append(u if y is None else u + self.nudge(s, y, beta))
        return out

    def ff_term(self, drive, s):
        """⟨BN(W_1 ⋆ h), s_1⟩ + ⟨skip(h), s_2⟩ per sample."""
        return (drive[0] * s[0]).flatten(1).sum(1) + (drive[1] * s[1]).flatten(1).sum(1)

    def couplings(self):
        """The term ⟨W_2 ⋆ s_1 + b_2, s_2⟩."""
        return [(self.conv2, 0, 1)]


def syn_out(m, a):
    """A synapse's output: P(W ⋆ a + b) (ConvPool) or W flat(a) + b (Linear)."""
    return m(a.flatten(1)) if isinstance(m, nn.Linear) else m(a)[0]


def syn_diff(m, a_a, a_b):
    """syn(a_b) − syn(a_a) without subtracting the two outputs: W (a_b − a_a) (the bias cancels); through a
    max-pool, gather(W ⋆ (a_b − a_a), i_b) + gather(z_a, i_b) − gather(z_a, i_a) with z_a = W ⋆ a_a + b and i the
    argmax indices: exact, and the last two terms cancel exactly wherever the two argmaxes agree."""
    da = a_b - a_a
    if isinstance(m, nn.Linear):
        return F.linear(da.flatten(1), m.weight)
    dz = F.conv2d(da, m.weight, None, m.stride, m.padding)
    if m.pool.kind != 'm':
        return m.pool(dz)[0]
    z_a = F.conv2d(a_a, m.weight, m.bias, m.stride, m.padding)
    i_a, i_b = m.pool(z_a)[1], m.pool(F.conv2d(a_b, m.weight, m.bias, m.stride, m.padding))[1]

    def gather(z, i):
        return z.flatten(2).gather(2, i.flatten(2)).view_as(i)
    return gather(dz, i_b) + gather(z_a, i_b) - gather(z_a, i_a)


# ---------------------------------------------------------------------------------------------------------------

class ChainState(list):
    """The state of a chain: [(x_k, F_k(x_k), s^k)] per block k (x_1 the image, x_{k+1} = s^k_n, F_k(x_k) the
    block's drive), with z, the readout W_r s^K_n + b_r read when the state was made (trainer.train counts errors
    after the update, which moves W_r), and z_cost, the readout the cost ℓ reads when it is not z (ID's training
    loss is L at its re-run state, its predictions those of the free equilibrium)."""
    z = z_cost = None


class HopfieldChain(nn.Module):
    """Blocks in sequence, x_{k+1} = s^k_n (at the free equilibrium); the logits are the last block's readout.

    Driven like every EP net of the suite (trainer.train, estimators.ChainEP / ChainID): `forward` (the free phase
    block by block; a block's ±β nudged phases; ID's re-run), `computeGradients` (a block's EP estimate and the error
    current it sends upstream), `updateWeights`, `infer`, `output`, `cost`, `target`."""

    def __init__(self, blocks, tol=None, check_every=1):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.tol, self.check_every = tol, check_every

    def free_phase(self, x, tol=None, steps=None):
        """Free phase block by block from zeros, without graph: [(x_k, drive_k, s_k)], and the iterations each
        block ran (T1, or fewer when the TOL criterion stops it)."""
        tol = self.tol if tol is None else tol
        out, iters = [], []
        with torch.no_grad():
            for block in self.blocks:
                d = block.drive(x)
                s, n = nf.relax_tol(block, block.init_state(x.shape[0]), d, steps or block.T, tol,
                                    self.check_every)
                out.append((x, d, s))
                iters.append(n)
                x = s[-1]
        return out, iters

    def forward(self, x, s=None, y=None, beta=0.0, steps=None, block=None, feedback='full'):
        """The chain's relaxations, by what is given:
          free phase (s None): every block relaxed at β = 0 from zeros, x_{k+1} = s^k_n (T1 iterations per block,
            fewer under TOL, `steps` the maximum when given), without graph: the ChainState [(x_k, F_k(x_k), s^k)];
          nudged (block k, β a tuple (β_1, …)): block k's nudged phases, `steps` iterations each from its free state
            s^k of the ChainState s, odd layers first, driven by F_k(x_k) (x = x_k) and nudged by ℓ_k of y (the
            one-hot target for the last block, else the error current g_k): one batched tensor, a state list per β;
          re-run (s a ChainState, β = 0): ID's truncated BPTT forward, every block re-run for `steps` iterations from
            its free state, block 1 fed by x_1 and block k > 1 by the re-run output of block k − 1, with graph when
            grad is enabled (`feedback`: see rerun): the ChainState of the re-run's final states."""
        if block is not None:
            _, d, sk = s[block]
            return self.blocks[block].forward(x, sk, y, beta, steps=steps, drive=d)
        if s is None:
            out = ChainState(self.free_phase(x, steps=steps)[0])
            with torch.no_grad():
                out.z = self.blocks[-1].logits(out[-1][2])
        else:
            out = ChainState((xk, d, traj[-1]) for xk, d, traj in self.rerun(s, steps, feedback))
            out.z = self.blocks[-1].logits(out[-1][2])
        return out

    def infer(self, x, T=None):
        """The free equilibrium the predictions are read from (trainer.evaluate): T iterations per block at most
        (default T1, fewer under TOL)."""
        return self.forward(x, steps=T)

    def output(self, s):
        """Class scores z = W_r s^K_n + b_r of the last block's state: s.z of a ChainState, else by the readout."""
        z = getattr(s, 'z', None)
        return self.blocks[-1].logits(s[-1][2]) if z is None else z

    def cost(self, s, y):
        """Per-sample ℓ = CE(z, y), z = output(s) (s.z_cost when set)."""
        z = getattr(s, 'z_cost', None)
        return self.blocks[-1].criterion(self.output(s) if z is None else z, y)

    def target(self, label):
        return self.blocks[-1].target(label)

    def feedforward(self, x):
        """The chain's feedforward twin (algorithm=bp): x_{k+1} = s^k_n of each block's feedforward pass
        (HopfieldBlock.feedforward), with graph; returns the logits z = W_r s^K_n + b_r."""
        for block in self.blocks:
            s = block.feedforward(x)
            x = s[-1]
        return self.blocks[-1].logits(s)

    # -- EP inside the blocks, BP between them --------------------------------------------------------------------
    def computeGradients(self, x, s_a, s_b, beta_a, beta_b, y, block, x_grad=False):
        """Block k's EP estimate ĝ_θ = −(1/(β_b − β_a)) mean_b [∂Φ_k/∂θ(x_k, s_b; β_b) − ∂Φ_k/∂θ(x_k, s_a; β_a)]
        (the Φ difference taken first, HopfieldBlock.ep_param_grads) written to .grad of the block's parameters;
        with x_grad, returns the error current g_{k−1} = B·(the same difference with respect to x_k), through F_k by
        autograd (else None)."""
        blk = self.blocks[block]
        grads = blk.ep_param_grads(x, s_a, s_b, beta_a, beta_b, y, x_grad=x_grad)
        gx = grads.pop() * x.shape[0] if x_grad else None
        for p, g in zip(blk.parameters(), grads):
            estimators.set_grad(p, g)
        return gx

    # θ ← θ − lr ĝ_θ after averaging ĝ over the torchrun ranks, then .grad cleared: the same update as every EP net
    updateWeights = EPNet.updateWeights

    def ep_gradients(self, states, label, beta, steps):
        """The hybrid gradient (Alg. 2, estimators.ChainEP) from the free states: blocks from the last to the first,
        each nudged by the error current of the one after it (the cross-entropy for the last). Returns the error
        currents [g_0, …, g_{K−2}] (g_k nudges block k)."""
        return estimators.ChainEP(beta, steps).gradients(self, states, self.target(label))

    # -- ID: truncated BPTT from the free equilibria --------------------------------------------------------------
    def rerun(self, states, steps, feedback='full'):
        """Every block re-run with graph for `steps` iterations (default its T2) from its free state, block 1 fed by
        the image and block k > 1 by the differentiable output of block k − 1's re-run. Returns
        [(x_k, F_k(x_k), [s_0, …, s_T2])] per block.

        feedback: 'full' differentiates every term of the step, so that ∂L/∂W_l collects both paths of W_l
        (l ≥ 2 in a block), its bottom-up term P_l(W_l ⋆ s_{l−1}) in the field of s_l and its top-down term
        W_lᵀ ⋆ P_lᵀ s_l in the field of s_{l−1}; 'constant' reads W_l in the top-down term as a constant (the
        original's `.data`), so that ∂L/∂W_l keeps the bottom-up path only. The states' adjoints are the same in both
        (the constant still multiplies s_l), hence so are the gradients of W_1 (inside F_k, in no top-down term), of
        the biases, of BN and of the readout. The graph is built here, so the switch is on for the re-run only."""
        x, out = states[0][0], []
        for k, block in enumerate(self.blocks):
            traj = [[si.detach() for si in states[k][2]]]
            d = block.ff(x)
            if feedback == 'constant' and block.use_autograd:
                raise ValueError("feedback='constant' needs the closed-form stepper: autograd of Φ differentiates the "
                                 "bottom-up and top-down terms of a coupling together")
            block.constant_feedback = feedback == 'constant'
            try:
                for _ in range(block.Kmax if steps is None else steps):
                    traj.append(block.stepper(traj[-1], d))
            finally:
                block.constant_feedback = False
            out.append((x, d, traj))
            x = traj[-1][-1]
        return out

    def id_gradients(self, states, label, steps, input_grads=False):
        """L = mean_b CE(readout(s_n), y) after the T2-step re-run of the whole chain, backpropagated (written to
        .grad; estimators.ChainID). With input_grads, returns B·∂L/∂x_k for k ≥ 1 (comparable to the EP error
        currents)."""
        loss, rerun = estimators.ChainID(steps).gradients(self, states, self.target(label), input_grads)
        if input_grads:
            return loss, [xi.grad * xi.shape[0] for xi, _, _ in rerun[1:]]
        return loss

    # -- transients (GDD) -----------------------------------------------------------------------------------------
    def ep_transients(self, states, label, beta, steps):
        """Per block (index k) and step t = 0 … T2: {parameter name: the EP estimate from the ±β states after t
        nudged steps}; each block is nudged by the error current of the next one's final step."""
        target = self.target(label)
        out = [None] * len(self.blocks)
        for k in reversed(range(len(self.blocks))):
            block = self.blocks[k]
            x, d, s = states[k]
            s_p, s_m, trace = s, s, []
            names = [n for n, _ in block.named_parameters()]
            for t in range(steps + 1):
                grads = block.ep_param_grads(x, s_m, s_p, -beta, beta, target, x_grad=(k > 0 and t == steps))
                gx = grads.pop() * x.shape[0] if (k > 0 and t == steps) else None
                trace.append(dict(zip(names, grads)))
                if t < steps:
                    with torch.no_grad():
                        s_p = block.forward(x, s_p, target, beta, steps=1, drive=d)
                        s_m = block.forward(x, s_m, target, -beta, steps=1, drive=d)
            out[k] = trace
            target = gx
        return out

    @staticmethod
    def _step_vjp(block, x, s, s_next, lam, params):
        """Σ over the layer groups of one asynchronous iteration s → s_next of λ_uᵀ ∂u/∂θ, u the group's new layers
        recomputed from their (detached) inputs: the layers of earlier groups already new, the others old. (One VJP
        of the whole iteration would count twice the paths from a layer updated first to one updated after it:
        λ of the first already contains them.)"""
        total, done = [torch.zeros_like(p) for p in params], set()
        for layers in block.schedule(len(s), False):
            inp = [(s_next[l] if l in done else s[l]).detach() for l in range(len(s))]
            with torch.enable_grad():
                u = block.dphi_ds_layers(inp, block.ff(x.detach()), None, 0.0, layers)
                new = [block.update_layer(l, inp, ul, None, 0.0) for l, ul in zip(layers, u)]
                g = nf._grads(new, params, grad_outputs=[lam[l] for l in layers])
            total = [a + b for a, b in zip(total, g)]
            done |= set(layers)
        return total

    def id_transients(self, states, label, steps):
        """Per block k and t = 0 … T2: {parameter name: ∂L/∂θ_k through the last t steps of block k} in one re-run
        of the chain (T2 steps per block from the free states, graph kept), one backward for the adjoints
        λ_j = ∂L/∂s^k_j, then per step the vector-Jacobian product λ_{j+1}ᵀ ∂step(s_j, F_k(x_k); θ)/∂θ (the drive
        recomputed, so that Conv_1 counts at every step; see _step_vjp). From a converged free state this equals
        re-running block k for t steps only (the paper's definition, t + 1 re-runs of the downstream chain), at a
        fraction of the cost; at t = T2 it is the ID gradient."""
        target = self.target(label)
        with torch.enable_grad():
            trajs = self.rerun(states, steps)
            loss = self.blocks[-1].cost(trajs[-1][2][-1], target).mean()
            flat = [si for _, _, tr in trajs for st in tr[1:] for si in st]
            lam = nf._grads(loss, flat, retain_graph=True)
        out, i = [], 0
        for block, (x, _, traj) in zip(self.blocks, trajs):
            named = list(block.named_parameters())
            params = [p for _, p in named]
            n = len(traj[0])
            lam_k = [lam[i + j * n: i + (j + 1) * n] for j in range(steps)]
            i += steps * n
            per_step = [self._step_vjp(block, x, traj[j], traj[j + 1], lam_k[j], params) for j in range(steps)]
            direct = [torch.zeros_like(p) for p in params]
            if block.readout is not None:                                # θ inside the cost: the readout
                with torch.enable_grad():
                    direct = nf._grads(block.cost([si.detach() for si in traj[-1]], target).mean(), params)
            trace = []
            for t in range(steps + 1):
                g = [dr + sum((ps[q] for ps in per_step[steps - t:]), torch.zeros_like(dr))
                     for q, dr in enumerate(direct)]
                trace.append({nm: gi for (nm, _), gi in zip(named, g)})
            out.append(trace)
        return out


class FeedforwardChain(Feedforward):
    """The backprop baseline (algorithm=bp): a HopfieldChain's feedforward twin (HopfieldChain.feedforward: each
    block's fixed point replaced by its feedforward pass, same weights, BN and pools) trained end to end by backprop
    through the suite's loop (trainer.train with estimators.Backprop: forward, computeGradients,
    L = (1/B) Σ_b CE(z_b, y_b), then updateWeights). Its parameters are the chain's (`chain`, the wrapped module)."""

    def __init__(self, chain):
        super().__init__(chain, F.cross_entropy)

    @property
    def chain(self):
        return self.module

    def forward(self, x):
        return self.chain.feedforward(x)


# ---------------------------------------------------------------------------------------------------------------

def blocks_from_config(blocks, in_size, n_classes, slope, T1, T2, beta, V, asynchronous=True, use_autograd=False):
    """Blocks from the model config's block list: ConvPoolBlocks (dicts with channels, pools, fc, norm, clamp_last)
    or BasicBlocks (kind 'basic': channels, stride, stem, clamp_last); the last block gets the readout."""
    out, n = [], in_size
    for i, b in enumerate(blocks):
        last = i == len(blocks) - 1
        common = dict(clamp_last=b.get('clamp_last', False), slope=slope, T1=T1, T2=T2, beta=beta,
                      n_classes=n_classes if last else None, asynchronous=asynchronous, V=V, use_autograd=use_autograd)
        if b.get('kind') == 'basic':
            blk = BasicBlock(n, b['channels'], b.get('stride', 1), b.get('stem', False), **common)
        else:
            blk = ConvPoolBlock(n, b['channels'], b['pools'], b.get('fc', ()), b.get('norm', True), **common)
            if blk.fc_sizes and not last:
                raise ValueError(f'block {i + 1}: fc layers end a chain (only the last block may have them)')
        n = blk.out_size
        out.append(blk)
    return out


RESNET_STAGES = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


def resnet_blocks(depth, widths=(64, 128, 256, 512), stem=64, clamp_last=False):
    """The block list of ResNet18/34: the stem in front of the first BasicBlock, then stages of
    RESNET_STAGES[depth] BasicBlocks of widths[i] channels, the first of every stage after the first with stride 2."""
    out, c = [], stem
    for i, (n, w) in enumerate(zip(RESNET_STAGES[depth], widths)):
        for j in range(n):
            first = not out
            out.append(dict(kind='basic', channels=[3, c, w] if first else [c, w], stride=2 if (j == 0 and i > 0)
                            else 1, stem=first, clamp_last=clamp_last, fc=[]))
            c = w
    return out

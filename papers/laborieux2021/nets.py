"""Networks of Laborieux et al. 2021, "Scaling EP to deep ConvNets by drastically reducing its gradient estimator
bias": P_MLP, P_CNN (max / avg / identity pooling, any stride and padding, optional softmax readout) and the
asymmetric ("vector field") VF_MLP, VF_CNN. Layers are listed from the input to the output, as in that paper.

Every network is the suite's EPNet (netClasses.py): one closed-form step s ← σ(∂Φ/∂s) and the per-sample primitive

    Φ(x, s; β) = Σ_k ⟨ P_k(W_k ⋆ s_k) + b_k , s_{k+1} ⟩ − β ℓ(s, y),      s_0 = x,

where ℓ = ½||s_out − y||² (mse), CE(s_out, y) (cel), or CE(W_out s_last + b_out, y) with the softmax readout, whose
weights are outside the dynamical system. The last neuron layer is the identity (no σ) for cel without readout.
(s_{t+1} = ∂Φ/∂s with Φ = ½||s||² − E: the s² terms cancel, see the paper's answer to its issue #1.)
"""
import math

import torch
import torch.nn as nn

import netFunctions as nf
from netClasses import ConvPool, CrossEntropy, EPNet, Memo, SquaredError, conv_pool_sizes

# the σ of the paper's code (ρ and ρ' in netClasses.ACTIVATIONS)
ACTIVATION_NAMES = ('mysig', 'sigmoid', 'tanh', 'hard_sigmoid', 'my_hard_sig', 'ctrd_hard_sig')


class LabNet(EPNet):
    """Shared parts: the cost ℓ (squared error or cross-entropy, on the last layer or on a softmax readout outside
    the dynamics), the readout and the prediction. Layers are input-first: the cost reads the last one."""
    softmax = False
    out_index = -1
    input_first = True
    delta_form = True           # the symmetric estimate can run with Δ = s^{±β} − s* carried (ep/delta_form.py)

    def __init__(self, T1, T2, beta, act, loss='mse'):
        super().__init__(T1, T2, beta, act, SquaredError() if loss == 'mse' else CrossEntropy())
        self.loss = loss

    @property
    def readout(self):
        """The last Linear when it is a softmax readout outside the dynamics, else None."""
        return self.synapses[-1] if self.softmax else None

    def logits(self, s):
        if self.readout is not None:
            return self.readout(s[-1].flatten(1))
        return s[-1]

    @property
    def output_size(self):
        return self.readout.out_features if self.readout is not None else self.state_shapes()[-1][0]

    def nudge(self, s, y, beta):
        """−β ∂ℓ/∂s_last (the nudging term of ∂Φ/∂s on the last neuron layer), through the readout when there is
        one: −β (softmax(W s + b) − y) W."""
        force = -beta * self.criterion.grad(self.logits(s), y)
        return force if self.readout is None else (force @ self.readout.weight).view_as(s[-1])

    def update_layer(self, l, s, h, y, beta):
        last_identity = self.loss != 'mse' and self.readout is None
        return h if (last_identity and l == len(s) - 1) else self.act.rho(h)

    def lr_groups(self, lrs, wds=None):
        """One optimiser group per synapse layer (learning rate, weight decay)."""
        return [{'params': list(m.parameters()), 'lr': lr, 'weight_decay': (wds[k] if wds else 0.0)}
                for k, (m, lr) in enumerate(zip(self.synapses, lrs))]


# ---------------------------------------------------------------------------------------------------------------

class P_MLP(LabNet):
    """synapses[k] = Linear(archi[k] → archi[k+1]); neurons s_1 … s_L of sizes archi[1:].
    ∂Φ/∂s_k = W_{k−1} s_{k−1} + b_{k−1} + W_kᵀ s_{k+1}  (+ −β ∂ℓ/∂s_L on the output)."""

    def __init__(self, archi, T1, T2, beta, act, loss='mse'):
        super().__init__(T1, T2, beta, act, loss)
        self.archi = list(archi)
        self.synapses = nn.ModuleList(nn.Linear(a, b) for a, b in zip(archi[:-1], archi[1:]))

    def feedback_weight(self, k):
        """Weight carrying layer k+1 back to layer k: the forward one, transposed (symmetric net)."""
        return self.synapses[k + 1].weight

    def state_shapes(self):
        return [(n,) for n in self.archi[1:]]

    def drive(self, x):
        return self.synapses[0](x.flatten(1))

    def dphi_ds_layers(self, s, drive, y, beta, layers):
        W, L = self.synapses, len(s)
        h = []
        for k in layers:
            hk = drive if k == 0 else W[k](s[k - 1])
            if k < L - 1:
                hk = torch.addmm(hk, s[k + 1], self.feedback_weight(k))
            elif y is not None:
                hk = hk + self.nudge(s, y, beta)
            h.append(hk)
        return h

    def phi(self, x, s, y=None, beta=0.0):
        prev = [x.flatten(1)] + list(s[:-1])
        return sum((W(p) * sk).sum(1) for W, p, sk in zip(self.synapses, prev, s)) + self.phi_nudge(s, y, beta)

    def phase_step(self, drive, y=None, beta=0.0):
        """Fused synchronous step without graph, with ρ(h) = f(a h + c) (Activation.affine):

            s_k ← f( [a b_k + c] + a W_k s_{k−1} + a W_{k+1}ᵀ s_{k+1} (+ a·nudge on the last layer) )

        (a W_0 x + a b_0 + c for k = 0, from the drive): what is constant during the phase (the bracket, the
        transposes) is prepared once, each product is one addmm, f is applied in place. The step of `stepper` where a
        graph is wanted, under the asynchronous schedule, under autocast (--precision bf16) or for an activation without
        that form."""
        L = len(self.archi) - 1
        if torch.is_grad_enabled() or self.act.affine is None or len(self.schedule(L, y is not None)) > 1 \
                or torch.is_autocast_enabled(drive.device.type):      # (its in-place sums would mix two dtypes)
            return super().phase_step(drive, y, beta)
        layers = [self._fused_layer(k, drive, y, beta) for k in range(L)]
        return lambda s: [layer(s) for layer in layers]

    def _fused_layer(self, k, drive, y, beta):
        """s ↦ the next s_k = f(base + a Σ_j s_j M_j (+ the nudge)), with base and the M_j of this phase; the squared
        error's nudge −β(s_k − y) splits into β y, added to the base, and −β s_k, one addcmul per step."""
        L = len(self.archi) - 1
        last = k == L - 1
        a, c, f_ = (1.0, 0.0, None) if last and self.loss != 'mse' and self.readout is None else self.act.affine
        base = (drive if k == 0 else self.synapses[k].bias) * a + c
        terms = ([(k - 1, self.synapses[k].weight.t())] if k > 0 else []) + \
                ([(k + 1, self.feedback_weight(k))] if not last else [])        # s_j @ M_j
        nudged, pull = last and y is not None, None
        if nudged and self.readout is None and isinstance(self.criterion, SquaredError):
            base, pull = base + (a * beta) * y, torch.as_tensor(-a * beta, dtype=drive.dtype)

        first, rest = self._first_product(k, base, terms, a), terms[1:]
        f_ = f_ or (lambda h: h)

        def layer(s):
            h = first(s)
            for j, m in rest:
                h.addmm_(s[j], m, alpha=a)
            if pull is not None:
                h.addcmul_(s[k], pull)
            elif nudged:
                h.add_(self.nudge(s, y, beta), alpha=a)
            return f_(h)
        return layer

    def _first_product(self, k, base, terms, a):
        """s ↦ base + a s_j M_j for the first product of layer k (base alone if it has none). A layer of fewer than 16
        units (the output layer) takes W_k s_{k−1} as (W_k s_{k−1}ᵀ)ᵀ, its state then a transposed view: the CPU's
        BLAS computes that product about 1.4× faster at batch 50 with 10 units (and slower for wider layers)."""
        if not terms:
            return lambda s: base.expand_as(s[k]).clone()
        j, m = terms[0]
        if k > 0 and m.shape[1] < 16:
            w, base_t = m.t(), (base.t() if base.dim() == 2 else base[:, None])
            return lambda s: torch.addmm(base_t, w, s[j].t(), alpha=a).t()
        return lambda s: torch.addmm(base, s[j], m, alpha=a)

    def ep_param_grads(self, x, s_a, s_b, beta_a, beta_b, y=None, s_free=None, phi_betas=None):
        """Closed form of the EP rule for Φ = Σ_k ⟨W_k p_k + b_k, s_k⟩ − βℓ (ℓ free of θ), p_0 = x, p_k = s_{k−1}:
        ĝ_{W_k} = −(1/((β_b − β_a) B)) Σ_b [s^b_k p^{bᵀ}_k − s^a_k p^{aᵀ}_k], ĝ_{b_k} the same without p. Equals the
        autograd of Φ (netFunctions.phi_param_grads, the oracle and the rule with a readout) without a graph."""
        if self.readout is not None:
            return super().ep_param_grads(x, s_a, s_b, beta_a, beta_b, y, s_free, phi_betas)
        c = -1.0 / ((beta_b - beta_a) * x.shape[0])
        x = x.flatten(1)
        grads = []
        for k, (sa, sb) in enumerate(zip(s_a, s_b)):
            d = (sb - sa).mul_(c)
            if k == 0:
                gw = d.t() @ x                                  # (the same input in both phases)
            else:
                gw = torch.addmm(sb.t() @ s_b[k - 1], sa.t(), s_a[k - 1], alpha=-1).mul_(c)
            grads += [gw, d.sum(0)]
        return grads


class P_CNN(LabNet):
    """Conv layers (ConvPool) then fully connected ones; with `softmax` the last Linear is a readout outside the
    dynamics and the last neuron layer is nudged through it."""

    def __init__(self, in_size, in_channels, channels, kernels, strides, paddings, pools, fc, T1, T2, beta, act,
                 loss='mse', softmax=False):
        super().__init__(T1, T2, beta, act, loss)
        ch = [in_channels] + list(channels)
        self.sizes = conv_pool_sizes(in_size, kernels, strides, paddings, pools)[1:]
        if min(self.sizes) < 1:
            raise ValueError(f'the feature maps vanish ({self.sizes}) for input size {in_size}')
        self.ch = ch
        self.ncv = len(channels)
        convs = [ConvPool(ch[k], ch[k + 1], kernels[k], strides[k], paddings[k], pools[k]) for k in range(self.ncv)]
        fc_in = [ch[-1] * self.sizes[-1] ** 2] + list(fc)
        fcs = [nn.Linear(a, b) for a, b in zip(fc_in[:-1], fc_in[1:])]
        self.fc_sizes = fc_in[1:]
        self.synapses = nn.ModuleList(convs + fcs)
        self.softmax = softmax

    def feedback(self, k, s, fwd):
        """What layer k+1 sends back to layer k: the adjoint of the forward synapse k+1 at the current state
        (fwd[k] holds its pooling context)."""
        if k + 1 < self.ncv:
            return self.synapses[k + 1].adjoint(s[k + 1], fwd[k][1])
        return (s[k + 1] @ self.synapses[k + 1].weight).view_as(s[k])

    def state_shapes(self):
        conv = [(c, n, n) for c, n in zip(self.ch[1:], self.sizes)]
        fc = [(n,) for n in self.fc_sizes]
        return conv + (fc[:-1] if self.readout is not None else fc)

    def drive(self, x):
        return self.synapses[0](x)[0]

    def dphi_ds_layers(self, s, drive, y, beta, layers):
        syn, ncv, L = self.synapses, self.ncv, len(s)
        # each conv synapse fed by a state is evaluated once: forward drive and pooling context for the feedback;
        # fwd[k] = syn[k + 1](s[k])
        fwd = Memo(lambda k: self.carry(syn[k + 1], s[k]))
        h = []
        for k in layers:
            if k == 0:
                hk = drive
            elif k < ncv:
                hk = fwd[k - 1][0]
            else:
                hk = syn[k](s[k - 1].flatten(1))
            if k + 1 < L:                                      # feedback from the layer above
                hk = hk + self.feedback(k, s, fwd)
            elif y is not None:
                hk = hk + self.nudge(s, y, beta)
            h.append(hk)
        return h

    def phase_step(self, drive, y=None, beta=0.0):
        """`stepper` on channels-last maps where no graph is wanted and `channels_last_wins`: on the CPU, max pooling
        and the convolutions then run faster (the same values, to rounding)."""
        if torch.is_grad_enabled() or not self.channels_last_wins(drive.shape[0]):
            return super().phase_step(drive, y, beta)
        drive = _channels_last(drive)
        return lambda s: self.stepper([_channels_last(si) for si in s], drive, y, beta)

    def channels_last_wins(self, batch):
        """Whether a step convolves states (two conv layers or more) and every such conv synapse has fewer weights
        than the maps it reads: a convolution of channels-last maps reorders its (parameter, channels-first) weight at
        every call, which costs more than the layout saves when the weight is the larger (the CIFAR-10 ConvNet at
        batch 4: 1.4× slower, the MNIST CNN at batch 100: 1.1× faster)."""
        shapes = self.state_shapes()
        return self.ncv > 1 and all(self.synapses[k + 1].weight.numel() < batch * math.prod(shapes[k])
                                    for k in range(self.ncv - 1))

    def phi(self, x, s, y=None, beta=0.0):
        syn, ncv = self.synapses, self.ncv
        prev = [x] + list(s[:-1])
        total = 0.0
        for k, (p, sk) in enumerate(zip(prev, s)):
            z = syn[k](p)[0] if k < ncv else syn[k](p.flatten(1))
            total = total + (z * sk).flatten(1).sum(1)
        return total + self.phi_nudge(s, y, beta)


def _channels_last(t):
    """A 4-d map in the channels-last memory layout (the same tensor if it is one already); others as they are."""
    return t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t


# ---------------------------------------------------------------------------------------------------------------
# Asymmetric ("vector field") networks

class VFMixin:
    """Feedback through separate weights B_k (no bias, the shape of the forward synapse k+1): the dynamics
    s_k ← σ(W_k ⋆ s_{k−1} + b_k + B_kᵀ ⋆ s_{k+1}) is a vector field, not the gradient of one Φ. Each layer has its
    own primitive Φ_k; `phi` sums them with the other layers held fixed, which gives the field exactly (oracle).

    EP update (same_update False): the mixed rule, post-synaptic states nudged and pre-synaptic ones free,
      ĝ_{W_k} = −(1/(β_b−β_a)) mean_b ∂/∂W_k ⟨W_k ⋆ s*_{k−1}, s^b_k − s^a_k⟩,
      ĝ_{B_k} = −(1/(β_b−β_a)) mean_b ∂/∂B_k [⟨P(B_k ⋆ s^b_k), s*_{k+1}⟩ − ⟨P(B_k ⋆ s^a_k), s*_{k+1}⟩];
    same_update True: the ordinary rule on Φ, then B_k and W_{k+1} both get the average of their two updates.
    """
    same_update = False
    delta_form = 'a vector field has no single Φ to expand'      # (ep/delta_form.py)

    def _pairs(self):
        return [(self.B_syn[k], self.synapses[k + 1]) for k in range(len(self.B_syn))]

    def lr_groups(self, lrs, wds=None):
        """B_k learns with the learning rate and weight decay of the forward synapse k+1 it mirrors."""
        groups = LabNet.lr_groups(self, lrs, wds)
        for k, b in enumerate(self.B_syn):
            groups.append({'params': list(b.parameters()), 'lr': lrs[k + 1],
                           'weight_decay': (wds[k + 1] if wds else 0.0)})
        return groups

    def angles(self):
        """Angle (degrees) between each B_k and the forward synapse k+1 it mirrors (cosine in float64: near 1, acos
        turns a float32 rounding of the cosine into some 0.02°)."""
        out = []
        for b, w in self._pairs():
            bw, ww = b.weight.flatten().double(), w.weight.flatten().double()
            cos = (bw @ ww) / (bw.norm() * ww.norm()).clamp_min(1e-30)
            out.append(math.degrees(math.acos(max(-1.0, min(1.0, cos.item())))))
        return out

    def phi_terms(self, x, post, pre):
        """Σ_k ⟨W_k ⋆ pre_{k−1}, post_k⟩ + Σ_k ⟨P(B_k ⋆ post_k), pre_{k+1}⟩ per sample."""
        prev = [x] + list(pre[:-1])
        total = 0.0
        for k, (p, sk) in enumerate(zip(prev, post)):
            total = total + (self.forward_map(k, p) * sk).flatten(1).sum(1)
        for k in range(len(post) - 1):
            total = total + (self.backward_map(k, post[k]) * pre[k + 1]).flatten(1).sum(1)
        return total

    def phi(self, x, s, y=None, beta=0.0):
        fixed = [si.detach() for si in s]
        return self.phi_terms(x, s, fixed) + self.phi_nudge(s, y, beta)

    def ep_param_grads(self, x, s_a, s_b, beta_a, beta_b, y=None, s_free=None, phi_betas=None):
        if self.same_update:
            grads = nf.phi_param_grads(self, x, s_a, s_b, beta_a, beta_b, y)
            named = dict(zip([n for n, _ in self.named_parameters()], grads))
            for k, (b, w) in enumerate(self._pairs()):
                kb, kw = f'B_syn.{k}.weight', f'synapses.{k + 1}.weight'
                avg = 0.5 * (named[kb] + named[kw])
                named[kb], named[kw] = avg, avg.clone()
            return list(named.values())
        params = list(self.parameters())
        free = [si.detach() for si in (s_free if s_free is not None else s_a)]
        post = [torch.cat([a.detach(), b.detach()]) for a, b in zip(s_a, s_b)]
        c, beta = nf.pair_weights(x, beta_a, beta_b)
        xx = torch.cat([x, x])
        with torch.enable_grad():
            phi = self.phi_terms(xx, post, [torch.cat([f, f]) for f in free])
            yy = None if y is None else torch.cat([y, y])
            obj = (c * (phi + self.phi_nudge(post, yy, beta))).sum()
            grads = torch.autograd.grad(obj, params, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


class VF_MLP(VFMixin, P_MLP):
    def __init__(self, archi, T1, T2, beta, act, loss='mse', same_update=False):
        super().__init__(archi, T1, T2, beta, act, loss)
        self.same_update = same_update
        self.B_syn = nn.ModuleList(nn.Linear(archi[k + 1], archi[k + 2], bias=False) for k in range(len(archi) - 2))

    def feedback_weight(self, k):
        return self.B_syn[k].weight

    def forward_map(self, k, p):
        return self.synapses[k](p.flatten(1))

    def backward_map(self, k, post):
        return self.B_syn[k](post)



class VF_CNN(VFMixin, P_CNN):
    def __init__(self, *a, same_update=False, **kw):
        super().__init__(*a, **kw)
        self.same_update = same_update
        fb = []
        for k in range(1, len(self.synapses) - (1 if self.softmax else 0)):
            m = self.synapses[k]
            if isinstance(m, ConvPool):
                fb.append(ConvPool(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.pool.kind,
                                   m.pool.size, bias=False))
            else:
                fb.append(nn.Linear(m.in_features, m.out_features, bias=False))
        self.B_syn = nn.ModuleList(fb)

    def feedback(self, k, s, fwd):
        b = self.B_syn[k]
        if isinstance(b, ConvPool):
            return b.adjoint(s[k + 1], b(s[k])[1])
        return (s[k + 1] @ b.weight).view_as(s[k])

    def forward_map(self, k, p):
        return self.synapses[k](p)[0] if k < self.ncv else self.synapses[k](p.flatten(1))

    def backward_map(self, k, post):
        b = self.B_syn[k]
        return b(post)[0] if isinstance(b, ConvPool) else b(post.flatten(1))


"""Binary EP, fully connected (Laydevant, Ernoult, Querlioz, Grollier, CVPRW 2021): binary weights ±α trained by a
BOP-style flip rule on the low-pass-filtered EP gradient, with full-precision (bin_W) or binary (bin_W_N) neurons.

Layers are listed from the output (index 0) to the input, as in the paper's code. The dynamics and the EP gradient
come from the suite's engine and networks (netClasses.EPdisc); what is genuinely binary lives here and in
Network_conv.py: ±α weights, the flip rule (`BinaryOptimizer`), binary neurons.

Flip rule (per weight layer l, ΔW_l = −ĝ_l the EP (or BPTT) descent direction):
    m_l ← γ_l ΔW_l (first update), then m_l ← (1 − γ_l) m_l + γ_l ΔW_l
    W_ij ← −W_ij  where  −sign(W_ij) m_ij > τ_l       (m opposes the weight and |m| exceeds the threshold)
Biases: b ← b + lrBias ΔEP_b (SGD). Scaling factors (learnAlpha): α_l ← α_l + lrAlpha_l Δα_l, W_l ← α_l sign(W_l),
with Δα_l = ½ ⟨W_l, ΔW_l⟩ for fc layers (the code's ½ c Σ_n s_lᵀ W_l s_{l+1} difference) and ⟨W_k, ΔW_k⟩ per output
channel k for conv layers, W_l taken before the step's flips (as the original). The conv nets flip on ≥ τ, the fc
nets on > τ (as the original).
"""
import math

import torch

from netClasses import EPdisc


# the neurons of the paper (ρ and ρ' in netClasses.ACTIVATIONS; heaviside with the boxcar pseudo-derivative)
ACTIVATION_NAMES = ('hardsigm', 'heaviside')


def binarize_(weight, per_channel=False):
    """W ← α sign(W) in place, α = mean |W| rounded to 4 decimals (per layer, or per output channel);
    sign(0) is taken as +1 so that every weight is exactly ±α. Returns α (scalar or (C, 1, …) tensor)."""
    with torch.no_grad():
        if per_channel:
            alpha = weight.abs().flatten(1).mean(1).view(-1, *[1] * (weight.dim() - 1))
        else:
            alpha = weight.abs().mean()
        alpha = torch.round(alpha * 1e4) / 1e4
        weight.copy_(alpha * torch.where(weight >= 0, 1.0, -1.0).to(weight))
    return alpha


class BinaryLayer(tuple):
    """One weight layer for the optimiser: the 5-tuple (weight, bias, alpha, per_channel, alpha_factor), plus the
    attribute `inclusive`: flip when −sign(W) m ≥ τ (the original conv nets) rather than > τ (its fc nets)."""

    def __new__(cls, weight, bias, alpha, per_channel, alpha_factor, inclusive=False):
        layer = super().__new__(cls, (weight, bias, alpha, per_channel, alpha_factor))
        layer.inclusive = inclusive
        return layer


class BinaryOptimizer:
    """The flip rule above, as an optimiser: `step()` reads the gradient estimates in .grad (EP or BPTT, gradient
    sign) of the binary weights and of the biases. Counts the flips of every weight layer since `reset_flips()`.

    Order within a step, as the original's updateWeight: Δα is computed from the weights *before* this step's
    flips (Δα_l = factor ⟨W_l, ΔW_l⟩, per output channel for conv layers), then the weights flip, the biases move,
    and α_l ← α_l + lrAlpha_l Δα_l rescales the flipped weights, W_l ← α_l sign(W_l)."""

    def __init__(self, layers, lr_bias, gammas, thresholds, lr_alpha=None, learn_alpha=False):
        """layers: list of (weight, bias, alpha, per_channel, alpha_factor) (or BinaryLayer); one per weight layer."""
        self.layers = layers
        self.inclusive = [getattr(layer, 'inclusive', False) for layer in layers]
        self.lr_bias, self.gammas, self.thresholds = list(lr_bias), list(gammas), list(thresholds)
        self.lr_alpha = list(lr_alpha or [0.0] * len(layers))
        self.lr_alpha_initial = list(self.lr_alpha)          # --lrAlpha as given (before any decay)
        self.learn_alpha = learn_alpha
        self.momentum = [None] * len(layers)
        self._flips = [0] * len(layers)

    def state_dict(self):
        """What a resumed run needs: the flip rule's momenta and the α learning rates (as decayed so far)."""
        return {'momentum': self.momentum, 'lr_alpha': self.lr_alpha, 'lr_alpha_initial': self.lr_alpha_initial}

    def load_state_dict(self, state):
        """The saved momenta (on the weights' device); the saved α learning rates when --lrAlpha is the saved run's
        (then as decayed so far), else this command's."""
        self.momentum = [None if m is None else m.to(layer[0].device) for m, layer in zip(state['momentum'],
                                                                                          self.layers)]
        if state.get('lr_alpha_initial') == self.lr_alpha_initial:
            self.lr_alpha = list(state['lr_alpha'])

    def zero_grad(self, set_to_none=True):
        for w, b, *_ in self.layers:
            w.grad = None
            if b is not None:
                b.grad = None

    def reset_flips(self):
        self._flips = [0] * len(self.layers)

    @property
    def flips(self):
        """Flips per layer since the last reset (kept on the device during the epoch: read once at its end)."""
        return [int(f) for f in self._flips]

    def alphas(self):
        return [a.mean().item() for (_, _, a, _, _) in self.layers]

    @torch.no_grad()
    def step(self):
        for k, (w, b, alpha, per_channel, factor) in enumerate(self.layers):
            if w.grad is None:
                continue
            learn_alpha = self.learn_alpha and self.lr_alpha[k] != 0
            if learn_alpha:                                  # from the weights before the flips (ΔW = −grad)
                w_dW = (w * w.grad).neg_()
                d_alpha = w_dW.flatten(1).sum(1).view_as(alpha) if per_channel else w_dW.sum()
            g = self.gammas[k]
            m = self.momentum[k]
            if m is None:                                    # ΔW = −grad
                m = self.momentum[k] = w.grad.mul(-g)
            else:
                m.mul_(1 - g).add_(w.grad, alpha=-g)
            opposed = torch.sign(w).mul_(m)
            flip = opposed <= -self.thresholds[k] if self.inclusive[k] else opposed < -self.thresholds[k]
            self._flips[k] = self._flips[k] + flip.sum()
            w.mul_(flip.to(w.dtype).mul_(-2).add_(1))
            if b is not None and b.grad is not None:
                b.add_(b.grad, alpha=-self.lr_bias[k])
            if learn_alpha:
                alpha.copy_((alpha + self.lr_alpha[k] * factor * d_alpha).clamp_min(1e-8))
                w.copy_(alpha * torch.sign(w))


def log_flip_fraction(flips, n_weights):
    """The CSV's Nb_Change_Weights: ln(flips in the epoch / number of weights + 1e-9)."""
    return math.log(flips / n_weights + 1e-9)


# ---------------------------------------------------------------------------------------------------------------

class BinaryOutput:
    """Output layer of the binary nets (mixin over EPdisc or convEP): expand_output neurons per class, in contiguous
    groups. The target y repeats each one-hot entry expand_output times and the cost ℓ = ½||s_0 − y||² is on every
    output neuron."""
    expand_output = 1

    def _groups(self, s):
        return s[0].view(s[0].shape[0], -1, self.expand_output)

    def output(self, s):
        """Class scores: the mean of each class's group of expand_output neurons ("ave")."""
        return self._groups(s).mean(2)

    def single(self, s):
        """The first neuron of each class group ("single")."""
        return self._groups(s)[:, :, 0]

    def cost(self, s, y):
        # on s_0 itself, not on the group means of `output` (the nudge β (y − s_0) acts on every output neuron)
        return 0.5 * ((s[0] - y) ** 2).sum(1)

    def target(self, label):
        """One-hot over the classes, each entry repeated expand_output times (contiguous groups per class)."""
        n = self.state_shapes()[0][0] // self.expand_output
        y = torch.nn.functional.one_hot(label, n).to(next(self.parameters()).dtype)
        return y.repeat_interleave(self.expand_output, 1)


class Network_fc_bin_W(BinaryOutput, EPdisc):
    """EPdisc with binary weights ±α_l (per layer) and full-precision hardsigm neurons; states start at 0 and are
    clipped to [0, 1] after every step (the nudge β(y − s_0) is added after ρ). layersList is given input first and
    reversed here."""

    def __init__(self, layers_list, T, Kmax, beta, activation='hardsigm', expand_output=1):
        super().__init__(list(layers_list)[::-1], T, Kmax, beta, activation)
        self.expand_output = expand_output
        self.register_buffer('alpha', torch.stack([binarize_(w.weight) for w in self.w]))

    def update(self, s, h, y, beta):
        return [si.clamp(0, 1) for si in super().update(s, h, y, beta)]

    def binary_layers(self):
        return [BinaryLayer(self.w[i].weight, self.w[i].bias, self.alpha[i], False, 0.5) for i in range(self.ns)]


class BinaryNeurons:
    """Binary neurons (mixin over a prototypical net). The state s ∈ [0, 1] integrates pre-activations with leak γ_n;
    each layer emits b = H(s − θ) (θ = rho_threshold); the input is not binarised:
        p_l = ρ'(s_l − θ) · field_l(b)  (+ β (y − s_0) on the output),   s_l ← clip((1 − γ_n) s_l + γ_n p_l, 0, 1)
    where field_l is ∂Φ/∂b_l of the underlying net. States start at 1. The EP update is the net's rule with the
    binary outputs b in place of s (`post`)."""

    def init_state(self, batch, device=None, dtype=None):
        return [torch.ones_like(si) for si in super().init_state(batch, device, dtype)]

    def post(self, s):
        return self.act.rho(s - self.theta)

    def dphi_ds(self, s, drive, y=None, beta=0.0):
        h = super().dphi_ds([self.post(si) for si in s], drive)
        # ρ'(s − θ) is 1 for every s in [0, 1] (the boxcar covers [θ − ½, θ + ½]): kept for fidelity
        return [self.act.rhop(si - self.theta) * hi for si, hi in zip(s, h)]

    def update(self, s, h, y, beta):
        if y is not None:
            h = [h[0] + self.nudge(s, y, beta)] + list(h[1:])
        g = self.gamma_neur
        return [((1 - g) * si + g * hi).clamp(0, 1) for si, hi in zip(s, h)]


class Network_fc_bin_W_N(BinaryNeurons, Network_fc_bin_W):
    """Binary weights and binary neurons, fully connected (see BinaryNeurons); EP only."""

    def __init__(self, layers_list, T, Kmax, beta, activation='heaviside', expand_output=1, gamma_neur=0.5,
                 rho_threshold=0.5):
        super().__init__(layers_list, T, Kmax, beta, activation, expand_output)
        self.gamma_neur, self.theta = gamma_neur, rho_threshold

    def phi(self, x, s, y=None, beta=0.0):
        raise NotImplementedError('binary neurons have no differentiable primitive: the oracle does not apply')

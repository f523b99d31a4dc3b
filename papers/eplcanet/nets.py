"""EPLCANet (J. Rego, 2024; a fork of Laborieux et al. 2021): an LCA sparse-coding layer in front of a recurrent
ConvNet trained by EP. Both generations of that code are one class here:

    x ──LCA──▶ a = argmin_a ½||x̂ − D ∗ a||² + λ||a||₁          (lca.py; x̂ = x standardised per sample)
    s_0 ← σ(P_0(a) + γ · feedback from s_1)                      (the sparse-copy layer, a neuron layer of the net)
    s_k ← σ(P_k(W_k ⋆ s_{k−1}) + b_k + feedback from s_{k+1})    (as P_CNN), softmax readout on the last layer

with the primitive  Φ = ⟨P_0(a), s_0⟩ + Σ_{k≥1} ⟨P_k(W_k ⋆ s_{k−1}) + b_k, s_k⟩ + … − β ℓ  (γ = 1).

- C1 (`--model EPLCACNN`): no feedback into the sparse layer (γ = 0); the original ran `lca_iters` LCA iterations
  per EP step, warm-started; the code at the end of its free phase is the code after T1 × lca_iters iterations
  (the activation before the last update, as lca-pytorch), which is what is computed here once per mini-batch
  (the original kept integrating the LCA during the nudged phase, so s_0 moved between the phases for a reason
  unrelated to the nudge: a bias of the EP estimate).
- C2 (`--model LCACNN`): feedback into the sparse layer (γ = --scale_feedback, 1 by default: then the dynamics is
  the gradient of Φ and EP is exact); lca_iters iterations once per mini-batch.

The LCA code a is constant during the phases, so it is the network's input: `front(x)` computes it, and the
engine treats it as x. When the dictionary learns from the classification signal (dict_loss class/combo) D
requires grad, a carries the graph of the unrolled LCA, and the engine backpropagates its EP estimate of ∂L/∂a
into D (BPTT backpropagates its own ∂L/∂a).
"""
from papers.eplcanet.lca import LCAConv2D
from netClasses import Pool, conv_pool_sizes
from papers.laborieux2021.nets import P_CNN


class Copy(Pool):
    """Synapse 0 of the sparse-copy layer: P_0(a), no parameters (its adjoint is never needed: nothing below)."""


class LCANet(P_CNN):
    """lca: dict of LCAConv2D arguments (out_neurons = features F, in_neurons, kernel_size, stride, lambda_, tau,
    eta, lca_iters, pad). channels = [c_0, c_1, …]: c_0 = c_1 = F (the LCA features and the sparse-copy layer), then
    the conv layers; kernels, strides, paddings, pools are indexed by synapse (entry 0 is the LCA's in C1 and is
    ignored here, except pools[0], the pooling P_0 of the code).

    With feedback_scale γ = 0 nothing flows back into the sparse layer: s_0 = σ(P_0(a)) is then a feed-forward
    layer, computed in `front` with the LCA, and the energy-based part starts at the first conv layer (with s_0 as its
    input, EP estimates ∂L/∂s_0 from the feedback it would receive, and backprop carries it through σ, P_0 and the
    LCA into D)."""
    delta_form = 'its Copy synapse, γ-scaled feedback and LCA front are not in the expansion'   # (ep/delta_form.py)

    def __init__(self, in_size, in_channels, lca, channels, kernels, strides, paddings, pools, fc, T1, T2, beta, act,
                 loss='cel', softmax=True, feedback_scale=1.0, dict_class=False):
        lca_layer = LCAConv2D(in_neurons=in_channels, **lca)
        code = lca_layer.code_size(in_size)
        if channels[0] != lca_layer.F or channels[1] != lca_layer.F:
            raise ValueError(f'the sparse-copy layer has {channels[1]} channels but the LCA has {lca_layer.F} '
                             f'features')
        in_front = float(feedback_scale) == 0.0
        if in_front:
            if len(channels) < 3:
                raise ValueError('without feedback into the sparse layer, a conv layer must follow it')
            size = conv_pool_sizes(code, [1], [1], [0], pools[0])[-1]         # P_0 alone: a 1×1 kernel
            super().__init__(size, lca_layer.F, channels[2:], kernels[1:], strides[1:], paddings[1:], pools[1:], fc,
                             T1, T2, beta, act, loss=loss, softmax=softmax)
        else:
            super().__init__(code, lca_layer.F, channels[1:], [1] + list(kernels[1:]), [1] + list(strides[1:]),
                             [0] + list(paddings[1:]), pools, fc, T1, T2, beta, act, loss=loss, softmax=softmax)
            self.synapses[0] = Copy(pools[0])
        self.copy = Copy(pools[0]) if in_front else None
        self.lca = lca_layer
        self.lca.weights.requires_grad_(dict_class)
        self.feedback_scale = float(feedback_scale)
        self.lca_stats = None

    def feedback(self, k, s, fwd):
        """γ scales only what reaches the sparse layer (neuron layer 0 when it is one, i.e. γ ≠ 0)."""
        fb = super().feedback(k, s, fwd)
        return fb if k > 0 or self.copy is not None or self.feedback_scale == 1.0 else self.feedback_scale * fb

    def front(self, x):
        """The network's input: the LCA code a of x, or σ(P_0(a)) when the sparse layer is feed-forward. Keeps
        (acts, recon error) of the last call for the built-in dictionary update and the metrics. The dictionary is
        renormalised first while training (the original renormalised it before every mini-batch: a classification
        step moves it off the unit sphere)."""
        if self.training:
            self.lca.normalize_weights()
        a, _, err, _ = self.lca(x)
        self.lca_stats = (a.detach(), err.detach())
        return a if self.copy is None else self.act.rho(self.copy(a)[0])

    def digital_parameters(self):
        """The LCA dictionary stays digital with --analog: it is renormalised every mini-batch, a write no device
        does."""
        return [self.lca.weights]

    def lr_groups(self, lrs, wds=None):
        """lrs[0] (and wds[0]) belong to the dictionary, which is in the optimiser only when it learns by class."""
        if self.copy is not None:
            groups = super().lr_groups(lrs[1:], wds[1:] if wds else None)
        else:
            groups = [g for g in super().lr_groups(lrs, wds)[1:]]       # group 0: the parameter-less copy
        if self.lca.weights.requires_grad:
            groups.insert(0, {'params': [self.lca.weights], 'lr': lrs[0],
                              'weight_decay': wds[0] if wds else 0.0})
        return groups

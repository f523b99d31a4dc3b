"""The parts every network of the suite is built from, and the networks of Ernoult et al., NeurIPS 2019.

Shared parts: the activation table (ρ, ρ'), the base `EPNet` (the design-card methods stepper / forward /
computeGradients / updateWeights), the costs ℓ (`SquaredError`, `CrossEntropy`, `ErrorCurrent` δ), and the conv-pool
synapse `ConvPool` with its adjoint and one size formula. papers/laborieux2021/nets.py, papers/eplcanet/nets.py, Network_fc.py,
Network_conv.py and papers/nest2024/nets.py build their papers' networks from them.

Every network is a dynamical system on a list of neuron layers s = [s_0, s_1, ...] (s_0 = output, as in the paper:
layers are indexed from the output towards the input) driven by a static input x. It is defined by a primitive
function Φ(x, s, θ) (per sample) and one step

    h_t     = ∂Φ/∂s (x, s_t, θ)                      (closed form in `dphi_ds`; autograd of `phi` in the oracle)
    s_{t+1} = update(s_t, h_t, y, β)                 (transfer function + nudging, class specific)

The closed form is the hot path; `stepper_autograd` differentiates `phi` and is kept as the oracle (tests) and as the
fallback for a network whose Φ has no closed-form gradient. The input drive, constant during a phase, is computed
once per phase by `drive(x)`.

β may be a float or a per-sample column tensor (N, 1): the engine stacks the +β and −β phases in one batch.
The EP synaptic update uses the same Φ: ĝ_θ = −(1/(β₂−β₁)) mean_b [∂Φ/∂θ(s^{β₂}) − ∂Φ/∂θ(s^{β₁})] (gradient sign,
consumed by a descent optimiser), see EPNet.ep_param_grads; the cost ℓ is a `Cost` object (squared error,
cross-entropy, or an error current δ given from outside).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from suite import distributed
import netFunctions as nf
from ep import estimators


# ---------------------------------------------------------------------------------------------------------------
# Activations ρ and their derivatives ρ', one table for every paper (each paper module lists its own names)

class Activation:
    """ρ and ρ' as a pair, so that closed-form dynamics never need autograd for ρ'.

    `rhop_r(s, r)` gives ρ'(s) reusing r = ρ(s) when that is cheaper (sigm, sigmoid, tanh).
    `affine` = (a, c, f_): ρ(x) = f(a x + c) with f applied in place by f_ (None: no such form), so that a fused step
    can fold a and c into its products."""

    def __init__(self, name, rho, rhop, rhop_r=None, affine=None):
        self.name, self.rho, self.rhop = name, rho, rhop
        self.rhop_r = rhop_r or (lambda s, r: rhop(s))
        self.affine = affine

    def __repr__(self):
        return self.name


def _sigm(x):
    return torch.sigmoid(4 * (x - 0.5))


def _sigm_p(x):
    r = _sigm(x)
    return 4 * r * (1 - r)


def _sigmoid_p(x):
    r = torch.sigmoid(x)
    return r * (1 - r)


def _tanh_p(x):
    return 1 - torch.tanh(x) ** 2


def _box(x, lo, hi):
    """1 on the closed interval [lo, hi], else 0: the derivative of clamp(x, lo, hi) with autograd's convention."""
    return ((x >= lo) & (x <= hi)).to(x.dtype)


def heaviside(x):
    """H(x) = 1 for x ≥ 0, else 0 (Laydevant 2021's binary neuron)."""
    return (x >= 0).to(x.dtype)


def _clamp_(lo, hi):
    return lambda t: t.clamp_(lo, hi)


# σ(4(x − ½)) = σ(4x − 2) to the bit: a power-of-two scale commutes with rounding
SIGM = Activation('sigm', _sigm, _sigm_p, lambda s, r: 4 * r * (1 - r),
                  (4.0, -2.0, torch.sigmoid_))                     # 1/(1 + e^{−4(x − ½)})
HARDSIGM = Activation('hardsigm', lambda x: x.clamp(0, 1), lambda x: _box(x, 0, 1), affine=(1.0, 0.0, _clamp_(0, 1)))

ACTIVATIONS = {
    'sigm': SIGM, 'mysig': SIGM,                                   # Ernoult's and Laborieux's names of one ρ
    'hardsigm': HARDSIGM, 'hard_sigmoid': HARDSIGM,
    'tanh': Activation('tanh', torch.tanh, _tanh_p, lambda s, r: 1 - r * r, (1.0, 0.0, torch.tanh_)),
    'sigmoid': Activation('sigmoid', torch.sigmoid, _sigmoid_p, lambda s, r: r * (1 - r),
                          (1.0, 0.0, torch.sigmoid_)),
    'my_hard_sig': Activation('my_hard_sig', lambda x: (0.5 * x).clamp(0, 1), lambda x: 0.5 * _box(x, 0, 2),
                              affine=(0.5, 0.0, _clamp_(0, 1))),
    'ctrd_hard_sig': Activation('ctrd_hard_sig', lambda x: x.clamp(-0.5, 0.5), lambda x: _box(x, -0.5, 0.5),
                                affine=(1.0, 0.0, _clamp_(-0.5, 0.5))),
    # ρ' of H is the boxcar pseudo-derivative 1 on [−½, ½] (Laydevant 2021), H having no useful derivative
    'heaviside': Activation('heaviside', heaviside, lambda x: _box(x, -0.5, 0.5)),
}
ACTIVATION_NAMES = ('sigm', 'hardsigm', 'tanh')                    # the Ernoult-2019 nets' names (A.3)


def get_activation(name):
    return ACTIVATIONS[name]


# ---------------------------------------------------------------------------------------------------------------
# The shared base

class EPNet(nn.Module):
    """Base of every network trained by the suite's EP engine (netFunctions.py) and its estimators (ep/estimators.py).

    Subclasses define `state_shapes`, `drive`, `dphi_ds_layers` (or `dphi_ds`), `phi`, `update_layer` (or `update`)
    and `lr_groups`. `phi(x, s, y, β)` is
    the per-sample primitive; it takes y and β so that a family whose nudging term depends on θ (a readout) can put
    −β ℓ inside Φ, while the Ernoult-2019 nets nudge in `update` (their cost does not depend on θ).
    `dt` is the time step ε of the dynamics: the EP neural update is (s^β_{t+1} − s^β_t)/(β ε).
    `criterion` is the cost ℓ (a `Cost`: squared error by default), read on `logits(s)`; `out_index` is the neuron
    layer the cost reads and the nudge acts on (0: Ernoult's output-first order; −1: Laborieux's input-first order).
    T, Kmax and β are the defaults of the original API (its compute_* functions, receipe, gdu_traces); training
    takes them from its estimator (ep/estimators.py).

    One training mini-batch goes through the design-card methods (estimators.EP):
        s* = net.free_phase(x);  [s^β, …] = net.forward(x, s*, y, (β, …));  net.computeGradients(…);
        net.updateWeights(optimizer)
    The relaxation settings (`set_relaxation`): the free phase's tolerance (--tol, checked every --tol-every steps,
    T the maximum) and the schedule of a step (--schedule: synchronous, or asynchronous, see `schedule`).
    """
    dt = 1.0
    out_index = 0
    input_first = False         # order of the state list: output layer first (Ernoult 2019), or input side first
    bptt_extra_steps = 0        # see bptt_window
    asynchronous = False        # see schedule
    tol, tol_every = None, 10   # see free_phase
    gpu = (False, False)        # (bf16 autocast, CUDA graphs) of the graph-free relaxations on a GPU: set_gpu

    def __init__(self, T, Kmax, beta, activation, criterion=None):
        super().__init__()
        self.T, self.Kmax, self.beta = T, Kmax, beta
        self.act = get_activation(activation) if isinstance(activation, str) else activation
        self.criterion = criterion or SquaredError()
        self.free_steps = {'train': [], 'test': []}         # free-phase steps run under a tolerance (pop_steps)

    def set_relaxation(self, tol=None, every=10, asynchronous=False):
        """The free phase's tolerance ε (--tol; None: always T steps) read every `every` steps (--tol-every), and
        the schedule (`schedule`): asynchronous True (--schedule async), 'free' (--schedule async-free: the free
        phase only) or False. Returns the net."""
        self.tol, self.tol_every, self.asynchronous = tol, every, asynchronous
        return self

    def set_gpu(self, bf16=False, graphs=False):
        """--precision bf16 (the steps' products in bfloat16 autocast) and --cuda-graphs (a fixed-step relaxation
        replayed as one captured CUDA graph) for the relaxations without a graph on a CUDA device
        (netFunctions.relax; suite.cli.gpu_options refuses them elsewhere). Returns the net."""
        self.gpu = (bool(bf16), bool(graphs))
        return self

    # -- state ----------------------------------------------------------------------------------------------------
    def init_state(self, batch, device=None, dtype=None):
        p = next(self.parameters())
        return [torch.zeros(batch, *shape, device=device or p.device, dtype=dtype or p.dtype)
                for shape in self.state_shapes()]

    def initHidden(self, batch, device=None):
        """Name of the original code: zero initial state of every layer."""
        return self.init_state(batch, device)

    def logits(self, s):
        """z = what the cost reads: the output neuron layer (a readout outside the dynamics overrides this)."""
        return s[self.out_index]

    def output(self, s):
        """Class scores of a state (the prediction is their argmax)."""
        return self.logits(s)

    @property
    def output_size(self):
        return self.state_shapes()[self.out_index][0]

    def target(self, label):
        """y for integer labels: one-hot over the output layer."""
        return F.one_hot(label, self.output_size).to(next(self.parameters()).dtype)

    # -- cost -----------------------------------------------------------------------------------------------------
    def cost(self, s, y):
        """Per-sample loss ℓ(z, y), z = logits(s) (the BPTT loss, the test loss and the nudging cost)."""
        return self.criterion(self.logits(s), y)

    def nudge(self, s, y, beta):
        """The nudging force on the output layer, −β ∂ℓ/∂s_out (β (y − s_0) for the squared error), with β a float
        or an (N, 1) column of batched phases."""
        return -beta * self.criterion.grad(self.logits(s), y)

    def phi_nudge(self, s, y, beta):
        """−β ℓ(s, y) per sample: the nudging term of a Φ that contains the cost (0 without a target)."""
        if y is None:
            return 0.0
        b = beta.view(-1) if torch.is_tensor(beta) else torch.full((y.shape[0],), float(beta), dtype=torch.float64)
        return -b.to(y) * self.cost(s, y)

    # -- dynamics -------------------------------------------------------------------------------------------------
    def front(self, x):
        """A feed-forward block in front of the dynamical system (identity here; the LCA layer of EPLCANet).
        Every estimator and evaluation passes the raw input through it once per mini-batch; `forward` and the
        engine take its output as the input x of the dynamics."""
        return x

    def dphi_ds(self, s, drive, y=None, beta=0.0):
        """∂Φ/∂s of every layer at s (with the nudging force where the net puts it there)."""
        return self.dphi_ds_layers(s, drive, y, beta, range(len(s)))

    def update(self, s, h, y, beta):
        """s_{t+1} of every layer from its field h_l = ∂Φ/∂s_l."""
        return [self.update_layer(l, s, hl, y, beta) for l, hl in enumerate(h)]

    def schedule(self, n, nudged):
        """The layer groups updated in turn within one step. Synchronous: all layers at once from s_t. Asynchronous
        (--schedule async; Scellier et al. 2023, Nest & Ernoult 2024): the even layers counted from the input side
        (0-based: s_1, s_3, … of the papers), then the odd ones from the fresh even values; odd first in the nudged
        phases (asynchronous 'free': the nudged phases stay synchronous, so that a short nudged phase gives the
        estimate of a synchronous run). No layer is coupled to another of its group (Φ couples neighbours only), so a
        group reads nothing that it changes: one step is a block Gauss–Seidel sweep, where the synchronous step is a
        Jacobi one. (The conv synapse above an even layer is read at the layer's old value, for the argmax of its
        feedback, and at its new one, for the drive of the layer above; `carry` hands the second read to the next
        step's first, so that each synapse is still evaluated once per step.)"""
        if not self.asynchronous or (nudged and self.asynchronous == 'free'):
            return [range(n)]
        order = list(range(n) if self.input_first else range(n - 1, -1, -1))
        groups = [order[0::2], order[1::2]]
        return groups[::-1] if nudged else groups

    def step_groups(self, s, fields, y, beta):
        """One step of the schedule: every group gets update_layer of its fields(s, layers), read at the state left
        by the groups before it (synchronous: `update` of all layers at once)."""
        groups = self.schedule(len(s), y is not None)
        if len(groups) == 1:
            return self.update(s, list(fields(s, groups[0])), y, beta)
        s = list(s)
        for layers in groups:
            new = [self.update_layer(l, s, h, y, beta) for l, h in zip(layers, fields(s, layers))]
            for l, v in zip(layers, new):
                s[l] = v
        return s

    def carry(self, syn, a):
        """syn(a), reused from the last call with this synapse when a is the same tensor and neither a nor syn's
        parameters have changed since (their version counters: CEP updates the weights in place during a phase);
        always recomputed under autograd, where the graph must be the caller's. Lets an asynchronous step reuse the
        conv evaluated at a layer's fresh value by the group before (see `schedule`), at the cost of one reference
        kept per synapse; a synchronous step never reads the same state twice across calls."""
        if torch.is_grad_enabled() or a.is_inference() or capturing(a):
            return syn(a)
        key = (a._version,) + tuple((p.data_ptr(), p._version) for p in syn.parameters())
        cache = self.__dict__.setdefault('_carried', {})
        hit = cache.get(syn)
        if hit is not None and hit[0] is a and hit[1] == key:
            return hit[2]
        out = syn(a)
        cache[syn] = (a, key, out)
        return out

    def stepper(self, s, drive, y=None, beta=0.0):
        """One closed-form step s_{t+1} = update(s_t, ∂Φ/∂s(s_t), y, β), layer groups in turn when asynchronous."""
        if not self.asynchronous:
            return self.update(s, self.dphi_ds(s, drive, y, beta), y, beta)
        return self.step_groups(s, lambda s_, layers: self.dphi_ds_layers(s_, drive, y, beta, layers), y, beta)

    def phase_step(self, drive, y=None, beta=0.0):
        """The step s ↦ s_{t+1} of one phase, whose drive, y, β and weights stay constant (netFunctions.relax asks
        for it once per phase): `stepper`. A net overrides it with a fused step that prepares what is constant during
        the phase (transposes, scaled biases) once, where that is faster."""
        return lambda s: self.stepper(s, drive, y, beta)

    def stepper_autograd(self, x, s, y=None, beta=0.0):
        """Oracle step: ∂Φ/∂s by autograd of the per-sample primitive Φ, same schedule (never used in the hot loop)."""
        return self.autograd_step(lambda s_: self.phi(x, s_, y, beta), s, y, beta)

    def autograd_step(self, phi, s, y=None, beta=0.0, keep=False):
        """One step of the schedule with ∂Φ/∂s_l = autograd of phi(s) (per-sample Φ) at the current state. The partial
        derivatives are taken at a zero offset added to each layer: a total derivative with respect to s itself would
        also follow s_l's dependence on the layers updated before it. keep: through a graph (its state's and
        create_graph), so that the oracle dynamics can be differentiated (Nest 2024's ID)."""
        def fields(s_, layers):
            with torch.enable_grad():
                eps = [torch.zeros_like(si, requires_grad=True) for si in s_]
                base = s_ if keep else [si.detach() for si in s_]
                phi_s = phi([b + e for b, e in zip(base, eps)]).sum()
                h = torch.autograd.grad(phi_s, [eps[l] for l in layers], create_graph=keep)
            return h if keep else [hi.detach() for hi in h]
        return self.step_groups(s, fields, y, beta)

    def free_phase(self, x, steps=None, drive=None, s=None):
        """The free phase (netFunctions.free_phase): β = 0 from zeros (or s) for `steps` (default T) steps, fewer
        when the tolerance `tol` stops it."""
        return nf.free_phase(self, x, steps, s, drive)

    def log_steps(self, n):
        """Record the steps of one free phase run under a tolerance (training or test, by the module's mode)."""
        if self.tol is not None:
            self.free_steps['train' if self.training else 'test'].append(n)

    def pop_steps(self):
        """The metrics columns of the free-phase steps recorded since the last call, then forgotten: mean and max per
        training mini-batch and per test batch ({} without a tolerance)."""
        row = {}
        for mode, prefix in (('train', ''), ('test', 'test_')):
            n = self.free_steps[mode]
            if n:
                row.update({f'{prefix}free_steps_mean': sum(n) / len(n), f'{prefix}free_steps_max': max(n)})
            n.clear()
        return row

    def forward(self, x, s=None, y=None, beta=0.0, steps=None, drive=None, tol=None):
        """Relax the dynamics driven by x (the input after `front`) for `steps` closed-form steps (default T for the
        free phase, Kmax when nudged) from s (default zeros); the input drive, constant during a phase, is computed
        once (or given). β a float: one phase, returns its final state list. β a tuple (β_1, β_2, …): that many
        nudged phases from the same s, run as one batched tensor (the ±β phases cost one pass), one state list per
        β. Builds a graph when called with grad enabled (truncated BPTT); the estimators call it without.
        tol (one phase, no graph; the free phase passes the net's --tol): stop once the relative change of the state
        meets ε (netFunctions.relax_tol, read every tol_every steps, `steps` the maximum); the steps run are recorded
        (log_steps)."""
        drive = self.drive(x) if drive is None else drive
        if isinstance(beta, (tuple, list)):
            return nf.nudged_phases(self, x, y, s, beta, self.Kmax if steps is None else steps, drive)
        s = self.init_state(x.shape[0]) if s is None else s
        steps = (self.T if y is None else self.Kmax) if steps is None else steps
        if tol is None:
            return nf.relax(self, x, s, y, beta, steps, drive)
        s, n = nf.relax_tol(self, s, drive, steps, tol, self.tol_every, y, beta)
        self.log_steps(n)
        return s

    def infer(self, x, T=None):
        """The state a prediction is read from (trainer.evaluate): the free equilibrium of the raw input x, T steps
        (default the net's T, fewer under --tol) from zeros, after the front block."""
        return nf.free_phase(self, self.front(x), T)

    # -- learning -------------------------------------------------------------------------------------------------
    def ep_param_grads(self, x, s_a, s_b, beta_a, beta_b, y=None, s_free=None, phi_betas=None):
        """The EP estimate of ∂L/∂θ between two nudged states, one tensor per parameter (gradient sign):
        ĝ_θ = −(1/(β_b − β_a)) mean_b [∂Φ/∂θ(s_b; β_b) − ∂Φ/∂θ(s_a; β_a)] by autograd of Φ. A net with a closed form
        (layered fc nets) or its own rule (asymmetric nets) overrides this."""
        return nf.phi_param_grads(self, x, s_a, s_b, beta_a, beta_b, y, phi_betas)

    def computeGradients(self, x, s_a, s_b, beta_a, beta_b, y=None, s_free=None, x_graph=None, accumulate=False):
        """The EP estimate ĝ_θ (ep_param_grads) written to .grad (added to it with accumulate). x_graph: the input
        as computed, with its graph, by a differentiable block in front of the network (net.front, e.g. an LCA layer
        whose dictionary learns from the classification signal): the EP estimate of ∂L/∂x, the same Φ difference
        taken with respect to x, is backpropagated into that block (EP inside, backprop outside)."""
        grads = self.ep_param_grads(x, s_a, s_b, beta_a, beta_b, y, s_free)
        for p, g in zip(self.parameters(), grads):
            if p.requires_grad:
                estimators.set_grad(p, g, accumulate)
        if x_graph is not None:
            gx = nf.phi_param_grads(self, x, s_a, s_b, beta_a, beta_b, y, x_grad=True)[-1]
            x_graph.backward(gx)

    def updateWeights(self, optimizer):
        """θ ← θ − lr_k ĝ_θ (per-layer learning rates live in the optimiser's parameter groups; the binary nets'
        flip rule is their optimiser), then .grad is cleared. Under torchrun ĝ_θ is first averaged over the ranks,
        ĝ_θ = (1/N) Σ_r ĝ_θ^r (each rank's estimate is of its shard of the mini-batch), so that the optimiser, the
        flip rule and CEP's per-step updates all see the estimate of the whole mini-batch."""
        distributed.average_grads(self.parameters())
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def digital_parameters(self):
        """Parameters that stay digital when the weights live on analog devices (--analog, analog.DeviceSGD): none
        here; biases (1-D) are digital anyway."""
        return []

    def bptt_window(self, T, K):
        """Number of final steps that truncated BPTT differentiates through: K + bptt_extra_steps, at most T.

        The originals differ per family and the suite follows each (so that every --benchmark twin is the
        original's): Ernoult's EPcont/EPdisc and Laydevant's fc nets detach at step T−1−K and keep the graph for the
        last K + 1 steps (bptt_extra_steps = 1); Ernoult's toy and conv nets, Laydevant's conv nets and Laborieux's
        nets for the last K. With K + extra ≥ T (as in the tests' K = T) the whole phase from the zero state is
        differentiated, as the originals do (their detach step is then never reached)."""
        return min(K + self.bptt_extra_steps, T)


class Feedforward(nn.Module):
    """A feedforward classifier (any nn.Module x ↦ z) with the design-card methods, so that backprop trains it
    through the same loop as EP (trainer.train with estimators.Backprop) and trainer.evaluate tests it: the
    backprop baselines, Wu et al. 2024's digital and analog classifiers.

        s = net.forward(x)                z = module(x), with its graph (the state is the output: output(s) = s)
        net.computeGradients(s, y)        ∂L/∂θ → .grad,  L = (1/B) Σ_b ℓ(z_b, y_b)
        net.updateWeights(optimizer)      the optimiser's step (digital SGD, analog.AnalogSGD: Analog SGD, TT-v1)

    `loss` is a torch.nn.functional loss of (scores, integer labels) with a `reduction` argument (F.cross_entropy,
    F.nll_loss on log-probabilities); the target of a label is the label. The wrapped module is `module` (its
    state_dict is the network's own)."""

    def __init__(self, module, loss=F.cross_entropy):
        super().__init__()
        self.module, self.loss = module, loss

    def forward(self, x):
        return self.module(x)

    def infer(self, x, T=None):
        """The output of a feedforward pass (T: no dynamics to relax)."""
        return self.forward(x)

    def output(self, s):
        return s

    def target(self, label):
        return label

    def cost(self, s, y):
        """Per-sample loss ℓ(z_b, y_b)."""
        return self.loss(s, y, reduction='none')

    def computeGradients(self, s, y):
        """Backpropagate L = (1/B) Σ_b ℓ(z_b, y_b) from the output s of forward (the loss's own mean reduction, as
        a plain `loss(model(x), y).backward()`): ∂L/∂θ in .grad; an analog layer records its (x, δ) pairs."""
        self.loss(s, y).backward()

    def updateWeights(self, optimizer):
        """The optimiser's step on ∂L/∂θ (averaged over the torchrun ranks first), then .grad cleared: EPNet's."""
        EPNet.updateWeights(self, optimizer)


# ---------------------------------------------------------------------------------------------------------------
# Costs ℓ(z, y) per sample, with ∂ℓ/∂z in closed form (the nudging force is −β ∂ℓ/∂s_out)

class Cost:
    """ℓ(z, y) per sample (`__call__`) and ∂ℓ/∂z (`grad`); y is what the cost compares z with."""

    def __call__(self, z, y):
        raise NotImplementedError

    def grad(self, z, y):
        raise NotImplementedError


class SquaredError(Cost):
    """ℓ = ½ ||z − y||²,  ∂ℓ/∂z = z − y."""

    def __call__(self, z, y):
        return 0.5 * ((z - y) ** 2).sum(1)

    def grad(self, z, y):
        return z - y


class CrossEntropy(Cost):
    """ℓ = −Σ_j y_j log softmax(z)_j (y one-hot or a distribution),  ∂ℓ/∂z = softmax(z) − y. On the last neuron
    layer (Laborieux's cel) or on a softmax readout z = W s_last + b outside the dynamics (the net pulls the force
    back through W)."""

    def __call__(self, z, y):
        return F.cross_entropy(z, y, reduction='none')

    def grad(self, z, y):
        return torch.softmax(z, 1) - y


class ErrorCurrent(Cost):
    """An error current δ given from outside, in the place of y: ℓ = ⟨δ, z⟩, ∂ℓ/∂z = δ, so the nudging term of Φ is
    −β ⟨δ, s_out⟩. A block of a chain (Nest & Ernoult 2024) is nudged this way by the error that the next block
    sends back."""

    def __call__(self, z, delta):
        return (delta * z).flatten(1).sum(1)

    def grad(self, z, delta):
        return delta


def capturing(t):
    """Whether a CUDA graph is being captured on t's device (--cuda-graphs, netFunctions.GraphedRelax): the caches
    of values computed from the weights are bypassed then, so that every replay recomputes them from the weights of
    its time instead of reading the value of the capture's."""
    return t.is_cuda and torch.cuda.is_current_stream_capturing()


class Memo(dict):
    """Values of f computed on first use, once (the conv-pool synapses a step needs: a synchronous step reads each
    one twice, as the drive of the layer above and as the context of its feedback; an asynchronous group only some)."""

    def __init__(self, f):
        super().__init__()
        self.f = f

    def __missing__(self, k):
        v = self[k] = self.f(k)
        return v


def _linear_T(w, s, add=None):
    """Wᵀ s for row-vector batches (feedback through the transposed forward weights), plus `add` in one addmm."""
    return s @ w.weight if add is None else torch.addmm(add, s, w.weight)


def _bilinear(a, lin, b):
    """Per-sample a · (W b + bias)."""
    return (a * lin(b)).flatten(1).sum(1)


# ---------------------------------------------------------------------------------------------------------------
# Fully connected layered networks (size_tab from the output to the input)

class _LayeredFC(EPNet):
    """w[i] = Linear(n_{i+1} → n_i), i = 0 … L−1, with n_L the input size; w[L−1] is the input weight W_{L−1,x}."""
    bptt_extra_steps = 1        # truncated BPTT keeps the graph for K + 1 steps, as the original (EPNet.bptt_window)

    def __init__(self, size_tab, T, Kmax, beta, activation):
        super().__init__(T, Kmax, beta, activation)
        self.size_tab = list(size_tab)
        self.ns = len(size_tab) - 1
        self.w = nn.ModuleList(nn.Linear(size_tab[i + 1], size_tab[i]) for i in range(self.ns))

    def state_shapes(self):
        return [(n,) for n in self.size_tab[:-1]]

    def lr_groups(self, lr_tab):
        return [{'params': list(self.w[i].parameters()), 'lr': lr_tab[i]} for i in range(self.ns)]

    def ep_param_grads(self, x, s_a, s_b, beta_a, beta_b, y=None, s_free=None, phi_betas=None):
        """Closed form of the EP rule for Φ = Σ_i u_i · (W_{i,i+1} u_{i+1} + b_i) (+ θ-free terms), u = post(s):
        ĝ_{W_{i,i+1}} = −(1/((β_b − β_a) B)) Σ_b [u_i^b u_{i+1}^bᵀ − u_i^a u_{i+1}^aᵀ], input layer u_L = inp(x).
        Equals the autograd of Φ (netFunctions.phi_param_grads, the oracle) without building a graph."""
        c = -1.0 / ((beta_b - beta_a) * x.shape[0])
        ua, ub = [self.post(si) for si in s_a], [self.post(si) for si in s_b]
        grads = []
        for i in range(self.ns):
            if i < self.ns - 1:
                gw = torch.cat([ub[i], -ua[i]]).T @ torch.cat([ub[i + 1], ua[i + 1]])
            else:
                gw = (ub[i] - ua[i]).T @ self.inp(x)
            grads += [c * gw, c * (ub[i] - ua[i]).sum(0)]
        return grads


class EPdisc(_LayeredFC):
    """Prototypical setting ("P"), Ernoult et al. 2019, Eq. for the discrete-time RNN with static input.

    Φ(x, s) = Σ_{i<L−1} s_i · (W_{i,i+1} s_{i+1} + b_i) + s_{L−1} · (W_{L−1,x} x + b_{L−1})
    s_{t+1} = σ(∂Φ/∂s (x, s_t)),   output when nudged: s_0 ← σ(∂Φ/∂s_0) + β (y − s_{0,t})

    dt: the paper's dynamics is dt = 1 (the first upload of the original code). The later original code silently
    used the leaky update s ← s + dt(−s + σ(·)) with dt = 0.2 for the README commands; the suite uses dt = 1 unless
    --dt is given explicitly, in which case the leaky update of step dt is run.
    """

    def __init__(self, size_tab, T, Kmax, beta, activation, dt=1.0):
        super().__init__(size_tab, T, Kmax, beta, activation)
        self.dt = dt

    def drive(self, x):
        return self.w[-1](x)

    def post(self, s):
        return s

    def inp(self, x):
        return x

    def dphi_ds_layers(self, s, drive, y, beta, layers):
        L, w = self.ns, self.w
        h = []
        for i in layers:
            hi = w[i](s[i + 1]) if i < L - 1 else drive
            h.append(_linear_T(w[i - 1], s[i - 1], hi) if i > 0 else hi)
        return h

    def phi(self, x, s, y=None, beta=0.0):
        L, w = self.ns, self.w
        return sum(_bilinear(s[i], w[i], s[i + 1] if i < L - 1 else x) for i in range(L))

    def update_layer(self, l, s, h, y, beta):
        new = self.act.rho(h)
        if l == 0 and y is not None:
            new = new + self.nudge(s, y, beta)            # outside σ: the prototypical nudge
        return new if self.dt == 1.0 else s[l] + self.dt * (new - s[l])


class EPcont(_LayeredFC):
    """Energy-based setting ("EB"): explicit Euler steps of size ε on the Hopfield-like energy

    E(x, s) = ½ Σ_i ||s_i||² − Σ_{i<L−1} ρ(s_i) · (W_{i,i+1} ρ(s_{i+1}) + b_i) − ρ(s_{L−1}) · (W_{L−1,x} ρ(x) + b_{L−1})
    Φ = −E (per sample),  s_{t+1} = s_t + ε (∂Φ/∂s + β (y − s_0) on the output),  then clip to [0, 1] unless no_clamp.

    Departure from the original code (a fix): its output layer omitted the factor ρ'(s_0), so its dynamics were not
    the gradient of any energy while its weight update used ρ(s_0). Here every layer, the output included, follows
    −∂E/∂s exactly, so that Φ, the dynamics and the EP update are consistent (the GDU theorem's hypothesis).
    """

    def __init__(self, size_tab, T, Kmax, beta, activation, dt=0.2, clamp=True):
        super().__init__(size_tab, T, Kmax, beta, activation)
        self.dt, self.clamp = dt, clamp

    def drive(self, x):
        return self.w[-1](self.act.rho(x))

    def post(self, s):
        return self.act.rho(s)

    def inp(self, x):
        return self.act.rho(x)

    def dphi_ds(self, s, drive, y=None, beta=0.0):
        L, w, rho, rhop_r = self.ns, self.w, self.act.rho, self.act.rhop_r
        r = [rho(si) for si in s]
        h = []
        for i in range(L):
            field = w[i](r[i + 1]) if i < L - 1 else drive
            if i > 0:
                field = _linear_T(w[i - 1], r[i - 1], field)
            h.append(torch.addcmul(-s[i], rhop_r(s[i], r[i]), field))
        return h

    def phi(self, x, s, y=None, beta=0.0):
        L, w, rho = self.ns, self.w, self.act.rho
        r = [rho(si) for si in s]
        coupling = sum(_bilinear(r[i], w[i], r[i + 1] if i < L - 1 else rho(x)) for i in range(L))
        return coupling - 0.5 * sum((si ** 2).sum(1) for si in s)

    def update(self, s, h, y, beta):
        if y is not None:
            h = [h[0] + self.nudge(s, y, beta)] + list(h[1:])
        new = [si + self.dt * hi for si, hi in zip(s, h)]
        return [ni.clamp(0, 1) for ni in new] if self.clamp else new


class toyEPcont(EPNet):
    """Toy model of Fig. 2 (energy-based): output s_0 and hidden s_1 both see the input, no lateral connections.

    E = ½||s_0||² + ½||s_1||² − ρ(s_0)·(W_01 ρ(s_1) + b_01) − ρ(s_0)·(W_0x ρ(x) + b_0x) − ρ(s_1)·(W_1x ρ(x) + b_1x)
    Same Euler/clamp update as EPcont. Unlike the original (which returned no bias updates), it is trainable.
    size_tab = [n_0 (output), n_1 (hidden), n_x (input)].
    """

    def __init__(self, size_tab, T, Kmax, beta, activation, dt=0.2, clamp=True):
        super().__init__(T, Kmax, beta, activation)
        n0, n1, nx = size_tab
        self.size_tab, self.dt, self.clamp = list(size_tab), dt, clamp
        self.W01, self.W0x, self.W1x = nn.Linear(n1, n0), nn.Linear(nx, n0), nn.Linear(nx, n1)

    def state_shapes(self):
        return [(self.size_tab[0],), (self.size_tab[1],)]

    def lr_groups(self, lr_tab):
        layers = [self.W01, self.W0x, self.W1x]
        return [{'params': list(m.parameters()), 'lr': lr} for m, lr in zip(layers, lr_tab)]

    def drive(self, x):
        rx = self.act.rho(x)
        return self.W0x(rx), self.W1x(rx)

    def dphi_ds(self, s, drive, y=None, beta=0.0):
        rho, rhop_r = self.act.rho, self.act.rhop_r
        r0, r1 = rho(s[0]), rho(s[1])
        h0 = torch.addcmul(-s[0], rhop_r(s[0], r0), self.W01(r1) + drive[0])
        h1 = torch.addcmul(-s[1], rhop_r(s[1], r1), _linear_T(self.W01, r0, drive[1]))
        return [h0, h1]

    def phi(self, x, s, y=None, beta=0.0):
        rho = self.act.rho
        r0, r1, rx = rho(s[0]), rho(s[1]), rho(x)
        return (_bilinear(r0, self.W01, r1) + _bilinear(r0, self.W0x, rx) + _bilinear(r1, self.W1x, rx)
                - 0.5 * ((s[0] ** 2).sum(1) + (s[1] ** 2).sum(1)))

    update = EPcont.update


# ---------------------------------------------------------------------------------------------------------------
# The conv-pool synapse P(W ⋆ a + b) and its adjoint (convEP, the binary conv nets, P_CNN, VF_CNN, LCANet)

def conv_adjoint(g, w, in_shape, stride, padding, dilation=(1, 1)):
    """Wᵀ ⋆ g, of the spatial size of the convolution's input `in_shape`: the transposed convolution with the output
    padding that gives back the rows and columns the convolution's floor dropped (the same values as conv2d_input,
    the convolution's input gradient, and faster on the CPU). stride, padding, dilation: pairs."""
    k = w.shape[-2:]
    out_pad = [a - ((z - 1) * st - 2 * p + d * (kk - 1) + 1) for a, z, st, p, d, kk in
               zip(in_shape[-2:], g.shape[-2:], stride, padding, dilation, k)]
    return F.conv_transpose2d(g, w, None, stride, padding, out_pad, 1, dilation)


def conv_pool_sizes(in_size, kernels, strides, paddings, pools, pool_size=2):
    """Side of the maps from the input upwards, [in_size, n_1, …], through conv-pool layers: the convolution
    (kernel F, stride S, padding P) gives n' = ⌊(n + 2P − F)/S⌋ + 1, the pooling ('m', 'a': kernel and stride
    Fpool; 'i': none) ⌊(n' − Fpool)/Fpool⌋ + 1. It stops at the first side below 1 (the maps vanish)."""
    sizes = [in_size]
    for kernel, stride, padding, pool in zip(kernels, strides, paddings, pools):
        if sizes[-1] < 1:
            break
        n = math.floor((sizes[-1] + 2 * padding - kernel) / stride + 1)
        sizes.append(math.floor((n - pool_size) / pool_size + 1) if pool in 'ma' else n)
    return sizes


class Pool(nn.Module):
    """P: max ('m'), average ('a') or no ('i') pooling, kernel and stride Fpool; no parameters.
    `forward(z)` returns (P(z), the argmax indices of max pooling, else None)."""

    def __init__(self, kind='m', size=2):
        super().__init__()
        if kind not in ('m', 'a', 'i'):
            raise ValueError(f'pooling {kind!r}: m (max), a (average) or i (identity)')
        self.kind, self.size = kind, size

    def forward(self, z):
        if self.kind == 'm':
            return F.max_pool2d(z, self.size, self.size, return_indices=True)
        if self.kind == 'a':
            return F.avg_pool2d(z, self.size, self.size), None
        return z, None

    def adjoint(self, g, idx, shape):
        """Pᵀ g, of the shape of z: max sends each g to the current argmax of its window (MaxUnpool), average
        spreads g / Fpool² over its window; the rows and columns that the pooling's floor drops get 0."""
        k = self.size
        if self.kind == 'm':
            return F.max_unpool2d(g, idx, k, k, output_size=shape[-2:])
        if self.kind == 'a':
            g = g.repeat_interleave(k, -2).repeat_interleave(k, -1) / (k * k)
            return F.pad(g, (0, shape[-1] - g.shape[-1], 0, shape[-2] - g.shape[-2]))
        return g


class ConvPool(nn.Conv2d):
    """The synapse a ↦ P(W ⋆ a + b) (a Conv2d: parameters `.weight` and `.bias`, the state-dict keys of a plain
    convolution; `pool` has none) and its adjoint, the feedback that the layer above sends down through it:

        adjoint(g) = ∂/∂a ⟨P(W ⋆ a + b), g⟩ = Wᵀ ⋆ (Pᵀ g)     (transposed convolution of the unpooled g)

    With max pooling Pᵀ depends on a (the argmax), so `forward` returns the context that `adjoint` needs."""

    def __init__(self, c_in, c_out, kernel, stride=1, padding=0, pool='m', pool_size=2, bias=True):
        super().__init__(c_in, c_out, kernel, stride, padding, bias=bias)
        self.pool = Pool(pool, pool_size)

    def forward(self, a):
        """(P(W ⋆ a + b), context of the adjoint: the shapes of a and of W ⋆ a, the argmax indices)."""
        z = F.conv2d(a, self.weight, self.bias, self.stride, self.padding)
        p, idx = self.pool(z)
        return p, (a.shape, z.shape, idx)

    def adjoint(self, g, ctx, weight=None):
        """Wᵀ ⋆ (Pᵀ g) at the input of `ctx`: the transposed convolution (conv_adjoint) of the unpooled g. `weight`: W
        itself by default, or a stand-in for it (W.detach(): feedback read as a constant)."""
        a_shape, z_shape, idx = ctx
        w = self.weight if weight is None else weight
        return conv_adjoint(self.pool.adjoint(g, idx, z_shape), w, a_shape, self.stride, self.padding, self.dilation)


# ---------------------------------------------------------------------------------------------------------------
# Prototypical convolutional network ("P-conv")

class convEP(EPNet):
    """Prototypical conv net: conv + max-pool layers, fully connected classifier, symmetric feedback.

    C_tab = [C_top, …, C_in] (classifier side first), size_tab = fc sizes from the output (e.g. [10]).
    conv[k] = ConvPool(C_tab[k+1] → C_tab[k], F, stride 1, padding P, max-pool Fpool with stride Fpool): P_k(conv_k).
    State s = [fc layers from the output …, conv layers from the top to the bottom]; nc = number of fc layers.

    Φ(x, s) = Σ_{k<nc} s_k · (fc_k(flatten s_{k+1}) + b_k) + Σ_j ⟨ s_{nc+j}, P_j(conv_j(s_{nc+j+1})) ⟩,  s_{nc+ncv} = x
    s_{t+1} = σ(∂Φ/∂s), output nudged as EPdisc. ∂Φ/∂s through a max-pool routes each upper unit to the argmax of the
    current pre-pool map (MaxUnpool with the current indices) followed by a transposed convolution with the forward
    kernel (ConvPool.adjoint): the feedback weights are the forward ones. Padding: --padding 1 means P = (F−1)/2
    ("same" convolution).
    """

    def __init__(self, size_tab, C_tab, T, Kmax, beta, activation, Fconv=5, Fpool=2, padding=0, in_size=28, P=None):
        super().__init__(T, Kmax, beta, activation)
        self.C_tab, self.Fconv, self.Fpool = list(C_tab), Fconv, Fpool
        self.P = ((Fconv - 1) // 2 if padding else 0) if P is None else P     # P: explicit padding amount
        self.ncv = n = len(C_tab) - 1
        sizes = conv_pool_sizes(in_size, [Fconv] * n, [1] * n, [self.P] * n, 'm' * n, Fpool)
        if sizes[-1] < 1:
            raise ValueError(f'--C_tab {C_tab}: the feature map vanishes (input {in_size}, Fconv {Fconv}, '
                             f'Fpool {Fpool}, padding {self.P}); use fewer conv layers or --padding 1')
        self.conv_sizes = sizes[:0:-1]                     # top conv layer first, as the state list
        self.fc_tab = list(size_tab) + [C_tab[0] * self.conv_sizes[0] ** 2]
        self.nc = len(size_tab)
        self.fc = nn.ModuleList(nn.Linear(self.fc_tab[k + 1], self.fc_tab[k]) for k in range(self.nc))
        self.conv = nn.ModuleList(ConvPool(C_tab[k + 1], C_tab[k], Fconv, padding=self.P, pool_size=Fpool)
                                  for k in range(n))

    def state_shapes(self):
        return [(n,) for n in self.fc_tab[:-1]] + [(c, n, n) for c, n in zip(self.C_tab[:-1], self.conv_sizes)]

    def lr_groups(self, lr_tab):
        layers = list(self.fc) + list(self.conv)
        return [{'params': list(m.parameters()), 'lr': lr} for m, lr in zip(layers, lr_tab)]

    def drive(self, x):
        return self.conv[-1](x)[0]

    def dphi_ds_layers(self, s, drive, y, beta, layers):
        nc, ncv, fc, conv = self.nc, self.ncv, self.fc, self.conv
        # every conv fed by a state is evaluated once: its pooled map drives the layer above, and its context (the
        # argmax) routes that layer's feedback
        fwd = Memo(lambda j: self.carry(conv[j], s[nc + j + 1]))
        h = []
        for i in layers:
            if i < nc:                                     # fully connected layers
                hk = fc[i](s[i + 1].flatten(1))
                h.append(_linear_T(fc[i - 1], s[i - 1], hk) if i > 0 else hk)
                continue
            j = i - nc                                     # conv layers, top first
            hj = fwd[j][0] if j < ncv - 1 else drive
            if j == 0:
                hj = hj + _linear_T(fc[nc - 1], s[nc - 1]).view_as(s[i])
            else:
                hj = hj + conv[j - 1].adjoint(s[i - 1], fwd[j - 1][1])
            h.append(hj)
        return h

    def phi(self, x, s, y=None, beta=0.0):
        nc, ncv = self.nc, self.ncv
        total = sum(_bilinear(s[k], self.fc[k], s[k + 1].flatten(1)) for k in range(nc))
        for j in range(ncv):
            below = s[nc + j + 1] if j < ncv - 1 else x
            total = total + (s[nc + j] * self.conv[j](below)[0]).flatten(1).sum(1)
        return total

    update_layer = EPdisc.update_layer


def build_net(args):
    """The network of the Ernoult-2019 command line (model selection of A.1)."""
    act = args.activation_function
    if args.toymodel:
        return toyEPcont(args.size_tab, args.T, args.Kmax, args.beta, act, dt=args.dt, clamp=not args.no_clamp)
    if args.C_tab:
        return convEP(args.size_tab, args.C_tab, args.T, args.Kmax, args.beta, act, Fconv=args.Fconv,
                      Fpool=args.Fpool, padding=args.padding)
    if args.discrete:
        return EPdisc(args.size_tab, args.T, args.Kmax, args.beta, act, dt=args.dt_disc)
    return EPcont(args.size_tab, args.T, args.Kmax, args.beta, act, dt=args.dt, clamp=not args.no_clamp)

"""Gradient estimators: small objects that own β and the phases and call the network's methods (estimators are
separate from models, as in Scellier's energy-based-learning). Each paper's flags build one; the trainer calls it
once per mini-batch, then `net.updateWeights(optimizer)`.

One EP mini-batch, read top to bottom (`EP.__call__`):

    x        = net.front(data)                          the input of the dynamics (an LCA code, else the data)
    s*       = net.free_phase(x)                        free phase: T steps at β = 0 from zeros (fewer with --tol)
    s^{β_i}  = net.forward(x, s*, y, (β_1, …))          nudged phases: K steps from s*, one batched tensor
    net.computeGradients(x, s_a, s_b, β_a, β_b, y)      ĝ_θ = −(1/(β_b − β_a)) mean_b [∂Φ/∂θ(s_b) − ∂Φ/∂θ(s_a)]

    OneSided     (s_a, β_a) = (s*, 0),        (s_b, β_b) = (s^β, β)              Ernoult 2019, Laborieux's default
    RandomSign   the same with β ← ±β drawn per mini-batch                       Laborieux 2021, Laydevant 2021
    Symmetric    (s_a, β_a) = (s^{−β}, −β),   (s_b, β_b) = (s^β, β)              Laborieux 2021 (--thirdphase)
    Continual    CEP: the optimiser moves θ after every nudged step              Laborieux 2021 (--alg CEP)
    TruncatedBPTT  L = mean_b ℓ(s_T) backpropagated through the last W steps     every paper's BPTT baseline
    Backprop     L = mean_b ℓ(z_b), z = net(x), backpropagated through a feedforward net (netClasses.Feedforward):
                 Wu 2024's classifiers (digital SGD, Analog SGD, TT-v1 by the optimiser), backprop baselines
    ChainEP      EP inside the blocks of a chain, backprop between them         Nest & Ernoult 2024
    ChainID      truncated BPTT through a chain from its free equilibria        Nest & Ernoult 2024 (ID)

Every estimate has gradient sign (a descent optimiser consumes it). T and K default to the network's.
"""
import torch

from ep import delta_form


class Estimator:
    """T: free-phase steps, K: nudged-phase steps (BPTT: truncation); None takes the network's T / Kmax."""

    def __init__(self, T=None, K=None):
        self.T, self.K = T, K

    def steps(self, net):
        return (net.T if self.T is None else self.T), (net.Kmax if self.K is None else self.K)

    def __call__(self, net, x, y, optimizer=None):
        """Write the gradient estimate of one mini-batch (x raw, y the target) to .grad; return the free state s*."""
        raise NotImplementedError


def set_grad(p, g, accumulate=False):
    """p.grad = g (g + p.grad with accumulate), laid out as p. A closed-form estimate may come out in another memory
    layout than its parameter (a conv weight's, from channels-last states, is channels-last); torch's fused Adam on
    the CPU reads a gradient as if it had its parameter's strides, so such a gradient must be copied into p's layout
    first (without it, fused Adam scrambled the CNN's second conv update)."""
    if accumulate and p.grad is not None:
        g = g + p.grad
    if g.stride() != p.stride():
        g = torch.empty_like(p).copy_(g)
    p.grad = g


def _front(net, x):
    """(x_graph, x): the input of the dynamics, and its graph when a front block learns through it."""
    x = net.front(x)
    return (x, x.detach()) if x.requires_grad else (None, x)


class EP(Estimator):
    """Free phase, nudged phases at the β of `phases()`, one EP estimate between the two states of `pair`."""

    def __init__(self, beta, T=None, K=None):
        super().__init__(T, K)
        self.beta = beta

    def phases(self):
        """β of each nudged phase of this mini-batch."""
        raise NotImplementedError

    def pair(self, s_free, betas, nudged):
        """((s_a, β_a), (s_b, β_b)): the two states whose Φ difference is the estimate."""
        raise NotImplementedError

    def __call__(self, net, x, y, optimizer=None):
        T, K = self.steps(net)
        x_graph, x = _front(net, x)
        betas = self.phases()
        with torch.no_grad():
            drive = net.drive(x)
            s_free = net.free_phase(x, T, drive)
            nudged = net.forward(x, s_free, y, betas, K, drive)
        (s_a, beta_a), (s_b, beta_b) = self.pair(s_free, betas, nudged)
        net.computeGradients(x, s_a, s_b, beta_a, beta_b, y, s_free, x_graph)
        return s_free


class OneSided(EP):
    """ĝ = −(1/β) [∂Φ/∂θ(s^β) − ∂Φ/∂θ(s*)]: bias O(β) (Ernoult 2019)."""

    def phases(self):
        return (self.beta,)

    def pair(self, s_free, betas, nudged):
        return (s_free, 0.0), (nudged[0], betas[0])


class RandomSign(OneSided):
    """The one-sided estimate with the sign of β drawn per mini-batch (from `generator`, for replayable runs): the
    O(β) bias averages out over mini-batches (Laborieux 2021)."""

    def __init__(self, beta, T=None, K=None, generator=None):
        super().__init__(beta, T, K)
        self.generator = generator

    def phases(self):
        return (self.beta if torch.rand((), generator=self.generator) < 0.5 else -self.beta,)


class Symmetric(EP):
    """ĝ = −(1/2β) [∂Φ/∂θ(s^β) − ∂Φ/∂θ(s^{−β})]: bias O(β²); the ±β phases run as one batch (Laborieux 2021)."""

    def phases(self):
        return (self.beta, -self.beta)

    def pair(self, s_free, betas, nudged):
        return (nudged[1], betas[1]), (nudged[0], betas[0])


class SymmetricDelta(Symmetric):
    """The symmetric estimate with the nudged states relaxed as s* + Δ, Δ in its own tensor, and the Φ difference
    expanded in Δ (ep/delta_form.py, --carry-delta): the same estimate, without the float32 cancellation of two nearly equal
    states. Layered symmetric nets only (delta_form.unsupported)."""

    def __call__(self, net, x, y, optimizer=None):
        T, K = self.steps(net)
        delta_form.check(net)
        with torch.no_grad():
            x = net.front(x)                # the identity for the nets of the Δ form (delta_form.unsupported)
            drive = net.drive(x)
            s_free = net.free_phase(x, T, drive)
            form = delta_form.DeltaForm(net, x, s_free, drive, y, (self.beta, -self.beta))
            d = form.relax(K)
            grads = form.param_grads(d, -self.beta, self.beta)
        for p, g in zip(net.parameters(), grads):
            if p.requires_grad:
                set_grad(p, g)
        return s_free


class Continual(EP):
    """Continual EP (Laborieux et al. 2021, CEP): after every nudged step the optimiser moves θ, so the weights learn
    during the phase. Per step, with gradient sign (what the original's compute_syn_grads gives between
    consecutive states):

      +β phase: ĝ_k = −(1/β)  [∂Φ/∂θ(s_{k+1}; β) − ∂Φ/∂θ(s_k; 0)],   divided by (1 − lr·wd)^(K−1−k) (the decay
                applied by the later steps of the phase, the original's re-parameterisation);
      −β phase (thirdphase, after K free steps back towards s*):
                ĝ_k = (1/(2β)) [∂Φ/∂θ(s_{k+1}; −β) − ∂Φ/∂θ(s_k; β)],  no decay division.

    For θ outside −βℓ this is the instantaneous update ∓(1/β or 1/(2β))[∂Φ/∂θ(s_{k+1}) − ∂Φ/∂θ(s_k)]. A softmax
    readout (θ inside ℓ) thereby gets the full cross-entropy gradient at every step: ∂ℓ(s_{k+1})/∂θ in the +β
    phase, ½[∂ℓ(s_{k+1}) + ∂ℓ(s_k)]/∂θ in the −β phase (evaluating both states at the same β would give
    ℓ(s_{k+1}) − ℓ(s_k), which telescopes to about 0).
    accumulate (--cep-debug): the per-step updates are summed and applied as one step at the end.
    Every update is applied here (net.updateWeights): the trainer's update after it finds no gradient left.
    """

    def __init__(self, beta, T=None, K=None, thirdphase=False, accumulate=False):
        super().__init__(beta, T, K)
        self.thirdphase, self.accumulate = thirdphase, accumulate

    def phases(self):
        """(β of the phase, (β_a, β_b) of its per-step estimate or None, decay division)"""
        out = [(self.beta, (0.0, self.beta), True)]
        if self.thirdphase:
            out += [(0.0, None, False), (-self.beta, (self.beta, -self.beta), False)]
        return out

    def __call__(self, net, x, y, optimizer=None):
        T, K = self.steps(net)
        with torch.no_grad():
            x = net.front(x)                                # a front block does not learn under CEP
            s_free = net.free_phase(x, T)
        s = s_free
        for b, pair, decayed in self.phases():
            for k in range(K):
                with torch.no_grad():
                    s_next = net.forward(x, s, y, b, steps=1)    # θ moves within the phase: fresh drive
                if pair is not None:
                    net.computeGradients(x, s, s_next, pair[0], pair[1], y, s_free, accumulate=self.accumulate)
                    if not self.accumulate:
                        if decayed:
                            _undo_decay(optimizer, K - 1 - k)
                        net.updateWeights(optimizer)
                s = s_next
        if self.accumulate:
            net.updateWeights(optimizer)
        return s_free


def _undo_decay(optimizer, n):
    """.grad /= (1 − lr·wd)^n per parameter group (CEP's weight-decay re-parameterisation)."""
    for group in optimizer.param_groups:
        decay = (1 - group['lr'] * group.get('weight_decay', 0.0)) ** n
        for p in group['params']:
            if p.grad is not None:
                p.grad /= decay


class TruncatedBPTT(Estimator):
    """Truncated BPTT: T − W free steps without graph, W = net.bptt_window(T, K) steps with graph, L = mean_b ℓ(s_T)
    backpropagated (through the constant input drive into net.front as well)."""

    def __call__(self, net, x, y, optimizer=None):
        T, K = self.steps(net)
        W = net.bptt_window(T, K)
        x = net.front(x)                                    # its graph, if any, carries ∂L/∂x into the front block
        with torch.no_grad():
            s = net.forward(x, steps=T - W)
        s = net.forward(x, s, steps=W)
        net.cost(s, y).mean().backward()
        return [si.detach() for si in s]


class Backprop(Estimator):
    """Backpropagation through a feedforward net (netClasses.Feedforward): z = net.forward(x) with its graph, then
    net.computeGradients(z, y) writes ∂L/∂θ, L = (1/B) Σ_b ℓ(z_b, y_b), to .grad. What the update does with it is the
    optimiser's, applied by net.updateWeights: digital SGD θ ← θ − α ∂L/∂θ, or analog.AnalogSGD, whose analog
    layers pulse the (x, δ) pairs recorded by the backward pass (Analog SGD; TT-v1 into A, then transfers to C).
    Returns z (detached): the state the trainer reads the prediction and the loss from."""

    def __call__(self, net, x, y, optimizer=None):
        z = net.forward(x)
        net.computeGradients(z, y)
        return z.detach()


NAMED = {'one-sided': OneSided, 'random-sign': RandomSign, 'symmetric': Symmetric}


def ep(name, beta, T=None, K=None, generator=None):
    """The EP estimator of a name in NAMED (the functional API netFunctions.ep_step)."""
    if name == 'random-sign':
        return RandomSign(beta, T, K, generator)
    return NAMED[name](beta, T, K)


# ---------------------------------------------------------------------------------------------------------------
# Chains of EP blocks (Nest & Ernoult 2024, papers.nest2024.nets.HopfieldChain): EP inside the blocks, backprop
# between them

class ChainEP:
    """One mini-batch of EP inside the blocks, backprop between them (Alg. 2):

        s      = chain.forward(x)                                    free phase block by block (T1, or TOL)
        for k = K … 1:
          s^{±β} = chain.forward(x_k, s, g_k, (β, −β), T2, block=k)     centred nudged phases, one batched tensor
          g_{k−1} = chain.computeGradients(x_k, s^{−β}, s^{+β}, −β, β, g_k, block=k)

    ĝ_θ = −(1/2β) mean_b [∂Φ_k/∂θ(s^{+β}) − ∂Φ_k/∂θ(s^{−β})] for the parameters of block k, g_K = y (the
    cross-entropy nudges the last block) and g_{k−1} = B·(the same difference with respect to x_k), the error
    current that nudges block k − 1. Returns the free state s."""

    def __init__(self, beta, T2):
        self.beta, self.T2 = beta, T2

    def __call__(self, chain, x, y, optimizer=None):
        with torch.no_grad():
            s = chain.forward(x)
        self.gradients(chain, s, y)
        return s

    def gradients(self, chain, s, y):
        """The nudged phases and block estimates from the free state s (written to .grad); returns the error
        currents [g_0, …, g_{K−2}]."""
        currents, target = [None] * (len(chain.blocks) - 1), y
        for k in reversed(range(len(chain.blocks))):
            xk = s[k][0]
            with torch.no_grad():
                s_p, s_m = chain.forward(xk, s, target, (self.beta, -self.beta), self.T2, block=k)
            g = chain.computeGradients(xk, s_m, s_p, -self.beta, self.beta, target, block=k, x_grad=k > 0)
            if k > 0:
                currents[k - 1] = target = g
        return currents


class ChainID:
    """ID: the same free phase, then T2 iterations of every block re-run with autograd from the free equilibria, each
    fed by the differentiable output of the one before (chain.forward(x, s, steps=T2)), and
    L = mean_b CE(readout(s^K_{T2}), y) backpropagated. Returns the free state s, whose training loss is read at the
    re-run state (s.z_cost: L, the objective ID descends). feedback='constant': the weights of the top-down terms
    W_lᵀ s_l read as constants in the re-run (the original's ID; HopfieldChain.rerun), 'full' the exact gradient."""

    def __init__(self, T2, feedback='full'):
        self.T2, self.feedback = T2, feedback

    def __call__(self, chain, x, y, optimizer=None):
        with torch.no_grad():
            s = chain.forward(x)
        _, rerun = self.gradients(chain, s, y)
        s.z_cost = rerun.z.detach()
        return s

    def gradients(self, chain, s, y, input_grads=False):
        """L backpropagated from the free state s (written to .grad); returns (L, the re-run ChainState), the
        re-run's inputs x_k (k ≥ 2) keeping their .grad = ∂L/∂x_k when input_grads."""
        with torch.enable_grad():
            rerun = chain.forward(s[0][0], s, steps=self.T2, feedback=self.feedback)
            if input_grads:
                for xk, _, _ in rerun[1:]:
                    xk.retain_grad()
            loss = chain.cost(rerun, y).mean()
            for p in chain.parameters():
                p.grad = None
            loss.backward()
        return loss.detach(), rerun

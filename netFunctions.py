"""The EP engine: relaxation, batched nudged phases, the EP rule by autograd of Φ, BPTT and the GDU (theorem) checks.

Models (netClasses.py) only say what one step is; every loop over dynamics steps lives here, once, for every paper.
The gradient estimators (ep/estimators.py) drive a mini-batch through the network's methods, which call these loops;
ep_step, cep_step and bptt_step below are their functional forms. The loops over mini-batches and epochs (train,
evaluate, fit) are the trainer's (suite/trainer.py).

Notation (Ernoult et al. 2019, discrete-time setting): s_{t+1} = update(s_t, ∂Φ/∂s), free phase of T steps to
s* ≈ s_T, nudged phase of K steps from s^β_0 = s*. ℓ = ½||s_0 − y||², L = mean_b ℓ.
All estimates are stored with *gradient* sign (positive = increases the loss), so that an optimiser descends on them:
  ΔEP_s(β, t) = (s^β_{t+1} − s^β_t)/(β ε)         →  −∂L/∂s_{T−t}      (stored as dS = −ΔEP_s)
  ΔEP_θ(β, t) = (∂Φ/∂θ(s^β_{t+1}) − ∂Φ/∂θ(s^β_t))/β →  −∂L/∂θ_{T−t}    (stored as dT = −ΔEP_θ)
and the GDU property says dS(t) ≈ nS(t) = ∂L/∂s_{T−t}, dT(t) ≈ nT(t) = contribution of step T−t to ∂L/∂θ.
"""

import weakref

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ep import estimators


# ---------------------------------------------------------------------------------------------------------------
# Relaxation

def relax(net, x, s, y, beta, steps, drive=None):
    """`steps` closed-form steps; the input drive is computed once (it is constant during a phase), and so is the
    step function (net.phase_step). Without a graph on a CUDA device, --precision bf16 runs the steps under bfloat16
    autocast (the states come back in the drive's dtype) and --cuda-graphs replays them as one captured CUDA graph
    (net.gpu, `GraphedRelax`)."""
    if drive is None:
        drive = net.drive(x)
    bf16, graphs = getattr(net, 'gpu', (False, False))
    if (bf16 or graphs) and drive.is_cuda and not torch.is_grad_enabled():
        if graphs:
            return GraphedRelax.of(net, s, y, beta, steps, drive)(s, y, beta, drive)
        return _relax_bf16(net, s, y, beta, steps, drive)
    return _relax(net, s, y, beta, steps, drive)


def _relax(net, s, y, beta, steps, drive):
    step = net.phase_step(drive, y, beta)
    for _ in range(steps):
        s = step(s)
    return s


def _relax_bf16(net, s, y, beta, steps, drive):
    """The steps with the products in bfloat16 (torch.autocast): the states are cast back to the drive's dtype after
    each step, so that the in-place parts of a fused step never mix two dtypes and the EP rule reads float states."""
    with torch.autocast(drive.device.type, dtype=torch.bfloat16):
        step = net.phase_step(drive, y, beta)
        for _ in range(steps):
            s = [si.to(drive.dtype) for si in step(s)]
    return s


_GRAPHS = weakref.WeakKeyDictionary()        # net -> {phase signature: GraphedRelax}


def _capture(graph, fn):
    """fn() recorded into `graph` (its result: the graph's output tensors, rewritten by every replay)."""
    with torch.cuda.graph(graph):
        return fn()


class GraphedRelax:
    """A fixed-step relaxation captured once as a CUDA graph and replayed (--cuda-graphs): the graph reads static
    copies of the initial state, the drive, y and β, and the parameters in place (every optimiser of the suite updates
    them in place, so a replay sees the current weights). One graph per net and phase signature (the shapes, strides
    and dtypes, the steps, β when it is a number, nudged or not), kept beside the net (not in it: a copy of the net
    starts without graphs); making one costs three eager warm-up relaxations on a side stream, then the capture.
    Under --precision bf16 the captured steps are `_relax_bf16`'s."""

    def __init__(self, net, s, y, beta, steps, drive):
        self.static = [t.clone() for t in s], (None if y is None else y.clone()), \
            (beta.clone() if torch.is_tensor(beta) else beta), drive.clone()
        relax_fn = _relax_bf16 if net.gpu[0] else _relax
        ss, yy, bb, dd = self.static
        side = torch.cuda.Stream(device=drive.device)
        side.wait_stream(torch.cuda.current_stream(drive.device))
        with torch.cuda.stream(side):
            for _ in range(3):
                relax_fn(net, ss, yy, bb, steps, dd)
        torch.cuda.current_stream(drive.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        self.out = _capture(self.graph, lambda: relax_fn(net, ss, yy, bb, steps, dd))

    @staticmethod
    def of(net, s, y, beta, steps, drive):
        key = (tuple((t.shape, t.dtype, t.stride()) for t in s), drive.shape, drive.dtype, drive.stride(), steps,
               y is None, ('tensor', tuple(beta.shape)) if torch.is_tensor(beta) else ('number', beta))
        cache = _GRAPHS.setdefault(net, {})
        if key not in cache:
            cache[key] = GraphedRelax(net, s, y, beta, steps, drive)
        return cache[key]

    def __call__(self, s, y, beta, drive):
        ss, yy, bb, dd = self.static
        for a, b in zip(ss, s):
            a.copy_(b)
        if y is not None:
            yy.copy_(y)
        if torch.is_tensor(beta):
            bb.copy_(beta)
        dd.copy_(drive)
        self.graph.replay()
        return [t.clone() for t in self.out]


def relax_autograd(net, x, s, y, beta, steps):
    """The same relaxation through the autograd-of-Φ oracle (tests, benchmarks, fallback)."""
    for _ in range(steps):
        s = [si.detach() for si in net.stepper_autograd(x, s, y, beta)]
    return s


def _repeat(obj, n):
    """Stack n copies along the batch dimension (tensors, or tuples/lists of tensors; n = 1: obj itself)."""
    if obj is None or n == 1:
        return obj
    if isinstance(obj, (tuple, list)):
        return type(obj)(_repeat(o, n) for o in obj)
    return obj.repeat(n, *([1] * (obj.dim() - 1)))


def free_phase(net, x, steps=None, s=None, drive=None):
    """β = 0 relaxation from zeros (or from s), without graph, through net.forward: `steps` (default net.T) steps, or
    fewer when the network's tolerance net.tol (--tol) stops it, checked every net.tol_every steps (relax_tol); the
    steps run are recorded then (net.log_steps)."""
    with torch.no_grad():
        return net.forward(x, s, steps=steps, drive=drive, tol=net.tol)


def nudged_phases(net, x, y, s_free, betas, steps, drive=None, relax_fn=None):
    """Nudged phases for several β at once, as one batched tensor (the ±β phases cost one pass).

    Returns one state list per β, each started from s_free. (One β stays a number, as the free phase's 0: a (B, 1)
    tensor of β per row costs three small operations and a host-to-device copy per mini-batch.)
    """
    n, B = len(betas), x.shape[0]
    with torch.no_grad():
        s = _repeat(s_free, n)
        beta = float(betas[0]) if n == 1 else \
            torch.tensor(betas, dtype=s_free[0].dtype, device=x.device).repeat_interleave(B).view(-1, 1)
        yy = _repeat(y, n)
        if relax_fn is None:
            s = relax(net, None, s, yy, beta, steps, _repeat(net.drive(x) if drive is None else drive, n))
        else:
            s = relax_fn(net, _repeat(x, n), s, yy, beta, steps)
    return [[si[k * B:(k + 1) * B] for si in s] for k in range(n)]


# ---------------------------------------------------------------------------------------------------------------
# Gradient estimators

def pair_weights(x, beta_a, beta_b, phi_betas=None):
    """For a batch [states a; states b] of 2B rows: the row weights c (±1/(B(β_b − β_a))) whose weighted sum of
    per-sample Φ gives −(1/(β_b − β_a))(mean Φ_b − mean Φ_a), and the column of β inside Φ (in x's dtype)."""
    B = x.shape[0]
    pa, pb = (beta_a, beta_b) if phi_betas is None else phi_betas
    sign = torch.cat([torch.ones(B, dtype=x.dtype, device=x.device), -torch.ones(B, dtype=x.dtype, device=x.device)])
    beta = torch.cat([torch.full((B, 1), float(pa), dtype=x.dtype, device=x.device),
                      torch.full((B, 1), float(pb), dtype=x.dtype, device=x.device)])
    return sign / (B * (beta_b - beta_a)), beta


def _grads(obj, tensors, **kw):
    """d obj / d tensors, zeros where obj does not depend on a tensor (or the tensor is frozen)."""
    live = [t for t in tensors if t.requires_grad]
    g = iter(torch.autograd.grad(obj, live, allow_unused=True, **kw)) if live else iter(())
    out = []
    for t in tensors:
        gi = next(g) if t.requires_grad else None
        out.append(torch.zeros_like(t) if gi is None else gi)
    return out


def phi_param_grads(net, x, s_a, s_b, beta_a, beta_b, y=None, phi_betas=None, x_grad=False):
    """−(1/(β_b − β_a)) mean_b [∂Φ/∂θ(x, s_b; β_b) − ∂Φ/∂θ(x, s_a; β_a)], both states in one Φ evaluation.

    phi_betas overrides the β inside Φ (the GDU check evaluates both states of one step at the same β).
    Returns one tensor per parameter of net.parameters() (zeros where Φ does not depend on it). With x_grad, the
    same difference taken with respect to the input is appended: the EP estimate of ∂L/∂x, per sample.
    """
    params = list(net.parameters())
    s = [torch.cat([a.detach(), b.detach()]) for a, b in zip(s_a, s_b)]
    c, beta = pair_weights(x, beta_a, beta_b, phi_betas)
    with torch.enable_grad():
        xx = _repeat(x.detach(), 2).requires_grad_(x_grad)
        obj = (c * net.phi(xx, s, _repeat(y, 2), beta)).sum()
        grads = _grads(obj, params + ([xx] if x_grad else []))
    if x_grad:
        gx = grads.pop()
        grads.append(gx[:x.shape[0]] + gx[x.shape[0]:])
    return grads


def ep_param_grads(net, x, s_a, s_b, beta_a, beta_b, y=None, s_free=None, phi_betas=None):
    """The network's EP estimate of ∂L/∂θ between two nudged states (net.ep_param_grads: the Φ-difference rule above,
    a closed form, or an asymmetric net's own rule)."""
    return net.ep_param_grads(x, s_a, s_b, beta_a, beta_b, y, s_free, phi_betas)


# Functional forms of the estimators (ep/estimators.py), as the original API and the tests call them.

def ep_step(net, x, y, beta, estimator='one-sided', T=None, K=None, generator=None):
    """Free phase, nudged phase(s), EP estimate of ∂L/∂θ written to .grad (estimator: one-sided, random-sign or
    symmetric, see ep/estimators.py). Returns the free state s*."""
    return estimators.ep(estimator, beta, T, K, generator)(net, x, y)


def cep_step(net, x, y, beta, optimizer, T, K, thirdphase=False, accumulate=False):
    """Continual EP (estimators.Continual): the optimiser moves θ after every nudged step. Returns s*."""
    return estimators.Continual(beta, T, K, thirdphase, accumulate)(net, x, y, optimizer)


def bptt_step(net, x, y, T=None, K=None):
    """Truncated BPTT (estimators.TruncatedBPTT): ∂L/∂θ written to .grad. Returns the final state."""
    return estimators.TruncatedBPTT(T, K)(net, x, y)


# ---------------------------------------------------------------------------------------------------------------
# Targets

def one_hot(label, n):
    return F.one_hot(label, n).float()


# ---------------------------------------------------------------------------------------------------------------
# GDU property (Ernoult et al. 2019, Theorem 1) — BPTT side and EP side, step by step

def _bptt_window(net, x, y, T, K):
    """Exact BPTT over the last K steps of a T-step free phase.

    Returns (s_T, nS, nT): nS[i][t] = Σ_b ∂L/∂s_{i, T−t}, nT[p][t] = contribution to ∂L/∂θ_p of the step that
    produced s_{T−t} (a vector-Jacobian product of that single step), t = 0 … K−1.
    """
    with torch.no_grad():                                         # T − K fixed steps (no tolerance: BPTT's)
        s_ref = relax(net, x, net.init_state(x.shape[0]), None, 0.0, T - K)
    params = list(net.parameters())
    with torch.enable_grad():
        drive = net.drive(x)
        states = [[si.detach().requires_grad_(True) for si in s_ref]]
        for _ in range(K):
            states.append(net.stepper(states[-1], drive, None, 0.0))
        loss = net.cost(states[-1], y).mean()
        flat = [si for st in states[1:] for si in st]
        lam = torch.autograd.grad(loss, flat, allow_unused=True, retain_graph=True)
        n = len(s_ref)
        lam = [[torch.zeros_like(flat[k * n + i]) if lam[k * n + i] is None else lam[k * n + i]
                for i in range(n)] for k in range(K)]              # lam[k] = ∂L/∂s_{T−K+k+1}
        nS = [torch.stack([lam[K - 1 - t][i].sum(0) for t in range(K)]) for i in range(n)]
        nT = [[] for _ in params]
        # θ-dependence of the cost itself (a readout outside the dynamics): counted with the last step
        c = net.cost([si.detach() for si in states[-1]], y).mean()
        direct = _grads(c, params) if c.requires_grad else [None] * len(params)
        for t in range(K):                                        # step producing s_{T−t}
            k = K - 1 - t
            out = net.stepper([si.detach() for si in states[k]], drive, None, 0.0)
            g = _grads(out, params, grad_outputs=lam[k], retain_graph=True)
            for p_i, (p, gi) in enumerate(zip(params, g)):
                if t == 0 and direct[p_i] is not None:
                    gi = gi + direct[p_i]
                nT[p_i].append(gi)
    s_T = [si.detach() for si in states[-1]]
    return s_T, nS, [torch.stack(v) for v in nT]


def _ep_window(net, x, y, s_star, beta, K):
    """K nudged steps from s*: instantaneous EP updates with gradient sign, dS[i][t] and dT[p][t]."""
    drive = net.drive(x)
    dS = [[] for _ in s_star]
    dT = [[] for _ in net.parameters()]
    s = s_star
    with torch.no_grad():
        for t in range(K):
            s_next = net.stepper(s, drive, y, beta)
            for i, (a, b) in enumerate(zip(s, s_next)):
                dS[i].append(-(b - a).mean(0) / (beta * net.dt))
            # Φ(s_{t+1}; β) − Φ(s_t; β), except Φ(s*; 0) at t = 0, so that the sum over t telescopes to the EP
            # estimate −(1/β)[∂Φ/∂θ(s^β_t; β) − ∂Φ/∂θ(s*; 0)] (this matters for a θ-dependent cost: a readout)
            phi_betas = (0.0 if t == 0 else beta, beta)
            for p_i, g in enumerate(ep_param_grads(net, x, s, s_next, 0.0, beta, y, s_star, phi_betas)):
                dT[p_i].append(g)
            s = s_next
    return [torch.stack(v) for v in dS], [torch.stack(v) for v in dT]


def gdu_traces(net, x, y, T=None, K=None, beta=None):
    """Both sides of the GDU property on one mini-batch.

    Returns a dict of per-step (instantaneous) traces nS, dS (lists over layers, shape (K, *layer)) and nT, dT
    (dicts over parameter names, shape (K, *param)), plus their cumulative sums NT, DT over t (NT[t] is the
    BPTT gradient truncated to the last t+1 steps, DT[t] the EP estimate after t+1 nudged steps).
    """
    T = net.T if T is None else T
    K = net.Kmax if K is None else K
    beta = net.beta if beta is None else beta
    with torch.no_grad():
        x = net.front(x)
    s_T, nS, nT = _bptt_window(net, x, y, T, K)
    dS, dT = _ep_window(net, x, y, s_T, beta, K)
    names = [n for n, _ in net.named_parameters()]
    nT, dT = dict(zip(names, nT)), dict(zip(names, dT))
    return {'nS': nS, 'dS': dS, 'nT': nT, 'dT': dT,
            'NT': {k: v.cumsum(0) for k, v in nT.items()}, 'DT': {k: v.cumsum(0) for k, v in dT.items()}}


def compute_nSdSDT(net, x, y):
    """Original API: (nS, dS, DT, s*) — BPTT and EP neural traces and cumulative EP synaptic updates."""
    s_T, nS, _ = _bptt_window(net, x, y, net.T, net.Kmax)
    dS, dT = _ep_window(net, x, y, s_T, net.beta, net.Kmax)
    names = [n for n, _ in net.named_parameters()]
    return nS, dS, {k: v.cumsum(0) for k, v in zip(names, dT)}, s_T


def compute_NT(net, x, y):
    """Original API: cumulative truncated-BPTT gradients NT[p][t] (through the last t+1 steps)."""
    _, _, nT = _bptt_window(net, x, y, net.T, net.Kmax)
    return {n: v.cumsum(0) for (n, _), v in zip(net.named_parameters(), nT)}


def compute_nTdT(NT, DT):
    """Original API: instantaneous traces from cumulative ones by first differences (nT[0] = NT[0])."""
    def diff(c):
        return torch.cat([c[:1], c[1:] - c[:-1]])
    return {k: diff(v) for k, v in NT.items()}, {k: diff(v) for k, v in DT.items()}


def rmse(n, d):
    """Relative RMSE over time per unit, then mean over units (Ernoult 2019, compute_Hist):
    RMSE_j = sqrt( Σ_t (n_jt − d_jt)² / max(Σ_t n_jt², Σ_t d_jt²) ), 0 when both traces are identically 0.
    Returns (mean, std) over units."""
    n, d = n.flatten(1).double(), d.flatten(1).double()
    num = ((n - d) ** 2).sum(0)
    den = torch.maximum((n ** 2).sum(0), (d ** 2).sum(0))
    r = torch.where(den > 0, torch.sqrt(num / den.clamp_min(1e-300)), torch.zeros_like(den))
    return r.mean().item(), r.std().item() if r.numel() > 1 else 0.0


def sign_agreement(n, d):
    """(p_sign, p_zero) in %: units where both are non-zero with the same sign, and where both are exactly 0."""
    same = ((torch.sign(n) == torch.sign(d)) & (n != 0) & (d != 0)).double().mean().item()
    zero = ((n == 0) & (d == 0)).double().mean().item()
    return 100 * same, 100 * zero


def gdu_table(tr, layer_names=None, param_labels=None):
    """Rows of per-layer statistics of a gdu_traces dict: RMSE of the instantaneous traces; sign agreement of the
    cumulative synaptic estimates after K steps (the quantity the EP update uses) and, for neurons, over every
    (t, unit) where the BPTT gradient is non-zero."""
    rows = []
    for i, (n, d) in enumerate(zip(tr['nS'], tr['dS'])):
        m, sd = rmse(n, d)
        ps, pz = sign_agreement(n[n != 0], d[n != 0]) if (n != 0).any() else (float('nan'), 100.0)
        rows.append({'kind': 'neurons', 'key': f's_{i}', 'label': (layer_names or {}).get(i, f's_{i}'),
                     'rmse_mean': m, 'rmse_std': sd, 'sign_pct': ps, 'zero_pct': pz})
    for k in tr['nT']:
        m, sd = rmse(tr['nT'][k], tr['dT'][k])
        ps, pz = sign_agreement(tr['NT'][k][-1], tr['DT'][k][-1])
        rows.append({'kind': 'synapses', 'key': k, 'label': (param_labels or {}).get(k, k),
                     'rmse_mean': m, 'rmse_std': sd, 'sign_pct': ps, 'zero_pct': pz})
    return rows


def receipe(net, draw_batch, n_trials=20):
    """Proportion of synapses whose EP estimate (after Kmax nudged steps) has the sign of the truncated-BPTT
    gradient of training (through net.bptt_window(T, Kmax) steps: Kmax + 1 for EPcont/EPdisc, as the original's
    receipe, which called its training 'withgrad' forward), per weight tensor, over n_trials fresh mini-batches
    (Ernoult 2019's tuning "recipe" for T, K, β). Returns {name: tensor (n_trials, 2) of (p_sign, p_zero)}."""
    stats = {}
    names = [n for n, _ in net.named_parameters()]
    for _ in tqdm(range(n_trials), desc='receipe', leave=False, dynamic_ncols=True):
        x, y = draw_batch()
        with torch.no_grad():
            x = net.front(x)
        s_T, _, nT = _bptt_window(net, x, y, net.T, net.bptt_window(net.T, net.Kmax))
        _, dT = _ep_window(net, x, y, s_T, net.beta, net.Kmax)
        for k, n_k, d_k in zip(names, nT, dT):
            if k.endswith('weight'):
                stats.setdefault(k, []).append(sign_agreement(n_k.sum(0), d_k.sum(0)))
    return {k: torch.tensor(v) for k, v in stats.items()}


# ---------------------------------------------------------------------------------------------------------------
# Relaxation with a convergence criterion (Nest & Ernoult 2024, TOL; --tol for every family's free phase)

def converged(prev, s, tol):
    """(1/n) Σ_l ‖s_l − prev_l‖_F / max(‖prev_l‖_F, 1e−6) < tol, norms over each layer's whole batch tensor (a
    device tensor: the caller decides when to read it)."""
    r = torch.stack([(a - b).norm() / b.norm().clamp_min(1e-6) for a, b in zip(s, prev)])
    return r.mean() < tol


def relax_tol(net, s, drive, steps, tol=None, every=10, y=None, beta=0.0):
    """Up to `steps` closed-form steps; with tol, stop after the first step i (a multiple of `every`, or `steps`)
    whose change from step i − 1 meets the criterion. The criterion is read on the host once per `every` steps, not
    every step. Returns (state, steps run)."""
    if tol is None:
        return relax(net, None, s, y, beta, steps, drive), steps
    done, step = 0, net.phase_step(drive, y, beta)
    while done < steps:
        k = min(every, steps - done)
        for _ in range(k - 1):
            s = step(s)
        prev, s = s, step(s)
        done += k
        if converged(prev, s, tol):
            break
    return s, done

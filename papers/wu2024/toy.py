"""S1-S3 of Wu et al. 2024: least squares f(W) = (c/N) Σ_n (⟨w, a_n⟩ + b − y_n)², y = A x* (+ bias), c = 1 (MSE) or
½ (MSE/2), full batch. The digital and closed-form curves are analog.ald_step with Gaussian gradient noise σ
(digital SGD W ← W − α g, Analog SGD W ← W − α g − (α/τ)|g| ⊙ W), the simulated ones an AnalogLinear trained by
AnalogSGD with the script's device preset (gradient noise through the MVM's weight noise, as the original). The logged
loss is f of the weights after each step, divided by the input size; the final loss of a curve is the mean of its last
20 logged values."""
import dataclasses
import math
import os

import torch
import torch.nn as nn

import analog
from netClasses import Feedforward
from papers.wu2024.figures import new_folder, saturation, write_saturation
from suite import rundir
from suite import trainer
from suite.cli import say, seed_everything

DRY_ITERATIONS = 20                                 # --dry-run: steps of every curve


@dataclasses.dataclass(frozen=True)
class Toy:
    """A toy problem of the scripts: A = a_scale·N(0, 1) (N × D), x* = x_scale·N(0, I), y = A x* + bias."""
    D: int
    N: int
    x_scale: float
    a_scale: float
    half: bool                          # loss MSE/2 (else MSE)
    bias: float                         # a digital bias is learnt when non-zero (S3.3)
    iterations: int
    lrs: tuple
    taus: tuple
    sigmas: tuple                       # gradient-noise std σ (S3.2: one per variance σ²)
    preset: str                         # analog.rpu_config preset of the simulated curves
    ema: float                          # smoothing of the plotted curves


TAU_SWEEP = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
TOYS = {
    'S1-SGD-diff-lr': Toy(40, 100, 0.45, 1.0, False, 0.0, 2500, (0.2, 0.1, 0.05, 0.03), (3.0,),
                          (1e-2 / math.sqrt(40),), 'S1', 0.9),
    'S2-dynamic-verification': Toy(40, 100, 0.3, 0.5, True, 0.0, 2500, (0.03,), (1.0, 1.5, 2.0, 2.5), (0.1,), 'S2',
                                   0.8),
    'S3.1-ablation-tau': Toy(40, 100, 0.3, 0.5, True, 0.0, 2500, (0.03,), TAU_SWEEP, (0.1,), 'S3.1', 0.8),
    'S3.2-ablation-sigma': Toy(50, 100, 0.5, 1.0, True, 0.0, 200, (0.1,), (2.0,),
                               tuple(math.sqrt(v) for v in (1e-3, 1e-2, 1e-1, 1.0)), 'S3.2', 0.8),
    'S3.3-ablation-init': Toy(50, 100, 0.5, 1.0, False, 0.1, 50, (0.1,), (1.0,), (1e-2 / math.sqrt(50),), 'S3.3',
                              0.8),
}
# S1's Tiki-Taka (not in the original): the network sees W̄ = C + γA with γ = 0.4 (the paper's mixing, the 2025 code's
# value), A learns at fast_lr 0.1, one column transferred per step. With the 2024 scripts' γ = 0, A integrates the
# gradient without friction and C integrates A: an oscillator damped only by A's drift, which is negligible near the
# optimum (measured with γ = 0, fast_lr = α and every column transferred each step, the original's commented-out toy
# TT: final losses 12-34× above Analog SGD's).
S1_TT = dict(gamma=0.4, fast_lr=0.1)
S3_CONSTANTS = (1e3, 1e2, 1e1, 1.0, 1e-2)         # S3.3: constant initial weights (clipped by the devices)
S3_PRETRAIN = (10, 20, 30)                          # S3.3: iterations of digital GD before the analog run
FINAL_WINDOW = 20


def make_problem(toy, gen):
    A = toy.a_scale * torch.randn(toy.N, toy.D, generator=gen)
    x_star = toy.x_scale * torch.randn(toy.D, generator=gen)
    return A, A @ x_star + toy.bias


def toy_loss(toy, A, Y, W, b=0.0):
    """f(W, b) = (c/N) Σ_n (⟨w, a_n⟩ + b − y_n)², c = ½ (MSE/2) or 1; W is (1, D)."""
    return (A @ W[0] + b - Y).square().mean() * (0.5 if toy.half else 1.0)


def toy_grad(toy, A, Y, W, b=0.0):
    """(∂f/∂W, ∂f/∂b) = (2c/N) (Aᵀ r, Σ r), r = A w + b − y."""
    r = (A @ W[0] + b - Y) * ((1.0 if toy.half else 2.0) / toy.N)
    return (r @ A).unsqueeze(0), r.sum()


def dynamic(toy, A, Y, lr, tau, sigma, gen, W=None, b=0.0, iterations=None):
    """The closed-form dynamic (A-ALD) with gradient noise σ·ξ; τ = inf is digital SGD. The bias (S3.3) is digital.
    Returns (logged losses f/D, final W, final b)."""
    W = torch.zeros(1, toy.D) if W is None else W
    losses = torch.empty(iterations)
    for k in range(iterations):
        gW, gb = toy_grad(toy, A, Y, W, b)
        W = analog.ald_step(W, gW + sigma * torch.randn(W.shape, generator=gen), lr, tau)
        if toy.bias:
            b = b - lr * gb
        losses[k] = toy_loss(toy, A, Y, W, b)
    return losses / toy.D, W, b


def simulate(toy, A, Y, rpu, lr, iterations, W=None, b=0.0):
    """AnalogSGD on an AnalogLinear(D → 1) (pulsed per-sample updates of the device model), full batch.
    Returns (logged losses f/D, the layer)."""
    lin = nn.Linear(toy.D, 1, bias=bool(toy.bias))
    with torch.no_grad():
        lin.weight.copy_(torch.zeros(1, toy.D) if W is None else W)
        if toy.bias:
            lin.bias.fill_(float(b))
    layer = analog.convert(lin, rpu)
    half = 0.5 if toy.half else 1.0

    def squared_error(z, y, reduction='mean'):          # f = (half) (1/N) Σ_n (z_n − y_n)², z = A w + b
        e = (z[:, 0] - y).square() * half
        return e.mean() if reduction == 'mean' else e
    net = Feedforward(layer, squared_error)             # the design-card methods: one update path for every paper
    opt = analog.AnalogSGD(layer.parameters(), lr=lr)
    losses = torch.empty(iterations)
    for k in range(iterations):
        net.computeGradients(net(A), Y)
        net.updateWeights(opt)
        with torch.no_grad():
            losses[k] = toy_loss(toy, A, Y, layer.visible_weight(), layer.bias if toy.bias else 0.0)
    return losses / toy.D, layer

def s1_runs(toy, A, Y, gen, it):
    """Per step size: digital SGD (exact gradient + σ noise), Analog SGD and TT-v1 simulated (noise: w_noise = σ)."""
    runs = []
    tau, sigma = toy.taus[0], toy.sigmas[0]
    for lr in toy.lrs:
        runs.append((lr, 'digital', dynamic(toy, A, Y, lr, math.inf, sigma, gen, iterations=it)[0]))
        runs.append((lr, 'analog', simulate(toy, A, Y, analog.rpu_config('Analog SGD', tau, toy.preset,
                                                                         w_noise=sigma), lr, it)[0]))
        tt = analog.rpu_config('TT-v1', tau, toy.preset, w_noise=sigma, **S1_TT)
        runs.append((lr, 'tt', simulate(toy, A, Y, tt, lr, it)[0]))
    return 'lr', runs, []


def tau_runs(toy, A, Y, gen, it):
    """Per τ: digital SGD and the closed form with gradient noise σ, and the simulation with the weight noise
    σ / (mean singular value of A) that gives the same gradient noise (the original's noise correction); the
    saturation |W|/bound at the end of each analog curve."""
    lr, sigma = toy.lrs[0], toy.sigmas[0]
    kit_sigma = sigma / torch.linalg.svdvals(A).mean().item()
    digital = dynamic(toy, A, Y, lr, math.inf, sigma, gen, iterations=it)[0]
    runs, sat = [], []
    for tau in toy.taus:
        runs.append((tau, 'digital', digital))
        losses, W, _ = dynamic(toy, A, Y, lr, tau, sigma, gen, iterations=it)
        runs.append((tau, 'closed_form', losses))
        sat.append((tau, 'closed_form', W.abs() / tau))
        losses, layer = simulate(toy, A, Y, analog.rpu_config('Analog SGD', tau, toy.preset, w_noise=kit_sigma), lr,
                                 it)
        runs.append((tau, 'simulation', losses))
        sat.append((tau, 'simulation', saturation(layer.weights()['W'], *layer.bounds())))
    return 'tau', runs, sat


def sigma_runs(toy, A, Y, gen, it):
    """Per noise variance σ²: the simulation with weight noise σ in the forward and backward MVMs."""
    tau, lr = toy.taus[0], toy.lrs[0]
    return 'sigma2', [(round(s * s, 12), 'simulation',
                       simulate(toy, A, Y, analog.rpu_config('Analog SGD', tau, toy.preset, w_noise=s), lr, it)[0])
                      for s in toy.sigmas], []


def init_runs(toy, A, Y, gen, it):
    """The simulation from constant weights (clipped to the bounds by analog.convert) and from weights trained by
    digital GD (exact gradient) for a few iterations."""
    tau, lr, sigma = toy.taus[0], toy.lrs[0], toy.sigmas[0]
    rpu = analog.rpu_config('Analog SGD', tau, toy.preset, w_noise=sigma)
    starts = [(f'constant {c:g}', torch.full((1, toy.D), c), 0.0) for c in S3_CONSTANTS]
    for n in S3_PRETRAIN:
        _, W, b = dynamic(toy, A, Y, lr, math.inf, 0.0, gen, iterations=n)
        starts.append((f'digital GD {n} it', W, float(b)))
    return 'init', [(name, 'simulation', simulate(toy, A, Y, rpu, lr, it, W, b)[0]) for name, W, b in starts], []


TOY_RUNS = {'S1-SGD-diff-lr': s1_runs, 'S2-dynamic-verification': tau_runs, 'S3.1-ablation-tau': tau_runs,
            'S3.2-ablation-sigma': sigma_runs, 'S3.3-ablation-init': init_runs}


def run(cfg, argv):
    """S1-S3: final_loss.csv (<key>, curve, final_loss), curves.csv (<key>, curve, iteration, loss), saturation.csv
    (S2, S3.1), the figure."""
    import pandas as pd                 # (imported here: it costs start-up time to commands that write no table)
    spec = TOYS[cfg.script]
    seed = seed_everything(cfg.seed)
    gen = torch.Generator().manual_seed(seed)
    it = min(spec.iterations, cfg.iterations or spec.iterations)
    items = [(f.name, getattr(spec, f.name)) for f in dataclasses.fields(spec)] + [('iterations run', it)]
    if TOY_RUNS[cfg.script] is s1_runs:
        items.append(('TT-v1 overrides', S1_TT))
    folder = trainer.open_run(lambda: new_folder(cfg, argv, items))
    A, Y = make_problem(spec, gen)
    key, runs, sat = TOY_RUNS[cfg.script](spec, A, Y, gen, it)
    final = pd.DataFrame([{key: v, 'curve': c, 'final_loss': l[-FINAL_WINDOW:].mean().item()} for v, c, l in runs])
    curves = pd.concat([pd.DataFrame({key: v, 'curve': c, 'iteration': range(1, len(l) + 1), 'loss': l.numpy()})
                        for v, c, l in runs])
    rundir.write_csv(os.path.join(folder, 'final_loss.csv'), final)
    rundir.write_csv(os.path.join(folder, 'curves.csv'), curves)
    for r in final.itertuples(index=False):
        say(f'{key} {r[0]}: {r.curve:12s} final loss {r.final_loss:.4e}')
    if sat:
        write_saturation(folder, [({key: v, 'curve': c}, s) for v, c, s in sat])
    rundir.plot_folder(folder)
    return folder

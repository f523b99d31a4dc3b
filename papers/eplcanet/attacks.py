"""Adversarial robustness of EP networks (the EPLCANet robustness tools, spec C1.5), without an attack library:
the original went through a modified copy of IBM ART's PyTorchClassifier; torchattacks would pull an old
`requests` pin here. Every attack works on images in [0, 1]; the network's input normalisation is inside the
classifier, as in the original wrapper.

- The classifier predicts with `predict_steps` free steps from zeros (β = 0) and takes input gradients by BPTT
  through `attack_steps` steps of the dynamics from zeros (and through the front block, e.g. the LCA).
- PGD (Madry et al. 2018; ART's ProjectedGradientDescent without random start): x ← Π_{B_ε(x₀)∩[0,1]}(x + α·d),
  d = sign(∇) (L∞) or ∇/||∇||₂ (L2).
- Square (Andriushchenko et al. 2020), score-based black box: random square-shaped changes of the perturbation,
  kept when they lower the margin logit_y − max_{j≠y} logit_j. L∞: the windows are set to ±ε per channel, as in
  the paper. L2: a simplified random search (a ±ε-scaled window added, then projected on the L2 ball), not the
  paper's mass-redistribution scheme.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

import netFunctions as nf

INF = math.inf


def eps_grid(norm):
    """The original grids: L2 = sort(logspace(0.05 … 3, 10) ∪ {1}), L∞ = sort(logspace(1e-4 … 0.1, 10) ∪ {8/255})."""
    if norm == 2:
        grid = np.logspace(np.log10(0.05), np.log10(3), 10).tolist() + [1.0]
    else:
        grid = np.logspace(-4, -1, 10).tolist() + [8 / 255]
    return sorted(grid)


def parse_norm(value):
    """--attack-norm: 2, or 100 / inf for L∞ (the original's convention)."""
    return INF if value in (100, INF) else 2


class Classifier:
    """An EP network seen as a classifier of [0, 1] images."""

    def __init__(self, net, mean=None, std=None, predict_steps=30, attack_steps=29):
        self.net, self.predict_steps, self.attack_steps = net, predict_steps, attack_steps
        p = next(net.parameters())
        self.mean = None if mean is None else torch.tensor(mean, dtype=p.dtype, device=p.device).view(1, -1, 1, 1)
        self.std = None if std is None else torch.tensor(std, dtype=p.dtype, device=p.device).view(1, -1, 1, 1)

    def normalize(self, x):
        return x if self.mean is None else (x - self.mean) / self.std

    def denormalize(self, x):
        return x if self.mean is None else x * self.std + self.mean

    def logits(self, x):
        with torch.no_grad():
            s = nf.free_phase(self.net, self.net.front(self.normalize(x)), self.predict_steps)
            return self.net.output(s)

    def loss_grad(self, x, label):
        """∂/∂x of Σ_b ℓ(s_T(x), y): BPTT through attack_steps steps from zeros."""
        net = self.net
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            u = net.front(self.normalize(x))
            s = nf.relax(net, u, net.init_state(x.shape[0]), None, 0.0, self.attack_steps)
            loss = net.cost(s, net.target(label)).sum()
            return torch.autograd.grad(loss, x)[0]


def _norms(d):
    return d.flatten(1).norm(dim=1).view(-1, *([1] * (d.dim() - 1)))


def project(delta, eps, norm):
    """Onto the ε-ball of the norm."""
    if norm == INF:
        return delta.clamp(-eps, eps)
    return delta * (eps / _norms(delta).clamp_min(1e-12)).clamp(max=1.0)


def pgd(clf, x, label, eps, norm=2, steps=20, step_size=None):
    """White-box PGD from x (no random start); step α = 2.5 ε / 20 as in the original. Returns x_adv."""
    alpha = 2.5 * eps / 20 if step_size is None else step_size
    x0, xa = x.detach(), x.detach().clone()
    for _ in range(steps):
        g = clf.loss_grad(xa, label)
        d = g.sign() if norm == INF else g / (_norms(g) + 1e-12)
        xa = (x0 + project(xa + alpha * d - x0, eps, norm)).clamp(0, 1)
    return xa


def margin(logits, label):
    """logit_y − max_{j≠y} logit_j (negative: misclassified)."""
    true = logits.gather(1, label[:, None])[:, 0]
    other = logits.masked_fill(F.one_hot(label, logits.shape[1]).bool(), -math.inf).max(1)[0]
    return true - other


def _p_schedule(p_init, i, n):
    """Fraction of pixels changed at query i (the paper's piecewise-constant halving schedule, rescaled to n)."""
    it = int(i / max(n, 1) * 10000)
    for bound, div in ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64), (6000, 128),
                       (8000, 256)):
        if it <= bound:
            return p_init / div
    return p_init / 512


def square(clf, x, label, eps, norm=INF, queries=1000, p_init=0.8, generator=None):
    """Score-based Square attack; only samples still classified correctly keep being attacked. Returns x_adv."""
    g = generator
    x0 = x.detach()
    B, C, H, W = x0.shape
    sign = lambda *shape: torch.randint(0, 2, shape, generator=g).to(x0) * 2 - 1
    if norm == INF:                                  # vertical stripes of ±ε
        delta = eps * sign(B, C, 1, W).expand(B, C, H, W).clone()
    else:
        delta = project(eps * sign(B, C, H, W) / math.sqrt(C * H * W), eps, norm)
    xa = (x0 + delta).clamp(0, 1)
    m = margin(clf.logits(xa), label)
    for i in range(queries):
        todo = m > 0
        if not todo.any():
            break
        side = max(1, min(H, int(round(math.sqrt(_p_schedule(p_init, i, queries) * H * W)))))
        r, c = (int(torch.randint(0, H - side + 1, (1,), generator=g)),
                int(torch.randint(0, W - side + 1, (1,), generator=g)))
        cand = (xa - x0).clone()
        window = eps * sign(B, C, 1, 1).expand(B, C, side, side)
        if norm == INF:
            cand[:, :, r:r + side, c:c + side] = window
        else:
            cand[:, :, r:r + side, c:c + side] += window / side
            cand = project(cand, eps, norm)
        x_new = (x0 + cand).clamp(0, 1)
        m_new = margin(clf.logits(x_new), label)
        better = todo & (m_new < m)
        xa = torch.where(better.view(-1, 1, 1, 1), x_new, xa)
        m = torch.where(better, m_new, m)
    return xa


def accuracy(clf, x, label):
    return (clf.logits(x).argmax(1) == label).double().mean().item() * 100

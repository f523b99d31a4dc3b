"""Convolutional LCA sparse coding (Rozell et al. 2008; the algorithm of LANL's lca-pytorch, spec D), as a reusable
module: the front end of EPLCANet (Laborieux-style EP networks with an LCA layer).

For an input x and a convolutional dictionary D (features × channels × k × k, each feature of unit L2 norm), LCA
minimises  E(a) = ½ ||x − D ∗ a||² + λ ||a||₁  by integrating membrane potentials u:

    b = Dᵀ ∗ x                                 (input drive, computed once)
    a = T_λ(u)                                 (soft threshold relu(u − λ), or its signed / hard variants)
    u ← u + (1/τ) (b − u − (DᵀD − I) a)        (lateral inhibition, self-connection excluded)

The code returned after N iterations is lca-pytorch's: the activation computed at the last iteration, before its
state update, T_λ(u_{N−1}). D ∗ a is the transposed convolution (reconstruction), Dᵀ ∗ the convolution. The
inhibition is computed as Dᵀ ∗ (D ∗ a) − a, two convolutions that are exact on the image (lca-pytorch convolves
with the precomputed D-with-D correlation instead, which with "same" padding also counts overlaps of features
reaching beyond the image border, 0.1–0.5 relative on the codes, and costs features² per tap).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.grad import conv2d_weight

from suite import distributed


class LCAConv2D(nn.Module):
    def __init__(self, out_neurons, in_neurons, kernel_size=7, stride=1, lambda_=0.25, tau=100.0, eta=0.01,
                 lca_iters=1000, pad='same', nonneg=True, transfer_func='soft_threshold', input_zero_mean=True,
                 input_unit_var=True, d_update_clip=math.inf):
        super().__init__()
        self.F, self.C, self.k, self.stride = out_neurons, in_neurons, kernel_size, stride
        self.lambda_, self.tau, self.eta, self.lca_iters = lambda_, tau, eta, lca_iters
        self.padding = kernel_size // 2 if pad == 'same' else 0
        self.nonneg, self.transfer_func = nonneg, transfer_func
        self.input_zero_mean, self.input_unit_var, self.d_update_clip = input_zero_mean, input_unit_var, d_update_clip
        self.grad_iters = None
        w = torch.empty(out_neurons, in_neurons, kernel_size, kernel_size)
        nn.init.trunc_normal_(w)
        self.weights = nn.Parameter(w, requires_grad=False)
        self.normalize_weights()

    # -- dictionary ------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def normalize_weights(self):
        """Every feature to unit L2 norm."""
        norm = self.weights.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        self.weights.div_(norm)

    @torch.no_grad()
    def assign_weight_values(self, w):
        if w.shape != self.weights.shape:
            raise ValueError(f'dictionary shape {tuple(w.shape)} != {tuple(self.weights.shape)}')
        self.weights.copy_(w.to(self.weights))
        self.normalize_weights()

    def get_weights(self):
        return self.weights.detach().clone()

    def code_size(self, n):
        """Spatial size of the code of an n × n input."""
        return (n + 2 * self.padding - self.k) // self.stride + 1

    # -- inference -------------------------------------------------------------------------------------------------
    def preprocess(self, x):
        """Per-sample zero mean and unit variance over all non-batch dimensions (when enabled)."""
        dims = tuple(range(1, x.dim()))
        if self.input_zero_mean:
            x = x - x.mean(dims, keepdim=True)
        if self.input_unit_var:
            x = x / (x.std(dims, keepdim=True) + 1e-12)
        return x

    def transfer(self, u):
        lam = self.lambda_
        if self.transfer_func == 'hard_threshold':
            return torch.where(u > lam, u, torch.zeros_like(u)) if self.nonneg else \
                torch.where(u.abs() > lam, u, torch.zeros_like(u))
        if self.nonneg:
            return F.relu(u - lam)
        return F.relu(u - lam) - F.relu(-u - lam)

    def drive(self, x):
        """b = Dᵀ ∗ x."""
        return F.conv2d(x, self.weights, stride=self.stride, padding=self.padding)

    def reconstruct(self, a, size):
        """D ∗ a, cropped to the input size."""
        out = F.conv_transpose2d(a, self.weights, stride=self.stride, padding=self.padding)
        dh, dw = size[-2] - out.shape[-2], size[-1] - out.shape[-1]
        return F.pad(out, (0, dw, 0, dh)) if dh or dw else out

    def inhibition(self, a, size):
        """(DᵀD − I) a: what the other active features explain of each feature's drive."""
        return self.drive(self.reconstruct(a, size)) - a

    def encode(self, x, initial_states=None, iters=None):
        """Runs `iters` LCA iterations; returns (acts, recon, recon_error, states). x is already preprocessed.

        As lca-pytorch, iteration i computes a = T_λ(u_{i−1}) and then u_i, and the returned acts (and the
        reconstruction made of them) are those of the last iteration, computed *before* its state update: after N
        iterations, acts = T_λ(u_{N−1}) and states = u_N (a warm start from states continues the same sequence).

        When a gradient is wanted (D or x requires grad), only the last `grad_iters` iterations keep their graph
        (None: all): the earlier ones are a warm start, as the free phase before a truncated BPTT window."""
        n = self.lca_iters if iters is None else iters
        b = self.drive(x)
        u = torch.zeros_like(b) if initial_states is None else initial_states.detach().clone()
        free = 0 if self.grad_iters is None else max(n - self.grad_iters, 0)
        a = None
        with torch.no_grad():
            for _ in range(free):
                a, u = self.step(u, b.detach(), x.shape)
        for _ in range(n - free):
            a, u = self.step(u, b, x.shape)
        if a is None:                                          # no iteration: the code of the initial state
            a = self.transfer(u)
        recon = self.reconstruct(a, x.shape)
        return a, recon, x - recon, u

    def step(self, u, b, size):
        """One iteration: a = T_λ(u), then u ← u + (1/τ)(b − u − (DᵀD − I) a). Returns (a, new u)."""
        a = self.transfer(u)
        return a, u + (b - u - self.inhibition(a, size)) / self.tau

    def forward(self, x, initial_states=None):
        return self.encode(self.preprocess(x), initial_states)

    def energy(self, x, a):
        """Per-sample ½||x − D ∗ a||² + λ||a||₁."""
        err = x - self.reconstruct(a, x.shape)
        return 0.5 * (err ** 2).flatten(1).sum(1) + self.lambda_ * a.abs().flatten(1).sum(1)

    # -- learning (no autograd) ------------------------------------------------------------------------------------
    @torch.no_grad()
    def update_weights(self, acts, recon_error):
        """ΔD_f = η (Σ_batch,positions a_f × error patch) / (1 + #times f was active in the batch), clipped to
        ±d_update_clip; then every feature is renormalised. This is gradient descent on ½||x − D ∗ a||²."""
        # sums over the rows of the whole mini-batch: of every torchrun rank's shard (distributed.row_sum)
        dD = distributed.row_sum(conv2d_weight(recon_error, self.weights.shape, acts, stride=self.stride,
                                               padding=self.padding))
        active = distributed.row_sum((acts != 0).flatten(2).sum(2).sum(0).to(dD))        # per feature
        dD = self.eta * dD / (1 + active).view(-1, 1, 1, 1)
        dD = dD.clamp(-self.d_update_clip, self.d_update_clip)
        self.weights.add_(dD)
        self.normalize_weights()
        return dD


def times_active_by_feature(acts):
    """Number of non-zero activations per feature."""
    return (acts != 0).flatten(2).sum(2).sum(0)

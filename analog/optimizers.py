"""Optimisers that write weights on devices by pulses.

- `AnalogSGD`: the optimiser of networks made of analog layers (layers.convert); each analog layer applies its
  pulsed update at the group's lr: Analog SGD, W_{k+1} = W_k − α ∇f(W_k; ξ_k) − (α/τ) |∇f(W_k; ξ_k)| ⊙ W_k in
  Wu et al. 2024's form for the ALD, realised as the toolkit's pulse trains W ← W − lr Σ_b d_b x_bᵀ; or TT-v1, A at
  fast_lr, then the transfer to C (tiles.tt_v1_transfer). Other parameters take plain SGD.
- `DeviceSGD`: the same arrays for the EP nets (`--analog` on the Ernoult 2019, Laborieux 2021 and EPLCANet command
  lines), whose relaxation reads the weights directly, so that the analog part is the update path: every weight
  tensor lives on devices and the EP estimate of a mini-batch (p.grad) is written element-wise by pulses
  (tiles.pulse_elementwise), into W or, for TT-v1, into A with the same transfer to C. `bounds_of` gives the bounds
  of its visible array.
- `ald_step`: the paper's closed-form analog step (A-ALD), without pulses or noise.

Device constants are drawn from a generator seeded by `construction_seed` (the same for every tile, as the toolkit).
"""
import math

import torch

from .configs import _check
from .devices import device_state, response_constants
from .tiles import array_names, initial_weight, pulse_elementwise, seen_array, tt_v1_transfer, visible


def ald_step(W, grad, lr, tau):
    """The paper's closed-form analog step (A-ALD), W_{k+1} = W_k − α g − (α/τ) |g| ⊙ W_k with α = lr, g = grad, the
    ALD's response W + ΔW − (|ΔW|/τ) ⊙ W to ΔW = −α g (no pulses, no noise)."""
    return W - lr * grad - (lr / tau) * grad.abs() * W


class AnalogSGD(torch.optim.Optimizer):
    """SGD whose analog layers update by pulses: each analog layer (found through its `analog_ctx` handle among the
    parameters) applies its pulsed update at the group's lr (Analog SGD: W ← W − lr Σ_b d_b x_bᵀ; TT-v1: A at
    fast_lr, then the transfer to C at lr·transfer_lr); every other parameter (biases, out scales, a digital net)
    takes plain SGD θ ← θ − lr ∂L/∂θ. Works with torch.optim.lr_scheduler."""

    def __init__(self, params, lr=0.01):
        _check(math.isfinite(lr) and lr >= 0, f'lr {lr}: give a finite value >= 0')
        super().__init__(params, dict(lr=lr))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group['params']:
                self._update(p, group)
        return loss

    def _update(self, p, group):
        layer = getattr(p, 'analog_layer', None)
        if layer is not None:
            layer.pulsed_update(group['lr'])
        elif p.grad is not None:
            p.add_(p.grad, alpha=-group['lr'])


class DeviceSGD(AnalogSGD):
    """SGD for networks that read their weights directly (the EP nets: the relaxation uses W itself, there is no MVM
    to route through a tile): every weight tensor (2-D or more, not in `digital`) lives on soft-bounds devices and
    changes only by pulses; other parameters (biases, `digital` ones) take plain SGD. The device state lives in the
    optimiser's state (saved with its state_dict), one tile per tensor viewed as (out, rest).

    The update is the EP estimate ĝ of the mini-batch as computed by the network (p.grad), Δ = −lr (ĝ + wd θ),
    written element-wise (pulse_elementwise): Analog SGD pulses Δ into W; TT-v1 pulses −fast_lr (ĝ + wd θ) into A,
    then every transfer_every steps the next column(s) of A go to C (tiles.tt_v1_transfer, rate lr·transfer_lr, as
    in the analog layers), and the network's weights become C + γA. An element-wise write of the batch estimate has
    the drift |Σ_b Δ_b|/τ, the per-sample trains of the toolkit Σ_b |Δ_b|/τ: the two agree at mini-batch 1 (README,
    Wu et al. 2024)."""

    def __init__(self, params, lr=0.01, rpu=None, digital=()):
        _check(rpu is not None, 'DeviceSGD needs an rpu (rpu_config)')
        super().__init__(params, lr)
        self.rpu, self._digital = rpu, {id(p) for p in digital}
        self._analog = {id(p) for p in self._analog_params()}
        self._response = {}
        gen = torch.Generator().manual_seed(rpu.device.construction_seed)
        with torch.no_grad():
            for p in self._analog_params():
                w = p.detach().reshape(p.shape[0], -1)
                state = self.state[p]
                for name in array_names(rpu):
                    weight, consts = device_state(rpu.device, initial_weight(name, w), gen)
                    state[name] = weight
                    state.update({f'{name}.{k}': v for k, v in consts.items()})
                if rpu.algorithm == 'tt-v1':
                    state['batches'], state['column'] = 0, 0
                p.copy_(self._visible(state).view_as(p))

    def _analog_params(self):
        return [p for g in self.param_groups for p in g['params'] if p.dim() >= 2 and id(p) not in self._digital]

    def _visible(self, state):
        return visible(self.rpu, state)

    def _dev(self, p, name):
        """The device of tile `name` of p: its saved constants and the derived response constants (cached)."""
        state = self.state[p]
        dev = {k: state[f'{name}.{k}'] for k in ('b_min', 'b_max', 's_up', 's_dn')}
        key = (id(p), name)
        if key not in self._response:
            self._response[key] = response_constants(**dev)
        return {**dev, **self._response[key], 'dw_min': self.rpu.device.dw_min,
                'c2c_std': self.rpu.device.dw_min_std}

    def load_state_dict(self, state_dict):
        tiles = set(array_names(self.rpu))
        for s in state_dict['state'].values():
            _check(tiles <= set(s), f"the saved optimiser state has no {' and '.join(sorted(tiles))} array: it was "
                                    f"not trained with {self.rpu.algorithm}")
        super().load_state_dict(state_dict)
        self._response = {}

    def _update(self, p, group):
        if p.grad is None:
            return
        lr, wd, rpu = group['lr'], group.get('weight_decay', 0.0), self.rpu
        g = p.grad.add(p, alpha=wd) if wd else p.grad
        if id(p) not in self._analog:
            p.add_(g, alpha=-lr)
            return
        state = self.state[p]
        g = g.reshape(p.shape[0], -1)
        if rpu.algorithm == 'analog sgd':
            state['W'] = pulse_elementwise(state['W'], self._dev(p, 'W'), -lr * g, rpu.update)
        else:
            state['A'] = pulse_elementwise(state['A'], self._dev(p, 'A'), -rpu.fast_lr * g, rpu.update)
            state['C'], state['batches'], state['column'] = tt_v1_transfer(
                state['A'], state['C'], self._dev(p, 'C'), state['batches'], state['column'], lr, rpu)
        p.copy_(self._visible(state).view_as(p))


def bounds_of(optimizer, p):
    """(b_min, b_max) of the array whose weights the network sees for parameter p of a DeviceSGD (W, or C), shaped
    as p; None for a digital parameter."""
    state = optimizer.state.get(p, {})
    name = seen_array(optimizer.rpu)
    if f'{name}.b_min' not in state:
        return None
    return state[f'{name}.b_min'].view_as(p), state[f'{name}.b_max'].view_as(p)

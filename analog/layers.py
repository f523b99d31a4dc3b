"""Analog layers (aihwkit's AnalogLinear / AnalogConv2d): nn.Linear and nn.Conv2d whose weight matrix lives on
tiles, W (Analog SGD) or A and C (TT-v1), with a digital bias and, with learn_out_scaling, a digital output gain.

Forward: y = W̄ x + b through the forward IO (`tiles.mvm`), W̄ = W or C + γA. Backward: ∂L/∂x = W̄ᵀ ∂L/∂y through the
backward IO; the pair (x, d = ∂L/∂y) is recorded, and AnalogSGD.step writes W ← W − lr Σ_b d_b x_bᵀ (or A at
fast_lr, then the transfer to C) by pulse trains: the weights get no autograd gradient. `convert` swaps every
nn.Linear / nn.Conv2d of a digital model for its analog twin.
"""
import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from .configs import _check
from .tiles import Tile, array_names, initial_weight, mvm, seen_array, tt_v1_transfer, visible


class AnalogContext(nn.Parameter):
    """A zero-size parameter through which AnalogSGD finds its analog layer among model.parameters(); a deep copy
    of the model points the copy's handle at the copied layer."""

    def __deepcopy__(self, memo):
        new = AnalogContext(self.data.clone(), self.requires_grad)
        memo[id(self)] = new
        new.analog_layer = copy.deepcopy(self.analog_layer, memo)
        return new


class _AnalogMVM(torch.autograd.Function):
    """Forward y = W x through the forward IO; backward ∂L/∂x = Wᵀ ∂L/∂y through the backward IO, and hands the pair
    (x, d = ∂L/∂y) to the layer for its pulsed update (the weights get no autograd gradient: the optimiser pulses)."""

    @staticmethod
    def forward(ctx, x, handle, W, layer):
        ctx.save_for_backward(x, W)
        ctx.layer = layer
        return mvm(x, W, layer.rpu.forward)

    @staticmethod
    def backward(ctx, d):
        x, W = ctx.saved_tensors
        ctx.layer._pairs.append((x, d))
        grad_x = mvm(d, W.T, ctx.layer.rpu.backward, bound_management=False) if ctx.needs_input_grad[0] else None
        return grad_x, torch.zeros_like(ctx.layer.analog_ctx), None, None


class _AnalogLayer(nn.Module):
    """Shared by AnalogLinear and AnalogConv2d: the tiles (W, or A and C), the digital bias and out scale, the MVM,
    the recorded (x, d) pairs and the pulsed update that AnalogSGD calls."""

    def _build(self, weight, rpu):
        self.rpu = rpu
        gen = torch.Generator().manual_seed(rpu.device.construction_seed)
        for name in array_names(rpu):                 # W, or A (fast, starts at 0) and C (holds the weights)
            setattr(self, name, Tile(initial_weight(name, weight), rpu.device, gen))
        self.analog_ctx = AnalogContext(weight.new_zeros(0))
        self.analog_ctx.analog_layer = self
        self.out_scale = nn.Parameter(weight.new_ones(())) if rpu.learn_out_scaling else None
        self._pairs = []
        self._batches, self._column = 0, 0          # TT-v1 counters (mini-batches updated, next column of A)

    @property
    def tiles(self):
        return {name: getattr(self, name) for name in array_names(self.rpu)}

    def visible_weight(self):
        """What the MVM uses: W, or W̄ = C + γA (TT-v1)."""
        return visible(self.rpu, self.weights())

    @property
    def weight(self):
        return self.visible_weight()

    def weights(self):
        return {name: t.weight for name, t in self.tiles.items()}

    def bounds(self):
        """(b_min, b_max) of the array whose weights the network sees (W, or C for TT-v1)."""
        t = getattr(self, seen_array(self.rpu))
        return t.b_min, t.b_max

    def _mvm(self, rows):
        y = _AnalogMVM.apply(rows, self.analog_ctx, self.visible_weight(), self)
        return y * self.out_scale if self.out_scale is not None else y

    def pulsed_update(self, lr):
        """The analog step of the vectors (x_b, d_b) recorded since the last one (AnalogSGD.step): by pulse trains,
        W ← W − lr Σ_b d_b x_bᵀ (Analog SGD), or A ← A − fast_lr Σ_b d_b x_bᵀ and then TT-v1's transfer to C at
        lr·transfer_lr (tiles.tt_v1_transfer)."""
        if not self._pairs:
            return
        x = torch.cat([p[0] for p in self._pairs])
        d = torch.cat([p[1] for p in self._pairs])
        self._pairs = []
        rpu = self.rpu
        if rpu.algorithm == 'analog sgd':
            self.W.pulse(x, d, lr, rpu.update)
            return
        self.A.pulse(x, d, rpu.fast_lr, rpu.update)
        c, self._batches, self._column = tt_v1_transfer(self.A.weight, self.C.weight, self.C.dev, self._batches,
                                                        self._column, lr, rpu)
        if c is not self.C.weight:
            self.C.weight.copy_(c)

    def get_extra_state(self):
        return {'batches': self._batches, 'column': self._column}

    def set_extra_state(self, state):
        self._batches, self._column = state['batches'], state['column']


class AnalogLinear(_AnalogLayer):
    """y = W x + b with W on analog tiles (rpu) and a digital bias b."""

    def __init__(self, in_features, out_features, bias=True, rpu=None, weight=None):
        super().__init__()
        _check(rpu is not None, 'AnalogLinear needs an rpu (rpu_config)')
        self.in_features, self.out_features = in_features, out_features
        if weight is None:
            weight = nn.Linear(in_features, out_features, bias=False).weight.detach()
        self._build(weight, rpu)
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=weight.dtype, device=weight.device)) if bias else None

    def forward(self, x):
        lead = x.shape[:-1]
        y = self._mvm(x.reshape(-1, self.in_features)).reshape(*lead, self.out_features)
        return y + self.bias if self.bias is not None else y

    def extra_repr(self):
        return f'{self.in_features}, {self.out_features}, bias={self.bias is not None}, {self.rpu.algorithm}'


class AnalogConv2d(_AnalogLayer):
    """nn.Conv2d on analog tiles: the kernel is an (out, in·k·k) array, the input is unfolded into patches and every
    patch of every sample is one vector of the MVM and of the pulsed update (as the toolkit). Digital bias."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
                 padding_mode='zeros', rpu=None, weight=None):
        super().__init__()
        _check(rpu is not None, 'AnalogConv2d needs an rpu (rpu_config)')
        _check(groups == 1 and padding_mode == 'zeros', 'AnalogConv2d: only groups=1 and zero padding')
        pair = nn.modules.utils._pair
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.dilation = pair(kernel_size), pair(stride), pair(dilation)
        self.padding = pair(padding)
        if weight is None:
            weight = nn.Conv2d(in_channels, out_channels, kernel_size, bias=False).weight.detach()
        self._build(weight.reshape(out_channels, -1), rpu)
        self.bias = nn.Parameter(torch.zeros(out_channels, dtype=weight.dtype, device=weight.device)) if bias else None

    def forward(self, x):
        B, _, H, W = x.shape
        kh, kw = self.kernel_size
        oh = (H + 2 * self.padding[0] - self.dilation[0] * (kh - 1) - 1) // self.stride[0] + 1
        ow = (W + 2 * self.padding[1] - self.dilation[1] * (kw - 1) - 1) // self.stride[1] + 1
        cols = F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)     # (B, C k k, L)
        y = self._mvm(cols.transpose(1, 2).reshape(B * oh * ow, -1))
        y = y.reshape(B, oh * ow, self.out_channels).transpose(1, 2).reshape(B, self.out_channels, oh, ow)
        return y + self.bias.view(1, -1, 1, 1) if self.bias is not None else y

    @property
    def weight(self):
        kh, kw = self.kernel_size
        return self.visible_weight().reshape(self.out_channels, self.in_channels, kh, kw)

    def extra_repr(self):
        return (f'{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, '
                f'padding={self.padding}, {self.rpu.algorithm}')


def convert(model, rpu):
    """Every nn.Linear / nn.Conv2d of `model` (recursively, in place) replaced by its analog twin with the same
    weights (clipped to the device bounds) and bias; rpu None returns the model unchanged (FP SGD)."""
    if rpu is None:
        return model
    if isinstance(model, (nn.Linear, nn.Conv2d)):
        return _analog_twin(model, rpu)
    for name, child in model.named_children():
        setattr(model, name, convert(child, rpu))
    return model


def _analog_twin(m, rpu):
    w = m.weight.detach()
    if isinstance(m, nn.Linear):
        new = AnalogLinear(m.in_features, m.out_features, m.bias is not None, rpu=rpu, weight=w)
    else:
        new = AnalogConv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation, m.groups,
                           m.bias is not None, m.padding_mode, rpu=rpu, weight=w)
    if m.bias is not None:
        new.bias.data.copy_(m.bias.detach())
    return new

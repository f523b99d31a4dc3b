"""Analog layers (aihwkit's AnalogLinear / AnalogConv2d): nn.Linear and nn.Conv2d whose weight matrix lives on
tiles, W (Analog SGD) or A and C (TT-v1), with a digital bias and, with learn_out_scaling, a digital output gain per
tile.

Forward: y = Σ_t α_t W̄_t x_t + b over the tiles t (one unless the weight exceeds the rpu's max_input_size columns
or max_output_size rows: then split as the toolkit's TileModuleArray, `tiles.tile_blocks`), each through the forward
IO (`tiles.mvm`) on its slice x_t of the input, W̄ = W or C + γA, α_t the tile's learned gain (1 without
learn_out_scaling). Backward: ∂L/∂x_t = W̄_tᵀ d_t through the backward IO, d_t = α_t ∂L/∂y on the tile's rows; the
pair (x_t, d_t) is recorded, and AnalogSGD.step writes W_t ← W_t − lr Σ_b d_tb x_tbᵀ (or A at fast_lr, then the
transfer to C, each tile with its own column pointer) by pulse trains: the weights get no autograd gradient.
`convert` swaps every nn.Linear / nn.Conv2d of a digital model for its analog twin.

The arrays are stored as the whole (out, in) matrices, whatever the tiling, so a state dict saved by a layer on one
tile loads into the same layer on several (its gain copied to every tile, each TT-v1 pointer at the column a tiled
run would have reached); one saved on several tiles loads into a layer with the same tiling only.
"""
import copy
import functools

import torch
import torch.nn as nn
import torch.nn.functional as F

from .configs import _check
from .devices import device_state
from .tiles import Tile, array_names, initial_weight, mvm, seen_array, tile_blocks, tt_v1_transfer, visible


_SAME_TILING = ': build it with the max_input_size / max_output_size of the run that saved it'


class AnalogContext(nn.Parameter):
    """A zero-size parameter through which AnalogSGD finds its analog layer among model.parameters(); a deep copy
    of the model points the copy's handle at the copied layer."""

    def __deepcopy__(self, memo):
        new = AnalogContext(self.data.clone(), self.requires_grad)
        memo[id(self)] = new
        new.analog_layer = copy.deepcopy(self.analog_layer, memo)
        return new


class _AnalogMVM(torch.autograd.Function):
    """Forward y = W x through the forward IO (W: one tile's weights); backward ∂L/∂x = Wᵀ ∂L/∂y through the backward
    IO, and hands the pair (x, d = ∂L/∂y) to the layer for the pulsed update of that tile (the weights get no autograd
    gradient: the optimiser pulses)."""

    @staticmethod
    def forward(ctx, x, handle, W, layer, tile):
        ctx.save_for_backward(x, W)
        ctx.layer, ctx.tile = layer, tile
        return mvm(x, W, layer.rpu.forward)

    @staticmethod
    def backward(ctx, d):
        x, W = ctx.saved_tensors
        ctx.layer._pairs.append((ctx.tile, x, d))
        grad_x = mvm(d, W.T, ctx.layer.rpu.backward, bound_management=False) if ctx.needs_input_grad[0] else None
        return grad_x, torch.zeros_like(ctx.layer.analog_ctx), None, None, None


class _AnalogLayer(nn.Module):
    """Shared by AnalogLinear and AnalogConv2d: the arrays (W, or A and C) and their tiles, the digital bias and out
    scales, the MVM, the recorded (tile, x, d) triples and the pulsed update that AnalogSGD calls."""

    def _build(self, weight, rpu):
        self.rpu = rpu
        self.blocks = tile_blocks(*weight.shape, rpu)     # (rows, cols) of each tile
        n = len(self.blocks)
        self._n_row_tiles = len({rows.start for rows, _ in self.blocks})
        # each tile draws its devices from construction_seed (A, then C), as each of the toolkit's tiles does
        drawn = {name: [] for name in array_names(rpu)}  # W, or A (fast, starts at 0) and C (holds the weights)
        for rows, cols in self.blocks:
            gen = torch.Generator().manual_seed(rpu.device.construction_seed)
            for name in drawn:
                drawn[name].append(device_state(rpu.device, initial_weight(name, weight[rows, cols]), gen))
        for name, parts in drawn.items():
            w, consts = parts[0] if n == 1 else self._assemble(parts, weight)
            setattr(self, name, Tile(w, rpu.device, consts=consts))
        self.analog_ctx = AnalogContext(weight.new_zeros(0))
        self.analog_ctx.analog_layer = self
        # the learned gain α_t of each tile (a scalar when there is one, as before tiling)
        self.out_scale = nn.Parameter(weight.new_ones(() if n == 1 else (n,))) if rpu.learn_out_scaling else None
        self._pairs = []
        # TT-v1 counters: mini-batches updated, next column of A (one per tile when there are several)
        self._batches, self._column = 0, 0 if n == 1 else [0] * n

    def _assemble(self, parts, weight):
        """The whole (out, in) arrays from the tiles' (weight, constants)."""
        w = torch.empty_like(weight)
        consts = {k: torch.empty_like(weight) for k in parts[0][1]}
        for (rows, cols), (tw, tc) in zip(self.blocks, parts):
            w[rows, cols] = tw
            for k, v in tc.items():
                consts[k][rows, cols] = v
        return w, consts

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
        W = self.visible_weight()
        if len(self.blocks) == 1:
            y = _AnalogMVM.apply(rows, self.analog_ctx, W, self, 0)
            return y * self.out_scale if self.out_scale is not None else y
        ys = []
        for t, (r, c) in enumerate(self.blocks):
            y = _AnalogMVM.apply(rows[:, c], self.analog_ctx, W[r, c], self, t)
            ys.append(y * self.out_scale[t] if self.out_scale is not None else y)
        # the tiles of one input split stack along the outputs; the input splits add up (TileModuleArray.forward)
        k = self._n_row_tiles
        return functools.reduce(torch.add, [torch.cat(ys[i:i + k], 1) for i in range(0, len(ys), k)])

    def pulsed_update(self, lr):
        """The analog step of the vectors (x_b, d_b) recorded since the last one (AnalogSGD.step), tile by tile: by
        pulse trains, W_t ← W_t − lr Σ_b d_tb x_tbᵀ (Analog SGD), or A_t ← A_t − fast_lr Σ_b d_tb x_tbᵀ and then
        TT-v1's transfer to C at lr·transfer_lr, each tile from its own next column (tiles.tt_v1_transfer)."""
        if not self._pairs:
            return
        pairs, self._pairs = self._pairs, []
        rpu = self.rpu
        tt = rpu.algorithm == 'tt-v1'
        one = len(self.blocks) == 1
        for t, block in enumerate(self.blocks):
            mine = [(x, d) for tile, x, d in pairs if tile == t]
            if mine:
                x, d = torch.cat([p[0] for p in mine]), torch.cat([p[1] for p in mine])
                (self.A if tt else self.W).pulse(x, d, rpu.fast_lr if tt else lr, rpu.update, None if one else block)
        if not tt:
            return
        c, self._batches, self._column = tt_v1_transfer(self.A.weight, self.C.weight, self.C.dev, self._batches,
                                                        self._column, lr, rpu, None if one else self.blocks)
        if c is not self.C.weight:
            self.C.weight.copy_(c)

    def get_extra_state(self):
        return {'batches': self._batches, 'column': self._column}

    def set_extra_state(self, state):
        """The TT-v1 counters; a one-tile layer's single pointer becomes, for each tile, the column a tiled run would
        have reached: (transfers · n_reads_per_transfer) mod the tile's columns."""
        column, n = state['column'], len(self.blocks)
        if n > 1 and isinstance(column, int):
            transfers = state['batches'] // self.rpu.transfer_every
            column = [transfers * self.rpu.n_reads_per_transfer % (c.stop - c.start) for _, c in self.blocks]
        _check(isinstance(column, int) if n == 1 else len(column) == n,
               f'the checkpoint maps this TT-v1 layer on {1 if isinstance(column, int) else len(column)} tile(s), this '
               f'network on {n}{_SAME_TILING}')
        self._batches, self._column = state['batches'], column

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """A one-tile layer's gain goes to every tile (the function is the same: α Σ_t y_t = Σ_t α y_t); another
        mismatch of the number of tiles is one line."""
        key = prefix + 'out_scale'
        if self.out_scale is not None and key in state_dict:
            saved = state_dict[key]
            if saved.dim() == 0 and self.out_scale.dim() == 1:
                state_dict[key] = saved.expand_as(self.out_scale).clone()
            _check(state_dict[key].shape == self.out_scale.shape,
                   f'{key}: the checkpoint maps this layer on {saved.numel()} tile(s), this network on '
                   f'{self.out_scale.numel()}{_SAME_TILING}')
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


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
        return (f'{self.in_features}, {self.out_features}, bias={self.bias is not None}, {self.rpu.algorithm}'
                + (f', tiles={len(self.blocks)}' if len(self.blocks) > 1 else ''))


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
                f'padding={self.padding}, {self.rpu.algorithm}'
                + (f', tiles={len(self.blocks)}' if len(self.blocks) > 1 else ''))


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

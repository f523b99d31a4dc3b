"""Analog in-memory training simulator (Wu, Gokmen, Rasch & Chen, NeurIPS 2024) in plain PyTorch, CPU or GPU, cut
as IBM's toolkit (aihwkit) cuts it; each arrow points one way (configs ← devices ← tiles ← layers ← optimizers):

- configs: `Device`, `IO`, `Update`, `RPU` (frozen dataclasses) and `rpu_config`, the configuration of each of the
  paper's experiments (`PRESETS`) for a setting (`SETTINGS`: FP SGD, Analog SGD, TT-v1) at bounds ±τ;
- devices: soft-bounds devices, the paper's asymmetric linear device W ← W + ΔW − (|ΔW|/τ) ⊙ W pulse by pulse:
  per-element constants with device-to-device variation, the closed-form response to n pulses with cycle-to-cycle
  noise (`apply_pulses`);
- tiles: crossbar arrays: the noisy MVM (`mvm`), the stochastic pulse trains of W ← W − lr Σ_b d_b x_bᵀ
  (`pulse_counts`), element-wise pulsed writes, the arrays of one weight (W, or Tiki-Taka's A and C) and the TT-v1
  transfer A → C (`tt_v1_transfer`), `Tile`;
- layers: `AnalogLinear`, `AnalogConv2d` (weights on tiles, digital bias) and `convert`;
- optimizers: `AnalogSGD` (Analog SGD, TT-v1), `DeviceSGD` (the EP nets' weights on devices), `bounds_of`, `ald_step`.

The names below are those the rest of the repo uses; the rest lives in the modules.
"""
from .configs import IO, PRESETS, RPU, SETTINGS, Device, Update, rpu_config
from .devices import TINY, apply_pulses
from .tiles import Tile, mvm, pulse_counts, pulse_probabilities
from .layers import AnalogConv2d, AnalogLinear, convert
from .optimizers import AnalogSGD, DeviceSGD, ald_step, bounds_of

__all__ = ['IO', 'PRESETS', 'RPU', 'SETTINGS', 'Device', 'Update', 'rpu_config', 'TINY', 'apply_pulses', 'Tile', 'mvm',
           'pulse_counts', 'pulse_probabilities', 'AnalogConv2d', 'AnalogLinear', 'convert', 'AnalogSGD', 'DeviceSGD',
           'ald_step', 'bounds_of']

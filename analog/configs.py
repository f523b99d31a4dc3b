"""What a tile is made of, as frozen dataclasses named after aihwkit's configuration classes: `Device` (the
soft-bounds device, SoftBoundsReferenceDevice), `IO` (the MVM's non-idealities, IOParameters), `Update` (the pulse
trains, UpdateParameters) and `RPU` (one array for Analog SGD or Tiki-Taka's two, with the transfer's parameters).

`rpu_config(setting, τ, preset)` builds the configuration of each experiment of Wu et al. 2024 (`PRESETS`: the
scripts S1, S2 = S3.1, S3.2, S3.3 (toy least squares), S4 (MNIST FCN / CNN) and S5 (ResNet fine-tuning, A12)) for a
setting of `SETTINGS` at the device's dynamic-range radius τ (bounds ±τ). Invalid values raise ValueError with one
line.
"""
import dataclasses
import math
from dataclasses import dataclass


def _check(ok, message):
    if not ok:
        raise ValueError(message)


def _finite_positive(name, v):
    _check(isinstance(v, (int, float)) and math.isfinite(v) and v > 0, f'{name} {v}: give a finite value > 0')


@dataclass(frozen=True)
class Device:
    """Soft-bounds reference device (aihwkit SoftBoundsReferenceDevice, additive c2c noise); per-element values are
    drawn once from `construction_seed`."""
    tau: float                       # bounds ±tau (w_max = tau, w_min = -tau)
    dw_min: float = 1e-3
    dw_min_dtod: float = 0.3         # device-to-device spread of the step
    dw_min_std: float = 0.3          # cycle-to-cycle noise (additive)
    w_bound_dtod: float = 0.3        # device-to-device spread of the bounds
    up_down: float = 0.0
    up_down_dtod: float = 0.01
    construction_seed: int = 10

    def __post_init__(self):
        _finite_positive('tau', self.tau)
        _finite_positive('dw_min', self.dw_min)
        for name in ('dw_min_dtod', 'dw_min_std', 'w_bound_dtod', 'up_down_dtod'):
            v = getattr(self, name)
            _check(math.isfinite(v) and v >= 0, f'{name} {v}: give a finite value >= 0')


@dataclass(frozen=True)
class IO:
    """Forward/backward MVM non-idealities (aihwkit IOParameters); is_perfect=True switches all off. inp_res and
    out_res are fractions of the full range 2·bound (1/126: 7 bits), a value > 1 a number of steps, 0 none.
    Iterative bound management recomputes a saturated output with the input reduced by f = 2, 4, 8, … and stops
    after the round at f > max_bm_factor or f > max_bm_res / (2·inp_bound·inp_res) (the toolkit's rule: 10 halvings
    without input quantisation, 4 at the default 7-bit input)."""
    is_perfect: bool = False
    inp_bound: float = 1.0
    inp_res: float = 1 / 126
    out_bound: float = 12.0
    out_res: float = 1 / 510
    out_noise: float = 0.06
    w_noise: float = 0.0             # Gaussian noise on every weight per MVM (ADDITIVE_CONSTANT)
    noise_management: str = 'abs_max'   # or 'none'
    bound_management: str = 'iterative'  # or 'none'
    max_bm_factor: float = 1000.0       # iterative bound management stops once the input is reduced by more…
    max_bm_res: float = 0.25            # …or once the reduced input's effective resolution is coarser (inf: off)

    def __post_init__(self):
        _check(self.noise_management in ('abs_max', 'none'),
               f"noise_management {self.noise_management!r}: give 'abs_max' or 'none'")
        _check(self.bound_management in ('iterative', 'none'),
               f"bound_management {self.bound_management!r}: give 'iterative' or 'none'")
        for name in ('inp_bound', 'out_bound'):
            _finite_positive(name, getattr(self, name))
        for name in ('inp_res', 'out_res', 'out_noise', 'w_noise'):
            v = getattr(self, name)
            _check(math.isfinite(v) and v >= 0, f'{name} {v}: give a finite value >= 0')
        _finite_positive('max_bm_factor', self.max_bm_factor)
        _check(isinstance(self.max_bm_res, (int, float)) and self.max_bm_res >= 0,
               f'max_bm_res {self.max_bm_res}: give a value >= 0 (inf: no resolution limit)')


@dataclass(frozen=True)
class Update:
    """Pulse-train update (aihwkit UpdateParameters, STOCHASTIC_COMPRESSED). `sequential` applies the vectors of a
    mini-batch one after the other as the toolkit does (devices.apply_trains), each pulse with its own
    cycle-to-cycle noise; the default sums their counts and draws the noise of the sum (tiles' module docstring)."""
    desired_bl: int = 31
    update_management: bool = True
    update_bl_management: bool = True
    sequential: bool = False

    def __post_init__(self):
        _check(isinstance(self.desired_bl, int) and self.desired_bl >= 1,
               f'desired_bl {self.desired_bl}: give an integer >= 1')


ALGORITHMS = ('analog sgd', 'tt-v1')


@dataclass(frozen=True)
class RPU:
    """What a tile is: one array (Analog SGD) or Tiki-Taka's two arrays A (fast) and C (slow)."""
    algorithm: str                   # 'analog sgd' | 'tt-v1'
    device: Device
    forward: IO = IO()
    backward: IO = IO()
    update: Update = Update()
    fast_lr: float = 0.01            # TT-v1: absolute learning rate of A (aihwkit 0.9.0 semantics)
    gamma: float = 0.0               # TT-v1: the network sees C + gamma * A
    transfer_every: int = 1          # mini-batches between transfers
    n_reads_per_transfer: int = 1    # columns of A read per transfer
    transfer_lr: float = 1.0         # times the current SGD lr
    transfer_io: IO = IO(noise_management='none', bound_management='none')
    learn_out_scaling: bool = False  # a digital scalar gain per tile, trained by plain SGD (aihwkit mapping)
    max_input_size: int = 0          # a layer's columns per tile (aihwkit mapping; 0: one tile whatever the size)
    max_output_size: int = 0         # a layer's rows per tile (0: no limit)

    def __post_init__(self):
        _check(self.algorithm in ALGORITHMS, f'algorithm {self.algorithm!r}: give one of {", ".join(ALGORITHMS)}')
        for name in ('fast_lr', 'gamma', 'transfer_lr'):
            v = getattr(self, name)
            _check(math.isfinite(v) and v >= 0, f'{name} {v}: give a finite value >= 0')
        for name in ('transfer_every', 'n_reads_per_transfer'):
            v = getattr(self, name)
            _check(isinstance(v, int) and v >= 1, f'{name} {v}: give an integer >= 1')
        for name in ('max_input_size', 'max_output_size'):
            v = getattr(self, name)
            _check(isinstance(v, int) and v >= 0, f'{name} {v}: give an integer >= 0 (0: no split)')


SETTINGS = ('FP SGD', 'Analog SGD', 'TT-v1')
PRESETS = ('S1', 'S2', 'S3.1', 'S3.2', 'S3.3', 'S4', 'S5')

_TOY_IO = IO(inp_bound=10.0, out_bound=10.0, inp_res=0.0, out_res=0.0, out_noise=0.0,
             noise_management='none', bound_management='none')
_ZERO_VARIATION = dict(dw_min_dtod=0.0, dw_min_std=0.0, w_bound_dtod=0.0, up_down=0.0, up_down_dtod=0.0)


def _preset(preset, tau, tt):
    """(Device kwargs, forward/backward IO, Update, RPU kwargs) of a preset, as the authors' scripts set them."""
    if preset == 'S1':
        return (dict(dw_min=1e-4, **_ZERO_VARIATION), dataclasses.replace(_TOY_IO, w_noise=1e-2 / math.sqrt(40)),
                Update(desired_bl=800), dict(transfer_io=_TOY_IO))
    if preset in ('S2', 'S3.1'):
        return dict(dw_min=tau / 300, **_ZERO_VARIATION), _TOY_IO, Update(desired_bl=5000), dict(transfer_io=_TOY_IO)
    if preset == 'S3.2':
        return dict(dw_min=1e-4, **_ZERO_VARIATION), _TOY_IO, Update(desired_bl=5000), dict(transfer_io=_TOY_IO)
    if preset == 'S3.3':
        io = IO(inp_bound=1.0, out_bound=10.0, inp_res=0.0, out_res=0.0, out_noise=0.0,
                w_noise=1e-2 / math.sqrt(50))
        return dict(dw_min=1e-4, **_ZERO_VARIATION), io, Update(desired_bl=400), dict(transfer_io=_TOY_IO)
    seed = dict(construction_seed=123) if tt else {}      # build_config('ttv1', ..., construction_seed=123)
    dw = dict(dw_min=tau / 600) if preset == 'S5' else {}
    # the scripts keep aihwkit's mapping defaults: at most 512 × 512 weights per tile (the FCN's 784 inputs: 392 + 392)
    return {**dw, **seed}, IO(), Update(), dict(learn_out_scaling=True, max_input_size=512, max_output_size=512)


def rpu_config(setting, tau, preset='S4', **overrides):
    """The configuration of Wu et al. 2024's experiments for a setting ('FP SGD' → None, 'Analog SGD', 'TT-v1') of
    a script (`preset`: S1, S2 (= S3.1), S3.2, S3.3, S4, S5) at dynamic-range radius τ. `overrides` replace any
    field of Device, of Update, of RPU, or of IO (then in both the forward and the backward IO, e.g. w_noise = σ of
    the toy problems); an unknown setting, preset or field, τ ≤ 0, or a bad value raises ValueError with one line."""
    _check(setting in SETTINGS, f'setting {setting!r}: give one of ' + ', '.join(repr(s) for s in SETTINGS))
    _check(isinstance(tau, (int, float)) and math.isfinite(tau) and tau > 0,
           f'tau {tau}: give a dynamic-range radius > 0')
    _check(preset in PRESETS, f'preset {preset!r}: give one of {", ".join(PRESETS)}')
    if setting == 'FP SGD':
        return None
    tt = setting == 'TT-v1'
    dev_kw, io, update, rpu_kw = _preset(preset, tau, tt)
    names = {cls: {f.name for f in dataclasses.fields(cls)} for cls in (Device, IO, Update, RPU)}
    unknown = set(overrides) - set().union(*names.values()) - {'algorithm', 'tau'}
    _check(not unknown, f'unknown setting {", ".join(sorted(unknown))}: give fields of Device, IO, Update or RPU')
    pick = lambda cls: {k: v for k, v in overrides.items() if k in names[cls]}
    device = Device(tau=tau, **{**dev_kw, **pick(Device)})
    io = dataclasses.replace(io, **pick(IO))
    update = dataclasses.replace(update, **pick(Update))
    return RPU(algorithm='tt-v1' if tt else 'analog sgd', device=device, forward=io, backward=io, update=update,
               **{**rpu_kw, **pick(RPU)})

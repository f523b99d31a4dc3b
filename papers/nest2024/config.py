"""The typed configuration of Nest & Ernoult 2024's Hydra command lines: structured-config dataclasses that type and
bound every key of the composed config (groups model/, data/, algorithm/, trainer/ of configs/, and the top-level
exp_type and gdd keys).

`typed(cfg)` checks the composed config against the schema (unknown keys, with a near miss named as 'did you mean
…?'; types: an int is not a bool, a float is finite; bounds: counts ≥ 1, β ≠ 0, …) and then builds the dataclasses
with OmegaConf's structured configs. Every failure is one cli.UsageError line naming the key, before anything is
loaded or written. `describe(cfg)` is the text of `--help`: the groups' options and every key with its type, bounds
and value in the composed config.
"""
import dataclasses
import difflib
import json
import math
import os
import re
import textwrap
import typing
from dataclasses import dataclass, field
from typing import List, Optional, Union

from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from suite.checks import FLOAT32_MAX
from suite.cli import DTYPES, UsageError

# activation strings of the original configs and their slope a (σ(u) = clamp(a·u, 0, 1)); quirk 6
NAMED_SLOPES = {'hard_ern19': 1.0}
GROUPS = ('model', 'data', 'algorithm', 'trainer')


def key(default=MISSING, help='', **rules):
    """A schema field: its default (MISSING: the config must give it), a line of help, and its bounds: lo / hi
    (inclusive), nonzero, choices (the values allowed), names (the strings a number-or-name key takes), length (of a
    list), why (what a value outside `choices` means, {} standing for them)."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=dict(help=help, **rules))
    return field(default=default, metadata=dict(help=help, **rules))


ONLY = 'not implemented here (supported: {}, the value of every published config)'


@dataclass
class Block:
    channels: List[int] = key(help='input channels, then one count per 3×3 conv', lo=1)
    pools: str = key(help='one letter per conv: m (2×2 max-pool), s or - (none)')
    norm: str = key('bn', 'frozen non-affine BatchNorm after the first conv (bn) or none (-)', choices=('bn', '-'))
    fc: List[int] = key([], 'fc layer sizes ending the block (last block only)', lo=1)
    clamp_last: bool = key(False, 'σ on the last layer too (else linear)')


@dataclass
class ModelParams:
    T1: int = key(help='free-phase iterations per block (the maximum with tol)', lo=1)
    activation: Union[float, int, str] = key(help='slope a of σ(u) = clamp(a·u, 0, 1), or a name', nonzero=True,
                                        names=tuple(NAMED_SLOPES))
    tol: Optional[float] = key(None, 'TOL criterion (null: fixed T1 iterations)', lo=0)
    tol_check_every: int = key(1, 'iterations between two checks of the TOL criterion (a host read each; 1: every '
                                     'iteration, as the original)', lo=1)
    asynchronous: bool = key(True, 'even layers, then odd (odd first when nudged)')
    readout: bool = key(True, 'a linear readout on the last block', choices=(True,), why=ONLY)
    neurons: str = key('zeros', 'initial neuron state', choices=('zeros',), why=ONLY)
    weights: str = key('goe', 'initialisation of the conv kernels', choices=('goe',), why=ONLY)
    V: float = key(help='GOE variance parameter', lo=0)
    norm_pool: bool = key(False, 'BN after the pools', choices=(False,), why=ONLY)
    use_autograd: bool = key(False, '∂Φ/∂s by autograd of Φ (the oracle) instead of the closed form')
    blocks: Optional[List[Block]] = key(None, 'the Hopfield blocks, in order (model name vgg)')
    depth: Optional[int] = key(None, 'ResNet depth (model name resnet)', choices=(18, 34))
    widths: Optional[List[int]] = key(None, 'the four stage widths (resnet)', lo=1, length=4)
    stem: Optional[int] = key(None, 'channels of the stem conv (resnet)', lo=1)
    clamp_last: Optional[bool] = key(None, 'σ on the last layer of every block too (resnet)')


VGG_ONLY, RESNET_ONLY = ('blocks',), ('depth', 'widths', 'stem', 'clamp_last')


@dataclass
class Model:
    name: str = key(help='vgg (model.config.blocks) or resnet (depth, widths, stem)', choices=('vgg', 'resnet'))
    config: ModelParams = key()


@dataclass
class DataParams:
    batch_size: int = key(help='training mini-batch (the global one under torchrun)', lo=1)
    num_classes: int = key(help='classes of the dataset', lo=2)
    input_size: int = key(32, 'image side', choices=(32,), why='the models take 32×32 images (supported: {})')


@dataclass
class Data:
    name: str = key(help='dataset', choices=('cifar10', 'cifar100', 'imagenet32', 'mnist5k'))
    config: DataParams = key()
    download: bool = key(False, "fetch the authors' ImageNet32 archive with gdown when absent")


@dataclass
class AlgorithmParams:
    T2: int = key(help='nudged-phase iterations per block (ID: re-run iterations)', lo=1)
    beta: float = key(help='nudging strength β (EP: centred ±β phases)', nonzero=True)
    feedback: str = key('full', 'ID: full (the exact gradient) or constant (the weights of the top-down terms '
                        "W_lᵀ s_l read as constants, the original's ID)", choices=('full', 'constant'))


@dataclass
class Algorithm:
    name: str = key(help='ep (EP inside the blocks), bptt (ID) or bp (backprop through the feedforward twin)',
                    choices=('ep', 'bptt', 'bp'))
    config: AlgorithmParams = key()


@dataclass
class Trainer:
    epochs: int = key(help="the run's total epochs (a resume finishes them)", lo=1)
    lr: float = key(help='Adam learning rate', lo=0)
    weight_decay: float = key(help='coupled (L2) weight decay', lo=0)
    T_max: int = key(help='CosineAnnealingLR period, in epochs', lo=1)
    eta_min: float = key(help='CosineAnnealingLR floor', lo=0)
    criterion: str = key('cross_entropy', 'training loss', choices=('cross_entropy',), why=ONLY)
    device: Optional[int] = key(None, 'CUDA index, -1 = CPU, null = GPU 0 when present', lo=-1)
    seed: Optional[int] = key(None, 'null: drawn and recorded in config.yaml', lo=0, hi=2 ** 32 - 1)
    logger: Optional[str] = key(None, 'accepted for compatibility (metrics.csv is always written)')
    dtype: str = key('float32', 'precision of the chain, its states and the images', choices=tuple(DTYPES))
    limit_batches: Optional[int] = key(None, 'at most this many train and test mini-batches per epoch', lo=1)
    save: bool = key(True, 'accepted (checkpoint.tar is written every epoch)')


@dataclass
class Gdd:
    batches: int = key(1, 'mini-batches averaged', lo=1)
    seeds: int = key(1, 'initialisations averaged (seed, seed + 1, …)', lo=1)
    curves: int = key(4, 'weight elements drawn per layer in curves.png', lo=0)
    plotter: str = key('paper', 'the figures of the GDD run', choices=('paper',),
                       why="not implemented here (supported: {}; the original's default and detailed plotters are not)")


@dataclass
class NestConfig:
    exp_type: str = key(help='training, or gdd (static gradient analysis)', choices=('training', 'gdd'))
    model: Model = key()
    data: Data = key()
    algorithm: Algorithm = key()
    trainer: Trainer = key()
    gdd: Optional[Gdd] = key(None, 'the static gradient analysis (--config-name=gdd)')


# ---------------------------------------------------------------------------------------------------------------
# Checking a composed config against the schema

def _args(hint):
    """(the type inside Optional[…], whether None is allowed)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) is Union and type(None) in args:
        rest = tuple(a for a in args if a is not type(None))
        return (rest[0] if len(rest) == 1 else Union[rest]), True
    return hint, False


def type_name(hint):
    """A type hint in words: int, float, bool, str, list of int, a number or a name, … (or null)."""
    inner, optional = _args(hint)
    if typing.get_origin(inner) in (list, List):
        (elem,) = typing.get_args(inner)
        text = f'list of {elem.__name__ if dataclasses.is_dataclass(elem) else type_name(elem)}'
    elif typing.get_origin(inner) is Union:
        text = 'float or name'
    else:
        text = inner.__name__
    return text + (' or null' if optional else '')


def _show(v):
    if isinstance(v, (DictConfig, ListConfig)):
        v = OmegaConf.to_container(v)
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(',', ':'), ensure_ascii=False)
    if v is None:
        return 'null'
    return str(v).lower() if isinstance(v, bool) else str(v).replace(' ', '')


def _fail(name, value, what):
    raise UsageError(f'{name}={_show(value)}: {what}')


def _is(kind, v):
    """v is a value of the scalar type `kind` (an int is not a bool; a float may be given as an int)."""
    if kind is bool:
        return isinstance(v, bool)
    if kind is int:
        return isinstance(v, int) and not isinstance(v, bool)
    if kind is float:
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    return isinstance(v, kind)


def _check_scalar(name, v, rules, listed):
    """Bounds of one number or string (of a list: `listed` is the whole list, named in the message)."""
    shown, every = (listed, 'every entry ') if listed is not None else (v, '')
    if isinstance(v, float) and (not math.isfinite(v) or abs(v) > FLOAT32_MAX):
        _fail(name, shown, f'{every}must be a finite number (within ±3.4e38, the float32 range)')
    if 'choices' in rules and v not in rules['choices']:
        choices = ', '.join(_show(c) for c in rules['choices'])
        _fail(name, shown, rules['why'].format(choices) if 'why' in rules else f'choose one of {choices}')
    if rules.get('nonzero') and v == 0:
        _fail(name, shown, f'{every}must be non-zero')
    if 'lo' in rules and v < rules['lo']:
        _fail(name, shown, f'{every}must be at least {rules["lo"]}')
    if 'hi' in rules and v > rules['hi']:
        _fail(name, shown, f'{every}must be at most {rules["hi"]}')


def _check_value(name, hint, v, rules):
    inner, optional = _args(hint)
    if v is None:
        if not optional:
            _fail(name, v, f'expected {type_name(hint)} (this key may not be null)')
        return
    if dataclasses.is_dataclass(inner):
        if not isinstance(v, (dict, DictConfig)):
            _fail(name, v, f'expected the keys of {name} ({", ".join(f.name for f in dataclasses.fields(inner))})')
        return _check_node(inner, v, name + '.')
    if typing.get_origin(inner) in (list, List):
        (elem,) = typing.get_args(inner)
        if not isinstance(v, (list, ListConfig)):
            _fail(name, v, f'expected a {type_name(inner)}')
        if 'length' in rules and len(v) != rules['length']:
            _fail(name, v, f'give {rules["length"]} entries')
        for i, e in enumerate(v):
            if dataclasses.is_dataclass(elem):
                _check_value(f'{name}[{i}]', elem, e, {})
            elif not _is(elem, e):
                _fail(name, v, f'expected a {type_name(inner)}')
            else:
                _check_scalar(name, e, rules, v)
        return
    if typing.get_origin(inner) is Union:                  # a number or a name (activation)
        if isinstance(v, str):
            if v not in rules.get('names', ()):
                _fail(name, v, f'give a number or one of {", ".join(rules.get("names", ()))}')
            return
        inner = float
    if not _is(inner, v):
        _fail(name, v, f'expected {"an" if inner is int else "a"} {type_name(hint)}')
    _check_scalar(name, v, rules, None)


def _check_node(cls, node, prefix=''):
    """Every key of `node` (a composed config section) against the dataclass `cls`: no unknown key, every required
    key given, each value of its type and within its bounds."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for k in node:
        if k not in fields:
            raise UsageError(unknown_key(prefix + str(k)))
    hints = typing.get_type_hints(cls)
    for k, f in fields.items():
        if k not in node:
            if f.default is MISSING:
                raise UsageError(f'{prefix}{k}: missing (give {prefix}{k}=…)')
            continue
        _check_value(prefix + k, hints[k], node[k], f.metadata)


def schema_keys(cls=NestConfig, prefix=''):
    """Every key of the schema, dotted (list entries without their index)."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        inner, _ = _args(hints[f.name])
        if typing.get_origin(inner) in (list, List) and dataclasses.is_dataclass(typing.get_args(inner)[0]):
            inner = typing.get_args(inner)[0]
        out.append(prefix + f.name)
        if dataclasses.is_dataclass(inner):
            out += schema_keys(inner, f'{prefix}{f.name}.')
    return out


# keys of the schema that only some configurations have, and which
OWNERS = {'gdd': '--config-name=gdd', 'model.config.blocks': 'the vgg models',
          'algorithm.config.feedback': 'algorithm=bptt',
          **{f'model.config.{k}': 'model=resnet18 and model=resnet34' for k in RESNET_ONLY}}


def unknown_key(name):
    """'<key>: no such key', with the key of the schema it most likely meant: one of the same last name elsewhere,
    else the nearest by difflib; or, for a key of the schema absent from this configuration, the ones that have it."""
    bare = re.sub(r'\[\d+\]', '', name)
    keys = schema_keys()
    if bare in keys:
        owner = next(v for k, v in OWNERS.items() if bare == k or bare.startswith(k + '.'))
        return f'{name}: not a key of this configuration (a key of {owner})'
    last = bare.rpartition('.')[2]
    near = [k for k in keys if k.rpartition('.')[2] == last] or difflib.get_close_matches(bare, keys, 1, 0.8)
    if not near:
        return f'{name}: no such key (python main.py --config-name=<name> --help lists them)'
    guess = near[0]
    parent, bare_parent = name.rpartition('.')[0], bare.rpartition('.')[0]
    if guess.rpartition('.')[0] == bare_parent and parent:          # keep the list index of the given key
        guess = f'{parent}.{guess.rpartition(".")[2]}'
    return f'{name}: no such key (did you mean {guess}?)'


def typed(cfg):
    """The composed config as a NestConfig (dataclasses): checked against the schema, then built by OmegaConf's
    structured configs. The model's keys are those of its name (vgg: blocks; resnet: depth, widths, stem,
    clamp_last); gdd belongs to exp_type gdd."""
    _check_node(NestConfig, cfg)
    mc = cfg.model.config
    own, other = (VGG_ONLY, RESNET_ONLY) if cfg.model.name == 'vgg' else (RESNET_ONLY, VGG_ONLY)
    for k in own:
        if mc.get(k) is None:
            raise UsageError(f'model.config.{k}: missing (a key of every {cfg.model.name} model)')
    for k in other:
        if mc.get(k) is not None:
            raise UsageError(f'model.config.{k}={_show(mc[k])}: not a key of a {cfg.model.name} model (only of '
                             f'{"resnet" if cfg.model.name == "vgg" else "vgg"} models)')
    if cfg.algorithm.name != 'bptt' and 'feedback' in cfg.algorithm.config:
        raise UsageError(f'algorithm.config.feedback: not a key of algorithm={cfg.algorithm.name} (a key of '
                         f'algorithm=bptt, ID)')
    if cfg.algorithm.config.get('feedback') == 'constant' and mc.get('use_autograd'):
        raise UsageError('algorithm.config.feedback=constant: needs model.config.use_autograd=false (autograd of Φ '
                         'differentiates the bottom-up and top-down terms of a coupling together)')
    if (cfg.exp_type == 'gdd') != (cfg.get('gdd') is not None):
        raise UsageError('gdd: missing (exp_type=gdd reads gdd.batches, gdd.seeds, gdd.curves, gdd.plotter)'
                         if cfg.exp_type == 'gdd' else
                         'gdd: not a key of this configuration (a key of --config-name=gdd, the static gradient '
                         'analysis)')
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(NestConfig), cfg))
    except OmegaConfBaseException as e:             # (the checks above should leave nothing for OmegaConf)
        raise UsageError(f'{e.full_key or "config"}: {str(e).splitlines()[0]}')


# ---------------------------------------------------------------------------------------------------------------
# The original's configuration schema (hybrid_bp_ep_official's Hydra keys), mapped onto this one

def _seed(v):
    """The original seeded only a truthy config.seed: 0 (and null) ran unseeded; here a seed is then drawn (and
    recorded in config.yaml)."""
    return None if v in (0, None, False) else v


def _device(v):
    """config.device: a CUDA index, 'cpu' (gdd's), 'cuda' or 'cuda:N' → trainer.device (-1 the CPU)."""
    m = re.fullmatch(r'cpu|cuda(?::(\d+))?', v.strip().lower()) if isinstance(v, str) else None
    if m is None:
        return v
    return -1 if m.group(0) == 'cpu' else int(m.group(1) or 0)


def _lower(v):
    """The original's dataset names (CIFAR10, CIFAR100, ImageNet32): this schema's are lower case."""
    return v.lower() if isinstance(v, str) else v


def _fc(v, last):
    """The original's fc list of a block: with a readout, the last entry of the last block's list (the output layer,
    which the readout replaces) is dropped."""
    return list(v[:-1]) if last and isinstance(v, list) else v


BLOCK_KEYS = [f.name for f in dataclasses.fields(Block)]


def _block_key(k, name):
    """A key of a block of the original's model.blocks_config: this schema's Block keys, and `alphas`."""
    if k not in BLOCK_KEYS + ['alphas']:
        near = difflib.get_close_matches(str(k), BLOCK_KEYS + ['alphas'], 1, 0.6)
        raise UsageError(f'{name}.{k}: no such key of a block ' + (f'(did you mean {name}.{near[0]}?)' if near else
                                                                    f'(keys: {", ".join(BLOCK_KEYS)}, alphas)'))


def _block(v, last, name):
    """A block of the original's model.blocks_config: this schema's Block keys (one omitted takes the Block default:
    norm bn, no fc, clamp_last false), fc as _fc, and `alphas` (weighted_kaiming's per-layer gains, unused under
    GOE, as in the original) dropped."""
    if not isinstance(v, dict):
        return v
    for k in v:
        _block_key(k, name)
    return {k: (_fc(x, last) if k == 'fc' else x) for k, x in v.items() if k != 'alphas'}


# the original's key → (this schema's key, the value's translation); a None key: a name checked against NAMES only.
# model.blocks_config.<i> and model.blocks_config.<i>.<key> → model.config.blocks.<i>[.<key>] (_block, _fc).
ORIGINAL = {
    'config.seed': ('trainer.seed', _seed),
    'config.device': ('trainer.device', _device),
    'config.logger': ('trainer.logger', None),
    'config.save': ('trainer.save', None),
    'config.plotter': ('gdd.plotter', None),
    'data.name': ('data.name', _lower),
    'data.config.output_size': ('data.config.num_classes', None),
    'trainer.optimizer.name': (None, None),
    'trainer.optimizer.lr': ('trainer.lr', None),
    'trainer.optimizer.config.weight_decay': ('trainer.weight_decay', None),
    'trainer.scheduler.name': (None, None),
    'trainer.scheduler.config.T_max': ('trainer.T_max', None),
    'trainer.scheduler.config.eta_min': ('trainer.eta_min', None),
    'model.config.normalization.weights.name': ('model.config.weights', None),
    'model.config.normalization.weights.config.V': ('model.config.V', None),
    'model.config.normalization.neurons.name': ('model.config.neurons', None),
    'model.blocks_config': ('model.config.blocks', None),
}
# the values translated, for --help
VALUES = {'config.seed': '0 → null: unseeded, as in the original', 'config.device': 'cpu → -1, cuda:N → N',
          'data.name': 'CIFAR10 → cifar10, …'}
# what the name keys may be here (compared in lower case without _ and -), and what that is
NAMES = {'trainer.optimizer.name': (('adam',), 'Adam (coupled L2 weight decay)'),
         'trainer.scheduler.name': (('cosine', 'cosineannealing', 'cosineannealinglr'),
                                    'CosineAnnealingLR, stepped once per epoch')}
ROOTS = ('config', 'trainer.optimizer', 'trainer.scheduler', 'model.config.normalization', 'model.blocks_config',
         'data.name', 'data.config.output_size')
# the inner nodes of the original's keys: a dict given for one of them sets its leaves (a merge, as Hydra's)
INNER = {k.rsplit('.', j)[0] for k in ORIGINAL for j in range(1, k.count('.') + 1)}
BLOCK_PATH = re.compile(r'model\.blocks_config\.(\d+)(?:\.(\w+))?')


def _key_of(override):
    """(the key of a key=value override, its +/++/~ prefix), list indices [i] written .i (Hydra's form)."""
    k = override.split('=', 1)[0]
    prefix = k[:len(k) - len(k.lstrip('+~'))]
    return re.sub(r'\[(\d+)\]', r'.\1', k[len(prefix):]), prefix


def is_original(override):
    k, _ = _key_of(override)
    return any(k == r or k.startswith(r + '.') for r in ROOTS)


def _block_target(m):
    return f'model.config.blocks.{m.group(1)}' + (f'.{m.group(2)}' if m.group(2) else '')


def suite_key(override):
    """The key of this schema that an override sets (the original's translated by ORIGINAL): what a later override
    of the same key replaces (a resume's command line after the saved one)."""
    k, _ = _key_of(override)
    m = BLOCK_PATH.fullmatch(k)
    return _block_target(m) if m else (ORIGINAL.get(k) or (None,))[0] or k


def _leaves(key, value):
    """(key, value) of each leaf of a dict given for an inner node of the original's keys, else the pair itself."""
    if isinstance(value, dict) and key in INNER:
        return [leaf for k, v in value.items() for leaf in _leaves(f'{key}.{k}', v)]
    return [(key, value)]


def _schema_field(path):
    """(type hint, rules) of a key of this schema (list indices skipped)."""
    cls, hint, rules = NestConfig, None, {}
    for part in path.split('.'):
        if part.isdigit():
            hint, rules = typing.get_args(_args(hint)[0])[0], {}            # an entry of a list of dataclasses
            continue
        f = {f.name: f for f in dataclasses.fields(cls)}[part]
        hint, rules = typing.get_type_hints(cls)[part], f.metadata
        inner = _args(hint)[0]
        cls = typing.get_args(inner)[0] if typing.get_origin(inner) in (list, List) else inner
    return hint, rules


def _hydra(v):
    """A value in Hydra's override grammar (strings quoted)."""
    if v is None:
        return 'null'
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return '[' + ','.join(_hydra(x) for x in v) + ']'
    if isinstance(v, dict):
        return '{' + ','.join(f'{k}:{_hydra(x)}' for k, x in v.items()) + '}'
    return "'" + str(v).replace('\\', '\\\\').replace("'", "\\'") + "'"


def _translate(name, v, last):
    """(this schema's key, value) for a leaf of the original's schema, or (None, a note) for a name key."""
    m = BLOCK_PATH.fullmatch(name)
    if m:
        if m.group(2) is None:
            return _block_target(m), _block(v, last(), name)
        _block_key(m.group(2), name.rsplit('.', 1)[0])
        if m.group(2) == 'alphas':
            return None, f'{name}={_show(v)}: unused (weighted_kaiming\'s gains; the kernels are GOE)'
        return _block_target(m), _fc(v, last()) if m.group(2) == 'fc' else v
    if name == 'model.blocks_config':
        if not isinstance(v, list):
            raise UsageError(f'{name}={_show(v)}: expected a list of blocks')
        return 'model.config.blocks', [_block(b, j == len(v) - 1, f'{name}[{j}]') for j, b in enumerate(v)]
    if name not in ORIGINAL:
        near = difflib.get_close_matches(name, list(ORIGINAL), 1, 0.75)
        raise UsageError(f'{name}: no such key (did you mean {near[0]}?)' if near else
                         f'{name}: no such key of the original\'s schema (those read here: {", ".join(ORIGINAL)}, '
                         f'model.blocks_config.<i>.<key>)')
    target, fn = ORIGINAL[name]
    if target is None:
        names, what = NAMES[name]
        if re.sub(r'[_\-]', '', str(v).lower()) not in names:
            raise UsageError(f'{name}={_show(v)}: not implemented here (supported: {what})')
        return None, f'{name}={_show(v)}: {what}'
    return target, fn(v) if fn else v


def from_original(overrides, n_blocks=None):
    """(overrides, notes): the overrides with the original's keys and values translated to this schema's (ORIGINAL;
    the others as given), and a line per translation for config.yaml. Each translated value is checked here, under
    the key as given, against the rules of the key it sets (a value the suite does not implement: one line saying
    what it supports). n_blocks(rest) is the number of blocks of the model composed with the overrides `rest` (the
    ones that name no single block of model.blocks_config), read when one does: whether it is the last (_fc)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    count = []

    def last_index():
        if not count:
            count.append(n_blocks([o for o in overrides if not BLOCK_PATH.fullmatch(_key_of(o)[0])]) - 1)
        return count[0]
    out, notes, parser = [], [], OverridesParser.create()
    for o in overrides:
        if not is_original(o):
            out.append(o)
            continue
        key, prefix = _key_of(o)
        if '~' in prefix:
            raise UsageError(f'{o}: deleting a key of the original\'s schema is not supported here')
        if '=' not in o:
            raise UsageError(f'{o}: expected key=value')
        try:
            value = parser.parse_override(f'{key}={o.split("=", 1)[1]}').value()
        except HydraException as e:
            raise UsageError(f'{o}: {" ".join(str(e).split())[:200]}')
        sets, same = [], True
        for name, v in _leaves(key, value):
            m = BLOCK_PATH.fullmatch(name)
            if m and int(m.group(1)) > last_index():
                raise UsageError(f'{name}: no such block (the model has {last_index() + 1} in model.blocks_config)')
            target, new = _translate(name, v, lambda: m is not None and int(m.group(1)) == last_index())
            if target is None:
                notes.append(new)
                continue
            parts = new.items() if (m and m.group(2) is None and isinstance(new, dict)) else [(None, new)]
            for k, x in parts:                         # (one block given as a dict: a merge, each key checked)
                sub = '' if k is None else f'.{k}'
                hint, rules = _schema_field(target + sub)
                _check_value(name + sub, hint, x, rules)
            sets.append(f'++{target}={_hydra(new)}')
            same = same and (target, new) == (name, v)
        out += sets
        if not same:
            notes.append(f'{o} → {" ".join(x[2:] for x in sets)}')
    return out, notes


# ---------------------------------------------------------------------------------------------------------------
# --help

def _rules(f):
    r = f.metadata
    out = []
    if 'choices' in r:
        out.append(' | '.join(_show(c) for c in r['choices']))
    if 'names' in r:
        out.append('names: ' + ', '.join(r['names']))
    if r.get('nonzero'):
        out.append('≠ 0')
    if 'lo' in r:
        out.append(f'≥ {r["lo"]}')
    if 'hi' in r:
        out.append(f'≤ {r["hi"]}')
    if 'length' in r:
        out.append(f'{r["length"]} entries')
    return ', '.join(out)


def _key_lines(cls, node, prefix):
    lines, hints = [], typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint, name = hints[f.name], prefix + f.name
        v = node.get(f.name) if node is not None else None
        inner, _ = _args(hint)
        if dataclasses.is_dataclass(inner):
            if v is not None:
                lines += _key_lines(inner, v, name + '.')
            continue
        if v is None and (f.default is None or name in OWNERS) and node is not None and f.name not in node:
            continue                   # a key of the other model kind, of ID, or gdd of a training run
        typ = type_name(hint) + (f' ({_rules(f)})' if _rules(f) else '')
        elem = typing.get_args(inner)
        listed = elem and dataclasses.is_dataclass(elem[0]) and v is not None
        lines.append(f'  {name:<33} {typ:<44} {f"{len(v)} entries, one a line:" if listed else _show(v)}')
        if listed:                                               # one entry a line (a block list is long)
            lines += [f'  {"":<33} [{i}] {_show(e)}' for i, e in enumerate(v)]
        if f.metadata.get('help'):
            lines.append(f'  {"":<33} {f.metadata["help"]}')
        if elem and dataclasses.is_dataclass(elem[0]):              # the keys of every entry of the list
            for sub in dataclasses.fields(elem[0]):
                typ = type_name(typing.get_type_hints(elem[0])[sub.name]) + (f' ({_rules(sub)})' if _rules(sub) else '')
                lines += [f'  {name + "[i]." + sub.name:<33} {typ}', f'  {"":<33} {sub.metadata["help"]}']
    return lines


def describe(name, cfg, config_dir, suite_flags):
    """The text of --help for the config `name` composed as `cfg`."""
    out = [f'python main.py --config-name={name} [group=option …] [key=value …] [suite flags]', '',
           'Config groups (configs/<group>/<option>.yaml; group=option selects one):']
    for g in GROUPS:
        opts = sorted(f[:-5] for f in os.listdir(os.path.join(config_dir, g)) if f.endswith('.yaml'))
        out += textwrap.wrap(', '.join(opts), 110, initial_indent=f'  {g + "/":<11} ', subsequent_indent=' ' * 14)
    out += ['', f'Keys (type, bounds; value in {name} with the overrides given):']
    out += _key_lines(NestConfig, cfg, '')
    out += ['', "The original's keys, read as the keys of this schema they set (config.yaml notes each one given):"]
    out += [f'  {k:<44} → {v or "checked: " + NAMES[k][1]}' + (f' ({VALUES[k]})' if k in VALUES else '')
            for k, (v, _) in ORIGINAL.items()]
    out += [f'  {"model.blocks_config.<i>.<key>":<44} → model.config.blocks.<i>.<key> (the last block\'s fc without '
            f'its last entry, the output layer; alphas unused)']
    out += ['', 'Suite flags: ' + ', '.join(suite_flags), '']
    return '\n'.join(out)

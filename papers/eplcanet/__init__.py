"""EPLCANet (jrego1/EPLCANet, 2024): Laborieux-style EP networks with an LCA sparse-coding front end, dictionary
learning, and adversarial robustness. Both generations of that code run from their own command lines:

- C1 (`--model EPLCACNN`, flags --n_feats --lca_lambda --tau --eta --lca_iters --dict_loss recon|class|combo):
  the LCA features are --channels[0], its kernel/stride --kernels[0]/--strides[0] ("valid" padding), no feedback
  into the sparse layer.
- C2 (`--model LCACNN`, flags --lca_feats --lca_tau --lca_eta --lca_ksize --lca_stride --dict_training
  pretrained|finetune|learn --scale_feedback): LCA features --lca_feats ("same" padding), then --channels; the
  sparse layer receives feedback scaled by --scale_feedback. `--dict_training ''` with `--model CNN` is the plain RCNN.

Dictionary learning signals: recon = the LCA's own update (D.3) after every mini-batch; class = the EP (or BPTT)
estimate of ∂L/∂a backpropagated through the unrolled LCA into D, with learning rate --lrs[0]; combo = both.
Actions beyond Laborieux's train/evaluate/gducheck: attack (white-box PGD), hsj-attack (the original's name for its
score-based Square attack), advtrain, image-print, corruptions (CIFAR-10-C), baseline, dictlearn (dictionary
pre-training, the cifar_dictlearning procedure). The attacks are in attacks.py, the model in papers/eplcanet/nets.py.
"""
import dataclasses
import glob
import math
import os

import numpy as np
import torch
from torch import nn

from papers.eplcanet import attacks
from suite import checks
from suite import data
from suite import distributed
from papers import laborieux2021 as lab
from suite import rundir
from suite import checkpoints
from suite import trainer
from suite.cli import default_threads
from suite.cli import (DRY_RUN_DIR, SCHEDULES, RunConfig, UsageError, apply_defaults, dry_cap, run_config, run_device,
                 say, seed_everything)
from papers.eplcanet.lca import LCAConv2D
from papers.eplcanet.nets import LCANet

NAME = 'eplcanet'
MODELS = ('EPLCACNN', 'LCACNN')
ATTACKS = ('attack', 'hsj-attack', 'image-print', 'corruptions', 'baseline')
ACTIONS = ATTACKS + ('advtrain', 'dictlearn')
DICT_TRAINING = ('pretrained', 'finetune', 'learn')


def add_args(parser):
    g = parser.add_argument_group('EPLCANet (LCA front end, dictionary learning, adversarial robustness); with '
                                  "Laborieux et al. 2021's flags")
    g.add_argument('--n_feats', type=int, default=784, help='C1: input channels of the plain CNN (unused otherwise)')
    g.add_argument('--lca_feats', type=int, default=784, help='C2: LCA dictionary features (= sparse-layer channels)')
    g.add_argument('--lca_lambda', type=float, default=0.25, help='LCA threshold λ')
    g.add_argument('--tau', '--lca_tau', dest='lca_tau', type=float, default=100.0, help='LCA time constant τ')
    g.add_argument('--eta', '--lca_eta', dest='eta', type=float, default=0.001,
                   help='learning rate η of the LCA dictionary update (recon)')
    g.add_argument('--lca_stride', type=int, default=None, help='LCA stride (C2, default 1; C1: --strides[0])')
    g.add_argument('--lca_ksize', type=int, default=None, help='LCA kernel size (C2, default 7; C1: --kernels[0])')
    g.add_argument('--lca_iters', type=int, default=600,
                   help='LCA iterations (C1: per EP step of the free phase, i.e. T1 × lca_iters in all; C2: once)')
    g.add_argument('--lca_grad_iters', type=int, default=50,
                   help='last LCA iterations through which ∂L/∂a reaches D or the input (class/combo, attacks)')
    g.add_argument('--dict_loss', default=None, choices=['recon', 'class', 'combo'],
                   help='dictionary learning signal (default recon for EPLCACNN)')
    g.add_argument('--dict_training', default='no_lca', choices=['', 'no_lca'] + list(DICT_TRAINING),
                   help="C2: pretrained (fixed), finetune (pretrained + recon), learn (random + recon); '' = plain CNN")
    g.add_argument('--dictionary', default=None,
                   help='dictionary file (dictionary.pt of --todo dictlearn) for pretrained / finetune; default: the '
                        'newest <results-dir>/dictlearn/*/*/dictionary.pt')
    g.add_argument('--scale_feedback', type=float, default=1.0,
                   help='C2: scale γ of the feedback into the sparse layer (1: exact gradient dynamics of Φ)')
    g.add_argument('--eps', type=float, default=0.05, help='L2 radius of the PGD examples of --todo advtrain')
    g.add_argument('--image-print', type=int, default=0,
                   help='with --todo attack: 0 attacks the test set, otherwise one image (as --todo image-print)')
    g.add_argument('--attack-step', type=int, default=29, help='dynamics steps of the BPTT input gradient')
    g.add_argument('--predict-step', type=int, default=30, help='free steps of a prediction under attack')
    g.add_argument('--train-attack-step', type=int, default=10, help='BPTT steps of the advtrain PGD gradient')
    g.add_argument('--attack-norm', type=int, default=2, help='2 (L2) or 100 (L∞)')
    g.add_argument('--attack-samples', type=int, default=None, help='attack only the first N test images')
    g.add_argument('--attack-iters', type=int, default=20, help='PGD iterations')
    g.add_argument('--queries', type=int, default=1000, help='Square attack queries')


FLAGS = {'--n_feats', '--lca_feats', '--lca_grad_iters', '--lca_lambda', '--tau', '--lca_tau', '--eta', '--lca_eta', '--lca_stride',
         '--lca_ksize', '--lca_iters', '--dict_loss', '--dict_training', '--dictionary', '--scale_feedback', '--eps',
         '--image-print', '--attack-step', '--predict-step', '--train-attack-step', '--attack-norm',
         '--attack-samples', '--attack-iters', '--queries'}

# saved beside the weights: the flags (so that evaluate / attack commands need not repeat them) and what they resolved to
LCA_ARCH = ('lca_feats', 'lca_lambda', 'lca_tau', 'eta', 'lca_stride', 'lca_ksize', 'lca_iters', 'scale_feedback',
            'dict_training', 'dict_loss', 'lca', 'full_channels', 'feedback_scale', 'dict_class', 'dict_recon')


# ---------------------------------------------------------------------------------------------------------------
# Arguments

def _need(args, flag, n, letters=False):
    """--flag must index n synapses; extra entries (the published commands have some) are dropped."""
    v = getattr(args, flag)
    if len(v) < n:
        raise UsageError(f'--{flag} has {len(v)} values but the network needs {n} (one per synapse from the sparse '
                         f'layer up, the first one for the LCA)')
    setattr(args, flag, v[:n])
    if letters and set(v[:n]) - set('mai'):
        raise UsageError(f"--pools '{v}': letters among m (max), a (average), i (identity)")


def lca_config(args):
    """The LCA layer and the sparse-layer network of a C1 (EPLCACNN) or C2 (LCACNN) command."""
    c1 = args.model == 'EPLCACNN'
    if c1:
        F_ = args.channels[0]
        full = list(args.channels)
        k = args.lca_ksize or args.kernels[0]
        stride = args.lca_stride or args.strides[0]
        pad, iters, gamma = 'valid', args.T1 * args.lca_iters, 0.0
        loss = args.dict_loss or 'recon'
        init = 'random'
    else:
        if args.dict_training not in DICT_TRAINING:
            raise UsageError(f"--dict_training '{args.dict_training}': --model LCACNN needs pretrained, finetune or "
                             f"learn (--dict_training '' is the plain network: --model CNN)")
        F_ = args.lca_feats
        full = [F_] + list(args.channels)
        k, stride = args.lca_ksize or 7, args.lca_stride or 1
        pad, iters, gamma = 'same', args.lca_iters, args.scale_feedback
        loss = args.dict_loss or ('' if args.dict_training == 'pretrained' else 'recon')
        init = 'random' if args.dict_training == 'learn' else 'pretrained'
    if len(full) < 2 or full[0] != full[1]:
        raise UsageError(f'the sparse-copy layer must have as many channels as the LCA has features: got '
                         f'{full[0]} features and channels {full[1:]} ('
                         + ('--channels F F …' if c1 else '--lca_feats F with --channels F …') + ')')
    args.full_channels = full
    args.lca = dict(out_neurons=F_, kernel_size=k, stride=stride, lambda_=args.lca_lambda, tau=args.lca_tau,
                    eta=args.eta, lca_iters=iters, pad=pad)
    args.feedback_scale, args.dict_init = gamma, init
    args.dict_class, args.dict_recon = loss in ('class', 'combo'), loss in ('recon', 'combo')
    return full


def check_values(args):
    """The LCA, attack and adversarial-training flags: finite and in range (--tau is given as --tau or --lca_tau)."""
    checks.seed(args.seed)
    checks.count('--n_feats', args.n_feats, 1, 'the number of input channels')
    checks.count('--lca_feats', args.lca_feats, 1, 'the number of dictionary features')
    checks.count('--lca_stride', args.lca_stride, 1, 'the LCA stride')
    checks.count('--lca_ksize', args.lca_ksize, 1, 'the LCA kernel size')
    checks.count('--lca_iters', args.lca_iters, 1, 'the number of LCA iterations')
    checks.count('--lca_grad_iters', args.lca_grad_iters, 1, 'the number of LCA gradient iterations')
    checks.real('--lca_lambda', args.lca_lambda, 'the LCA threshold λ', lo=0)
    checks.real('--tau (--lca_tau)', args.lca_tau, 'the LCA time constant τ (each iteration moves 1/τ of the way)', lo=1)
    checks.real('--eta (--lca_eta)', args.eta, 'the dictionary learning rate η', lo=0)
    checks.real('--scale_feedback', args.scale_feedback, 'the feedback scale γ', lo=0)
    checks.real('--eps', args.eps, 'the adversarial training radius', above=0)
    checks.count('--image-print', args.image_print, 0, 'the switch')
    for flag, what in (('attack_step', 'the number of BPTT steps of the attack gradient'),
                       ('predict_step', 'the number of free steps of a prediction'),
                       ('train_attack_step', 'the number of BPTT steps of the advtrain gradient'),
                       ('attack_samples', 'the number of attacked images'), ('attack_iters', 'the number of PGD '
                                                                                             'iterations'),
                       ('queries', 'the number of Square-attack queries')):
        checks.count('--' + flag.replace('_', '-'), getattr(args, flag), 1, what)
    if args.attack_norm not in (2, 100):
        raise UsageError(f'--attack-norm {args.attack_norm}: 2 (L2) or 100 (L∞)')


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(lab.Config):
    """A validated EPLCANet command line: Laborieux et al. 2021's configuration, the LCA and the attacks. The LCA
    fields under 'resolved' are set for the LCA models (EPLCACNN, LCACNN) only."""
    n_feats: int
    lca_feats: int
    lca_lambda: float
    lca_tau: float                      # the LCA time constant τ (--tau / --lca_tau)
    eta: float
    lca_stride: int | None
    lca_ksize: int | None
    lca_iters: int
    lca_grad_iters: int
    dict_loss: str | None
    dict_training: str
    dictionary: str | None              # resolved: --dictionary, or the newest real dictlearn's (None: random)
    scale_feedback: float
    eps: float
    image_print: int
    attack_step: int
    predict_step: int
    train_attack_step: int
    attack_norm: int
    norm: float                         # 2 or math.inf
    attack_samples: int | None
    attack_iters: int
    queries: int
    # resolved (lca_config)
    lca: dict | None = None             # the LCAConv2D arguments
    full_channels: list[int] | None = None
    feedback_scale: float | None = None
    dict_init: str | None = None        # random or pretrained
    dict_class: bool = False            # the dictionary learns from the EP estimate of ∂L/∂a
    dict_recon: bool = False            # ... from the LCA's own update


@dataclasses.dataclass(frozen=True, kw_only=True)
class DictLearnConfig(RunConfig):
    """A validated --todo dictlearn command line (dictionary pre-training)."""
    data_name: str
    data_aug: bool
    mbs: int
    epochs: int
    lca_feats: int
    lca_ksize: int | None
    lca_stride: int | None
    lca_lambda: float
    lca_tau: float                      # the LCA time constant τ (--tau / --lca_tau)
    eta: float
    lca_iters: int


def check_args(args):
    """Every inconsistency is reported before anything is loaded or written; returns the run's Config (or
    DictLearnConfig). The namespace is normalised on the way (lists cut to the synapses, the LCA resolved, the
    dictionary file found, dry-run caps), then Laborieux et al. 2021's checks run (laborieux2021.validate)."""
    apply_defaults(args, lab.DEFAULTS)
    check_values(args)
    if args.action == 'dictlearn':
        why = '--todo dictlearn trains the LCA dictionary alone, without EP dynamics'
        checks.relaxation(args, why, why)
        check_dictlearn(args)
        return run_config(DictLearnConfig, args)
    if args.load_path and args.action not in ('train', 'advtrain') and os.path.isdir(args.load_path):
        lab.adopt_arch(args, args.load_path)
    if args.dict_training in DICT_TRAINING and args.model != 'LCACNN':
        raise UsageError(f'--dict_training {args.dict_training} is for --model LCACNN')
    if args.model in MODELS:
        full = lca_config(args)
        n = len(full) - 1                                  # synapses below the fully connected part
        for flag in ('kernels', 'strides', 'paddings'):
            _need(args, flag, n)
        _need(args, 'pools', n, letters=True)
        args.n_syn = n + len(args.fc)
        if args.action in ('train', 'advtrain'):
            _need(args, 'lrs', args.n_syn)
        if args.wds is not None:
            _need(args, 'wds', args.n_syn)
        args.extra_arch = LCA_ARCH
        if args.same_update:
            say('note: --same-update is for the asymmetric models; ignored by the EPLCANet models')
            args.same_update = False
    elif args.model in ('CNN', 'VFCNN'):                     # the C2 commands give extra pools / weight decays
        _need(args, 'pools', len(args.channels), letters=True)
        if args.wds is not None:
            _need(args, 'wds', len(args.channels) + len(args.fc))
    if args.action in ATTACKS and not args.load_path and not args.dry_run:
        raise UsageError(f'--todo {args.action} needs --load-path <run folder> (with its model.pt)')
    if args.action == 'corruptions' and not os.path.isfile(os.path.join(args.data_root, 'CIFAR-10-C', 'labels.npy')):
        raise UsageError(f'--todo corruptions: no {os.path.join(args.data_root, "CIFAR-10-C", "labels.npy")}; put '
                         f'the CIFAR-10-C .npy files in <--data-root>/CIFAR-10-C/')
    lab.validate(args, lab.ACTIONS + ACTIONS)
    args.norm = attacks.parse_norm(args.attack_norm)
    if args.dry_run:
        args.predict_step, args.attack_step = dry_cap(args.predict_step, args.attack_step)
        args.train_attack_step = min(args.train_attack_step, 2)
        args.attack_iters, args.queries = min(args.attack_iters, 2), min(args.queries, 3)
        args.attack_samples = min(args.attack_samples or 8, 8)
        if args.model in MODELS:
            args.lca['lca_iters'] = min(args.lca['lca_iters'], 5)
    if args.model in MODELS and args.dict_init == 'pretrained' and not (args.resume or args.model_from):
        resolve_dictionary(args)                           # (a run's own weights hold its dictionary)
    return run_config(Config, args)


def check_dictlearn(args):
    task = (args.dataset or args.task).lower()
    if task not in lab.TASKS:
        raise UsageError(f'--task {args.task}: choose MNIST, CIFAR10 or mnist5k')
    args.data_name = lab.TASKS[task]
    checks.count('--mbs', args.mbs, 1, 'the mini-batch size')
    checks.count('--epochs', args.epochs, 1, 'the number of epochs')
    args.resume = checks.load_path(args, 'a fresh dictionary')      # a dictlearn run picked up again
    if args.dry_run:
        args.epochs, args.mbs, args.lca_iters = 1, min(args.mbs, 16), min(args.lca_iters, 5)


# ---------------------------------------------------------------------------------------------------------------
# Model

def build(cfg, in_shape):
    if cfg.model not in MODELS:
        return lab.build_model(cfg, in_shape)
    try:
        model = LCANet(in_shape[-1], in_shape[0], cfg.lca, cfg.full_channels, cfg.kernels, cfg.strides,
                       cfg.paddings, cfg.pools, cfg.fc, cfg.T1, cfg.T2, cfg.betas[1], cfg.act, cfg.loss,
                       cfg.softmax, cfg.feedback_scale, cfg.dict_class)
    except ValueError as e:
        raise UsageError(f'--channels/--kernels/--paddings/--lca_*: {e}')
    if cfg.dictionary and not (cfg.resume or cfg.model_from):
        assign_dictionary(cfg.dictionary, model.lca)
    model.lca.grad_iters = cfg.lca_grad_iters
    return model


def resolve_dictionary(args):
    """Validation of --dict_training pretrained / finetune: args.dictionary becomes the file the LCA starts from
    (--dictionary, else the newest real dictlearn run's), or None in a dry run that finds none (random dictionary)."""
    path = args.dictionary or newest_dictionary(getattr(args, 'results_root', args.results_dir))
    if not path or not os.path.isfile(path):
        if args.dry_run:
            say(f'dry run: no dictionary file (--dictionary {path}); using a random dictionary')
            args.dictionary = None
            return
        raise UsageError(f'--dict_training {args.dict_training} needs --dictionary <dictionary.pt> (made by '
                         f'--todo dictlearn); got {path}')
    args.dictionary = path


def assign_dictionary(path, lca):
    """The weights of a dictionary.pt into the LCA layer."""
    w = checkpoints.load(path, ('weights',), 'a dictionary.pt made by --todo dictlearn', '--dictionary')['weights']
    try:
        lca.assign_weight_values(w)
    except ValueError as e:
        raise UsageError(f'--dictionary {path}: {e}; match --lca_feats/--lca_ksize and the input channels')
    say(f'dictionary: {path}')


def load_dictionary(args, lca):
    """resolve_dictionary, then assign_dictionary: a namespace's dictionary into an LCA layer in one call."""
    resolve_dictionary(args)
    if args.dictionary:
        assign_dictionary(args.dictionary, lca)


def newest_dictionary(results_dir):
    """The newest dictionary.pt of a real --todo dictlearn run under results_dir (the given --results-dir, also in a
    dry run); dry runs write under <--results-dir>/dry-run/, and no dictionary inside a dry-run folder is picked."""
    found = [p for p in glob.glob(os.path.join(results_dir, 'dictlearn', '*', '*', 'dictionary.pt'))
             if DRY_RUN_DIR not in os.path.abspath(p).split(os.sep)]
    return max(found, key=os.path.getmtime) if found else None


# ---------------------------------------------------------------------------------------------------------------
# Training: dictionary updates, LCA metrics, adversarial batches

class LCAExtension(trainer.Extension):
    """Adds to Laborieux's loop: the LCA's own dictionary update (recon), the LCA metrics of every epoch (sparsity =
    fraction of non-zero codes; reconstruction error as a mean squared error and, as the original logged it, the
    signed mean of x̂ − D ∗ a), and, for --todo advtrain, the replacement of every batch by its PGD-L2 version."""

    def __init__(self, cfg, model, clf=None):
        self.model, self.cfg, self.clf = model, cfg, clf
        self.lca = model.lca if isinstance(model, LCANet) else None
        self.sums = {}
        self.items = []
        if self.lca is not None:
            self.items += [('lca', cfg.lca), ('sparse layers', cfg.full_channels),
                           ('feedback scale', cfg.feedback_scale), ('dictionary init', cfg.dict_init),
                           ('dictionary learns by', cfg.dict_loss or ('recon' if cfg.dict_recon else 'nothing')),
                           ('dictionary file', cfg.dictionary)]
        if clf is not None:
            self.items += [('adversarial training eps (L2)', cfg.eps),
                           ('adversarial gradient steps', cfg.train_attack_step)]

    def prepare(self, x, y):
        if self.clf is None:
            return x
        label = y.argmax(1)
        x01 = self.clf.denormalize(x)
        xa = attacks.pgd(self.clf, x01, label, self.cfg.eps, 2, self.cfg.attack_iters)
        self._add('adv', 'replaced', (xa != x01).flatten(1).any(1).to(x).mean())
        return self.clf.normalize(xa)

    def after_step(self, s):
        if self.lca is not None and self.cfg.dict_recon:
            self.lca.update_weights(*self.model.lca_stats)
        return s

    def _add(self, split, key, value):
        tot = self.sums.setdefault((split, key), [0.0, 0])
        tot[0], tot[1] = tot[0] + value, tot[1] + 1

    def observe(self, train):
        if self.lca is None:
            return None
        split = 'train' if train else 'test'

        def record(s, y, label):
            a, err = self.model.lca_stats
            self._add(split, 'sparsity', (a != 0).to(err).mean())
            self._add(split, 'recon_mse', (err ** 2).mean())
            self._add(split, 'recon_mean', err.mean())
        return record

    def epoch_row(self):
        """The epoch's means (of the batches' means; under torchrun, the mean over ranks of theirs)."""
        if not self.sums:
            return {}
        means = [m / distributed.world_size() for m in trainer.totals(*(v / n for v, n in self.sums.values()))]
        row = {f'{split}_{key}' if split != 'adv' else 'adv_replaced': m for (split, key), m in zip(self.sums, means)}
        self.sums = {}
        return row

    def save(self, folder):
        if self.lca is not None:
            rundir.save({'weights': self.lca.get_weights().cpu(), 'lca': self.cfg.lca},
                         os.path.join(folder, 'dictionary.pt'))


# ---------------------------------------------------------------------------------------------------------------
# Actions

def run(args, argv):
    cfg = check_args(args)
    default_threads(cfg.threads, True, cfg.mbs)
    device = run_device(cfg)
    seed = seed_everything(cfg.seed)
    if cfg.action == 'dictlearn':
        return dictlearn_action(cfg, argv, device, seed)
    xtr, ytr = lab.load_split(cfg, True) if cfg.action in ('train', 'advtrain', 'gducheck', 'evaluate') \
        else (None, None)
    xte, yte = lab.load_split(cfg, False) if cfg.action != 'gducheck' else (None, None)
    shape = tuple((xtr if xtr is not None else xte).shape[1:])
    model = build(cfg, shape).to(device, cfg.float_dtype).set_relaxation(cfg.tol, cfg.tol_every,
                                                                         SCHEDULES[cfg.schedule]).set_gpu(*cfg.gpu)
    if cfg.scale is not None:                              # the dictionary keeps unit-norm features
        lab.rescale(model.synapses if isinstance(model, LCANet) else model, cfg.scale)
    if cfg.action == 'gducheck':
        return lab.gducheck_action(cfg, argv, model, xtr, ytr, device, seed)
    if cfg.action == 'evaluate':
        return lab.evaluate_action(cfg, model, xtr, ytr, xte, yte, device)
    if cfg.action == 'train':
        return lab.train_action(cfg, argv, model, xtr, ytr, xte, yte, device, seed, LCAExtension(cfg, model))
    if cfg.model_from:                                     # (advtrain: adversarial fine-tuning into a new folder)
        lab.load_model(cfg.model_from, model)
    if cfg.action == 'advtrain':
        clf = attacks.Classifier(model, *norm_stats(cfg), predict_steps=100, attack_steps=cfg.train_attack_step)
        return lab.train_action(cfg, argv, model, xtr, ytr, xte, yte, device, seed,
                                LCAExtension(cfg, model, clf))
    clf = attacks.Classifier(model, *norm_stats(cfg), predict_steps=cfg.predict_step, attack_steps=cfg.attack_step)
    return attack_action(cfg, argv, model, clf, xte, yte, device, seed)


def norm_stats(cfg):
    """(mean, std) of the data normalisation, which moves inside the classifier: attacks work on [0, 1] images."""
    return (data.CIFAR_MEAN, lab.CIFAR_STD) if cfg.data_name == 'cifar10' else (None, None)


def attack_folder(cfg, argv, device, seed, items):
    """A new <results-dir>/<action>/<date>/<time> folder, with the model folder attacked among its hyperparameters."""
    def make():
        folder = rundir.claim_time_dir(os.path.join(cfg.results_dir, cfg.action))
        rundir.write_hyperparameters(folder, argv, [('model folder', cfg.model_from or 'fresh network (dry run)'),
                                                     ('model', cfg.model), ('task', cfg.data_name),
                                                     ('predict steps', cfg.predict_step),
                                                     ('attack (BPTT) steps', cfg.attack_step), ('seed', seed),
                                                     ('device', device), ('dtype', cfg.dtype)] + items)
        rundir.copy_plot_script(folder)
        return folder
    return trainer.open_run(make)


def test_set(cfg, clf, xte, yte, device):
    """The attacked test images in [0, 1] (the first --attack-samples), with labels, on the device."""
    n = len(xte) if cfg.attack_samples is None else min(cfg.attack_samples, len(xte))
    return clf.denormalize(xte[:n].to(device)), yte[:n].to(device)


def batched(x, y, bs):
    for i in range(0, len(x), bs):
        yield x[i:i + bs], y[i:i + bs]


def attack_action(cfg, argv, model, clf, xte, yte, device, seed):
    import pandas as pd                 # (imported here: it costs start-up time to commands that write no table)
    model.eval()
    norm_name = 'inf' if cfg.norm == math.inf else '2'
    tag = f'Norm_{norm_name}_'
    items = [('attack', cfg.action), ('norm', norm_name), ('PGD iterations', cfg.attack_iters),
             ('Square queries', cfg.queries), ('samples', cfg.attack_samples)]
    folder = attack_folder(cfg, argv, device, seed, items)
    x, label = test_set(cfg, clf, xte, yte, device)
    bs = 16 if cfg.dry_run else 100
    if cfg.action == 'baseline':
        logits = torch.cat([clf.logits(xb) for xb, _ in batched(x, label, bs)])
        for name, arr in (('Images', x), ('Labels', label), ('Logits', logits)):
            rundir.save_npy(os.path.join(folder, f'Original_{name}.npy'), arr.cpu().numpy())
        say(f'clean accuracy {(logits.argmax(1) == label).double().mean().item() * 100:.2f} %')
        return folder
    if cfg.action == 'corruptions':
        return corruptions(cfg, clf, folder, device, bs)
    if cfg.action == 'image-print' or cfg.image_print:
        return image_print(cfg, clf, x, label, folder)
    gen = torch.Generator().manual_seed(seed)
    white = cfg.action == 'attack'
    grid = attacks.eps_grid(cfg.norm) if white else attacks.eps_grid(cfg.norm)[3:]
    prefix = 'White_' if white else 'Square_'
    rows = []
    clean = sum((clf.logits(xb).argmax(1) == yb).sum().item() for xb, yb in batched(x, label, bs)) / len(x) * 100
    for eps in grid:
        advs, probs = [], []
        for xb, yb in trainer.progress(list(batched(x, label, bs)), f'eps {eps:.3g}'):
            xa = attacks.pgd(clf, xb, yb, eps, cfg.norm, cfg.attack_iters) if white else \
                attacks.square(clf, xb, yb, eps, cfg.norm, cfg.queries, generator=gen)
            advs.append(xa)
            probs.append(torch.softmax(clf.logits(xa), 1))
        adv, prob = torch.cat(advs), torch.cat(probs)
        acc = (prob.argmax(1) == label).double().mean().item() * 100
        rows.append(dict(norm=norm_name, eps=eps, clean_acc=clean, adv_acc=acc))
        say(f'eps {eps:.4g}: clean {clean:.2f} %, adversarial {acc:.2f} %')
        stem = f'{prefix}{tag}Adversarial_%s_Eps_{int(1000 * eps)}_Attack_T_{cfg.attack_step}_' \
               f'Predict_T_{cfg.predict_step}.npy'
        for name, arr in (('Images', adv), ('Labels', label), ('Confidence', prob)):
            rundir.save_npy(os.path.join(folder, stem % name), arr.cpu().numpy())
        table = pd.DataFrame(rows)
        rundir.write_csv(os.path.join(folder, 'accuracy_vs_eps.csv'), table)
        rundir.write_text(os.path.join(folder, f'{prefix}{tag}Adversarial_Accuracy_Attack_T_{cfg.attack_step}_'
                                                f'Predict_T_{cfg.predict_step}.txt'),
                           table[['eps', 'clean_acc', 'adv_acc']].to_string(index=False) + '\n')
    rundir.plot_folder(folder)
    return folder


def image_print(cfg, clf, x, label, folder):
    """One image (Test_Image.pt of the model folder when present, else the first test image) attacked with PGD at
    ε ∈ {0.5, 1, 2, 3, 7}; arrays in image_print.npz, figure image_print.png."""
    path = os.path.join(cfg.model_from or '', 'Test_Image.pt')
    if cfg.model_from and os.path.isfile(path):
        img = checkpoints.load(path, (), 'an image tensor')
        img = (img[0] if isinstance(img, (tuple, list)) else img).to(x)
        img = img.view(1, *x.shape[1:])
        lbl = clf.logits(img).argmax(1)
    else:
        img, lbl = x[:1], label[:1]
    eps = [0.5, 1.0, 2.0, 3.0, 7.0]
    advs = [attacks.pgd(clf, img, lbl, e, cfg.norm, cfg.attack_iters) for e in eps]
    preds = [clf.logits(a).argmax(1).item() for a in [img] + advs]
    np.savez(os.path.join(folder, 'image_print.npz'), eps=np.array([0.0] + eps), label=lbl.item(),
             images=torch.cat([img] + advs).cpu().numpy(), predictions=np.array(preds))
    rundir.plot_folder(folder)
    return folder


def corruptions(cfg, clf, folder, device, bs):
    """CIFAR-10-C: accuracy per corruption and severity (each file holds 5 severities × N images, uint8 NHWC)."""
    import pandas as pd                 # (imported here: it costs start-up time to commands that write no table)
    root = os.path.join(cfg.data_root, 'CIFAR-10-C')
    labels = torch.from_numpy(np.load(os.path.join(root, 'labels.npy'))).long()
    rows = []
    names = sorted(f[:-4] for f in os.listdir(root) if f.endswith('.npy') and f != 'labels.npy')
    for name in trainer.progress(names, 'corruptions'):
        imgs = np.load(os.path.join(root, name + '.npy'))
        n = len(imgs) // 5
        for sev in range(5):
            sl = slice(sev * n, sev * n + min(n, cfg.attack_samples or n))
            x = torch.from_numpy(imgs[sl]).permute(0, 3, 1, 2).to(device, cfg.float_dtype) / 255
            y = labels[sl].to(device)
            correct = sum((clf.logits(xb).argmax(1) == yb).sum().item() for xb, yb in batched(x, y, bs))
            rows.append(dict(corruption=name, severity=sev + 1, accuracy=100 * correct / len(x)))
        rundir.write_csv(os.path.join(folder, 'corruptions.csv'), pd.DataFrame(rows))
    table = pd.DataFrame(rows)
    rundir.write_text(os.path.join(folder, 'Corruption_Accuracy.txt'), table.to_string(index=False) + '\n')
    rundir.plot_folder(folder)
    return folder


# ---------------------------------------------------------------------------------------------------------------
# Dictionary pre-training (C2's cifar_dictlearning.py)

class DictionaryLearner(nn.Module):
    """LCA dictionary learning as a net of the suite's training loop: `forward` is the LCA inference of the
    preprocessed input (the sparse code a and the reconstruction error x − D ∗ a), `computeGradients` keeps them and
    `updateWeights` applies the dictionary's own rule (LCAConv2D.update_weights: gradient descent on ½||x − D ∗ a||²,
    normalised per feature, clipped, renormalised), which is its optimiser."""

    def __init__(self, lca):
        super().__init__()
        self.lca, self.code = lca, None

    def target(self, label):
        return label

    def forward(self, x):
        """(x preprocessed, a, x − D ∗ a)."""
        x = self.lca.preprocess(x)
        with torch.no_grad():
            a, _, err, _ = self.lca.encode(x)
        return x, a, err

    def computeGradients(self, s):
        self.code = s[1:]

    def updateWeights(self, optimizer=None):
        with torch.no_grad():
            self.lca.update_weights(*self.code)
        self.code = None


class DictionaryStats:
    """Per-epoch means over the mini-batches of the reconstruction MSE, the fraction of active codes and the LCA
    energy, read after each update (device sums, one host read per epoch)."""

    def __init__(self, lca, device):
        self.lca, self.sums, self.n = lca, torch.zeros(3, device=device, dtype=torch.float64), 0

    def __call__(self, s, y, label):
        x, a, err = s
        self.sums += torch.stack([(err ** 2).mean(), (a != 0).to(err).mean(), self.lca.energy(x, a).mean()]).double()
        self.n += 1

    def means(self):
        return (self.sums / max(self.n, 1)).tolist()


def dictlearn_action(cfg, argv, device, seed):
    """LCA dictionary learning alone: a random half of the training set (indices saved in train_indices.npy),
    the built-in update (D.3) after every mini-batch, λ raised by 0.1 every epochs//7 epochs; dictionary.pt,
    dictlearn.csv (λ, reconstruction MSE, sparsity, energy per epoch) and lca_weights.png every epoch. The epochs run
    in the suite's loops (trainer.fit, trainer.train with a DictionaryLearner); --load-path <dictlearn folder>
    resumes one (checkpoint.tar: the dictionary, λ, the mini-batch order and the history)."""
    x, y = lab.load_split(cfg, True)
    lca = LCAConv2D(cfg.lca_feats, x.shape[1], cfg.lca_ksize or 7, cfg.lca_stride or 1, cfg.lca_lambda, cfg.lca_tau,
                    cfg.eta, cfg.lca_iters).to(device, cfg.float_dtype)
    learner = DictionaryLearner(lca)
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(x), generator=gen)[:len(x) // 2]
    history = []
    if cfg.resume:
        ck = checkpoints.restore(os.path.join(cfg.resume, 'checkpoint.tar'), learner, generator=gen,
                                 what='a checkpoint.tar of a --todo dictlearn run', keys=('lambda_',))
        history, lca.lambda_ = ck['history'], ck['lambda_']

    def make():
        folder = rundir.claim_time_dir(os.path.join(cfg.results_dir, 'dictlearn'))
        rundir.write_hyperparameters(folder, argv, [('task', cfg.data_name), ('features', cfg.lca_feats),
                                                     ('kernel', lca.k), ('stride', lca.stride),
                                                     ('lambda', lca.lambda_), ('tau', lca.tau), ('eta', lca.eta),
                                                     ('iterations', lca.lca_iters), ('minibatch size', cfg.mbs),
                                                     ('epochs', cfg.epochs), ('seed', seed), ('device', device),
                                                     ('dtype', cfg.dtype)])
        rundir.copy_plot_script(folder)
        rundir.save_npy(os.path.join(folder, 'train_indices.npy'), idx.numpy())
        return folder
    folder = trainer.open_run(make, cfg.resume, cfg.argv_given or argv)
    aug = data.augment if (cfg.data_aug and cfg.data_name == 'cifar10') else None
    train_b = data.Batches(x[idx], y[idx], cfg.mbs, shuffle=True, device=device, generator=gen, transform=aug,
                           max_batches=1 if cfg.dry_run else None)
    every = max(cfg.epochs // 7, 1)

    def step(xb, yb):
        s = learner(xb)
        learner.computeGradients(s)
        return s

    def run_epoch(epoch):
        stats = DictionaryStats(lca, device)
        lambda_ = lca.lambda_
        trainer.train(learner, None, train_b, step, f'dictlearn {epoch}', observe=stats, count=False)
        mse, sparsity, energy = stats.means()
        say(f'epoch {epoch}: λ {lambda_:.2f}, reconstruction MSE {mse:.4f}, active {sparsity:.4f}')
        if epoch % every == 0:
            lca.lambda_ += 0.1
        return dict(lambda_=lambda_, recon_mse=mse, sparsity=sparsity, energy=energy)

    def save(history):
        checkpoints.save(os.path.join(folder, 'checkpoint.tar'), learner, None, history[-1]['epoch'] if history else 0,
                         history, generator=gen, config=cfg, lambda_=lca.lambda_)
        if history:
            rundir.save({'weights': lca.get_weights().cpu(), 'lca': dict(out_neurons=lca.F, kernel_size=lca.k,
                                                                           stride=lca.stride,
                                                                           lambda_=history[-1]['lambda_'])},
                         os.path.join(folder, 'dictionary.pt'))

    trainer.fit(folder, cfg.epochs, history, run_epoch, save, learner.parameters(), metrics='dictlearn.csv',
                plot=rundir.plot_folder)
    rundir.plot_folder(folder)
    return folder

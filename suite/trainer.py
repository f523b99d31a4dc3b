"""What every paper's training shares: the run folder (new or resumed), the epoch loop with its metrics CSV, the
extension hooks, the mini-batch loops, and reading checkpoints.

A paper opens its folder with `open_run` (a new folder it fills, or the --load-path folder it resumes, whose
hyperparameter file gets the resume's command line) and hands `fit` two functions: `run_epoch(epoch)` (one epoch of
training and testing, returning its metrics row) and `save(history)` (its checkpoint, written atomically). `fit` adds
to each row

    epoch_seconds   wall-clock seconds of that epoch
    seconds         cumulative seconds of the run, continued across resumes (from the last row of `history`)

rewrites the paper's metrics CSV after every epoch, and checks, once per epoch (one host synchronisation, none per
mini-batch), that the row's numbers and the network's weights are finite. A run that goes non-finite, or that is
interrupted (Ctrl-C), stops with `Stopped`: main.py prints its one line and exits with its code; the folder keeps the
checkpoint of the last good epoch, which resumes with --load-path, and a non-finite stop is written to the folder
(stopped.txt, and a line of hyperparameters.txt).

`train(net, optimizer, batches, step, ...)` is one epoch over mini-batches: `step(x, y)` writes the gradient estimate
(or, for CEP, applies it) and returns the free state, then `net.updateWeights(optimizer)`; `evaluate` is one pass of
free phases. An `Extension` is what a paper adds to that loop (EPLCANet: dictionary updates, LCA metrics, adversarial
batches).

Under torchrun (distributed.py) `train` and `evaluate` relax this rank's shard of every global mini-batch, the
network's updateWeights averages the estimates across ranks before the update, and the error counts and losses are
summed over ranks (one reduction per epoch); `open_run` makes the folder on rank 0 and gives its name to every rank,
or, resuming, lets rank 0 append to the folder once every rank has read it.
"""
import math
import os
import pickle
import re
import time
import zipfile

import pandas as pd
import torch
from tqdm import tqdm

from suite import distributed
from suite import rundir
from suite.cli import UsageError, say
from netFunctions import free_phase


class Stopped(Exception):
    """A run that ended early: one line for the user and the exit code (1: non-finite values, 130: Ctrl-C)."""

    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


def _finite_row(row):
    return all(math.isfinite(v) for v in row.values() if isinstance(v, float))


def _finite_params(params):
    params = [p.detach() for p in params]
    return not params or bool(torch.stack([torch.isfinite(p).all() for p in params]).all())


def fit(folder, epochs, history, run_epoch, save, params, hyper_file='hyperparameters.txt', label='', metrics=None,
        table=None, extension=None):
    """`epochs` more epochs after those of `history` (the rows of the epochs already done, extended in place).
    `save(history)` runs once before the first epoch when nothing is saved yet (so that an interrupted first epoch
    leaves a checkpoint that resumes) and after every good epoch. `params`: the weights checked after each epoch.
    `metrics`: the name of the run's metrics CSV in `folder`, rewritten after every good epoch from `table()` (every
    row of the run, e.g. of several nets; default: `history`). `extension` (an Extension): its epoch_row() columns
    end each row, its save(folder) runs after every good epoch. Returns history."""
    params = list(params)                                  # (a generator would be spent after the first check)
    start = history[-1]['epoch'] if history else 0
    done = start
    elapsed = history[-1].get('seconds', 0.0) if history else 0.0
    if not history:
        save(history)
    try:
        for epoch in range(start + 1, start + epochs + 1):
            t0 = time.time()
            row = run_epoch(epoch)
            if extension is not None:
                row.update(extension.epoch_row())
            dt = time.time() - t0
            row = dict(epoch=epoch, **{k: v for k, v in row.items() if k != 'epoch'})
            row.update(epoch_seconds=dt, seconds=elapsed + dt)
            if not (_finite_row(row) and _finite_params(params)):
                _stop_non_finite(folder, hyper_file, label, row, done)
            elapsed += dt
            history.append(row)
            save(history)
            if extension is not None:
                extension.save(folder)
            if metrics:
                rundir.write_csv(os.path.join(folder, metrics), pd.DataFrame(table() if table else history))
            done = epoch
    except KeyboardInterrupt:
        raise Stopped(f'interrupted{label} in epoch {done + 1}; {folder} holds the checkpoint of epoch {done}: '
                      f'resume with --load-path {folder}', 130)
    return history


def _stop_non_finite(folder, hyper_file, label, row, done):
    bad = ', '.join(f'{k} {v}' for k, v in row.items() if isinstance(v, float) and not math.isfinite(v))
    what = bad or 'weights'
    message = (f'non-finite values{label} in epoch {row["epoch"]} ({what}): stopped; the last good checkpoint is '
               f'that of epoch {done} in {folder} (lower the learning rates, or resume from it with --load-path)')
    rundir.write_text(os.path.join(folder, 'stopped.txt'), message + '\n')
    rundir.append_hyperparameters(folder, [f'STOPPED: {message}'], name=hyper_file)
    raise Stopped(message, 1)


def note_resume(folder, argv, hyper_file='hyperparameters.txt'):
    """A resumed run appends its command line to the folder's hyperparameter file: its flags override the saved
    ones the next time the folder is loaded (main.saved_argv reads every command line of that file, in order). A
    resume by another number of torchrun processes than the file's last `- world size: N` (none: 1) adds its own."""
    lines = [rundir.command_line(argv)]
    n, path = distributed.world_size(), os.path.join(folder, hyper_file)
    if distributed.is_main() and n != _recorded_world_size(path):
        lines.append(f'- world size: {n} (from this resume on)')
    rundir.append_hyperparameters(folder, lines, name=hyper_file)


def _recorded_world_size(path):
    """The last `- world size: N` of a hyperparameter file (rundir.write_hyperparameters writes it for N > 1), or 1."""
    n = 1
    if os.path.isfile(path):                       # (append_hyperparameters creates a missing one)
        with open(path) as f:
            for line in f:
                m = re.match(r'- world size: (\d+)', line)
                n = int(m.group(1)) if m else n
    return n


def open_run(make, resume=None, argv=None, hyper_file='hyperparameters.txt'):
    """The folder of a run, said on stdout as `results: <folder>`: `resume` (a run picked up again; `argv`, the
    command line as given, is appended to its hyperparameter file), else `make()`, which creates a new folder and
    writes its hyperparameters (each paper has its own layout)."""
    if resume:
        # every rank has read the folder's command lines (main.resolve) and checkpoint (the paper's resume) before
        # rank 0 appends to it: else a late rank could merge the resume's line twice, or read it half written
        distributed.barrier()
        note_resume(resume, argv, hyper_file)
        folder = resume
    else:
        folder = distributed.broadcast(make() if distributed.is_main() else None)   # rank 0 alone claims it
    say(f'results: {folder}')
    return folder


class Extension:
    """What a paper adds to the training loop (eplcanet.LCAExtension); no-ops here."""
    items = ()                                          # extra hyperparameters.txt lines

    def prepare(self, x, y):
        """The mini-batch the update sees (adversarial training replaces it)."""
        return x

    def after_step(self, s):
        """After the gradient estimate, before the optimiser step (built-in dictionary updates)."""
        return s

    def step(self, step):
        """step(x, y) (the paper's gradient estimate) between prepare and after_step."""
        return lambda x, y: self.after_step(step(self.prepare(x, y), y))

    def observe(self, train):
        """Callback(s, y, label) run on every training (train=True) or test batch, or None."""
        return None

    def epoch_row(self):
        """Extra metrics columns of the epoch that just ended (fit adds them to its row)."""
        return {}

    def save(self, folder):
        """Extra files of the run, written by fit after every epoch."""


# ---------------------------------------------------------------------------------------------------------------
# Mini-batch loops (one epoch of training, one pass of testing), shared by every paper

def progress(iterable, desc):
    """A tqdm bar (rank 0's only under torchrun)."""
    return tqdm(iterable, desc=desc, leave=False, dynamic_ncols=True, disable=not distributed.is_main())


def totals(*values):
    """Sums over ranks of device scalars and host counts, as Python floats: one host read (and one all-reduce)."""
    dev = next((v.device for v in values if torch.is_tensor(v)), 'cpu')
    t = torch.stack([torch.as_tensor(v, device=dev).double() for v in values])
    return distributed.all_sum(t).tolist()


def train(net, optimizer, batches, step, desc='train', hook=None, observe=None):
    """One epoch. step(x, y) writes the gradient estimate to .grad (EP, BPTT) and returns the free state; the
    optimiser then descends (net.updateWeights, which averages the estimates of the ranks). hook(b, x, y), if given,
    runs before each mini-batch, observe(s, y, label) after it (on the rank's shard; observe on the rows it counts).
    Returns the training error (%) measured at the free equilibrium before each update, over the whole data."""
    net.train()
    wrong = torch.zeros((), dtype=torch.long, device=next(net.parameters()).device)
    seen = 0
    for b, (x, label, own) in enumerate(distributed.shards(progress(batches, desc))):
        y = net.target(label)
        if hook is not None:
            hook(b, x, y)
        optimizer.zero_grad(set_to_none=True)
        s = step(x, y)
        net.updateWeights(optimizer)
        if own:
            if observe is not None:
                observe(s, y, label)
            wrong += (net.output(s).argmax(1) != label).sum()   # stays on the device: no sync per batch
            seen += label.shape[0]
    wrong, seen = totals(wrong, seen)
    return 100.0 * wrong / max(seen, 1)


def evaluate(net, batches, T=None, observe=None):
    """Test error (%) and mean cost ℓ at the free equilibrium (T steps from zeros), over the whole data (each rank
    relaxes its shard); observe(s, y, label), if given, sees every batch the rank counts."""
    net.eval()
    p = next(net.parameters())
    # the loss sum in the net's dtype: a float64 run's test loss is not rounded to float32
    wrong, loss, seen = torch.zeros((), device=p.device), torch.zeros((), device=p.device, dtype=p.dtype), 0
    with torch.no_grad():
        for x, label, own in distributed.shards(batches):
            if not own:
                continue
            s = free_phase(net, net.front(x), T)
            wrong += (net.output(s).argmax(1) != label).sum()
            loss += net.cost(s, net.target(label)).sum()
            seen += label.shape[0]
            if observe is not None:
                observe(s, net.target(label), label)
    wrong, loss, seen = totals(wrong, loss, seen)
    return 100.0 * wrong / max(seen, 1), loss / max(seen, 1)


# ---------------------------------------------------------------------------------------------------------------
# Reading checkpoints: one line naming the file and what was expected, never a traceback

UNREADABLE = (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, KeyError,
              AttributeError, ImportError, IndexError, TypeError)


def load(path, keys=(), what='a checkpoint of this suite', flag='--load-path'):
    """torch.load of a checkpoint dict holding `keys`; a missing, unreadable or foreign file is a UsageError."""
    if not os.path.isfile(path):
        raise UsageError(f'{flag}: no {os.path.basename(path)} in {os.path.dirname(path) or "."} (expected {what}; '
                         f'give the folder of a training run)' if flag == '--load-path' else
                         f'{flag} {path}: no such file (expected {what})')
    try:
        ck = torch.load(path, map_location='cpu', weights_only=False)
    except UNREADABLE as e:
        reason = _first(e, 1)
        raise UsageError(f'{path}: not a readable checkpoint ({reason}); expected {what}')
    missing = [k for k in keys if not isinstance(ck, dict) or k not in ck]
    if missing:
        raise UsageError(f'{path}: not {what} (no {", ".join(missing)} in it)')
    return ck


def _first(error, lines):
    """The first sentence of the first `lines` lines of an exception's text (or its type), on one line."""
    text = ' '.join(ln.strip() for ln in str(error).splitlines()[:lines] if ln.strip()) or type(error).__name__
    return text.split('. ')[0].rstrip('.')[:200]


def load_state(module, state, path, fix='give the flags of the run that made it, or another folder'):
    """module.load_state_dict, with a mismatch reported as a UsageError naming the file (and `fix`)."""
    try:
        module.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, TypeError) as e:
        raise UsageError(f'{path}: its weights do not fit the network of this command ({_first(e, 2)}); {fix}')


def load_optimizer(opt, state, path):
    """An optimiser's saved state (momenta, learning rates as scheduled), under this command's hyperparameters: a
    learning rate, weight decay or momentum that differs from the saved run's replaces it (a learning rate then
    restarts from its new value), while the same values keep the saved, possibly scheduled, state bit for bit."""
    fresh = [{k: v for k, v in g.items() if k != 'params'} for g in opt.param_groups]
    load_state(opt, state, path)
    for g, f in zip(opt.param_groups, fresh):
        base = 'initial_lr' if 'initial_lr' in f else 'lr'   # a scheduler keeps the base value in initial_lr
        if g.get(base) == f[base]:
            f = {k: v for k, v in f.items() if k not in ('lr', 'initial_lr')}
        g.update(f)


def hyper_file_of(folder):
    """The hyperparameter file of a run folder (Hyperparameters.txt for the binary-EP runs), or None."""
    for name in ('hyperparameters.txt', 'Hyperparameters.txt'):
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    return None


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
import re
import shlex
import time

import torch
from tqdm import tqdm

from suite import distributed
from suite import rundir
from suite import runlog
from suite.cli import UsageError, say


class Stopped(Exception):
    """A run that ended early: one line for the user and the exit code (1: non-finite values, 130: Ctrl-C), and
    its status in runs.csv."""
    STATUS = {1: 'stopped non-finite', 130: 'interrupted'}

    def __init__(self, message, code):
        super().__init__(message)
        self.code = code

    @property
    def status(self):
        return self.STATUS.get(self.code, 'failed')


def _finite_row(row):
    return all(math.isfinite(v) for v in row.values() if isinstance(v, float))


def _finite_params(params):
    params = [p.detach() for p in params]
    return not params or bool(torch.stack([torch.isfinite(p).all() for p in params]).all())


def fit(folder, epochs, history, run_epoch, save, params, hyper_file='hyperparameters.txt', label='', metrics=None,
        table=None, extension=None, prog='main.py', plot=None):
    """The one epoch loop: epochs len(history) + 1 … `epochs` (`epochs` is the run's target: a resumed run finishes
    the epochs it was asked for, and --epochs given at resume sets a new target), after those of `history` (the rows
    of the epochs already done, extended in place). A resumed run says `resuming at epoch k of N`.
    `save(history)` runs once before the first epoch when nothing is saved yet (so that an interrupted first epoch
    leaves a checkpoint that resumes) and after every good epoch. `params`: the weights checked after each epoch.
    `metrics`: the name of the run's metrics CSV in `folder`, rewritten after every good epoch from `table()` (every
    row of the run, e.g. of several nets; default: `history`). `extension` (an Extension): its epoch_row() columns
    end each row, its save(folder) runs after every good epoch. `plot(folder)`, if given, redraws the run's figures
    after every epoch but the last (the paper draws them once more when its run ends). `prog`: the command that
    resumes the run (main.py, or a Wu 2024 script). Returns history."""
    import pandas as pd                 # (imported here: it costs start-up time to commands that write no table)
    params = list(params)                                  # (a generator would be spent after the first check)
    start = history[-1]['epoch'] if history else 0
    done = start
    elapsed = history[-1].get('seconds', 0.0) if history else 0.0
    if history:
        say(f'resuming at epoch {start + 1} of {epochs}{label}' if start < epochs else
            f'nothing to train{label}: the run has done {start} of {epochs} epochs (give --epochs N > {start} to '
            f'train further)')
    else:
        save(history)
    try:
        for epoch in range(start + 1, epochs + 1):
            t0 = time.time()
            row = run_epoch(epoch)
            if extension is not None:
                row.update(extension.epoch_row())
            dt = time.time() - t0
            row = dict(epoch=epoch, **{k: v for k, v in row.items() if k != 'epoch'})
            row.update(epoch_seconds=dt, seconds=elapsed + dt)
            if not (_finite_row(row) and _finite_params(params)):
                _stop_non_finite(folder, hyper_file, label, row, done, prog)
            elapsed += dt
            history.append(row)
            save(history)
            if extension is not None:
                extension.save(folder)
            if metrics:
                rundir.write_csv(os.path.join(folder, metrics), pd.DataFrame(table() if table else history))
            done = epoch
            if plot is not None and epoch < epochs and distributed.is_main():
                plot(folder)
    except KeyboardInterrupt:
        raise Stopped(f'interrupted{label} in epoch {done + 1}; {folder} holds the checkpoint of epoch {done}: '
                      f'resume with python {prog} --load-path {folder}', 130)
    return history


def _stop_non_finite(folder, hyper_file, label, row, done, prog):
    bad = ', '.join(f'{k} {v}' for k, v in row.items() if isinstance(v, float) and not math.isfinite(v))
    what = bad or 'weights'
    message = (f'non-finite values{label} in epoch {row["epoch"]} ({what}): stopped; the last good checkpoint is '
               f'that of epoch {done} in {folder} (lower the learning rates, or resume from it with python {prog} '
               f'--load-path {folder})')
    rundir.write_text(os.path.join(folder, 'stopped.txt'), message + '\n')
    rundir.append_hyperparameters(folder, [f'STOPPED: {message}'], name=hyper_file)
    raise Stopped(message, 1)


def note_resume(folder, argv, hyper_file='hyperparameters.txt', prog='main.py'):
    """A resumed run appends its command line (`python <prog> …`) to the folder's hyperparameter file: its flags
    override the saved ones the next time the folder is loaded (commandline.saved_argv reads every command line of that file,
    in order). A resume by another number of torchrun processes than the file's last `- world size: N` (none: 1)
    adds its own."""
    lines = [rundir.command_line(argv, prog)]
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


def open_run(make, resume=None, argv=None, hyper_file='hyperparameters.txt', prog='main.py'):
    """The folder of a run, said on stdout as `results: <folder>`: `resume` (a run picked up again; `argv`, the
    command line of `prog` as given, is appended to its hyperparameter file), else `make()`, which creates a new
    folder and writes its hyperparameters (each paper has its own layout). From here on the run's output also goes
    to the folder's run.log, and the run has its row in runs.csv (runlog)."""
    if resume:
        # every rank has read the folder's command lines (commandline.resolve) and checkpoint (the paper's resume) before
        # rank 0 appends to it: else a late rank could merge the resume's line twice, or read it half written
        distributed.barrier()
        note_resume(resume, argv, hyper_file, prog)
        folder = resume
    else:
        folder = distributed.broadcast(make() if distributed.is_main() else None)   # rank 0 alone claims it
    runlog.folder_known(folder)                     # run.log from here on (and what was printed so far), runs.csv
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

def say_epoch(row, clock='seconds'):
    """The line of a finished epoch of a classifier: its train / test accuracy, test loss and row[clock] seconds."""
    say(f'epoch {row["epoch"]}: train acc {row["train_acc"]:.2f} %, test acc {row["test_acc"]:.2f} %, '
        f'test loss {row["test_loss"]:.4f}, {row[clock]:.1f} s')


def progress(iterable, desc):
    """A tqdm bar (rank 0's only under torchrun)."""
    return tqdm(iterable, desc=desc, leave=False, dynamic_ncols=True, disable=not distributed.is_main())


def totals(*values):
    """Sums over ranks of device scalars and host counts, as Python floats: one host read (and one all-reduce)."""
    dev = next((v.device for v in values if torch.is_tensor(v)), 'cpu')
    t = torch.stack([torch.as_tensor(v, device=dev).double() for v in values])
    return distributed.all_sum(t).tolist()


def _tally(net, s, y, label, topk, loss):
    """Device counts of one mini-batch (no host read): [top-1 errors, top-k errors, Σ ℓ] (the last two 0 unless
    asked for), from the state s the network predicts from."""
    scores = net.output(s)
    wrong = (scores.argmax(1) != label).sum()
    out = [wrong, wrong.new_zeros(()), torch.zeros((), device=scores.device, dtype=torch.float64)]
    if topk > 1:
        hit = (scores.topk(min(topk, scores.shape[1]), 1).indices == label.view(-1, 1)).any(1)
        out[1] = (~hit).sum()
    if loss:
        with torch.no_grad():
            out[2] = net.cost(s, y).sum().double()
    return out


def _rates(counts, seen, topk, loss):
    """{'error': top-1 error %, 'top5_error' (topk=5) %, 'loss': mean ℓ} of summed counts, over every rank."""
    wrong, wrong_k, total, seen = totals(*counts, seen)
    seen = max(seen, 1)
    out = {'error': 100.0 * wrong / seen}
    if topk > 1:
        out[f'top{topk}_error'] = 100.0 * wrong_k / seen
    if loss:
        out['loss'] = total / seen
    return out


def train(net, optimizer, batches, step, desc='train', hook=None, observe=None, topk=1, loss=False, count=True):
    """The one training loop over mini-batches, for every paper. Per mini-batch: step(x, y) writes the gradient
    estimate to .grad (an estimator: EP, CEP, BPTT, the chain's EP / ID, backprop) and returns the state s the
    network predicts from (net.output(s)); then net.updateWeights(optimizer) descends (averaging the estimates of the
    torchrun ranks first). hook(b, x, y), if given, runs before each mini-batch, observe(s, y, label) after it (on the
    rank's shard; observe on the rows it counts).
    Returns {'error': training error % at s (scored before each update)}, with 'top<k>_error' for topk > 1 and 'loss' (the
    mean cost ℓ at s) when asked, over the whole data: the counts stay on the device (no host read per mini-batch).
    count=False: a net that predicts no class (a dictionary learner) is not scored, {} is returned; optimizer None:
    the net's updateWeights applies its own rule."""
    net.train()
    counts, seen = None, 0
    for b, (x, label, own) in enumerate(distributed.shards(progress(batches, desc))):
        y = net.target(label)
        if hook is not None:
            hook(b, x, y)
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
        s = step(x, y)
        if own and count:              # scored before the update: a readout's prediction is that of the weights used
            c = _tally(net, s, y, label, topk, loss)
            counts = c if counts is None else [a + b_ for a, b_ in zip(counts, c)]
            seen += label.shape[0]
        net.updateWeights(optimizer)
        if own and observe is not None:
            observe(s, y, label)
    distributed.sync_buffers(net)              # rank 0's BatchNorm running statistics everywhere (none: nothing)
    return _rates(counts or [0, 0, 0.0], seen, topk, loss) if count else {}


def evaluate(net, batches, T=None, observe=None, topk=1):
    """The one evaluation loop: test error % and mean cost ℓ at the state net.infer(x, T) (the free equilibrium, T
    steps from zeros, for the EP nets; the output of a feedforward pass), over the whole data (each rank relaxes its
    shard). Returns {'error', 'loss'} (and 'top<k>_error' for topk > 1); observe(s, y, label), if given, sees every
    batch the rank counts. The loss is summed in float64: a float64 run's test loss is not rounded to float32."""
    net.eval()
    counts, seen = None, 0
    with torch.no_grad():
        for x, label, own in distributed.shards(batches):
            if not own:
                continue
            s = net.infer(x, T)
            y = net.target(label)
            c = _tally(net, s, y, label, topk, True)
            counts = c if counts is None else [a + b_ for a, b_ in zip(counts, c)]
            seen += label.shape[0]
            if observe is not None:
                observe(s, y, label)
    return _rates(counts or [0, 0, 0.0], seen, topk, True)


def command_lines(path, prog='main.py'):
    """The argv of every command line of a hyperparameter file (its first line, then the line of every resume), in
    order; a file whose command lines do not read as shell words (a lost quote, bytes that are not text) is a
    UsageError naming it."""
    out = []
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(f'python {prog} '):
                    out.append(shlex.split(line)[2:])
    except ValueError as e:                         # shlex's unbalanced quotes, UnicodeDecodeError
        why = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise UsageError(f'{path}: unreadable command line ({why}); restore the line that made the run '
                         f'(python {prog} …), or give another run folder')
    return out


def hyper_file_of(folder):
    """The hyperparameter file of a run folder (Hyperparameters.txt for the binary-EP runs), or None."""
    for name in ('hyperparameters.txt', 'Hyperparameters.txt'):
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    return None


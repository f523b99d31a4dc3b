"""Data parallelism on torch.distributed, for every paper's training: `torchrun --nproc_per_node=N main.py …`.

torchrun starts N copies of the command with RANK, WORLD_SIZE and LOCAL_RANK in their environment; without them (a
plain `python main.py`) every function here is that of one process. The process group is joined first thing
(main.main, wu2024.main): gloo for CPU tensors, NCCL for CUDA ones; cli.pick_device gives rank r of a node
cuda:<--device + LOCAL_RANK>, and cli.draw_seed shares rank 0's seed.

Every rank draws the same global mini-batches (same seed, same shuffling generator) and relaxes its own rows of it:

    shard of rank r (of N) of a mini-batch of B rows:   rows [r B/N, (r+1) B/N)         (B divisible by N)
    ĝ_θ = (1/N) Σ_r ĝ_θ^r                               each ĝ^r a mean over B/N rows: the mean over the B rows

so the averaged estimate is the one-process estimate of the whole mini-batch (up to the order of float additions),
and the update that follows (SGD, Adam, the binary flip rule and its α, CEP's per-step updates) is the same on every
rank: the weights never drift apart. A mini-batch that N does not divide (the last, partial one of an epoch) is
relaxed whole on every rank and counted by rank 0 only. Metrics are sums over ranks; rank 0 alone writes
(suite/rundir.py, plotFunctions.plot_folder) and talks (cli.say, tqdm).

Resuming (--load-path): every rank reads the run's command lines and checkpoint (weights, optimiser, epoch, random
states), and rank 0 appends to its hyperparameters.txt only once every rank has (trainer.open_run). Nothing above
depends on N, so a run resumes under any number of processes that divides its mini-batch (one process included)
and continues as it would have (up to the order of float additions); a new N is recorded as `- world size: N`.
"""
import atexit
import os

import torch
import torch.distributed as dist


def launched():
    """Number of processes torchrun started (WORLD_SIZE; 1 for a plain run): what the flags are checked against
    before the process group exists."""
    return int(os.environ.get('WORLD_SIZE', '1'))


def world_size():
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank():
    """This process's rank: from the process group, or torchrun's RANK before it is joined."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get('RANK', '0'))


def local_rank():
    return int(os.environ.get('LOCAL_RANK', '0'))


def is_main():
    """Rank 0: the process that writes the result folder and prints."""
    return rank() == 0


_owned = [False]                   # whether setup() joined the group (a caller that joined it itself keeps it)


def setup():
    """Join torchrun's process group (once, first thing of a command line, so that a seed drawn by rank 0 can be
    shared before anything uses it; nothing without torchrun): gloo for CPU tensors, NCCL for CUDA tensors."""
    if launched() == 1 or not dist.is_available() or dist.is_initialized():
        return
    dist.init_process_group('cpu:gloo,cuda:nccl' if torch.cuda.is_available() else 'gloo')
    _owned[0] = True
    atexit.register(_teardown)


def leave():
    """Leave the process group that setup() joined, now: a rank that stops (a usage error, a failed write) closes its
    connections before it exits, so that a peer waiting for it in a collective fails at once (peer_lost) instead of
    waiting for the timeout. A group the caller joined itself (a test running several command lines in one process)
    is left alone."""
    if _owned[0]:
        _owned[0] = False
        _teardown()


def peer_lost(error):
    """Whether `error` is a collective that failed because another torchrun rank stopped (gloo: the peer closed its
    connection), rather than a fault of this rank."""
    if launched() == 1 or not isinstance(error, RuntimeError):
        return False
    text = str(error)
    return isinstance(error, dist.DistError) or any(s in text for s in PEER_GONE)


PEER_GONE = ('Connection closed by peer', 'Connection reset by peer', 'Broken pipe')


def use_device(device):
    """A rank's CUDA device is its current one (what NCCL communicates on)."""
    if device.type == 'cuda':
        torch.cuda.set_device(device)


def _teardown():
    if dist.is_initialized():
        dist.destroy_process_group()


_held = [None]                     # what each rank holds of the batch being relaxed: 'shard', 'whole' or None


def shards(batches):
    """(x, label, own) for each global mini-batch (x, label): this rank's rows, or, when the world size does not
    divide the batch, the whole batch (the average of N equal estimates is that estimate); `own` says whether this
    rank counts these rows in the metrics (the whole batch: rank 0 only)."""
    n, r = world_size(), rank()
    for x, label in batches:
        B = label.shape[0]
        _held[0] = 'whole' if B % n else 'shard'
        if n == 1 or B % n:
            yield x, label, r == 0
        else:
            k = B // n
            yield x[r * k:(r + 1) * k], label[r * k:(r + 1) * k], True
    _held[0] = None


def row_sum(t):
    """Σ over the rows of the global mini-batch of a sum over this rank's rows (e.g. the LCA's dictionary update):
    the sum over ranks, divided by N when every rank holds the whole batch (in place); outside a loop over shards
    (every rank holds the same data) t itself."""
    if world_size() > 1 and _held[0] is not None:
        dist.all_reduce(t)
        if _held[0] == 'whole':
            t.div_(world_size())
    return t


def all_sum(t):
    """Σ_r t_r in place (a device tensor; the identity for one process)."""
    if world_size() > 1:
        dist.all_reduce(t)
    return t


def average_grads(params):
    """p.grad ← (1/N) Σ_r p.grad_r for every parameter that has a gradient: one all-reduce per dtype over the
    gradients flattened into one buffer (every rank runs the same code, so the same parameters have one)."""
    n = world_size()
    if n == 1:
        return
    groups = {}
    for p in params:
        if p.grad is not None:
            groups.setdefault(p.grad.dtype, []).append(p)
    for ps in groups.values():
        flat = torch.cat([p.grad.reshape(-1) for p in ps])
        dist.all_reduce(flat)
        flat.div_(n)
        for p, g in zip(ps, flat.split([p.grad.numel() for p in ps])):
            p.grad = g.view_as(p.grad)


def sync_buffers(module):
    """Rank 0's buffers (e.g. BatchNorm running statistics, which each rank updates from its own rows) to every rank."""
    if world_size() > 1:
        for b in module.buffers():
            dist.broadcast(b, 0)


def barrier():
    """Wait until every rank has come here (e.g. has read a run folder that rank 0 is about to write to): an
    all-reduce of a CPU tensor, which goes through gloo also where CUDA tensors go through NCCL."""
    if world_size() > 1:
        dist.all_reduce(torch.zeros(1))


def broadcast(obj):
    """Rank 0's value of a picklable object (e.g. the result folder it created), on every rank."""
    if world_size() == 1:
        return obj
    box = [obj]
    # through the CPU (gloo): it may run before a rank has picked its GPU (cli.draw_seed)
    dist.broadcast_object_list(box, 0, device=torch.device('cpu'))
    return box[0]

"""torchrun data parallelism (distributed.py): two gloo processes, each relaxing its half of every global mini-batch,
end with the weights (and the metrics) of one process that relaxes the whole mini-batch, for EP (random-sign β),
CEP, BPTT and binary EP (the flip rule and learned α); through main.py, rank 0 alone writes the run folder, a run
resumed with --load-path (by 2 ranks, or by another number of processes) ends with the weights of an uninterrupted
run, and a mini-batch that the world size does not divide exits 2 on every rank."""
import datetime
import glob
import os
import shutil
import socket
import time
import types

import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from suite import checks
from suite import data
from suite import distributed
from ep import estimators
import plotFunctions
from suite import trainer
import Tools_fc
from suite.cli import UsageError
from conftest import run_main
from papers.laborieux2021.nets import P_MLP
from Network_fc import BinaryOptimizer, Network_fc_bin_W

KINDS = ('ep', 'cep', 'bptt', 'binary')
B = 16                                              # global mini-batch (8 rows per rank)
N_BATCHES = 3


def _net_and_optimizer(kind):
    torch.manual_seed(0)
    if kind == 'binary':
        net = Network_fc_bin_W([784, 32, 10], T=8, Kmax=4, beta=0.3).double()
        # a fast flip rule (γ 0.5, τ 1e-4) so that weights flip within three mini-batches, and a learned α
        return net, BinaryOptimizer(net.binary_layers(), [0.05, 0.05], [0.5, 0.5], [1e-4, 1e-4], [0.05, 0.05], True)
    net = P_MLP([784, 32, 10], 8, 4, 0.5, 'mysig', 'mse').double()
    return net, torch.optim.SGD(net.lr_groups([0.1, 0.05], None), lr=0.1, momentum=0.9)


def train_few(kind, x, y):
    """N_BATCHES global mini-batches of B shuffled digits, float64: (state dict, training error %, flips per layer).
    Under torchrun each rank relaxes its shard (trainer.train) and the estimates are averaged before the update."""
    net, opt = _net_and_optimizer(kind)
    gen = torch.Generator().manual_seed(1)
    batches = data.Batches(x.double(), y, B, shuffle=True, flatten=True, generator=gen)
    flips = []
    if kind == 'binary':                          # random-sign β from gen, the flip rule and α see the mean estimate
        args = types.SimpleNamespace(optim='ep', random_beta=1)
        error = Tools_fc.train_bin(net, opt, batches, args, gen)[0]
        flips = opt.flips
    else:
        est = {'ep': estimators.RandomSign(0.5, generator=gen),
               'cep': estimators.Continual(0.5, thirdphase=True),
               'bptt': estimators.TruncatedBPTT()}[kind]
        error = trainer.train(net, opt, batches, lambda xb, yb: est(net, xb, yb, opt))['error']
    return {k: v.clone() for k, v in net.state_dict().items()}, error, flips


def _run_main(argv):
    import main
    try:
        main.main(argv)
        return 0
    except SystemExit as e:
        return e.code


def _worker(rank, world, port, x, y, results_dir, out):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR='127.0.0.1',
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    # (a short timeout: a rank that failed must not leave the other waiting for 30 minutes)
    dist.init_process_group('gloo', timeout=datetime.timedelta(seconds=60))
    distributed.setup()                           # already joined: nothing more
    got = {kind: train_few(kind, x, y) for kind in KINDS}
    got['shards'] = [(xb[:, 0].tolist(), own) for xb, _, own in
                     distributed.shards([(torch.arange(4.).view(4, 1), torch.arange(4)),
                                         (torch.arange(3.).view(3, 1), torch.arange(3))])]
    got['main_bad_batch'] = _run_main(LAB + ['--mbs', '15', '--results-dir', results_dir])
    got['main'] = _run_main(LAB + ['--mbs', '16', '--results-dir', results_dir])
    got['resume'] = _resume_runs(rank)
    torch.save(got, os.path.join(out, f'rank{rank}.pt'))


# a Laborieux dry run on synthetic digits (no MNIST under the empty data root): one mini-batch of 16, one epoch
LAB = ['--model', 'MLP', '--archi', '784', '16', '10', '--lrs', '0.1', '0.05', '--T1', '6', '--T2', '3',
       '--betas', '0.0', '0.5', '--random-sign', '--seed', '3', '--dry-run', '--dataset', 'mnist']


# a real run (not a dry one: those stop after one epoch) on a tiny MNIST planted under --data-root (48 training digits:
# 3 mini-batches of 16; 32 test digits), float64, with momentum and the cosine schedule: states a resume must restore
RES = ['--model', 'MLP', '--archi', '784', '16', '10', '--lrs', '0.1', '0.05', '--T1', '6', '--T2', '3',
       '--betas', '0.0', '0.5', '--random-sign', '--seed', '3', '--dataset', 'mnist', '--data-root', 'tiny',
       '--mbs', '16', '--dtype', 'float64', '--optim', 'sgd', '--mmt', '0.9', '--lr-decay']


def _epochs(n, results_dir, load=None):
    return RES + ['--epochs', str(n), '--results-dir', results_dir] + (['--load-path', load] if load else [])


def _resume_runs(rank):
    """Under 2 ranks (cwd: the test's folder): 2 epochs; 1 epoch resumed for 1 more; 1 epoch of one process resumed
    for 1 more. Rank 0 copies the 1-epoch folder first, for one process to resume. Returns (exit code, folder)s and
    the saved command lines this rank merged (commandline.saved_argv) for each resume."""
    from suite import commandline
    plotFunctions.plot_folder = lambda *a, **k: None          # (a forked rank) the figures take most of a run
    saved_argv, read = commandline.saved_argv, []
    commandline.saved_argv = lambda folder, parser: read.append(saved_argv(folder, parser)) or read[-1]
    full = run_main(_epochs(2, 'two'))
    part = run_main(_epochs(1, 'two'))
    if rank == 0:
        shutil.copytree(part[1], 'two-1-epoch')
    else:
        time.sleep(0.5)                           # a late rank: rank 0 must not append to the folder before it reads it
    return dict(full=full, part=part, resumed=run_main(_epochs(2, 'two', part[1])),
                from_one=run_main(_epochs(2, 'two', 'one-1-epoch')), read=read)


def _write_idx(path, a):
    """An MNIST idx file (the format data.load_mnist reads): magic, dimensions (big-endian), uint8 values."""
    a = a.contiguous().to(torch.uint8)
    with open(path, 'wb') as f:
        f.write(bytes([0, 0, 8, a.dim()]) + b''.join(d.to_bytes(4, 'big') for d in a.shape) + a.numpy().tobytes())


def _tiny_mnist(root, mnist5k):
    os.makedirs(root)
    for train, (x, y), n in ((True, mnist5k[0], 48), (False, mnist5k[1], 32)):
        images, labels = data.MNIST_FILES[train]
        _write_idx(os.path.join(root, images), (x[:n, 0] * 255).round())
        _write_idx(os.path.join(root, labels), y[:n])


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def runs(mnist5k, tmp_path_factory):
    """One process (here), then two ranks forked from it (they inherit its imports: no second start-up cost)."""
    import main                                   # noqa: F401  (imported once, before the fork)
    (x, y), _ = mnist5k
    x, y = x[:B * N_BATCHES].clone(), y[:B * N_BATCHES].clone()
    one = {kind: train_few(kind, x, y) for kind in KINDS}
    tmp = tmp_path_factory.mktemp('ddp')
    (tmp / 'data').mkdir()
    _tiny_mnist(tmp / 'tiny', mnist5k)
    cwd = os.getcwd()
    os.chdir(tmp)                                 # --data-root ./data: empty, so the dry run synthesises digits
    try:
        assert _run_main(LAB + ['--mbs', '16', '--results-dir', str(tmp / 'one')]) == 0
        with pytest.MonkeyPatch.context() as m:
            m.setattr(plotFunctions, 'plot_folder', lambda *a, **k: None)   # the figures take most of a run
            one['resume'] = dict(full=run_main(_epochs(2, 'one')), part=run_main(_epochs(1, 'one')))
        shutil.copytree(one['resume']['part'][1], 'one-1-epoch')        # for 2 ranks to resume
        mp.start_processes(_worker, args=(2, _free_port(), x, y, str(tmp / 'results'), str(tmp)), nprocs=2,
                           join=True, start_method='fork')
        with pytest.MonkeyPatch.context() as m:
            m.setattr(plotFunctions, 'plot_folder', lambda *a, **k: None)
            one['resume']['from_two'] = run_main(_epochs(2, 'one', 'two-1-epoch'))
    finally:
        os.chdir(cwd)
    ranks = [torch.load(tmp / f'rank{r}.pt', weights_only=False) for r in range(2)]
    return one, ranks, tmp


@pytest.mark.parametrize('kind', KINDS)
def test_two_ranks_give_the_weights_of_one_process(runs, kind):
    one, ranks, _ = runs
    state, error, flips = one[kind]
    init, _ = _net_and_optimizer(kind)
    moved = max((state[k] - v).abs().max().item() for k, v in init.state_dict().items())
    assert moved > 1e-3                           # the three updates did change the weights
    if kind == 'binary':
        assert sum(flips) > 0                     # and the flip rule acted
    for got, err, fl in (r[kind] for r in ranks):
        for k, v in state.items():
            assert torch.allclose(got[k], v, rtol=1e-9, atol=1e-12), (kind, k, (got[k] - v).abs().max())
        assert err == pytest.approx(error, abs=1e-9)                 # the training error of the whole data
        assert fl == flips


def test_the_shards_of_two_ranks(runs):
    _, ranks, _ = runs
    # a batch of 4: rows 0-1 and 2-3; a batch of 3 (not divisible): whole on both ranks, counted by rank 0 only
    assert ranks[0]['shards'] == [([0.0, 1.0], True), ([0.0, 1.0, 2.0], True)]
    assert ranks[1]['shards'] == [([2.0, 3.0], True), ([0.0, 1.0, 2.0], False)]


def test_main_under_two_ranks_writes_one_folder_like_one_process(runs):
    _, ranks, tmp = runs
    assert [r['main_bad_batch'] for r in ranks] == [2, 2]
    assert [r['main'] for r in ranks] == [0, 0]
    folders = glob.glob(str(tmp / 'results' / 'dry-run' / 'EP' / 'mse' / '*' / '*'))
    assert len(folders) == 1                      # rank 0's only; none for the bad mini-batch
    [single] = glob.glob(str(tmp / 'one' / 'dry-run' / 'EP' / 'mse' / '*' / '*'))
    assert sorted(os.listdir(folders[0])) == sorted(os.listdir(single))
    assert '- world size: 2' in open(os.path.join(folders[0], 'hyperparameters.txt')).read()
    two, one = (pd.read_csv(os.path.join(f, 'metrics.csv')) for f in (folders[0], single))
    for col in ('train_acc', 'test_acc', 'test_loss'):
        assert two[col].tolist() == pytest.approx(one[col].tolist(), rel=1e-5, abs=1e-6)
    ck2, ck1 = (torch.load(os.path.join(f, 'checkpoint.tar'), weights_only=False)['model'] for f in (folders[0], single))
    for k, v in ck1.items():                      # float32: the sums of two halves differ in the last bits
        assert torch.allclose(ck2[k], v, rtol=1e-4, atol=1e-6), k


def _checkpoint(tmp, folder):
    return torch.load(tmp / folder / 'checkpoint.tar', weights_only=False)


def test_resume_under_two_ranks_equals_an_uninterrupted_run(runs):
    """2 ranks: 2 epochs = 1 epoch + 1 resumed epoch (the folder reused, the weights, momenta and metrics bit for
    bit) = 2 epochs of one process (to float64 rounding); so is a resume by another number of processes (1 epoch of
    2 ranks resumed by one process, 1 epoch of one process resumed by 2 ranks)."""
    one, ranks, tmp = runs
    for r in ranks:
        assert [r['resume'][k][0] for k in ('full', 'part', 'resumed', 'from_one')] == [0, 0, 0, 0]
    # every rank names the same folders and resumes the same command lines (read before rank 0 appends to them)
    assert ranks[0]['resume'] == ranks[1]['resume']
    got = ranks[0]['resume']
    assert got['resumed'][1] == got['part'][1] and got['from_one'][1] == 'one-1-epoch'
    assert one['resume']['from_two'] == (0, 'two-1-epoch')
    assert len(glob.glob(str(tmp / 'two' / 'EP' / 'mse' / '*' / '*'))) == 2   # a resume makes no folder
    hyper = open(tmp / got['part'][1] / 'hyperparameters.txt').read()
    assert hyper.count('python main.py ') == 2 and hyper.count('--load-path') == 1   # rank 0 alone appends
    assert hyper.count('- world size: ') == 1                                  # the same number of ranks
    for folder, n in (('two-1-epoch', 1), ('one-1-epoch', 2)):                # resumed by another number
        assert open(tmp / folder / 'hyperparameters.txt').read().endswith(f'- world size: {n} (from this resume on)\n')
    full, resumed = _checkpoint(tmp, got['full'][1]), _checkpoint(tmp, got['part'][1])
    assert full['epoch'] == resumed['epoch'] == 2
    for k, v in full['model'].items():
        assert torch.equal(resumed['model'][k], v), k
    for k, v in full['optimizer']['state'].items():
        assert torch.equal(resumed['optimizer']['state'][k]['momentum_buffer'], v['momentum_buffer']), k
    cols = ('train_acc', 'test_acc', 'test_loss', 'lr')
    assert [[row[c] for c in cols] for row in full['history']] == [[row[c] for c in cols] for row in resumed['history']]
    single = _checkpoint(tmp, one['resume']['full'][1])
    for folder in (got['full'][1], 'two-1-epoch', 'one-1-epoch'):        # 2 ranks; 2 → 1; 1 → 2
        ck = _checkpoint(tmp, folder)
        assert ck['epoch'] == 2, folder
        for k, v in single['model'].items():
            assert torch.allclose(ck['model'][k], v, rtol=1e-9, atol=1e-12), (folder, k)
        for row, ref in zip(ck['history'], single['history'], strict=True):
            assert [row[c] for c in cols] == pytest.approx([ref[c] for c in cols], rel=1e-9), folder


def test_a_batch_not_divisible_by_the_world_size_is_a_usage_error(monkeypatch):
    monkeypatch.setenv('WORLD_SIZE', '4')
    with pytest.raises(UsageError, match=r'--mbs 30: the global mini-batch must be divisible by the 4 torchrun'):
        checks.global_batch('--mbs', 30)
    checks.global_batch('--mbs', 32)
    monkeypatch.setenv('WORLD_SIZE', '1')
    checks.global_batch('--mbs', 31)


def test_one_process_is_untouched():
    """Without torchrun: no process group, the identity everywhere."""
    assert distributed.world_size() == 1 and distributed.is_main()
    t = torch.ones(3)
    assert distributed.all_sum(t) is t and t.tolist() == [1.0, 1.0, 1.0]
    assert [own for *_, own in distributed.shards([(torch.zeros(3, 1), torch.zeros(3))])] == [True]
    p = torch.nn.Parameter(torch.ones(2))
    p.grad = torch.full((2,), 3.0)
    distributed.average_grads([p])
    assert p.grad.tolist() == [3.0, 3.0]

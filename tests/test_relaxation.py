"""The relaxation settings: the free phase's tolerance (--tol, --tol-every) and the asynchronous schedule
(--schedule async) of the layered nets, in float64 against the autograd-of-Φ oracle, by hand, at the fixed point,
and through main.py (metrics columns; bad values are in test_bad_input.py)."""
import os

import pandas as pd
import pytest
import torch

import netFunctions as nf
from conftest import run_main
from netClasses import EPdisc, convEP
from papers.laborieux2021.nets import P_CNN, P_MLP

NETS = {
    'P_MLP mse': lambda: P_MLP([784, 32, 16, 12, 10], 5, 3, 0.1, 'tanh', 'mse'),
    'P_MLP cel': lambda: P_MLP([784, 32, 10], 5, 3, 0.1, 'mysig', 'cel'),
    'P_CNN max, readout': lambda: P_CNN(28, 1, [8, 6, 4], [3, 3, 3], [1, 2, 1], [1, 1, 0], 'mim', [12, 10], 5, 3,
                                        0.1, 'my_hard_sig', 'cel', softmax=True),
    'P_CNN avg': lambda: P_CNN(28, 1, [8, 6], [5, 3], [1, 1], [0, 1], 'ma', [10], 5, 3, 0.1, 'sigmoid'),
    'EPdisc': lambda: EPdisc([10, 32, 20, 784], 5, 3, 0.1, 'tanh'),
    'EPdisc leaky': lambda: EPdisc([10, 32, 784], 5, 3, 0.1, 'sigm', dt=0.3),
    'convEP': lambda: convEP([10, 20], [16, 8, 1], 5, 3, 0.1, 'tanh', Fconv=3, padding=1),
}


def _batch(net, B, gen):
    x = torch.rand(B, 784, generator=gen) if isinstance(net, EPdisc) else torch.rand(B, 1, 28, 28, generator=gen)
    y = nf.one_hot(torch.randint(0, 10, (B,), generator=gen), 10)
    return x.double(), y.double()


@pytest.mark.parametrize('name', list(NETS))
def test_async_closed_form_equals_autograd_of_phi_step_by_step(name):
    """Free (even layers first), nudged with one β and with the batched ±β column (odd layers first): two
    asynchronous steps of the closed form and of the oracle from the same state agree to rounding."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    net = NETS[name]().double().set_relaxation(asynchronous=True)
    x, y = _batch(net, 4, gen)
    s0 = [torch.rand(si.shape, generator=gen).double() for si in net.init_state(4)]
    col = torch.tensor([[0.3], [0.3], [-0.3], [-0.3]], dtype=torch.float64)
    for yy, bb in ((None, 0.0), (y, 0.5), (y, col)):
        s_c = s_o = s0
        for _ in range(2):
            s_c, s_o = net.stepper(s_c, net.drive(x), yy, bb), net.stepper_autograd(x, s_o, yy, bb)
            for a, o in zip(s_c, s_o):
                torch.testing.assert_close(a, o, rtol=1e-10, atol=1e-12)
    sync = NETS[name]().double()
    sync.load_state_dict(net.state_dict())
    moved = [(a - b).abs().max() for a, b in zip(net.stepper(s0, net.drive(x)), sync.stepper(s0, sync.drive(x)))]
    assert max(moved) > 1e-3                                     # (the schedule changes the step)


def test_groups_count_from_the_input_side():
    """Layers from the input: Laborieux's list is input first, Ernoult's output first (EPdisc [10, 32, 20, 784]:
    s_0 output, s_2 the layer next to the input)."""
    mlp = P_MLP([784, 8, 8, 8, 10], 5, 3, 0.1, 'tanh').set_relaxation(asynchronous=True)
    assert [list(g) for g in mlp.schedule(4, False)] == [[0, 2], [1, 3]]
    assert [list(g) for g in mlp.schedule(4, True)] == [[1, 3], [0, 2]]
    disc = EPdisc([10, 32, 20, 784], 5, 3, 0.1, 'tanh').set_relaxation(asynchronous=True)
    assert [list(g) for g in disc.schedule(3, False)] == [[2, 0], [1]]
    assert [list(g) for g in disc.schedule(3, True)] == [[1], [2, 0]]
    assert [list(g) for g in P_MLP([784, 8, 10], 5, 3, 0.1, 'tanh').schedule(2, True)] == [[0, 1]]


def test_async_step_by_hand():
    """P_MLP 784-8-6-10 (mse): free, s_1 and s_3 from s_t then s_2 from them; nudged, s_2 first from s_t (the
    nudge on s_3 read at s_t), then s_1 and s_3 from the new s_2."""
    torch.manual_seed(1)
    net = P_MLP([784, 8, 6, 10], 5, 3, 0.1, 'tanh').double().set_relaxation(asynchronous=True)
    W = net.synapses
    x, y = torch.rand(3, 784).double(), torch.eye(10)[:3].double()
    s1, s2, s3 = [torch.rand_like(si) for si in net.init_state(3)]
    t = torch.tanh
    n1 = t(W[0](x) + s2 @ W[1].weight)
    n3 = t(W[2](s2))
    n2 = t(W[1](n1) + n3 @ W[2].weight)
    for a, b in zip(net.stepper([s1, s2, s3], net.drive(x)), (n1, n2, n3)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    beta = 0.4
    m2 = t(W[1](s1) + s3 @ W[2].weight)
    m1 = t(W[0](x) + m2 @ W[1].weight)
    m3 = t(W[2](m2) + beta * (y - s3))
    for a, b in zip(net.stepper([s1, s2, s3], net.drive(x), y, beta), (m1, m2, m3)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


FIXED_POINT_NETS = {
    'P_MLP': lambda: P_MLP([784, 24, 16, 10], 40, 25, 0.3, 'mysig'),
    'P_CNN avg': lambda: P_CNN(28, 1, [3, 4], [5, 5], [1, 1], [0, 0], 'aa', [10], 40, 25, 0.3, 'sigmoid'),
    'EPdisc': lambda: EPdisc([10, 24, 16, 784], 40, 25, 0.3, 'sigm'),
}


@pytest.mark.parametrize('name', list(FIXED_POINT_NETS))
def test_both_schedules_reach_the_same_equilibrium(name):
    """Small weights (a contraction): after many steps the synchronous and asynchronous free phases, and the nudged
    phases from there, end at the same fixed point of the step."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(2)
    nets = [FIXED_POINT_NETS[name]().double(), FIXED_POINT_NETS[name]().double()]
    with torch.no_grad():
        for p in nets[0].parameters():
            p.mul_(0.3)
    nets[1].load_state_dict(nets[0].state_dict())
    nets[1].set_relaxation(asynchronous=True)
    x, y = _batch(nets[0], 5, gen)
    free = [nf.free_phase(n, x) for n in nets]
    nudged = [n.forward(x, s, y, 0.3) for n, s in zip(nets, free)]
    for a, b in zip(free[0] + nudged[0], free[1] + nudged[1]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
    again = nets[1].stepper(free[1], nets[1].drive(x))
    assert max((a - b).abs().max() for a, b in zip(again, free[1])) < 1e-12
    assert max((a - b).abs().max() for a, b in zip(free[0], nudged[0])) > 1e-4     # (the nudge moved it)


def test_tol_stops_at_the_first_check_on_a_converged_state():
    torch.manual_seed(0)
    net = P_MLP([784, 24, 16, 10], 150, 5, 0.1, 'mysig').double()
    x = torch.rand(6, 784).double()
    fixed = nf.free_phase(net, x)
    with torch.no_grad():                                       # (the free phase's: the fused step, see phase_step)
        plain = nf.relax(net, x, net.init_state(6), None, 0.0, 150)
    assert torch.equal(torch.cat(fixed, 1), torch.cat(plain, 1))
    assert net.pop_steps() == {}                                 # without --tol nothing is recorded
    net.set_relaxation(tol=1e-9, every=7)
    s = net.free_phase(x, s=fixed)
    assert net.pop_steps() == {'free_steps_mean': 7.0, 'free_steps_max': 7}
    for a, b in zip(s, fixed):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
    net.eval()
    s = net.free_phase(x)                                       # from zeros: stops early, at the fixed point
    row = net.pop_steps()
    assert set(row) == {'test_free_steps_mean', 'test_free_steps_max'}
    assert row['test_free_steps_max'] < 150 and row['test_free_steps_max'] % 7 == 0
    for a, b in zip(s, fixed):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)
    net.set_relaxation(tol=10.0, every=4)                       # any change passes: the first check stops it
    net.free_phase(x, 50)
    assert net.pop_steps()['test_free_steps_max'] == 4


def _metrics(folder, name='metrics.csv'):
    return pd.read_csv(os.path.join(folder, name))


def test_steps_columns_in_every_familys_metrics(tmp_path):
    """--tol adds the free-phase steps (mean, max per training mini-batch and per test batch) to the metrics of a
    Laborieux, an Ernoult 2019 and a binary-EP run (dry runs: one mini-batch, T capped at 6); the settings are in the
    hyperparameter file. (Without --tol nothing is recorded: test_tol_stops_at_the_first_check_on_a_converged_state.)"""
    flags = ['--dry-run', '--tol', '1e-2', '--tol-every', '2', '--results-dir', str(tmp_path)]
    code, folder = run_main(['--model', 'MLP', '--task', 'mnist5k', '--archi', '784', '32', '10', '--lrs', '0.1',
                             '0.05', '--betas', '0.0', '0.5', '--schedule', 'async'] + flags)
    assert code == 0
    m = _metrics(folder)
    assert m['free_steps_max'][0] % 2 == 0 and m['free_steps_mean'][0] <= m['free_steps_max'][0] <= 6
    assert 2 <= m['test_free_steps_mean'][0] <= m['test_free_steps_max'][0] <= 6
    hyper = open(os.path.join(folder, 'hyperparameters.txt')).read()
    assert '- tol: 0.01' in hyper and '- tol every: 2' in hyper and '- schedule: async' in hyper
    code, folder = run_main(['--action', 'train', '--discrete', '--size_tab', '10', '32', '784', '--lr_tab', '0.04',
                             '0.08', '--beta', '0.1', '--dataset', 'mnist5k', '--schedule', 'async-free'] + flags)
    assert code == 0 and {'free_steps_mean', 'free_steps_max'} <= set(_metrics(folder).columns)
    assert '- schedule: async-free' in open(os.path.join(folder, 'hyperparameters.txt')).read()
    code, folder = run_main(['--archi', 'fc', '--layersList', '784', '32', '10', '--dataset', 'mnist5k'] + flags)
    assert code == 0 and {'free_steps_mean', 'test_free_steps_max'} <= set(_metrics(folder, 'results.csv').columns)


def test_async_step_evaluates_each_conv_once(monkeypatch):
    """`EPNet.carry`: after the first step, an asynchronous step of P_CNN evaluates each conv synapse fed by a state
    once, as a synchronous step does (the group before reads it at the fresh value the next step starts from); a weight
    changed in place (CEP) between two steps is seen, not the carried value."""
    from netClasses import ConvPool
    calls = []
    forward = ConvPool.forward
    monkeypatch.setattr(ConvPool, 'forward', lambda self, a: calls.append(a) or forward(self, a))
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    counts = {}
    for schedule in (False, True):
        net = P_CNN(28, 1, [8, 6], [5, 3], [1, 1], [0, 1], 'mm', [10], 5, 3, 0.1, 'sigmoid').double()
        net.set_relaxation(asynchronous=schedule)
        x, y = _batch(net, 4, gen)
        drive, s = net.drive(x), net.init_state(4)
        with torch.no_grad():
            s = net.stepper(s, drive)
            calls.clear()
            for _ in range(3):
                s = net.stepper(s, drive)
            counts[schedule] = len(calls)
            net.synapses[1].weight.add_(torch.randn(net.synapses[1].weight.shape, generator=gen).double())
            stale = net.stepper(s, drive)
            net.__dict__.pop('_carried')
            for a, b in zip(stale, net.stepper(s, drive)):
                assert torch.equal(a, b)
    assert counts == {False: 3, True: 3}


def test_async_free_is_async_in_the_free_phase_and_sync_when_nudged():
    """--schedule async-free: a free step is the asynchronous one, a nudged step (one β or the batched ±β column) the
    synchronous one."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    nets = {a: NETS['P_CNN avg']().double().set_relaxation(asynchronous=a) for a in (False, True, 'free')}
    for a in (True, 'free'):
        nets[a].load_state_dict(nets[False].state_dict())
    x, y = _batch(nets[False], 4, gen)
    s0 = [torch.rand(si.shape, generator=gen).double() for si in nets[False].init_state(4)]
    col = torch.tensor([[0.3], [0.3], [-0.3], [-0.3]], dtype=torch.float64)
    step = {a: (lambda yy, bb, n=n: n.stepper(s0, n.drive(x), yy, bb)) for a, n in nets.items()}
    for a, b in zip(step['free'](None, 0.0), step[True](None, 0.0)):
        assert torch.equal(a, b)
    for yy, bb in ((y, 0.5), (y, col)):
        for a, b in zip(step['free'](yy, bb), step[False](yy, bb)):
            assert torch.equal(a, b)
        assert max((a - b).abs().max() for a, b in zip(step['free'](yy, bb), step[True](yy, bb))) > 1e-3


# ---------------------------------------------------------------------------------------------------------------
# --precision bf16 and --cuda-graphs (GPU options): the relaxation they select, run on the CPU where it can be

@pytest.mark.parametrize('name', ['P_MLP mse', 'P_CNN max, readout', 'EPdisc', 'convEP'])
def test_bf16_relaxation_keeps_float_states_near_the_float32_ones(name):
    """--precision bf16 runs the steps under bfloat16 autocast (netFunctions._relax_bf16; on a GPU through relax):
    on the CPU's autocast the states come back in float32, within bfloat16's rounding of the float32 relaxation, the
    nudged phase included (mean difference within 0.02), and the caller's initial state is left as it was."""
    gen = torch.Generator().manual_seed(5)
    torch.manual_seed(0)
    net = NETS[name]().float()
    x, y = (t.float() for t in _batch(net, 6, gen))
    with torch.no_grad():
        drive = net.drive(x)
        s0 = net.init_state(6)
        ref = nf._relax(net, s0, None, 0.0, 5, drive)
        out = nf._relax_bf16(net, s0, None, 0.0, 5, drive)
        nudged_ref = nf._relax(net, ref, y, 0.1, 3, drive)
        nudged = nf._relax_bf16(net, ref, y, 0.1, 3, drive)
    for a, b in zip(out + nudged, ref + nudged_ref):
        assert a.dtype == torch.float32 and a.shape == b.shape
        assert (a - b).abs().mean() < 0.02          # (a max-pool's argmax may switch: the mean, not the max)
    assert any((a - b).abs().max() > 0 for a, b in zip(out, ref))        # (bfloat16 products: not the same numbers)
    assert all(not t.any() for t in s0)


def test_gpu_options_are_inert_on_the_cpu():
    """A net set for bf16 and CUDA graphs relaxes on the CPU exactly as without them (relax takes the GPU paths for
    CUDA tensors only; the flags themselves are refused on the CPU, test_bad_input.py)."""
    gen = torch.Generator().manual_seed(6)
    net = NETS['P_MLP mse']().double()
    x, y = _batch(net, 4, gen)
    with torch.no_grad():
        ref = net.forward(x, y=None)
        net.set_gpu(bf16=True, graphs=True)
        out = net.forward(x, y=None)
    assert net.gpu == (True, True)
    assert all(torch.equal(a, b) for a, b in zip(out, ref))


def test_graphed_relaxation_plumbing_with_a_stand_in_for_cuda(monkeypatch):
    """netFunctions.GraphedRelax without a GPU: CUDA's streams and graphs replaced by stand-ins whose replay runs the
    captured relaxation again into the same output tensors (what a CUDA graph's replay does to its outputs). Checks the
    plumbing that a GPU run relies on: each call copies its own state, y, β and drive into the static inputs, returns
    tensors of its own (later replays leave them) equal to an eager relaxation, sees weights changed in place by an
    optimiser, and one graph serves one phase signature (a new β or shape makes another). (Whether the real capture
    records every kernel is left to bench/gpu_precision.py on a GPU.)"""
    import contextlib

    class Graph:
        def replay(self):
            for o, v in zip(self.out, self.fn()):
                o.copy_(v)

    def capture(graph, fn):
        graph.fn, graph.out = fn, fn()
        return graph.out

    class Stream:
        def __init__(self, device=None):
            pass

        def wait_stream(self, other):
            pass

    for name, value in (('Stream', Stream), ('current_stream', Stream), ('CUDAGraph', Graph),
                        ('stream', lambda s: contextlib.nullcontext())):
        monkeypatch.setattr(torch.cuda, name, value)
    monkeypatch.setattr(nf, '_capture', capture)
    gen = torch.Generator().manual_seed(7)
    torch.manual_seed(0)
    net = NETS['P_CNN avg']().double()
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    kept = []
    with torch.no_grad():
        for batch, beta in ((6, 0.0), (6, 0.0), (6, 0.3), (4, 0.0), (6, 0.3)):
            x, y = _batch(net, batch, gen)
            drive, s0 = net.drive(x), [torch.rand(batch, *sh, generator=gen, dtype=torch.double)
                                       for sh in net.state_shapes()]
            yy = None if beta == 0.0 else y
            out = nf.GraphedRelax.of(net, s0, yy, beta, 4, drive)(s0, yy, beta, drive)
            ref = nf._relax(net, s0, yy, beta, 4, drive)
            for a, b in zip(out, ref):
                torch.testing.assert_close(a, b, rtol=0, atol=0)
            kept.append((out, [t.clone() for t in out]))
            for p in net.parameters():                         # an optimiser's in-place step between mini-batches
                p.grad = torch.rand(p.shape, generator=gen, dtype=torch.double)
            opt.step()
    assert len(nf._GRAPHS[net]) == 3                         # (6, β 0), (6, β 0.3), (4, β 0)
    assert all(torch.equal(a, b) for out, copy in kept for a, b in zip(out, copy))   # (later replays left them)

"""Precision control: --dtype float32|float64 for every paper's command line (trainer.dtype for Nest
2024's Hydra line) reaches the checkpointed weights, a bad value is one usage line with exit code 2, and one training
mini-batch of the Laborieux MLP makes no host synchronisation inside its relaxations."""
import glob
import importlib.util
import os

import pytest
import torch

from suite import data
from ep import estimators
import netFunctions as nf
from suite import trainer
from conftest import ROOT, run_main
from papers.laborieux2021.nets import P_CNN, P_MLP
from test_bad_input import BIN, ERNOULT, ERNOULT_CONV, LAB, LAB_CNN, LCA

NEST = ['--config-name=splitting_small', 'model=splitting_small_3block', 'data=mnist5k', 'data.config.batch_size=8']
# (command, checkpoint file, its key holding the weights)
FAMILIES = {'ernoult2019': (ERNOULT, 'checkpoint_EP.pt', 'model'),
            'ernoult2019 conv': (ERNOULT_CONV, 'checkpoint_EP.pt', 'model'),
            'laborieux2021 MLP': (LAB, 'checkpoint.tar', 'model'),
            'laborieux2021 CNN': (LAB_CNN, 'checkpoint.tar', 'model'),
            'eplcanet': (LCA, 'checkpoint.tar', 'model'),
            'laydevant2021': (BIN, 'checkpoint.pt', 'model')}


def _weights(folder, name, key):
    ck = torch.load(os.path.join(folder, name), weights_only=False, map_location='cpu')
    sd = ck[key]
    return {k: v for k, v in sd.items() if torch.is_tensor(v) and v.is_floating_point()}


@pytest.mark.parametrize('family', list(FAMILIES))
@pytest.mark.parametrize('dtype', ['float64', None])
def test_dtype_reaches_the_checkpoint(family, dtype, tmp_path):
    argv, name, key = FAMILIES[family]
    flag = [] if dtype is None else ['--dtype', dtype]
    code, folder = run_main(argv + flag + ['--dry-run', '--device', '-1', '--seed', '1',
                                           '--results-dir', str(tmp_path)])
    assert code == 0 and folder
    w = _weights(folder, name, key)
    assert w and {v.dtype for v in w.values()} == {getattr(torch, dtype or 'float32')}, family
    hyper = glob.glob(os.path.join(folder, '[Hh]yperparameters.txt'))[0]
    assert (dtype or 'float32') in open(hyper).read()


@pytest.mark.parametrize('dtype', ['float64', 'float32'])
def test_nest2024_trainer_dtype(dtype, tmp_path):
    code, folder = run_main(NEST + [f'trainer.dtype={dtype}', '--dry-run', '--results-dir', str(tmp_path)])
    assert code == 0 and folder
    ck = torch.load(os.path.join(folder, 'checkpoint.tar'), weights_only=False, map_location='cpu')
    assert {v.dtype for v in ck['model'].values() if v.is_floating_point()} == {getattr(torch, dtype)}
    assert f'dtype: {dtype}' in open(os.path.join(folder, 'config.yaml')).read()


@pytest.mark.parametrize('argv, flag', [(LAB + ['--dtype', 'half'], '--dtype'),
                                        (ERNOULT + ['--dtype', 'float16'], '--dtype'),
                                        (BIN + ['--dtype', '64'], '--dtype'),
                                        (NEST + ['trainer.dtype=bfloat16'], 'trainer.dtype')])
def test_bad_dtype_exits_2(argv, flag, tmp_path, capsys):
    code, _ = run_main(argv + ['--dry-run', '--results-dir', str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith('main.py: error: ') and '\n' not in err and flag in err, err
    assert not os.listdir(tmp_path)


# ---------------------------------------------------------------------------------------------------------------
# Host synchronisations during one training mini-batch (Laborieux MLP, fixed-step free phase, CPU)

SYNCS = ('item', '__bool__', 'tolist', 'cpu', '__float__', '__int__')


@pytest.fixture
def sync_counter(monkeypatch):
    """Counts the calls of the Tensor methods that wait for the device (SYNCS), split into those made inside a
    relaxation (netFunctions.relax: the free phase and the batched nudged phases) and those outside it."""
    counts = {'inside': [], 'outside': []}
    depth = [0]

    def counting(name, fn):
        def wrapper(self, *a, **kw):
            counts['inside' if depth[0] else 'outside'].append(name)
            return fn(self, *a, **kw)
        return wrapper
    for name in SYNCS:
        monkeypatch.setattr(torch.Tensor, name, counting(name, getattr(torch.Tensor, name)))
    relax = nf.relax

    def relax_marked(*a, **kw):
        depth[0] += 1
        try:
            return relax(*a, **kw)
        finally:
            depth[0] -= 1
    monkeypatch.setattr(nf, 'relax', relax_marked)
    return counts


def _one_batch(estimator):
    torch.manual_seed(0)
    net = P_MLP([784, 32, 10], 30, 10, 0.1, 'mysig')
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x, label = data.synthetic((784,), 20, seed=0)
    batches = data.Batches(x, label, 20)
    return trainer.train(net, opt, batches, lambda xb, yb: estimator(net, xb, yb), desc='sync test')['error']


@pytest.mark.parametrize('name', ['OneSided', 'RandomSign', 'Symmetric', 'SymmetricDelta', 'TruncatedBPTT'])
def test_no_host_sync_inside_the_relaxation(name, sync_counter):
    """(SymmetricDelta's Δ relaxation is not netFunctions.relax: a synchronisation there counts as outside.)"""
    est = {'OneSided': lambda: estimators.OneSided(0.1), 'RandomSign': lambda: estimators.RandomSign(0.1),
           'Symmetric': lambda: estimators.Symmetric(0.1), 'SymmetricDelta': lambda: estimators.SymmetricDelta(0.1),
           'TruncatedBPTT': lambda: estimators.TruncatedBPTT()}[name]
    _one_batch(est())
    assert sync_counter['inside'] == [], sync_counter
    # outside: RandomSign's draw of the sign of β (once per mini-batch, before the phases) and the error total of the
    # epoch (trainer.totals, once per epoch)
    assert sync_counter['outside'] == (['__bool__'] if name == 'RandomSign' else []) + ['tolist'], sync_counter


def test_the_sync_counter_counts(sync_counter):
    """The counter sees a synchronisation made inside a relaxation (else the test above could not fail)."""
    net = P_MLP([784, 8, 10], 3, 2, 0.1, 'mysig')
    real_stepper = net.stepper
    net.stepper = lambda s, *a: [si * (1 if bool(si.sum() > -1) else 0) for si in real_stepper(s, *a)]
    nf.relax(net, torch.zeros(2, 784), net.init_state(2), None, 0.0, 3)
    assert sync_counter['inside'] == ['__bool__'] * 3 * 2              # 3 steps, 2 layers


# ---------------------------------------------------------------------------------------------------------------
# --carry-delta (ep/delta_form.py): the symmetric EP estimate with Δ = s^{±β} − s* carried in its own tensor

def _grads(net, est, x, y):
    est(net, x, y)
    out = [p.grad.clone() for p in net.parameters()]
    net.zero_grad(set_to_none=True)
    return out


def _rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


DELTA_NETS = {
    # short free phase (the residual r = ρ(h*) − s* is not 0)
    'MLP mysig mse': (lambda: P_MLP([20, 12, 6, 10], 5, 8, 0.1, 'mysig'), (8, 20)),
    'MLP tanh cel': (lambda: P_MLP([20, 12, 10], 10, 6, 0.3, 'tanh', 'cel'), (8, 20)),
    # β large enough that max-pool argmaxes of the nudged states differ from the free state's
    'CNN mm hard_sigmoid': (lambda: P_CNN(12, 1, [3, 4], [3, 3], [1, 1], [0, 0], 'mm', [10], 3, 8, 1.0,
                                          'hard_sigmoid'), (8, 1, 12, 12)),
    'CNN mai my_hard_sig cel': (lambda: P_CNN(28, 1, [4, 4, 3], [3, 3, 3], [1, 2, 1], [1, 1, 0], 'mai', [12, 10], 6,
                                              8, 0.5, 'my_hard_sig', 'cel'), (6, 1, 28, 28)),
    # the paper's CIFAR-10 readout: a Linear outside the dynamics, trained by the cross-entropy (a sum, not a Δ)
    'CNN mm softmax': (lambda: P_CNN(12, 1, [3, 4], [3, 3], [1, 1], [0, 0], 'mm', [8, 10], 4, 6, 0.5, 'sigmoid', 'cel',
                                     softmax=True), (6, 1, 12, 12)),
}


@pytest.mark.parametrize('schedule', [False, True])
@pytest.mark.parametrize('name', list(DELTA_NETS))
def test_carried_delta_equals_the_engine_in_float64(name, schedule):
    torch.manual_seed(0)
    make, shape = DELTA_NETS[name]
    net = make().double().set_relaxation(asynchronous=schedule)
    x = torch.rand(*shape, dtype=torch.float64)
    y = net.target(torch.arange(shape[0]) % 10)
    ref = _grads(net, estimators.Symmetric(net.beta), x, y)
    got = _grads(net, estimators.SymmetricDelta(net.beta), x, y)
    for r, g in zip(ref, got):
        assert r.norm() > 1e-6 and _rel(g, r) < 1e-8


def test_carried_delta_removes_the_float32_cancellation(mnist5k):
    """Conv 8-16 on real digits, β 0.4: the float32 estimate of the first conv, against float64, is off by ~5e-4
    with the engine and ~4e-7 in Δ form (measured); every layer within 1e-5 in Δ form."""
    (x, label), _ = mnist5k
    torch.manual_seed(0)
    make = (lambda: P_CNN(28, 1, [8, 16], [5, 5], [1, 1], [0, 0], 'mm', [10], 40, 10, 0.4, 'hard_sigmoid'))
    n64, n32 = make().double(), make()
    n32.load_state_dict({k: v.float() for k, v in n64.state_dict().items()})
    x, y = x[:16], n64.target(label[:16])
    ref = _grads(n64, estimators.Symmetric(0.4), x.double(), y)
    engine = _grads(n32, estimators.Symmetric(0.4), x.float(), y.float())
    delta = _grads(n32, estimators.SymmetricDelta(0.4), x.float(), y.float())
    assert _rel(engine[0], ref[0]) > 1e-4
    assert max(_rel(g, r) for g, r in zip(delta, ref)) < 1e-5


def test_carry_delta_is_the_symmetric_run_of_main(tmp_path, monkeypatch):
    """main.py --carry-delta --thirdphase in float64 relaxes in Δ form (and only then) and writes the weights of the
    same run without --carry-delta."""
    from ep import delta_form
    relaxed, relax = [], delta_form.DeltaForm.relax
    monkeypatch.setattr(delta_form.DeltaForm, 'relax', lambda self, steps: relaxed.append(steps) or relax(self, steps))
    runs, used = [], []
    for flag in ([], ['--carry-delta']):
        code, folder = run_main(LAB + ['--thirdphase', '--dtype', 'float64', '--dry-run', '--device', '-1', '--seed',
                                       '1', '--results-dir', str(tmp_path / str(len(flag)))] + flag)
        assert code == 0
        runs.append(_weights(folder, 'checkpoint.tar', 'model'))
        used.append(len(relaxed))
    assert used[0] == 0 and used[1] > 0
    assert 'carry delta: True' in open(os.path.join(folder, 'hyperparameters.txt')).read()
    for k, v in runs[0].items():
        torch.testing.assert_close(runs[1][k], v, rtol=1e-9, atol=1e-12)


def test_carried_delta_refuses_what_it_cannot_expand():
    """An asymmetric net has no single Φ; an LCANet has a Copy synapse and a learning front: the Δ form says so
    instead of computing something else."""
    from papers.laborieux2021.nets import VF_MLP
    from test_eplcanet import small_net
    net = VF_MLP([20, 8, 10], 3, 2, 0.1, 'mysig')
    with pytest.raises(ValueError, match='VF_MLP: a vector field has no single Φ'):
        estimators.SymmetricDelta(0.1)(net, torch.rand(2, 20), net.target(torch.arange(2)))
    net = small_net()
    with pytest.raises(ValueError, match='LCANet: its Copy synapse'):
        estimators.SymmetricDelta(0.1)(net, torch.rand(2, 1, 16, 16).double(), net.target(torch.arange(2)))

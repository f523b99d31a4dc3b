"""Precision of the EP estimate: per parameter tensor, the relative error ‖ĝ32 − ĝ64‖ / ‖ĝ64‖ of the
float32 symmetric EP estimate against the float64 one (same weights, same mini-batch of mnist5k), at the β of the
Laborieux et al. 2021 MNIST commands (check/train_mnist.sh, check/train_mnist_cnn.sh):

    ĝ_θ = −(1/2β) mean_b [∂Φ/∂θ(s^β) − ∂Φ/∂θ(s^{−β})]

'engine' is the suite's estimate (estimators.Symmetric: states s^{±β} relaxed from s*, then the Φ difference by
autograd of one Φ over the 2B stacked states). 'carried' is the same estimate in Δ form (--carry-delta,
estimators.SymmetricDelta, carried.py): the nudged states written s^{±β} = s* + Δ^{±β}, Δ relaxed in its own tensor
and the Φ difference expanded in Δ, so that no step subtracts two nearly equal states.

'carried 64' against 'engine 64' checks that the rewrite computes the same estimate.

    python bench/precision.py [--config MLP CNN] [--batch N] [--T1 N] [--seed 0] [--threads N]
                              [--load CONFIG=RUN_FOLDER ...]   (trained weights: a run folder's checkpoint.tar)
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from suite import data                                        # noqa: E402
from ep import estimators                                  # noqa: E402
from papers.laborieux2021.nets import P_CNN, P_MLP              # noqa: E402

# the Laborieux 2021 MNIST configurations of check/train_mnist.sh and check/train_mnist_cnn.sh
CONFIGS = {
    'MLP': dict(beta=0.1, T=30, K=10, batch=50,
                build=lambda T, K, b: P_MLP([784, 512, 10], T, K, b, 'mysig')),
    'CNN': dict(beta=0.4, T=200, K=10, batch=100,
                build=lambda T, K, b: P_CNN(28, 1, [32, 64], [5, 5], [1, 1], [0, 0], 'mm', [10], T, K, b,
                                            'hard_sigmoid')),
}


# ---------------------------------------------------------------------------------------------------------------
# The engine's estimate

def engine(net, x, y, beta, T, K):
    estimators.Symmetric(beta, T, K)(net, x, y)
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad(set_to_none=True)
    return grads


def carried(net, x, y, beta, T, K):
    """The same estimate in Δ form (estimators.SymmetricDelta, carried.py; --carry-delta)."""
    estimators.SymmetricDelta(beta, T, K)(net, x, y)
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad(set_to_none=True)
    return grads


# ---------------------------------------------------------------------------------------------------------------

def rel(a, b):
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


def measure(name, cfg, batch, T, seed, load=None):
    torch.manual_seed(seed)
    net64 = cfg['build'](T, cfg['K'], cfg['beta']).double()
    if load:
        sd = torch.load(os.path.join(load, 'checkpoint.tar'), map_location='cpu', weights_only=False)['model']
        net64.load_state_dict({k: v.double() for k, v in sd.items()})
    net32 = cfg['build'](T, cfg['K'], cfg['beta']).float()
    net32.load_state_dict({k: v.float() for k, v in net64.state_dict().items()})
    x, label = data.load_mnist5k(True)
    g = torch.Generator().manual_seed(seed)
    i = torch.randperm(len(label), generator=g)[:batch]
    x, label = x[i], label[i]
    if name == 'MLP':
        x = x.flatten(1)
    out = {}
    for tag, net in (('64', net64), ('32', net32)):
        xx, y = x.to(next(net.parameters()).dtype), net.target(label)
        t0 = time.perf_counter()
        out['engine ' + tag] = engine(net, xx, y, cfg['beta'], T, cfg['K'])
        t1 = time.perf_counter()
        out['carried ' + tag] = carried(net, xx, y, cfg['beta'], T, cfg['K'])
        out['seconds ' + tag] = (t1 - t0, time.perf_counter() - t1)
    names = [n for n, _ in net64.named_parameters()]
    rows = []
    for k, n in enumerate(names):
        ref = out['engine 64'][k]
        rows.append((f'{name} {n}', tuple(ref.shape), ref.double().norm().item(), rel(out['engine 32'][k], ref),
                     rel(out['carried 32'][k], ref), rel(out['carried 64'][k], ref)))
    return rows, out


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--config', nargs='+', default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument('--batch', type=int, default=None, help='mini-batch size (default: the command\'s)')
    p.add_argument('--T1', type=int, default=None, help='free-phase steps (default: the command\'s)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--threads', type=int, default=None)
    p.add_argument('--load', nargs='+', default=[], metavar='CONFIG=FOLDER',
                   help='weights of a training run of that configuration (its folder\'s checkpoint.tar)')
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    loads = dict(item.split('=', 1) for item in a.load)
    print('| config, parameter | shape | ‖ĝ64‖ | engine: ‖ĝ32 − ĝ64‖/‖ĝ64‖ | carried Δ, float32 | carried Δ, float64 |')
    print('|---|---|---|---|---|---|')
    for name in a.config:
        cfg = CONFIGS[name]
        rows, out = measure(name, cfg, a.batch or cfg['batch'], a.T1 or cfg['T'], a.seed, loads.get(name))
        for n, shape, norm, e32, c32, c64 in rows:
            print(f'| {n} | {shape} | {norm:.3e} | {e32:.2e} | {c32:.2e} | {c64:.2e} |')
        sys.stderr.write(f'{name}: seconds (engine, carried): float64 {out["seconds 64"]}, float32 '
                         f'{out["seconds 32"]}\n')


if __name__ == '__main__':
    main()

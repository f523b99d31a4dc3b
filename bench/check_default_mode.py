"""Bit-identity check of the analog simulator's default mode across a code change: fixed-seed runs of every kind of
layer the simulator has (toy presets S1, S2, S3.3 with Analog SGD and TT-v1, the S4 FCN and LeNet with one tile per
layer, DeviceSGD), their final arrays, device constants, counters and outputs saved to a file, then compared with
torch.equal against a file saved by another version of the code.

    python bench/check_default_mode.py --save before.pt          # on the old code
    python bench/check_default_mode.py --compare before.pt       # on the new code: 'identical' or the differences

The S4 runs pass max_input_size=0 (one tile per layer, where the code knows the field) and max_bm_res=inf (iterative
bound management up to factor 1024, the old stop rule), so that they run the old default on the new code too.
"""
import argparse
import dataclasses
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import analog as A                                          # noqa: E402
from papers.wu2024 import nets as wu_nets                   # noqa: E402
from papers.wu2024 import toy as wu_toy                     # noqa: E402


def _fields(cls):
    return {f.name for f in dataclasses.fields(cls)}


def old_default(setting, tau, preset='S4', **kw):
    """rpu_config with the new fields that restore the old default, where this version of the code has them."""
    known = _fields(A.RPU) | _fields(A.IO) | _fields(A.Update) | _fields(A.Device)
    extra = {k: v for k, v in dict(max_input_size=0, max_bm_res=float('inf')).items() if k in known}
    return A.rpu_config(setting, tau, preset, **kw, **extra)


def toy_runs(out):
    for script, setting, kw in (('S1-SGD-diff-lr', 'Analog SGD', dict(w_noise=1e-2 / 40 ** 0.5)),
                                ('S1-SGD-diff-lr', 'TT-v1', dict(w_noise=1e-2 / 40 ** 0.5, gamma=0.4, fast_lr=0.1)),
                                ('S2-dynamic-verification', 'Analog SGD', dict(w_noise=0.02)),
                                ('S3.3-ablation-init', 'Analog SGD', dict(w_noise=1e-2 / 50 ** 0.5))):
        toy = wu_toy.TOYS[script]
        A_, Y = wu_toy.make_problem(toy, torch.Generator().manual_seed(0))
        torch.manual_seed(1)
        rpu = old_default(setting, toy.taus[0], toy.preset, **kw)
        W0 = torch.full((1, toy.D), 0.5) if script.startswith('S3.3') else None
        losses, layer = wu_toy.simulate(toy, A_, Y, rpu, toy.lrs[0], 40, W=W0)
        out[f'{script} {setting} losses'] = losses
        out[f'{script} {setting} state'] = layer.state_dict()


def classifier_runs(out):
    g = torch.Generator().manual_seed(2)
    for name, net, batch in (('FCN', wu_nets.FCN, 10), ('LeNet', wu_nets.LeNet, 8)):
        for setting in ('Analog SGD', 'TT-v1'):
            torch.manual_seed(3)
            model = A.convert(net(), old_default(setting, 0.6))
            opt = A.AnalogSGD(model.parameters(), lr=0.05)
            for _ in range(4):
                x = torch.rand(batch, 1, 28, 28, generator=g)
                y = torch.randint(0, 10, (batch,), generator=g)
                opt.zero_grad()
                F.nll_loss(model(x), y).backward()
                opt.step()
            out[f'{name} {setting} output'] = model(torch.rand(batch, 1, 28, 28, generator=g)).detach()
            out[f'{name} {setting} state'] = model.state_dict()


def device_sgd_runs(out):
    for setting in ('Analog SGD', 'TT-v1'):
        torch.manual_seed(4)
        lin = nn.Linear(30, 20)
        opt = A.DeviceSGD(lin.parameters(), lr=0.1, rpu=old_default(setting, 0.6))
        for _ in range(5):
            lin.weight.grad, lin.bias.grad = torch.randn(20, 30), torch.randn(20)
            opt.step()
        out[f'DeviceSGD {setting}'] = {'weight': lin.weight.detach().clone(), 'state': opt.state_dict()}


def flatten(obj, prefix=''):
    if isinstance(obj, dict):
        items = {}
        for k, v in obj.items():
            items.update(flatten(v, f'{prefix}/{k}'))
        return items
    if isinstance(obj, (list, tuple)):
        items = {}
        for i, v in enumerate(obj):
            items.update(flatten(v, f'{prefix}/{i}'))
        return items
    return {prefix: obj}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--save')
    ap.add_argument('--compare')
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = {}
    toy_runs(out)
    classifier_runs(out)
    device_sgd_runs(out)
    if args.save:
        torch.save(out, args.save)
        print(f'saved {len(flatten(out))} values to {args.save}')
    if args.compare:
        ref, new = flatten(torch.load(args.compare, weights_only=False)), flatten(out)
        diff = sorted(set(ref) ^ set(new))
        for k in sorted(set(ref) & set(new)):
            a, b = ref[k], new[k]
            same = torch.equal(a, b) if torch.is_tensor(a) and torch.is_tensor(b) else a == b
            if not same:
                diff.append(k)
        print('identical' if not diff else f'{len(diff)} differ: ' + ', '.join(diff[:20]))
        return 0 if not diff else 1


if __name__ == '__main__':
    sys.exit(main())

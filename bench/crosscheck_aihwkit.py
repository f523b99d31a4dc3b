"""Wu et al. 2024's S4.1 on the embedded digits, trained side by side by the native simulator (analog.py) and by IBM's
toolkit (aihwkit, what the paper's scripts ran): test accuracy after every epoch, one CSV row per (simulator, epoch).

Both get the same digital FCN 784-256-128-10 (sigmoid, log-softmax, NLL; the seed fixes its initial weights and the
shuffling), batch 10, AnalogSGD at lr 0.05, and the S4.1 configuration of ../shared/specs/wu2024_analog_training.md:
SoftBoundsReferenceDevice with bounds ±τ and the toolkit's defaults (construction seed 10), default IO and update, the learned digital output
scale; TT-v1 = build_config('ttv1') with construction seed 123, fast_lr 0.01 (absolute: scale_fast_lr False in
aihwkit ≥ 1.0, as 0.9.0), one column read per transfer. aihwkit is not a dependency: build it aside (see that spec,
README "The simulator"); without it the script says so and runs the native simulator alone.

    python bench/crosscheck_aihwkit.py [--setting "Analog SGD"|"TT-v1"|"FP SGD"] [--tau 0.6] [--epochs 12]
                                       [--no-out-scaling] [--seed 0] [--threads 1] [--csv FILE]
"""
import argparse
import os
import sys
import time

import pandas as pd
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import analog as A                                          # noqa: E402
from suite import data                                                 # noqa: E402
from papers.wu2024 import nets as wu_nets                                                # noqa: E402


def kit_model(net, setting, tau, out_scaling):
    """The digital net converted by aihwkit with the S4.1 configuration (the spec's S4.1 tile), and its AnalogSGD."""
    from aihwkit.nn.conversion import convert_to_analog
    from aihwkit.optim import AnalogSGD
    from aihwkit.simulator.configs import FloatingPointRPUConfig, SingleRPUConfig, build_config
    from aihwkit.simulator.configs.devices import SoftBoundsReferenceDevice
    device = SoftBoundsReferenceDevice(w_max=tau, w_min=-tau, construction_seed=10)
    if setting == 'FP SGD':
        rpu = FloatingPointRPUConfig()
    elif setting == 'Analog SGD':
        rpu = SingleRPUConfig(device=device)
    else:
        rpu = build_config('ttv1', device=device, construction_seed=123)
        rpu.device.fast_lr, rpu.device.n_reads_per_transfer = 0.01, 1
        if hasattr(rpu.device, 'scale_fast_lr'):
            rpu.device.scale_fast_lr = False
    if setting != 'FP SGD':
        rpu.mapping.learn_out_scaling = out_scaling
        rpu.mapping.weight_scaling_columnwise = True
    model = convert_to_analog(net, rpu)
    opt = AnalogSGD(model.parameters(), lr=0.05)
    opt.regroup_param_groups(model)
    return model, opt


def native_model(net, setting, tau, out_scaling):
    rpu = None if setting == 'FP SGD' else A.rpu_config(setting, tau, 'S4', learn_out_scaling=out_scaling)
    model = A.convert(net, rpu)
    return model, A.AnalogSGD(model.parameters(), lr=0.05)


def accuracy(model, x, label):
    model.eval()
    with torch.no_grad():
        right = sum((model(x[i:i + 500]).argmax(1) == label[i:i + 500]).sum().item() for i in range(0, len(x), 500))
    model.train()
    return 100.0 * right / len(x)


def train(name, make, a, splits):
    (xtr, ytr), (xte, yte) = splits
    torch.manual_seed(a.seed)
    model, opt = make(wu_nets.FCN(), a.setting, a.tau, not a.no_out_scaling)
    gen = torch.Generator().manual_seed(a.seed)
    rows, t0 = [], time.perf_counter()
    for epoch in range(1, a.epochs + 1):
        for idx in torch.randperm(len(xtr), generator=gen).split(10):
            opt.zero_grad()
            F.nll_loss(model(xtr[idx]), ytr[idx]).backward()
            opt.step()
        rows.append(dict(simulator=name, epoch=epoch, test_acc=accuracy(model, xte, yte),
                         seconds=time.perf_counter() - t0))
        print(f'{name:7s} epoch {epoch:3d}  test {rows[-1]["test_acc"]:5.1f} %  {rows[-1]["seconds"]:6.0f} s', flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--setting', default='Analog SGD', choices=A.SETTINGS)
    ap.add_argument('--tau', type=float, default=0.6)
    ap.add_argument('--epochs', type=int, default=12)
    ap.add_argument('--no-out-scaling', action='store_true', help='learn_out_scaling off in both simulators')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--csv', default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    splits = [data.load_or_synthetic('mnist5k', None, train, False) for train in (True, False)]
    sims = [('native', native_model)]
    try:
        import aihwkit                                      # noqa: F401
        sims.append(('aihwkit', kit_model))
    except Exception as e:                                  # not a dependency: any import failure means absent
        print(f'aihwkit does not import ({type(e).__name__}): the native simulator alone')
    print(f'S4.1 FCN on mnist5k, {a.setting}, tau {a.tau}, learned output scale {not a.no_out_scaling}, '
          f'seed {a.seed}, {a.threads} thread(s)')
    rows = [r for name, make in sims for r in train(name, make, a, splits)]
    if a.csv:
        pd.DataFrame(rows).to_csv(a.csv, index=False)


if __name__ == '__main__':
    main()

"""ff-EBMs (Nest & Ernoult 2024): per-layer cos(ĝ_EP, ĝ_ID) of a chain trained by main.py (a run folder's
checkpoint.tar), and whether it is the relaxation lengths that separate EP from ID on it.

For each run folder (its trained chain, and with --init also the same chain freshly initialised; --init-only: that
one alone), in --dtype, on one mini-batch of the training digits:
  residual   per block, max |s(T1 + 1) − s(T1)| / max |s(T1)| of the free phase (0 at an exact fixed point: EP's
             estimate assumes one, ID's truncated BPTT does not);
  cos        per weight layer, cos(ĝ_EP, ĝ_ID) for each (T1, T2, β) of --T1s × --T2s × --betas, both gradients from
             the same free states and ID re-run for the same T2 as the nudged phases.

    python bench/ffebm_trained.py RUN_FOLDER [RUN_FOLDER …] [--init | --init-only] [--dtype float64] [--batch 64]
                                  [--T1s 60 240] [--T2s 20 80] [--betas 0.2 0.02] [--threads N]
                                  [--override model.config.V=8.351e-5 …]   (applied after the run's own overrides)
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from papers import nest2024                                    # noqa: E402
from ffebm_precision import batch                  # noqa: E402


def residuals(chain, x, T1):
    """Per block: the relative change of the free state in one more step after T1."""
    states, _ = chain.free_phase(x, steps=T1)
    out = []
    with torch.no_grad():
        for block, (_, d, s) in zip(chain.blocks, states):
            s1 = block.stepper(s, d)
            out.append(max((a - b).abs().max().item() for a, b in zip(s1, s))
                       / max(max(a.abs().max().item() for a in s), 1e-30))
    return out


def cosines(chain, x, label, T1, T2, beta):
    states, _ = chain.free_phase(x, steps=T1)
    layers = nest2024.weight_layers(chain)
    chain.id_gradients(states, label, T2)
    g_id = [p.grad.clone() for *_, p in layers]
    chain.ep_gradients(states, label, beta, T2)
    return [nest2024.cosine(p.grad, g) for (*_, p), g in zip(layers, g_id)]


def report(name, chain, x, label, a):
    chain.train()                                  # as in training: the free phase updates the frozen BN's statistics
    print(f'{name}\n  free-phase residual per block: '
          + ', '.join(f'T1 {T1}: ' + ' '.join(f'{r:.1e}' for r in residuals(chain, x, T1)) for T1 in a.T1s))
    for T1 in a.T1s:
        for T2 in a.T2s:
            for beta in a.betas:
                c = cosines(chain, x, label, T1, T2, beta)
                print(f'  T1 {T1:4d} T2 {T2:4d} β {beta:<5g} cos(EP, ID): ' + ' '.join(f'{v:6.3f}' for v in c),
                      flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('folders', nargs='+')
    ap.add_argument('--init', action='store_true', help='also the untrained chain of the first folder\'s run')
    ap.add_argument('--init-only', action='store_true', help='only the untrained chain of the first folder\'s run')
    ap.add_argument('--dtype', choices=('float32', 'float64'), default='float32')
    ap.add_argument('--batch', type=int, default=64)
    ap.add_argument('--T1s', type=int, nargs='+', default=[60, 240])
    ap.add_argument('--T2s', type=int, nargs='+', default=[20, 80])
    ap.add_argument('--betas', type=float, nargs='+', default=[0.2, 0.02])
    ap.add_argument('--threads', type=int, default=None)
    ap.add_argument('--override', nargs='*', default=[], help='Hydra overrides on top of the run\'s')
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dtype = getattr(torch, a.dtype)
    x, label = batch('mnist5k', a.batch)
    x = x.to(dtype)
    for i, folder in enumerate(a.folders):
        run, _, _ = nest2024.resolve(['--load-path', folder] + a.override)
        if i == 0 and (a.init or a.init_only):
            torch.manual_seed(0)
            report(f'untrained chain of {folder}\'s run (torch seed 0, V {run.V}), {a.dtype}',
                   nest2024.build_chain(run, 'cpu').to(dtype), x, label, a)
            if a.init_only:
                return
        chain = nest2024.build_chain(run, 'cpu')
        ckpt = torch.load(os.path.join(folder, 'checkpoint.tar'), map_location='cpu', weights_only=False)
        chain.load_state_dict(ckpt['model'])
        report(f'{folder} ({run.algorithm}, epoch {ckpt["epoch"]}, V {run.V}), {a.dtype}', chain.to(dtype), x, label,
               a)


if __name__ == '__main__':
    main()

"""ff-EBMs (Nest & Ernoult 2024): milliseconds per training mini-batch, EP vs ID, and closed-form vs autograd-of-Φ
steppers.

  EP:  estimators.ChainEP (free phase T1 per block, ±β nudged phases of T2 steps as one batch, Φ-difference
       gradients and error currents), then an Adam step
  ID:  estimators.ChainID (same free phase, T2-step re-run of the chain with autograd, backward), then an Adam step
  closed-form vs autograd: one free-phase relaxation of every block (T1 steps), model.config.use_autograd false / true
Warm-up, then interleaved repetitions; the median is printed, and with several --models one markdown table row per
model. Each case is timed by the wall clock and by this process's CPU time (time.process_time): with --threads 1 on
a machine shared with other jobs, the CPU time is the one that does not grow with the others' load (the table's
ms columns are CPU ms; the wall-clock medians are printed above it). Models are the configs' own, optionally
thinned (--width 0.25 keeps a quarter of the channels) so that a CPU run stays short; T1 is the model's and T2 its
top-level config's (splitting_small: 20, splitting_large: 5) unless given.

    python bench/bench_ffebm.py [--models splitting_small_3block …] [--batch 16] [--T1 N] [--T2 N] [--width 1]
                                [--reps 3] [--warmup 1] [--threads N]
"""
import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ep import estimators                                  # noqa: E402
from papers import nest2024                                    # noqa: E402


def make_run(model, batch, T1=None, T2=None, width=1.0):
    """The run of `model` under its top-level config (splitting_large for splitting_large_*, else splitting_small),
    T1 / T2 overridden when given, channels and fc sizes × width."""
    name = 'splitting_large' if model.startswith('splitting_large') else 'splitting_small'
    over = [f'model.config.T1={T1}'] * (T1 is not None) + [f'algorithm.config.T2={T2}'] * (T2 is not None)
    run, _, _ = nest2024.resolve([f'--config-name={name}', f'model={model}', 'data=mnist5k',
                                  f'data.config.batch_size={batch}'] + over)
    run.blocks = [{**b, 'channels': [c if c == 3 else max(2, int(c * width)) for c in b['channels']],
                   'fc': [max(2, int(f * width)) for f in b['fc']]} for b in run.blocks]
    return run


def timed(fn):
    """(wall-clock ms, CPU ms of this process) of fn()."""
    t, c = time.perf_counter(), time.process_time()
    fn()
    return 1e3 * (time.perf_counter() - t), 1e3 * (time.process_time() - c)


def bench(model, a):
    """{case: median wall ms}, {case: median CPU ms} of one model, and the largest |difference| of the closed-form
    and autograd free states."""
    torch.manual_seed(0)
    run = make_run(model, a.batch, a.T1, a.T2, a.width)
    chain = nest2024.build_chain(run, 'cpu').train()
    auto = nest2024.build_chain(run, 'cpu').train()
    auto.load_state_dict(chain.state_dict())
    for b in auto.blocks:
        b.use_autograd = True
    opt = torch.optim.Adam(chain.parameters(), lr=0.0)            # lr 0: the weights stay those compared
    x, label = torch.randn(a.batch, 3, 32, 32), torch.randint(0, 10, (a.batch,))
    ep, id_ = estimators.ChainEP(run.beta, run.T2), estimators.ChainID(run.T2)

    def step(est):
        est(chain, x, chain.target(label))
        chain.updateWeights(opt)

    with torch.no_grad():
        s_c, _ = chain.free_phase(x)
        s_a, _ = auto.free_phase(x)
    diff = max((p - q).abs().max().item() for (_, _, sp), (_, _, sq) in zip(s_c, s_a) for p, q in zip(sp, sq))
    cases = {'EP (ChainEP + Adam)': lambda: step(ep), 'ID (ChainID + Adam)': lambda: step(id_),
             'free phase, closed form': lambda: chain.free_phase(x),
             'free phase, autograd of Φ': lambda: auto.free_phase(x)}
    times = {k: [] for k in cases}
    for r in range(a.warmup + a.reps):
        for k, fn in cases.items():
            ms = timed(fn)
            if r >= a.warmup:
                times[k].append(ms)
    return (run, {k: statistics.median(w for w, _ in v) for k, v in times.items()},
            {k: statistics.median(c for _, c in v) for k, v in times.items()}, diff)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--models', nargs='+', default=['splitting_small_3block'])
    ap.add_argument('--batch', type=int, default=16)
    ap.add_argument('--T1', type=int, default=None)
    ap.add_argument('--T2', type=int, default=None)
    ap.add_argument('--width', type=float, default=1.0)
    ap.add_argument('--reps', type=int, default=3)
    ap.add_argument('--warmup', type=int, default=1)
    ap.add_argument('--threads', type=int, default=None)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    rows = []
    for model in a.models:
        run, wall, med, diff = bench(model, a)
        print(f'{model} (width ×{a.width}), batch {a.batch}, T1 {run.T1}, T2 {run.T2}, {torch.get_num_threads()} '
              f'threads; closed form vs autograd free states: max |diff| {diff:.2e}')
        for k, v in med.items():
            print(f'  {k:28s} {v:9.1f} CPU ms  {wall[k]:9.1f} wall ms')
        ep_, id_, cf, ag = med.values()
        print(f'  CPU time: ID / EP: {id_ / ep_:.2f}×;  autograd / closed form: {ag / cf:.2f}×', flush=True)
        rows.append(f'| {model} | {len(run.blocks)} | {run.T1} | {run.T2} | {ep_:.0f} | {id_:.0f} | {id_ / ep_:.2f}× '
                    f'| {cf:.0f} | {ag:.0f} | {ag / cf:.2f}× | {diff:.1e} |')
    if len(rows) > 1:
        print('\n| model | blocks | T1 | T2 | EP CPU ms | ID CPU ms | ID/EP | free closed-form CPU ms | '
              'free autograd CPU ms | autograd/closed | max state diff |\n'
              '|---|---|---|---|---|---|---|---|---|---|---|')
        print('\n'.join(rows))


if __name__ == '__main__':
    main()

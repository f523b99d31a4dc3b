"""ff-EBMs (Nest & Ernoult 2024): milliseconds per training mini-batch, EP vs ID, and closed-form vs autograd-of-Φ
steppers.

  EP:  estimators.ChainEP (free phase T1 per block, ±β nudged phases of T2 steps as one batch, Φ-difference
       gradients and error currents), then an Adam step
  ID:  estimators.ChainID (same free phase, T2-step re-run of the chain with autograd, backward), then an Adam step
  closed-form vs autograd: one free-phase relaxation of every block (T1 steps), model.config.use_autograd false / true
Warm-up, then interleaved repetitions; the median is printed. Models are the configs' own, optionally thinned
(--width 0.25 keeps a quarter of the channels) so that a CPU run stays short.

    python bench/bench_ffebm.py [--model splitting_small_3block] [--batch 16] [--T1 20] [--T2 5] [--width 1]
                                [--reps 3] [--warmup 1] [--threads N]
"""
import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import estimators                                  # noqa: E402
import nest2024                                    # noqa: E402


def make_run(model, batch, T1, T2, width):
    run, _, _ = nest2024.resolve(['--config-name=splitting_small', f'model={model}', 'data=mnist5k',
                                  f'model.config.T1={T1}', f'algorithm.config.T2={T2}',
                                  f'data.config.batch_size={batch}'])
    run.blocks = [{**b, 'channels': [c if c == 3 else max(2, int(c * width)) for c in b['channels']],
                   'fc': [max(2, int(f * width)) for f in b['fc']]} for b in run.blocks]
    return run


def timed(fn):
    t = time.perf_counter()
    fn()
    return 1e3 * (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--model', default='splitting_small_3block')
    ap.add_argument('--batch', type=int, default=16)
    ap.add_argument('--T1', type=int, default=20)
    ap.add_argument('--T2', type=int, default=5)
    ap.add_argument('--width', type=float, default=1.0)
    ap.add_argument('--reps', type=int, default=3)
    ap.add_argument('--warmup', type=int, default=1)
    ap.add_argument('--threads', type=int, default=None)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    run = make_run(a.model, a.batch, a.T1, a.T2, a.width)
    chain = nest2024.build_chain(run, 'cpu').train()
    auto = nest2024.build_chain(run, 'cpu').train()
    auto.load_state_dict(chain.state_dict())
    for b in auto.blocks:
        b.use_autograd = True
    opt = torch.optim.Adam(chain.parameters(), lr=0.0)            # lr 0: the weights stay those compared
    x, label = torch.randn(a.batch, 3, 32, 32), torch.randint(0, 10, (a.batch,))
    ep, id_ = estimators.ChainEP(run.beta, run.T2), estimators.ChainID(run.T2)

    def step(est):
        est(chain, x, label)
        opt.step()
        opt.zero_grad(set_to_none=True)

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
    print(f'{a.model} (width ×{a.width}), batch {a.batch}, T1 {a.T1}, T2 {a.T2}, {torch.get_num_threads()} threads; '
          f'closed form vs autograd free states: max |diff| {diff:.2e}')
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in med.items():
        print(f'  {k:28s} {v:9.1f} ms')
    print(f'  ID / EP: {med["ID (ChainID + Adam)"] / med["EP (ChainEP + Adam)"]:.2f}×;  autograd / closed form: '
          f'{med["free phase, autograd of Φ"] / med["free phase, closed form"]:.2f}×')


if __name__ == '__main__':
    main()

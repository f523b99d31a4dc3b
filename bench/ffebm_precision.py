"""ff-EBMs (Nest & Ernoult 2024): where the EP gradient of a chain departs from ID, per layer. The measurements behind
the mnist5k EP/ID gap (README, Nest & Ernoult 2024 section).

For one mini-batch and one untrained chain, cos(ĝ_EP, ĝ_ID) of every weight tensor, for
  estimate  'halves': the Φ difference of the ±β states taken after autograd (netFunctions.phi_param_grads, the
            first version) or 'first': before it (HopfieldBlock.ep_param_grads, the fix);
  dtype     float32 or float64 (the same weights);
  input     mnist5k digits (constant background) or Gaussian images;
  β         each of --betas (T2 nudged steps, no other change);
and, per max-pool, the fraction of 2×2 windows with an exact tie at the free equilibrium and of windows whose argmax
differs between the +β and −β states (the first suspect: ties on MNIST's background).

    python bench/ffebm_precision.py [--model splitting_small_3block] [--width 0.25] [--batch 64] [--T1 60] [--T2 20]
                                    [--betas 0.2 0.01 0.001] [--threads N]
"""
import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import netFunctions as nf                          # noqa: E402
from papers import nest2024                                    # noqa: E402
from bench_ffebm import make_run                   # noqa: E402


def batch(kind, n):
    g = torch.Generator().manual_seed(0)
    if kind == 'gaussian':
        return torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)
    x, y = nest2024.mnist_images(True)
    idx = torch.randperm(len(y), generator=g)[:n]
    return nest2024.transform(type('R', (), {'dataset': 'mnist5k'}), False)(x[idx]), y[idx]


def cos(a, b):
    a, b = a.double().flatten(), b.double().flatten()
    return (a @ b / (a.norm() * b.norm()).clamp_min(1e-300)).item()


def halves(block):
    """The first version's estimate: both nudged halves through autograd, subtracted after."""
    def est(x, s_a, s_b, beta_a, beta_b, y=None, x_grad=False):
        return nf.phi_param_grads(block, x, s_a, s_b, beta_a, beta_b, y, x_grad=x_grad)
    return est


def pool_stats(chain, states, beta, T2, label):
    """Per (block, layer) max-pool: (exact-tie fraction at the free state, argmax flips between ±β)."""
    out, target = {}, chain.target(label)
    for k in reversed(range(len(chain.blocks))):
        block = chain.blocks[k]
        x, d, s = states[k]
        with torch.no_grad():
            s_p, s_m = block.forward(x, s, target, (beta, -beta), steps=T2, drive=d)
        for l in range(block.ncv):
            m = block.synapses[l]
            if m.pool.kind != 'm':
                continue
            a = x if l == 0 else s[l - 1]
            z = F.conv2d(a, m.weight, m.bias, 1, 1)
            top = F.unfold(z.flatten(0, 1).unsqueeze(1), 2, stride=2).topk(2, dim=1).values
            flips = 0.0 if l == 0 else (m(s_p[l - 1])[1][2] != m(s_m[l - 1])[1][2]).double().mean().item()
            out[f'b{k}.l{l}'] = ((top[:, 0] == top[:, 1]).double().mean().item(), flips)
        if k > 0:
            target = chain.ep_block(k, x, d, s, target, beta, T2, x_grad=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--model', default='splitting_small_3block')
    ap.add_argument('--width', type=float, default=0.25)
    ap.add_argument('--batch', type=int, default=64)
    ap.add_argument('--T1', type=int, default=60)
    ap.add_argument('--T2', type=int, default=20)
    ap.add_argument('--betas', type=float, nargs='+', default=[0.2, 0.01, 0.001])
    ap.add_argument('--threads', type=int, default=None)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    run = make_run(a.model, a.batch, a.T1, a.T2, a.width)
    torch.manual_seed(0)
    base = nest2024.build_chain(run, 'cpu').train()
    print(f'{a.model} (width ×{a.width}), batch {a.batch}, T1 {a.T1}, T2 {a.T2}, V {run.V}; cos(EP, ID) per weight')
    for kind in ('mnist5k', 'gaussian'):
        x, label = batch(kind, a.batch)
        for dtype in (torch.float32, torch.float64):
            chain = nest2024.build_chain(run, 'cpu').to(dtype).train()
            chain.load_state_dict(base.state_dict())
            xx = x.to(dtype)
            states, _ = chain.free_phase(xx)
            layers = nest2024.weight_layers(chain)
            chain.id_gradients(states, label, a.T2)
            g_id = [p.grad.clone() for *_, p in layers]
            for beta in a.betas:
                for est in ('halves', 'first'):
                    for b in chain.blocks:
                        if est == 'halves':
                            b.ep_param_grads = halves(b)
                        else:
                            b.__dict__.pop('ep_param_grads', None)
                    chain.ep_gradients(states, label, beta, a.T2)
                    c = ' '.join(f'{cos(p.grad, g):6.3f}' for (*_, p), g in zip(layers, g_id))
                    print(f'  {kind:8s} {str(dtype)[6:]:7s} β {beta:<6g} {est:6s}: {c}', flush=True)
            if dtype == torch.float32:
                st = pool_stats(chain, states, a.betas[0], a.T2, label)
                print(f'  {kind:8s} max-pool windows (exact tie at the free state, argmax flips ±β={a.betas[0]}): '
                      + ', '.join(f'{k} {t:.3f}/{f:.4f}' for k, (t, f) in st.items()))


if __name__ == '__main__':
    main()

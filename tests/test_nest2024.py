"""Nest & Ernoult 2024 (ff-EBMs): EP-in-blocks gradients against ID, the error currents, the closed-form asynchronous
stepper against autograd of Φ, a 1-block chain against Laborieux's P_CNN, TOL, the 33 README commands, and the run
layer: a training mini-batch through the chain's design-card methods, Ctrl-C and resume, checkpoints of the earlier
layout, bad Hydra keys, --help."""
import dataclasses
import os
import shlex

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from ep import estimators
from papers import nest2024
import netFunctions as nf
from conftest import ROOT, assert_resume_equals_uninterrupted, run_main
from papers.nest2024.nets import ConvPoolBlock, HopfieldChain, blocks_from_config
from papers.laborieux2021.nets import P_CNN
from suite import trainer
from test_resume import _interrupt_in_epoch, _message, _printed_command

@pytest.fixture(autouse=True)
def _one_thread():
    """One CPU thread: these tests run tiny ops, which a second thread only slows down on a loaded machine (after
    conftest's fixture, which sets 2)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


TINY = [dict(channels=[3, 4, 6], pools='m-', norm=True, clamp_last=True),
        dict(channels=[6, 6, 8], pools='m-', norm=False, clamp_last=False),
        dict(channels=[8, 8], pools='-', norm=True, fc=[12])]


def tiny_chain(T=80, slope=0.5, V=0.01, seed=0, blocks=TINY, in_size=8):
    torch.manual_seed(seed)
    chain = HopfieldChain(blocks_from_config(blocks, in_size, 5, slope, T, T, 1e-3, V)).double().train()
    x = torch.randn(4, 3, in_size, in_size, dtype=torch.float64)
    return chain, x, torch.tensor([0, 1, 2, 3])


def test_ep_gradients_and_error_currents_match_id():
    """Every layer's EP gradient has cosine > 0.999 with ID; the paper's error current δ_k = −g_k equals
    −B ∂L/∂x_k (L the batch-mean CE) by autograd through the chain, k = 2, 3."""
    chain, x, label = tiny_chain()
    states, _ = chain.free_phase(x)
    currents = chain.ep_gradients(states, label, 1e-3, 80)
    ep = {n: p.grad.clone() for n, p in chain.named_parameters()}
    _, input_grads = chain.id_gradients(states, label, 80, input_grads=True)
    for n, p in chain.named_parameters():
        cos = (ep[n].flatten() @ p.grad.flatten()) / (ep[n].norm() * p.grad.norm())
        assert cos > 0.999, (n, cos.item())
    for g, gid in zip(currents, input_grads):
        delta_paper, minus_dLdx = -g, -gid
        assert torch.allclose(delta_paper, minus_dLdx, atol=1e-6 * minus_dLdx.abs().max().item()), \
            (delta_paper - minus_dLdx).abs().max()


def test_one_block_chain_is_the_hopfield_net():
    """A 1-block chain (no BN, synchronous, clamped last layer, slope 1) is Laborieux's P_CNN with a softmax readout:
    same free equilibrium, same centered-EP gradients (the suite's Symmetric estimator on P_CNN)."""
    torch.manual_seed(1)
    block = ConvPoolBlock(8, [3, 4, 6], 'mm', fc=[7], norm=False, clamp_last=True, slope=1.0, T1=30, T2=10,
                          beta=0.05, n_classes=5, asynchronous=False, V=0.05).double()
    chain = HopfieldChain([block]).train()
    net = P_CNN(8, 3, [4, 6], [3, 3], [1, 1], [1, 1], ['m', 'm'], [7, 5], 30, 10, 0.05, 'hard_sigmoid', 'cel',
                softmax=True).double()
    with torch.no_grad():
        for p, q in zip(net.parameters(), block.parameters()):
            p.copy_(q)
    x, label = torch.randn(3, 3, 8, 8, dtype=torch.float64), torch.tensor([0, 3, 4])
    states, _ = chain.free_phase(x)
    s_ref = net.forward(x)
    for a, b in zip(states[0][2], s_ref):
        assert torch.allclose(a, b, atol=1e-12)
    chain.ep_gradients(states, label, 0.05, 10)
    estimators.Symmetric(0.05, 30, 10)(net, x, net.target(label))
    for p, q in zip(block.parameters(), net.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-10)


@pytest.mark.parametrize('nudge', ['free', 'cross-entropy', 'error-current'])
def test_closed_form_async_stepper_equals_autograd_of_phi(nudge):
    """Step by step (BN, max-pools, fc, readout; even-then-odd free, odd-first nudged; ±β batched)."""
    chain, x, label = tiny_chain(T=5)
    k = 2 if nudge != 'error-current' else 1
    block = chain.blocks[k]
    states, _ = chain.free_phase(x)
    xk, d, s = states[k]
    if nudge == 'free':
        y, beta = None, 0.0
    elif nudge == 'cross-entropy':
        y, beta = block.target(label), torch.tensor([[0.3]] * 2 + [[-0.3]] * 2, dtype=torch.float64)
    else:
        y, beta = torch.randn_like(s[-1]), 0.4
    s_c = s_a = [si + 0.1 * torch.randn_like(si) for si in s]
    for _ in range(6):
        s_c, s_a = block.stepper(s_c, d, y, beta), block.stepper_autograd(xk, s_a, y, beta)
        for a, b in zip(s_c, s_a):
            assert torch.allclose(a, b, atol=1e-12)


TINY_RESNET = [dict(kind='basic', channels=[3, 4, 4], stride=1, stem=True),       # stem, identity skip
               dict(kind='basic', channels=[4, 6], stride=1, clamp_last=True),     # 1×1-conv + BN skip (width)
               dict(kind='basic', channels=[6, 6], stride=2)]                      # stride-2 skip, readout


@pytest.mark.parametrize('k, nudge', [(0, 'free'), (0, 'error-current'), (1, 'free'), (1, 'error-current'),
                                      (2, 'free'), (2, 'cross-entropy')])
def test_resnet_basic_block_stepper_equals_autograd_of_phi(k, nudge):
    """BasicBlocks (ResNet18/34 chains): the closed-form residual stepper equals autograd of the block's Φ step by step, for
    the stem block, a width-changing and a stride-2 block; free, nudged by an error current (±β batched) or by the
    cross-entropy through the average-pooled readout (last block)."""
    chain, x, label = tiny_chain(T=5, blocks=TINY_RESNET, in_size=16)
    block = chain.blocks[k]
    xk, d, s = chain.free_phase(x)[0][k]
    if nudge == 'free':
        y, beta = None, 0.0
    elif nudge == 'cross-entropy':
        y, beta = block.target(label), torch.tensor([[0.3]] * 2 + [[-0.3]] * 2, dtype=torch.float64)
    else:
        y, beta = torch.randn_like(s[-1]), torch.tensor([[0.4]] * 2 + [[-0.4]] * 2, dtype=torch.float64)
    s0 = s_c = s_a = [si + 0.1 * torch.randn_like(si) for si in s]
    for _ in range(6):
        s_c, s_a = block.stepper(s_c, d, y, beta), block.stepper_autograd(xk, s_a, y, beta)
        for a, b in zip(s_c, s_a):
            assert torch.allclose(a, b, atol=1e-12)
    assert all(not torch.allclose(a, b, atol=1e-3) for a, b in zip(s_c, s0))      # both layers moved


def test_resnet_chain_ep_gradients_and_error_currents_match_id():
    """A tiny float64 ResNet chain (stem, identity and downsampling skips): every parameter's EP gradient has cosine
    > 0.999 with ID (the stem and the 1×1 skips, feedforward ops, get theirs through the error currents), and the
    error currents equal −B ∂L/∂x_k by autograd."""
    chain, x, label = tiny_chain(blocks=TINY_RESNET, in_size=16)
    states, _ = chain.free_phase(x)
    currents = chain.ep_gradients(states, label, 1e-3, 80)
    ep = {n: p.grad.clone() for n, p in chain.named_parameters()}
    _, input_grads = chain.id_gradients(states, label, 80, input_grads=True)
    names = [n for n, _ in chain.named_parameters()]
    assert {'blocks.0.stem.weight', 'blocks.1.down.weight', 'blocks.2.down.weight', 'blocks.2.readout.weight'} \
        <= set(names)
    for n, p in chain.named_parameters():
        assert p.grad.norm() > 0, n
        cos = (ep[n].flatten() @ p.grad.flatten()) / (ep[n].norm() * p.grad.norm())
        assert cos > 0.999, (n, cos.item())
    for g, gid in zip(currents, input_grads):
        assert torch.allclose(g, gid, atol=1e-6 * gid.abs().max().item()), (g - gid).abs().max()


def test_resnet18_34_configs_build_the_published_stages():
    """model=resnet18 / resnet34: 8 / 16 BasicBlocks (2-2-2-2 / 3-4-6-3) of 64-128-256-512 channels, the stem in
    the first (32² → 16² → 8²), stride 2 at each later stage's first block, 1×1 skips there, readout 512 → classes."""
    for depth, stages in ((18, [2, 2, 2, 2]), (34, [3, 4, 6, 3])):
        run, _, _ = nest2024.resolve(['--config-name=scaling_small', f'model=resnet{depth}'])
        chain = nest2024.build_chain(run, 'cpu')
        widths = [w for w, n in zip([64, 128, 256, 512], stages) for _ in range(n)]
        sides = [s for s, n in zip([8, 4, 2, 1], stages) for _ in range(n)]
        assert [b.state_shapes() for b in chain.blocks] == [[(w, n, n)] * 2 for w, n in zip(widths, sides)]
        firsts = {sum(stages[:i]) for i in range(1, 4)}
        assert [b.down is not None for b in chain.blocks] == [i in firsts for i in range(len(widths))]
        assert chain.blocks[0].stem is not None and all(b.stem is None for b in chain.blocks[1:])
        assert (chain.blocks[-1].readout.in_features, chain.blocks[-1].readout.out_features) == (512, 100)
        assert len(nest2024.weight_layers(chain)) == 1 + 2 * len(widths) + 3


POOLED = [dict(channels=[3, 4, 6], pools='mm', norm=True, clamp_last=True),     # an in-block max-pool
          dict(channels=[6, 6], pools='-', norm=False, fc=[7])]


@pytest.mark.parametrize('arch, k', [('vgg', 0), ('vgg', 1), ('resnet', 0), ('resnet', 2)])
def test_difference_first_ep_estimate_equals_the_phi_difference(arch, k):
    """HopfieldBlock.ep_param_grads (the Φ difference taken before the backward pass) equals netFunctions'
    phi_param_grads (two nudged halves, autograd, then subtracted) in float64, parameters and input, for states far
    apart (max-pool argmaxes that differ between the two states: the gather correction of syn_diff) and for the
    readout's cross-entropy nudge."""
    chain, x, label = tiny_chain(T=5, blocks=POOLED if arch == 'vgg' else TINY_RESNET,
                                 in_size=8 if arch == 'vgg' else 16)
    block = chain.blocks[k]
    xk, _, s = chain.free_phase(x)[0][k]
    s_a = [si + 0.3 * torch.randn_like(si) for si in s]
    s_b = [si + 0.3 * torch.randn_like(si) for si in s]
    y = block.target(label) if block.readout is not None else torch.randn_like(s[-1])
    if arch == 'vgg' and k == 0:
        m = block.synapses[1]
        assert (m(s_a[0])[1][2] != m(s_b[0])[1][2]).any()                # the argmaxes differ somewhere
    new = block.ep_param_grads(xk, s_a, s_b, -0.1, 0.1, y, x_grad=True)
    ref = nf.phi_param_grads(block, xk, s_a, s_b, -0.1, 0.1, y, x_grad=True)
    names = [n for n, _ in block.named_parameters()] + ['x']
    for n, a, b in zip(names, new, ref):
        assert b.abs().max() > 0 and torch.allclose(a, b, atol=1e-10 * b.abs().max().item()), n


def test_ep_estimate_through_a_batchnorm_keeps_float32_precision():
    """The bug behind the README's early mnist5k EP/ID gap: with the two nudged halves subtracted after autograd,
    a first conv under a BN (small GOE V, as the configs) lost its EP gradient to float32 rounding (cosine 0.66
    with float64 here at β = 0.02; on splitting_small_3block at β = 0.2, noise 70 times the gradient). The
    difference-first estimate keeps it."""
    blocks = [dict(channels=[3, 8, 16], pools='mm', norm=True, clamp_last=True),
              dict(channels=[16, 16], pools='-', norm=False, fc=[12])]
    beta, got = 0.02, {}
    torch.manual_seed(0)
    c32 = HopfieldChain(blocks_from_config(blocks, 16, 5, 1.0, 60, 20, beta, 8e-5)).train()
    c64 = HopfieldChain(blocks_from_config(blocks, 16, 5, 1.0, 60, 20, beta, 8e-5)).double().train()
    c64.load_state_dict(c32.state_dict())
    x, label = torch.randn(16, 3, 16, 16), torch.randint(0, 5, (16,))
    for tag, chain in (('32', c32), ('64', c64)):
        xx = x.to(next(chain.parameters()).dtype)
        states, _ = chain.free_phase(xx)
        current = chain.ep_gradients(states, label, beta, 20)[0]
        block = chain.blocks[0]
        xk, d, s = states[0]
        with torch.no_grad():
            s_p, s_m = block.forward(xk, s, current, (beta, -beta), steps=20, drive=d)
        got[tag] = (block.ep_param_grads(xk, s_m, s_p, -beta, beta, current),
                    nf.phi_param_grads(block, xk, s_m, s_p, -beta, beta, current))

    def cos(a, b):
        a, b = a.double().flatten(), b.double().flatten()
        return (a @ b / (a.norm() * b.norm())).item()
    assert all(cos(a, b) > 0.9999 for a, b in zip(got['32'][0], got['64'][0]))
    assert cos(got['32'][1][0], got['64'][1][0]) < 0.95                  # the halves: W_1 lost in float32


def test_tol_stops_early_on_a_converged_state_and_gives_the_fixed_iteration_answer():
    chain, x, _ = tiny_chain(T=200)
    block = chain.blocks[0]
    with torch.no_grad():
        d = block.drive(x)
        fixed = nf.relax(block, None, block.init_state(4), None, 0.0, 200, d)
        s, n = nf.relax_tol(block, fixed, d, 200, tol=1e-8, every=10)
        assert n == 10                                                   # stopped at the first check
        assert all(torch.allclose(a, b, atol=1e-10) for a, b in zip(s, fixed))
        s, n = nf.relax_tol(block, block.init_state(4), d, 200, tol=1e-10, every=10)
        assert n < 200 and all(torch.allclose(a, b, atol=1e-8) for a, b in zip(s, fixed))
        s, n = nf.relax_tol(block, block.init_state(4), d, 200, tol=None)
        assert n == 200



def test_tol_is_checked_after_every_iteration_by_default():
    """model.config.tol_check_every is 1 in the schema, in every model config and in HopfieldChain: under TOL a
    block stops at the first iteration whose change meets the criterion, as the original (not at the next multiple
    of 10)."""
    from papers.nest2024 import config
    assert {f.name: f.default for f in config.dataclasses.fields(config.ModelParams)}['tol_check_every'] == 1
    folder = os.path.join(nest2024.CONFIG_DIR, 'model')
    for name in os.listdir(folder):
        assert OmegaConf.load(os.path.join(folder, name)).config.tol_check_every == 1, name
    run, _, _ = nest2024.resolve(['--config-name=splitting_small_TOL', 'model=splitting_small_3block'])
    assert run.check_every == 1 and nest2024.build_chain(run, 'cpu').check_every == 1
    chain, x, _ = tiny_chain(T=200)
    chain.tol = 1e-3
    _, iters = chain.free_phase(x)
    expected = []
    with torch.no_grad():
        for block in chain.blocks:
            d, s = block.drive(x), block.init_state(4)
            for i in range(1, 201):
                prev, s = s, block.stepper(s, d)
                if nf.converged(prev, s, 1e-3):
                    break
            expected.append(i)
            x = s[-1]
    assert iters == expected and any(i % 10 for i in expected), (iters, expected)


def _reference_id_grads(chain, states, label, T2, detach_feedback):
    """ID by hand: every block re-run T2 asynchronous iterations (even layers, then odd) from its free state,
    s_l ← σ(u_l) (the last layer linear unless clamp_last), u_l = bottom-up_l + ∂/∂s_l ⟨syn_{l+1}(s_l), s_{l+1}⟩ by
    autograd (create_graph), with W_{l+1} in that top-down term detached when asked; L = mean CE of the readout."""
    import torch.nn.functional as F
    from papers.nest2024.nets import syn_out

    def syn(m, a, w):
        return F.linear(a.flatten(1), w) if isinstance(m, torch.nn.Linear) else \
            m.pool(F.conv2d(a, w, None, m.stride, m.padding))[0]
    x = states[0][0]
    for k, block in enumerate(chain.blocks):
        s, d, n = [si.detach() for si in states[k][2]], block.ff(x), len(states[k][2])
        for _ in range(T2):
            for group in (range(0, n, 2), range(1, n, 2)):
                new = list(s)
                for l in group:
                    u = d if l == 0 else syn_out(block.synapses[l], s[l - 1]).view_as(s[l])
                    if l + 1 < n:
                        m = block.synapses[l + 1]
                        w = m.weight.detach() if detach_feedback else m.weight
                        a = s[l].detach().requires_grad_()          # (σ's argmax routing: no gradient in s_l)
                        u = u + torch.autograd.grad((syn(m, a, w).view_as(s[l + 1]) * s[l + 1]).sum(), a,
                                                    create_graph=True)[0]
                    new[l] = u if (l == n - 1 and not block.clamp_last) else (0.5 * u).clamp(0, 1)
                s = new
        x = s[-1]
    loss = F.cross_entropy(chain.blocks[-1].readout(x.flatten(1)), label)
    return dict(zip([nm for nm, _ in chain.named_parameters()], torch.autograd.grad(loss, list(chain.parameters()))))


def test_id_constant_feedback_drops_exactly_the_feedback_path():
    """algorithm.config.feedback: full is autograd of the re-run, constant the same with the weights of the top-down
    terms detached (both against a hand-built re-run). They agree on the first weight of every block, the biases and
    the readout, and differ on every weight W_l, l ≥ 2 of a block (the ones in a top-down term)."""
    chain, x, label = tiny_chain(T=40)
    states, _ = chain.free_phase(x)
    grads = {}
    for feedback in ('full', 'constant'):
        estimators.ChainID(6, feedback).gradients(chain, states, chain.target(label))
        grads[feedback] = {n: p.grad.clone() for n, p in chain.named_parameters()}
        ref = _reference_id_grads(chain, states, label, 6, feedback == 'constant')
        for n in ref:
            torch.testing.assert_close(grads[feedback][n], ref[n], rtol=1e-9, atol=1e-13, msg=(feedback, n))
    assert all(not b.constant_feedback for b in chain.blocks)
    differ = set()
    for n, g in grads['full'].items():
        if torch.allclose(g, grads['constant'][n], rtol=1e-10, atol=1e-14):
            continue
        differ.add(n)
        assert (g - grads['constant'][n]).norm() > 1e-3 * g.norm(), n            # a real difference, not rounding
    in_feedback = {f'blocks.{k}.synapses.{l}.weight' for k, b in enumerate(chain.blocks)
                   for l in range(1, len(b.synapses))}
    assert differ == in_feedback and len(in_feedback) == 3, differ


def test_id_constant_feedback_is_the_bptt_key(tmp_path, capsys):
    base = ['--config-name=splitting_small', 'model=splitting_small_3block', 'data=mnist5k']
    run, _, _ = nest2024.resolve(base + ['algorithm=bptt'])
    assert run.feedback == 'full' and nest2024.estimator(run).feedback == 'full'
    run, _, _ = nest2024.resolve(base + ['algorithm=bptt', 'algorithm.config.feedback=constant'])
    assert nest2024.estimator(run).feedback == 'constant'
    for extra, msg in ((['algorithm.config.feedback=constant'], 'a key of algorithm=bptt'),
                       (['+algorithm.config.feedback=constant'], 'a key of algorithm=bptt'),
                       (['algorithm=bptt', 'algorithm.config.feedback=data'], 'choose one of full, constant'),
                       (['algorithm=bptt', 'algorithm.config.feedback=constant', 'model.config.use_autograd=true'],
                        'use_autograd=false')):
        code, _ = run_main(base + extra + ['--results-dir', str(tmp_path)])
        err = capsys.readouterr().err.strip()
        assert code == 2 and 'algorithm.config.feedback' in err and msg in err and '\n' not in err, err


def _reference_feedforward_logits(chain, x):
    """The feedforward twin by hand: per block, layer after layer, u = P(W ⋆ s + b) (or W flat(s) + b), BN (batch
    statistics) after the first, s = clamp(0.5 u, 0, 1) except a last layer without clamp_last; then the readout."""
    import torch.nn.functional as F
    for block in chain.blocks:
        n = len(block.synapses)
        for l, m in enumerate(block.synapses):
            if isinstance(m, torch.nn.Linear):
                u = F.linear(x.flatten(1), m.weight, m.bias)
            else:
                u = F.conv2d(x, m.weight, m.bias, 1, 1)
                u = F.max_pool2d(u, 2) if m.pool.kind == 'm' else u
            if l == 0 and block.bn is not None:
                u = F.batch_norm(u, None, None, training=True, eps=block.bn.eps)
            x = u if (l == n - 1 and not block.clamp_last) else (0.5 * u).clamp(0, 1)
    return chain.blocks[-1].readout(x.flatten(1))


def test_bp_gradient_is_autograd_of_the_feedforward_net():
    """algorithm=bp: estimators.Backprop on the chain's feedforward twin writes ∂L/∂θ of L = mean CE of the hand-built
    feedforward net with the chain's weights, BN and pools, for every parameter; the twin's logits are that net's."""
    import torch.nn.functional as F
    from papers.nest2024.nets import FeedforwardChain
    chain, x, label = tiny_chain()
    net = FeedforwardChain(chain).train()
    assert list(net.state_dict()) == ['module.' + k for k in chain.state_dict()]          # the chain's parameters
    z = estimators.Backprop()(net, x, net.target(label))
    ref = _reference_feedforward_logits(chain, x)
    torch.testing.assert_close(z, ref.detach(), rtol=1e-12, atol=1e-12)
    expected = torch.autograd.grad(F.cross_entropy(ref, label), list(chain.parameters()))
    for (n, p), g in zip(chain.named_parameters(), expected):
        assert p.grad is not None and g.abs().max() > 0, n
        torch.testing.assert_close(p.grad, g, rtol=1e-10, atol=1e-14, msg=n)
    net.eval()
    with torch.no_grad():                                    # evaluation: BN's running statistics
        assert not torch.allclose(net.infer(x), ref)

def test_id_transients_end_at_the_id_gradient():
    chain, x, label = tiny_chain(T=20)
    states, _ = chain.free_phase(x)
    tr = chain.id_transients(states, label, 6)
    chain.id_gradients(states, label, 6)
    for k, block in enumerate(chain.blocks):
        for n, p in block.named_parameters():
            assert torch.allclose(tr[k][-1][n], p.grad, atol=1e-12), n
            if n != 'readout.weight' and n != 'readout.bias':
                assert tr[k][0][n].abs().max() == 0


# ---------------------------------------------------------------------------------------------------------------
# Command lines (models shrunk 32× in width so that every command runs in a second or so)

def shrink(blocks):
    def c(n):
        return n if n == 3 else max(2, n // 32)
    return [{**b, 'channels': [c(n) for n in b['channels']], 'fc': [max(4, f // 32) for f in b['fc']]}
            for b in blocks]


@pytest.fixture
def small(monkeypatch):
    build = nest2024.build_chain

    def build_small(run, device):
        run.blocks = shrink(run.blocks)
        return build(run, device)
    monkeypatch.setattr(nest2024, 'build_chain', build_small)


def seed_commands():
    path = os.path.join(ROOT, 'check', 'nest2024.sh')
    return [shlex.split(line)[2:] for line in open(path) if line.startswith('python main.py')]


def test_the_33_readme_commands_dry_run(small, tmp_path):
    cmds = seed_commands()
    assert len(cmds) == 33
    for i, argv in enumerate(cmds):
        code, folder = run_main(argv + ['--dry-run', '--results-dir', str(tmp_path / str(i))])
        assert code == 0, argv
        assert os.path.relpath(folder, tmp_path / str(i)).split(os.sep)[:3] == ['dry-run', 'ffebm', argv[0][14:]]
        files = os.listdir(folder)
        assert {'config.yaml', 'hyperparameters.txt', 'plotFunctions.py'} <= set(files)
        assert ('bars.csv' in files) if 'gdd' in argv[0] else ('metrics.csv' in files)
        assert open(os.path.join(folder, 'config.yaml')).readline().startswith('# python main.py --config-name=')


@pytest.mark.parametrize('extra', [['trainer.foo=1'], ['trainer.epochs=abc'], ['trainer.epochs=2.5'], ['model=nope'],
                                   ['algorithm.config.beta=0'], ['--bogus'], ['model.config.asynchronous=3'],
                                   ['data=cifar10', '--data-root', '/nonexistent']])
def test_bad_overrides_exit_2_with_one_line(extra, capsys):
    code, _ = run_main(['--config-name=splitting_small', 'model=splitting_small_3block', 'data=mnist5k'] + extra)
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith('main.py: error: ') and '\n' not in err and 'Traceback' not in err, err


def test_unknown_config_name_exits_2(capsys):
    assert run_main(['--config-name=nope'])[0] == 2


def test_resume_equals_an_uninterrupted_run(small, tmp_path):
    base = ['--config-name=splitting_small', 'model=splitting_small_3block', 'data=mnist5k', '--seed', '3',
            'trainer.limit_batches=2', 'data.config.batch_size=16', 'model.config.T1=4', 'algorithm.config.T2=2']
    part = assert_resume_equals_uninterrupted(base, tmp_path, epochs=lambda n: [f'trainer.epochs={n}'],
                                              resume=lambda folder: ['--load-path', folder, 'trainer.epochs=2'],
                                              metric='test_top1')
    assert {'accuracy.png', 'wall_clock.png', 'best.pt', 'metrics.csv'} <= set(os.listdir(part))


def _fake_batches(paths, n=2, label_key='labels', base=1):
    import pickle
    import numpy as np
    for i, p in enumerate(paths):
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, 'wb') as f:
            pickle.dump({'data': np.full((n, 3072), i, dtype=np.uint8), label_key: [base + i] * n}, f)


@pytest.mark.parametrize('layout', ['authors', 'official'])
def test_imagenet32_both_layouts(layout, tmp_path):
    from suite import data
    root = tmp_path / 'imagenet32'
    train = [str(root / ('out_data_train' if layout == 'authors' else '') / f'train_data_batch_{i}')
             for i in range(1, 11)]
    val = ([str(root / 'out_data_val' / f'train_data_batch_{i}') for i in range(1, 11)] if layout == 'authors'
           else [str(root / 'val_data')])
    _fake_batches(train)
    _fake_batches(val)
    x, y = data.load_images('imagenet32', str(tmp_path), True)
    assert x.shape == (20, 3, 32, 32) and x.dtype == torch.uint8 and y.min() == 0 and y.max() == 9   # 1-based → 0
    x, y = data.load_images('imagenet32', str(tmp_path), False)
    assert len(y) == (20 if layout == 'authors' else 2)


# ---------------------------------------------------------------------------------------------------------------
# Configurations against the paper's tables of architectures and hyperparameters

SPEC_MODELS = {   # T1, slope a, GOE V, layers per block, the last block's last layer, readout inputs
    'splitting_small_1block': (60, 1.0, 8.351e-5, [6], (256,), 256),
    'splitting_small_2block': (60, 1.0, 8.351e-5, [3, 3], (256,), 256),
    'splitting_small_3block': (60, 1.0, 8.351e-5, [2, 2, 2], (256,), 256),
    'splitting_large_3block': (20, 1.0, 5.9e-5, [4, 4, 4], (512, 4, 4), 8192),
    'splitting_large_4block': (20, 1.0, 5.9e-5, [3, 3, 3, 3], (512, 4, 4), 8192),
    'splitting_large_6block': (20, 1.0, 5.9e-5, [2] * 6, (512, 4, 4), 8192),
    'scaling_small': (15, 0.5, 4.9e-5, [2] * 6, (512, 4, 4), 8192),
    'scaling_large': (15, 0.5, 1e-5, [2] * 7 + [1], (512, 4, 4), 8192),
    'static_gradient_analysis': (15, 0.5, 4.9e-5, [2, 2, 3, 3, 2, 3], (4096,), 4096),
    'splitting_large_sota3': (5, 1.0, 1.7e-5, [4, 4, 4], (512, 1, 1), 512),
}
SPEC_SHAPES = {   # every layer (C, H, W) / (n,) of the §B5.2 table, block by block
    'splitting_small_1block': [[(128, 16, 16), (256, 8, 8), (256, 4, 4), (512, 2, 2), (512, 2, 2), (256,)]],
    'splitting_small_2block': [[(128, 16, 16), (256, 8, 8), (256, 4, 4)], [(512, 2, 2), (512, 1, 1), (256,)]],
    'splitting_small_3block': [[(128, 16, 16), (256, 8, 8)], [(256, 4, 4), (512, 2, 2)], [(512, 2, 2), (256,)]],
    'splitting_large_3block': [[(128, 32, 32), (128, 32, 32), (128, 16, 16), (128, 16, 16)],
                               [(256, 8, 8)] * 4, [(512, 4, 4)] * 4],
    'splitting_large_4block': [[(128, 32, 32)] * 3, [(128, 16, 16), (256, 16, 16), (256, 16, 16)],
                               [(256, 8, 8), (256, 8, 8), (512, 8, 8)], [(512, 4, 4)] * 3],
    'scaling_large': [[(64, 32, 32)] * 2, [(128, 16, 16)] * 2, [(128, 16, 16)] * 2, [(256, 8, 8)] * 2,
                      [(258, 8, 8), (256, 8, 8)], [(512, 4, 4)] * 2, [(512, 4, 4)] * 2, [(512, 4, 4)]],
    'static_gradient_analysis': [[(64, 32, 32)] * 2, [(128, 16, 16)] * 2, [(256, 8, 8)] * 3, [(512, 4, 4)] * 3,
                                 [(512, 2, 2)] * 2, [(512, 2, 2), (1024, 2, 2), (4096,)]],
}
SPEC_TOP = {      # data, batch, T2, β, default model, epochs, lr, T_max, eta_min, (T1, slope, tol) overrides
    'splitting_small': ('cifar10', 128, 20, 0.2, 'splitting_small_1block', 200, 1e-4, 200, 1e-6, None),
    'splitting_small_TOL': ('cifar10', 128, 20, 0.2, 'splitting_small_1block', 100, 3e-4, 100, 1e-6,
                            (1580, 0.65, 1e-6)),
    'splitting_large': ('cifar10', 128, 5, 0.2, 'splitting_large_3block', 200, 5e-5, 200, 1e-6, None),
    'splitting_large_TOL': ('cifar10', 128, 5, 0.2, 'splitting_large_6block', 100, 5e-5, 100, 1e-6,
                            (1580, 0.55, 1e-4)),
    'scaling_small': ('cifar100', 256, 5, 0.2, 'scaling_small', 200, 5e-5, 200, 5e-7, None),
    'scaling_large': ('cifar100', 256, 5, 0.2, 'scaling_large', 100, 2e-5, 100, 1e-7, None),
    'gdd': ('cifar10', 2, 20, 0.02, 'static_gradient_analysis', 300, 5e-5, 100, 3e-6, None),
}


@pytest.mark.parametrize('model', sorted(SPEC_MODELS))
def test_model_configs_match_the_spec_table(model):
    """Every model of §B5.2: T1, slope, V, layers per block, every layer's shape, the readout; BN and Conv_1's bias
    (none with a BN), GOE kernels (symmetric slices, zero conv biases)."""
    run, cfg, _ = nest2024.resolve(['--config-name=splitting_small', f'model={model}'])
    T1, slope, V, bs, last, readout_in = SPEC_MODELS[model]
    assert (run.T1, run.slope, run.V, run.asynchronous, run.tol) == (T1, slope, V, True, None)
    chain = nest2024.build_chain(run, 'cpu')
    assert [len(b.state_shapes()) for b in chain.blocks] == bs
    assert chain.blocks[-1].state_shapes()[-1] == last and chain.blocks[-1].readout.in_features == readout_in
    if model in SPEC_SHAPES:
        assert [b.state_shapes() for b in chain.blocks] == SPEC_SHAPES[model]
    for b in chain.blocks:
        assert (b.synapses[0].bias is None) == (b.bn is not None)
        assert b.bn is None or not b.bn.affine
        w = b.synapses[1].weight if b.ncv > 1 else b.synapses[0].weight
        assert torch.equal(w, w.transpose(-1, -2))
    small = [b.bn is not None for b in chain.blocks]
    if model.startswith('splitting_small'):            # BN only at block 1's input; clamp_last on non-final blocks
        assert small == [True] + [False] * (len(bs) - 1)
        assert [b.clamp_last for b in chain.blocks] == [True] * (len(bs) - 1) + [False]
    else:
        assert all(small) and not any(b.clamp_last for b in chain.blocks)


@pytest.mark.parametrize('name', sorted(SPEC_TOP))
def test_top_level_configs_match_the_spec_table(name):
    run, cfg, _ = nest2024.resolve([f'--config-name={name}'])
    data_, bs, T2, beta, model, epochs, lr, T_max, eta_min, over = SPEC_TOP[name]
    assert (run.dataset, run.batch_size, run.T2, run.beta, run.algorithm) == (data_, bs, T2, beta, 'ep')
    assert {'model': model} in OmegaConf.to_container(OmegaConf.load(os.path.join(nest2024.CONFIG_DIR, f'{name}.yaml'))
                                                      ).get('defaults')
    assert (run.epochs, run.lr, run.T_max, run.eta_min, run.weight_decay) == (epochs, lr, T_max, eta_min, 3e-4)
    if over:
        assert (run.T1, run.slope, run.tol) == over
    run_id, _, _ = nest2024.resolve([f'--config-name={name}', 'algorithm=bptt'])
    assert (run_id.algorithm, run_id.T2) == ('bptt', T2)                 # the top-level T2 applies to ID too
    assert cfg.data.config.num_classes == {'cifar10': 10, 'cifar100': 100}[data_]
    if name == 'gdd':
        assert (run.device, run.seed, cfg.gdd.plotter, run.exp_type) == (-1, 0, 'paper', 'gdd')


@pytest.mark.parametrize('extra', [['model.config.activation=hard_lab99'], ['gdd.plotter=detailed'],
                                   ['algorithm=bpp']])
def test_unknown_activation_name_plotter_or_algorithm_exit_2(extra, capsys):
    code, _ = run_main(['--config-name=gdd', 'data=mnist5k'] + extra)
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith('main.py: error: ') and '\n' not in err, err


@pytest.mark.parametrize('name', ['scaling_small', 'gdd'])
def test_resnet_runs_under_a_published_config(name, small, tmp_path):
    code, folder = run_main([f'--config-name={name}', 'model=resnet18', 'data=mnist5k', '--dry-run',
                             '--results-dir', str(tmp_path)])
    assert code == 0 and ('bars.csv' if name == 'gdd' else 'metrics.csv') in os.listdir(folder)


# ---------------------------------------------------------------------------------------------------------------
# data.download=true (the authors' ImageNet32 archive through gdown; no network here: gdown is faked)

DOWNLOAD = ['--config-name=scaling_small', 'model=scaling_small', 'data=imagenet32', 'data.download=true']


def test_download_without_gdown_names_the_folder_and_the_files(tmp_path, monkeypatch, capsys):
    import sys
    monkeypatch.setitem(sys.modules, 'gdown', None)                 # `import gdown` raises ImportError
    code, _ = run_main(DOWNLOAD + ['--data-root', str(tmp_path / 'd'), '--results-dir', str(tmp_path / 'r')])
    err = capsys.readouterr().err.strip()
    assert code == 2 and '\n' not in err and err.startswith('main.py: error: data.download=true: gdown is not')
    assert str(tmp_path / 'd') in err and 'out_data_train' in err and 'val_data' in err
    assert not (tmp_path / 'd').exists() and not (tmp_path / 'r').exists()             # nothing written


def _fake_gdown(monkeypatch, fail=False):
    """A gdown module whose cached_download records its call and 'extracts' the authors' layout next to the path."""
    import sys
    import types
    calls = []

    def cached_download(url, path=None, hash=None, postprocess=None, **kw):
        calls.append(dict(url=url, path=path, hash=hash, postprocess=postprocess, **kw))
        if fail:
            raise OSError('no network')
        base = os.path.join(os.path.dirname(path), 'imagenet32')
        _fake_batches([os.path.join(base, d, f'train_data_batch_{i}') for d in ('out_data_train', 'out_data_val')
                       for i in range(1, 11)])
        return path
    fake = types.SimpleNamespace(cached_download=cached_download, extractall=object())
    monkeypatch.setitem(sys.modules, 'gdown', fake)
    return fake, calls


def test_download_fetches_the_authors_archive_with_its_hash(tmp_path, monkeypatch):
    from suite import data
    fake, calls = _fake_gdown(monkeypatch)
    x, y = data.load_images('imagenet32', str(tmp_path), True, download=True)
    assert x.shape == (20, 3, 32, 32) and len(calls) == 1
    c = calls[0]
    assert c['url'] == 'https://drive.google.com/uc?id=1XAlD_wshHhGNzaqy8ML-Jk0ZhAm8J5J_'
    assert c['hash'] == 'md5:64cae578416aebe1576729ee93e41c25' and 'md5' not in c      # hash=, not the removed md5=
    assert c['path'] == str(tmp_path / 'imagenet32' / 'imagenet32.tar.gz') and c['postprocess'] is fake.extractall
    data.load_images('imagenet32', str(tmp_path), False, download=True)
    assert len(calls) == 1                                          # present: not fetched again


def test_download_offline_exits_2_with_one_line(tmp_path, monkeypatch, capsys):
    _, calls = _fake_gdown(monkeypatch, fail=True)
    code, _ = run_main(DOWNLOAD + ['--data-root', str(tmp_path / 'd'), '--results-dir', str(tmp_path / 'r')])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(calls) == 1 and '\n' not in err and 'could not be fetched' in err, err
    assert str(tmp_path / 'd' / 'imagenet32') in err and 'train_data_batch_1..10' in err
    assert not (tmp_path / 'd' / 'imagenet32').exists() and not (tmp_path / 'r').exists()


def test_download_is_for_imagenet32_only(capsys):
    code, _ = run_main(['--config-name=splitting_small', 'data=cifar10', 'data.download=true'])
    assert code == 2 and 'only ImageNet32' in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------
# The shared run layer: trainer.train / evaluate / fit, suite.checkpoints, the typed config

RUN = ['--config-name=splitting_small', 'model=splitting_small_3block', 'data=mnist5k', '--seed', '3',
        'trainer.limit_batches=2', 'data.config.batch_size=16', 'model.config.T1=4', 'algorithm.config.T2=2']


@pytest.fixture
def chain_calls(monkeypatch):
    """Records, in order, the calls of forward (free, nudged or the ID re-run), computeGradients and updateWeights
    on any HopfieldChain."""
    log = []
    for name in ('forward', 'computeGradients', 'updateWeights'):
        orig = getattr(HopfieldChain, name)

        def spy(self, *a, _orig=orig, _name=name, **kw):
            if _name == 'forward':
                beta = kw.get('beta', a[3] if len(a) > 3 else 0.0)
                s = kw.get('s', a[1] if len(a) > 1 else None)
                log.append('forward nudged' if isinstance(beta, tuple) or beta != 0.0 else
                           'forward free' if s is None else 'forward re-run')
            else:
                log.append(_name)
            return _orig(self, *a, **kw)
        monkeypatch.setattr(HopfieldChain, name, spy)
    return log


@pytest.mark.parametrize('algorithm', ['ep', 'bptt'])
def test_a_training_minibatch_goes_through_the_chain_methods(algorithm, small, chain_calls, tmp_path):
    """EP: the free phase, then per block (the last first) its ±β nudged phases and its estimate, then one update;
    ID: the free phase, the re-run, one update. The dry run's test batch is one more free phase."""
    code, folder = run_main(RUN + [f'algorithm={algorithm}', '--dry-run', '--results-dir', str(tmp_path)])
    assert code == 0 and folder
    one = (['forward free'] + ['forward nudged', 'computeGradients'] * 3 if algorithm == 'ep' else
           ['forward free', 'forward re-run']) + ['updateWeights']
    assert chain_calls == one + ['forward free'], chain_calls



def test_bp_trains_through_the_same_loop_with_the_same_metrics(small, tmp_path, monkeypatch):
    """algorithm=bp: a dry run, and one epoch on mnist5k, through trainer.train (estimators.Backprop: forward,
    computeGradients, then updateWeights per mini-batch) and trainer.evaluate; metrics.csv has the columns of the
    ep and bptt runs; the checkpoint holds the chain's weights."""
    from netClasses import Feedforward
    from papers.nest2024.nets import FeedforwardChain
    log = []
    for name in ('forward', 'computeGradients', 'updateWeights'):
        cls = FeedforwardChain if name == 'forward' else Feedforward
        orig = getattr(cls, name)

        def spy(self, *a, _orig=orig, _name=name, **kw):
            log.append(_name)
            return _orig(self, *a, **kw)
        monkeypatch.setattr(cls, name, spy)
    real, nets = trainer.train, []

    def train_spy(net, *a, **kw):
        nets.append(net)
        return real(net, *a, **kw)
    monkeypatch.setattr(trainer, 'train', train_spy)
    code, folder = run_main(RUN + ['algorithm=bp', '--dry-run', '--results-dir', str(tmp_path / 'dry')])
    assert code == 0 and log == ['forward', 'computeGradients', 'updateWeights', 'forward'], log
    assert isinstance(nets[0], FeedforwardChain)
    columns = {}
    for alg in ('bp', 'ep', 'bptt'):
        code, folder = run_main(RUN + [f'algorithm={alg}', 'trainer.epochs=1', '--results-dir', str(tmp_path / alg)])
        assert code == 0, alg
        m = pd.read_csv(os.path.join(folder, 'metrics.csv'))
        assert len(m) == 1 and m.notna().all().all(), (alg, m)
        columns[alg] = list(m.columns)
        if alg == 'bp':
            ck = torch.load(os.path.join(folder, 'checkpoint.tar'), weights_only=False)
            assert all(k.startswith('blocks.') for k in ck['model']) and ck['epoch'] == 1
            assert OmegaConf.load(os.path.join(folder, 'config.yaml')).algorithm.name == 'bp'
    assert columns['bp'] == columns['ep'] == columns['bptt'], columns

def _weights_and_metrics(folder):
    ck = torch.load(os.path.join(folder, 'checkpoint.tar'), weights_only=False)
    m = pd.read_csv(os.path.join(folder, 'metrics.csv'))
    return ck, m[[c for c in m.columns if 'seconds' not in c]]


def _assert_same_run(a, b):
    (ca, ma), (cb, mb) = _weights_and_metrics(a), _weights_and_metrics(b)
    assert ca['epoch'] == cb['epoch'] and ca['model'].keys() == cb['model'].keys()
    for k in ca['model']:
        assert torch.equal(ca['model'][k], cb['model'][k]), k
    pd.testing.assert_frame_equal(ma, mb)
    assert ca['best_top1'] == cb['best_top1']


def test_ctrl_c_leaves_a_folder_that_resumes_to_the_uninterrupted_weights(small, tmp_path, monkeypatch, capsys):
    """Interrupted in epoch 2 of 3: exit 130 and one line; the command it prints, as printed, resumes at epoch 2
    and ends at epoch 3 with the weights, metrics and best top-1 of an uninterrupted run."""
    code, full = run_main(RUN + ['trainer.epochs=3', '--results-dir', str(tmp_path / 'a')])
    assert code == 0
    capsys.readouterr()
    real = trainer.train
    _interrupt_in_epoch(monkeypatch, 2)
    code, _ = run_main(RUN + ['trainer.epochs=3', '--results-dir', str(tmp_path / 'b')])
    err = _message(capsys)
    assert code == 130 and 'interrupted in epoch 2' in err and 'checkpoint of epoch 1' in err, err
    monkeypatch.setattr(trainer, 'train', real)                   # (the thinned models stay)
    argv = _printed_command(err)
    assert argv[0] == '--load-path' and len(argv) == 2
    code, resumed = run_main(argv)
    assert code == 0 and resumed == argv[1]
    assert 'resuming at epoch 2 of 3' in capsys.readouterr().out
    _assert_same_run(full, resumed)
    assert list(pd.read_csv(os.path.join(resumed, 'metrics.csv'))['epoch']) == [1, 2, 3]


def test_a_checkpoint_of_the_earlier_layout_resumes(small, tmp_path):
    """checkpoint.tar as the hand-written loop saved it (no format, no config) resumes like today's."""
    code, full = run_main(RUN + ['trainer.epochs=2', '--results-dir', str(tmp_path / 'a')])
    code, part = run_main(RUN + ['trainer.epochs=1', '--results-dir', str(tmp_path / 'b')])
    path = os.path.join(part, 'checkpoint.tar')
    ck = torch.load(path, weights_only=False)
    torch.save({k: ck[k] for k in ('epoch', 'model', 'optimizer', 'scheduler', 'history', 'best_top1', 'generator',
                                   'torch_rng')}, path)
    code, resumed = run_main(['--load-path', part, 'trainer.epochs=2'])
    assert code == 0 and resumed == part
    _assert_same_run(full, part)


@pytest.mark.parametrize('override, key', [
    ('algorithm.config.beta=nan', 'algorithm.config.beta'), ('trainer.lr=nan', 'trainer.lr'),
    ('trainer.lr=inf', 'trainer.lr'), ('trainer.epochs=-1', 'trainer.epochs'),
    ('algorithm.config.T2=0', 'algorithm.config.T2'), ('model.config.V=-1e-3', 'model.config.V'),
    ('trainer.epoch=1', 'trainer.epoch'), ('+trainer.epoch=1', 'trainer.epoch'),
    ('+trainer.foo=1', 'trainer.foo'), ('+algorithm.beta=0.1', 'algorithm.beta'),
    ('model.config.asynchronous=3', 'model.config.asynchronous'),
    ('+model.config.depth=18', 'model.config.depth')])
def test_bad_keys_are_one_line_naming_the_key_and_no_folder(override, key, tmp_path, capsys):
    code, _ = run_main(RUN + [override, '--results-dir', str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith(f'main.py: error: {key}') and '\n' not in err, err
    assert not tmp_path.exists() or not os.listdir(tmp_path)
    if override.lstrip('+').startswith('trainer.epoch='):
        assert err.endswith('(did you mean trainer.epochs?)'), err
    if override == '+algorithm.beta=0.1':
        assert err.endswith('(did you mean algorithm.config.beta?)'), err


@pytest.mark.parametrize('argv', [['--config-name=splitting_small', '--help'],
                                  ['--help', '--config-name=gdd', 'model=resnet18']])
def test_help_lists_the_groups_and_the_typed_keys(argv, capsys):
    code, folder = run_main(argv)
    out = capsys.readouterr().out
    assert code == 0 and folder is None
    for group in ('model/', 'data/', 'algorithm/', 'trainer/'):
        assert group in out
    assert 'splitting_small_3block' in out and 'mnist5k' in out and 'bptt' in out
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.startswith('  ') and ln.split()}
    assert lines['trainer.epochs'].split()[1:] == ['int', '(≥', '1)', '200' if 'gdd' not in argv[1] else '300']
    assert 'float (≠ 0)' in lines['algorithm.config.beta']
    resnet = 'model=resnet18' in argv
    assert ('model.config.depth' in lines) == resnet and ('model.config.blocks' in lines) != resnet
    assert ('gdd.batches' in lines) == resnet
    assert lines['trainer.optimizer.lr'].split()[1:] == ['→', 'trainer.lr'] and 'model.blocks_config.<i>.<key>' in lines


# ---------------------------------------------------------------------------------------------------------------
# The original's configuration schema (trainer.optimizer, trainer.scheduler, model.config.normalization,
# model.blocks_config, data.config.output_size, config.*): translated onto this one (config.from_original)

ORIGINAL_TWINS = [
    (['trainer.optimizer.lr=1e-3'], ['trainer.lr=1e-3']),
    (['trainer.optimizer.name=adam', 'trainer.optimizer.config.weight_decay=0'], ['trainer.weight_decay=0']),
    (['trainer.optimizer={name:Adam,lr:2e-4,config:{weight_decay:1e-4}}'],
     ['trainer.lr=2e-4', 'trainer.weight_decay=1e-4']),
    (['trainer.optimizer={name:adam}'], []),                                   # omitted keys: the config's values
    (['trainer.scheduler.name=CosineAnnealingLR', 'trainer.scheduler.config.T_max=50',
      'trainer.scheduler.config.eta_min=1e-7'], ['trainer.T_max=50', 'trainer.eta_min=1e-7']),
    (['model.config.normalization.weights.name=goe', 'model.config.normalization.weights.config.V=1e-3'],
     ['model.config.V=1e-3']),
    (['model.config.normalization={neurons:{name:zeros},weights:{name:goe,config:{V:2e-4}}}'],
     ['model.config.V=2e-4']),
    (['model.blocks_config[0].norm=-', 'model.blocks_config.1.clamp_last=false'],
     ['model.config.blocks.0.norm=-', 'model.config.blocks.1.clamp_last=false']),
    (['model.blocks_config.2.fc=[128,10]'], ['model.config.blocks.2.fc=[128]']),   # the output layer: the readout
    (['model.blocks_config.0.alphas=[1.0,2.0]'], []),                             # weighted_kaiming's, unused
    (['model.blocks_config=[{channels:[3,32,64],pools:mm,alphas:[1,1]},{channels:[64,64],pools:"-",norm:"-",'
      'fc:[32,10]}]'],
     ['model.config.blocks=[{channels:[3,32,64],pools:mm,norm:bn,fc:[],clamp_last:false},{channels:[64,64],'
      'pools:"-",norm:"-",fc:[32],clamp_last:false}]']),
    (['data.name=CIFAR100', 'data.config.output_size=100'], ['data.name=cifar100', 'data.config.num_classes=100']),
    (['config.seed=7', 'config.device=cpu'], ['trainer.seed=7', 'trainer.device=-1']),
    (['config.device=cuda:1', 'config.logger=null', 'config.save=false'],
     ['trainer.device=1', 'trainer.logger=null', 'trainer.save=false']),
    (['config.seed=0'], ['trainer.seed=null']),                                  # the original: 0 is unseeded
    (['+config={seed:3,device:0}'], ['trainer.seed=3', 'trainer.device=0']),
]


@pytest.mark.parametrize('original, suite', ORIGINAL_TWINS, ids=lambda v: ' '.join(v)[:60])
def test_an_original_override_composes_the_run_of_its_suite_twin(original, suite):
    """Each override of the original's schema gives the typed config and the Run of its suite-style twin; the
    translation is noted for config.yaml (the override as given, the keys it sets)."""
    from papers.nest2024 import config
    base = ['--config-name=splitting_small', 'model=splitting_small_3block', 'data=mnist5k']
    run_o, cfg_o, _ = nest2024.resolve(base + original)
    run_s, cfg_s, _ = nest2024.resolve(base + suite)
    assert config.typed(cfg_o) == config.typed(cfg_s)
    assert dataclasses.replace(run_o, original=[]) == run_s and run_s.original == []
    given = tuple(o.lstrip('+').split('=')[0].split('[')[0] for o in original)
    assert run_o.original and all(line.lstrip('+').startswith(given) for line in run_o.original), run_o.original


def test_gdd_keys_of_the_original():
    run, _, _ = nest2024.resolve(['--config-name=gdd', 'config.plotter=paper', 'config.device=cpu', 'config.seed=5'])
    assert (run.gdd['plotter'], run.device, run.seed) == ('paper', -1, 5)


@pytest.mark.parametrize('override, message', [
    ('trainer.criterion=mse', 'trainer.criterion=mse: not implemented here (supported: cross_entropy'),
    ('trainer.optimizer.name=sgd', 'trainer.optimizer.name=sgd: not implemented here (supported: Adam'),
    ('trainer.scheduler.name=step', 'trainer.scheduler.name=step: not implemented here (supported: CosineAnnealingLR'),
    ('model.config.normalization.weights.name=weighted_kaiming',
     'model.config.normalization.weights.name=weighted_kaiming: not implemented here (supported: goe'),
    ('model.config.normalization.neurons.name=goe', 'neurons.name=goe: not implemented here (supported: zeros'),
    ('config.plotter=detailed', 'config.plotter=detailed: not implemented here (supported: paper'),
    ('data.name=SVHN', 'data.name=svhn: choose one of cifar10'),
    ('trainer.optimizer.lrr=1', 'trainer.optimizer.lrr: no such key (did you mean trainer.optimizer.lr?)'),
    ('model.blocks_config.0.chanels=[3,4]', 'did you mean model.blocks_config.0.channels?'),
    ('model.blocks_config.3.norm=-', 'model.blocks_config.3.norm: no such block (the model has 3 in'),
    ('config.seed=-1', 'config.seed=-1: must be at least 0'),
    ('config.device=gpu', 'config.device=gpu: expected an int'),
    ('trainer.optimizer.lr=nan', 'trainer.optimizer.lr=nan: must be a finite number'),
    ('~trainer.optimizer', 'not supported'),
    ('config.foo=1', "config.foo: no such key of the original's schema")])
def test_an_original_value_without_an_implementation_exits_2_with_one_line(override, message, tmp_path, capsys):
    code, _ = run_main(RUN + [override, '--results-dir', str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith('main.py: error: ') and message in err and '\n' not in err, err
    assert not tmp_path.exists() or not os.listdir(tmp_path)


def test_original_keys_are_recorded_in_config_yaml_and_resume_in_order(small, tmp_path):
    """config.yaml gives the command line, then each original override as given with the keys it set; a resume's
    trainer.lr replaces the saved trainer.optimizer.lr (the same key), and the other way round."""
    argv = RUN + ['trainer.optimizer.lr=1e-3', 'config.seed=0', '--dry-run', '--results-dir', str(tmp_path)]
    code, folder = run_main(argv)
    text = open(os.path.join(folder, 'config.yaml')).read().splitlines()
    assert code == 0 and text[0].startswith('# python main.py ') and 'trainer.optimizer.lr=1e-3' in text[0]
    assert "# the original's trainer.optimizer.lr=1e-3 → trainer.lr=0.001" in text
    assert "# the original's config.seed=0 → trainer.seed=null" in text
    cfg = OmegaConf.load(os.path.join(folder, 'config.yaml'))
    assert cfg.trainer.lr == 1e-3 and cfg.trainer.seed != 0                      # unseeded: a seed drawn, recorded
    assert nest2024.merge_overrides(['trainer.optimizer.lr=1e-3', 'data=mnist5k'], ['trainer.lr=5e-4']) == \
        ['data=mnist5k', 'trainer.lr=5e-4']
    merged = nest2024.merge_overrides(['trainer.lr=5e-4'], ['trainer.optimizer={lr:1e-3}'])
    assert nest2024.compose_config('splitting_small', merged)[0].trainer.lr == 1e-3
    assert nest2024.merge_overrides(['model.config.blocks.2.fc=[1]'], ['model.blocks_config[2].fc=[2,10]']) == \
        ['model.blocks_config[2].fc=[2,10]']

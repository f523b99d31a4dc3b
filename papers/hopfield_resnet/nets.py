"""Hopfield-ResNet13 and VGG5 (Elayedam & Srinivasan 2025; VGG5 of Scellier et al. 2023) as energies over a graph of
layers (ep/graph.py):

    Φ(x, s) = Σ_{(a, b)} ⟨s_b, W_ab ⋆ s_a⟩ + Σ_l ⟨b_l, s_l⟩ − β ℓ(s_out, y)

Hopfield-ResNet13 (32×32 inputs, widths w = 128, 256, 512, 512 times --width): layers 0 input, 1 (w1, 32²),
2 (w1, 16²), 3 (w2, 16²), 4 (w2, 8²), 5 (w3, 8²), 6 (w3, 4²), 7 (w4, 4²), 8 (w4, 2²), 9 output (K); per block
a 3×3 stride-1 conv, a 3×3 stride-2 conv and a 1×1 stride-2 skip between the even layers (0–2–4–6–8), then a dense
head: 13 weighted interactions. VGG5: four 3×3 padding-1 convs each followed by a 2×2 max-pool inside the
interaction, then a dense head: 5 weighted interactions. Biases per channel (per unit on the output) on every free
layer; hidden layers clamped to their activation's box, the output linear.
"""
import math

import torch

from ep import graph
from netClasses import CrossEntropy, SquaredError

NETWORKS = ('hopfieldresnet13', 'vgg5')
WIDTHS = (128, 256, 512, 512)

# initial gain of each weight tensor, in interaction order
GAINS = {'hopfieldresnet13': (0.6, 0.6, 0.7, 0.6, 0.7, 0.6, 0.6, 0.7, 0.6, 0.6, 0.7, 0.6, 0.8),
         'vgg5': (0.4, 0.7, 0.6, 0.3, 0.6)}
N_WEIGHTS = {k: len(v) for k, v in GAINS.items()}
N_BIASES = {'hopfieldresnet13': 9, 'vgg5': 5}


def widths(width):
    """The four widths of the paper times the multiplier (at least one channel)."""
    return [max(1, int(round(w * width))) for w in WIDTHS]


def _layers(shapes, act, generator):
    """Layer 0 the input, the hidden ones boxed by `act` (reluclip: its own c each), the last one linear."""
    out = [graph.Layer('x', shapes[0])]
    for i, shape in enumerate(shapes[1:-1], 1):
        out.append(graph.Layer(f's{i}', shape, graph.activation(act, generator)))
    out.append(graph.Layer('out', shapes[-1]))
    return out


def _biases(shapes, generator):
    """A bias on every free layer (per channel on a map), drawn in ±0.5/√(fan-in of a 3×3 conv from the layer
    below)."""
    out = []
    for l in range(1, len(shapes)):
        b = graph.Bias(l, shapes[l][:1])
        b.init_gain(0.5 / math.sqrt(9 * shapes[l - 1][0]), generator)
        out.append(b)
    return out


def hopfield_resnet13(in_channels=3, n_classes=10, width=1.0, act='relu6', in_size=32, generator=None, gains=None):
    """(layers, couplings, biases) of Hopfield-ResNet13."""
    w1, w2, w3, w4 = widths(width)
    n = in_size
    shapes = [(in_channels, n, n), (w1, n, n), (w1, n // 2, n // 2), (w2, n // 2, n // 2), (w2, n // 4, n // 4),
              (w3, n // 4, n // 4), (w3, n // 8, n // 8), (w4, n // 8, n // 8), (w4, n // 16, n // 16), (n_classes,)]
    C = [s[0] for s in shapes]
    couplings = []
    for a in (0, 2, 4, 6):                                   # block: a → a+1 → a+2, skip a → a+2
        couplings.append(graph.Conv(a, a + 1, C[a], C[a + 1], 3, 1, 1))
        main = graph.Conv(a + 1, a + 2, C[a + 1], C[a + 2], 3, 2, 1)
        skip = graph.Conv(a, a + 2, C[a], C[a + 2], 1, 2, 0)
        # the spec's order: block 1 lists 1→2 before the skip, the later blocks the skip first
        couplings += [main, skip] if a == 0 else [skip, main]
    couplings.append(graph.Dense(8, 9, C[8] * shapes[8][1] * shapes[8][2], n_classes))
    for e, g in zip(couplings, gains or GAINS['hopfieldresnet13']):
        e.init_gain(g, generator)
    return _layers(shapes, act, generator), couplings, _biases(shapes, generator)


def vgg5(in_channels=3, n_classes=10, width=1.0, act='relu6', in_size=32, generator=None, gains=None):
    """(layers, couplings, biases) of VGG5: conv 3×3 padding 1 then 2×2 max-pool, four times, then dense."""
    ws = widths(width)
    shapes = [(in_channels, in_size, in_size)]
    for k, w in enumerate(ws):
        shapes.append((w, in_size >> (k + 1), in_size >> (k + 1)))
    shapes.append((n_classes,))
    couplings = [graph.ConvPool(k, k + 1, shapes[k][0], shapes[k + 1][0], 3, 1, 1) for k in range(4)]
    couplings.append(graph.Dense(4, 5, math.prod(shapes[4]), n_classes))
    for e, g in zip(couplings, gains or GAINS['vgg5']):
        e.init_gain(g, generator)
    return _layers(shapes, act, generator), couplings, _biases(shapes, generator)


BUILDERS = {'hopfieldresnet13': hopfield_resnet13, 'vgg5': vgg5}


def build(network, in_channels=3, n_classes=10, width=1.0, act='relu6', lossfn='MSE', T=120, K=50, beta=0.1,
          in_size=32, generator=None, gains=None):
    """The EnergyGraph of a network name (free phase T steps, nudged phases K steps, cost MSE or CE; `gains` of the
    weight tensors, default the paper's)."""
    layers, couplings, biases = BUILDERS[network](in_channels, n_classes, width, act, in_size, generator, gains)
    cost = SquaredError() if lossfn == 'MSE' else CrossEntropy()
    return graph.EnergyGraph(layers, couplings, biases, T, K, beta, cost)


def pcnn_graph(net, in_size):
    """Laborieux's P_CNN (conv + max-pool synapses, then dense ones; mse, every layer through σ) as an EnergyGraph
    with its weights: the bias of a convolution before a max-pool is a per-channel bias of the pooled layer, since
    P(W ⋆ a + b) = P(W ⋆ a) + b (in_size: the side of its input). The same states and EP estimate (tests/test_graph.py); bench/bench_graph.py times
    both forms."""
    shapes = [(net.ch[0], in_size, in_size)] + net.state_shapes()
    layers = [graph.Layer('x', shapes[0])] + [graph.Layer(f's{k}', sh, net.act) for k, sh in enumerate(shapes[1:], 1)]
    couplings, biases = [], []
    for k, syn in enumerate(net.synapses):
        if k < net.ncv:
            e = graph.ConvPool(k, k + 1, syn.in_channels, syn.out_channels, syn.kernel_size[0], syn.stride[0],
                               syn.padding[0])
        else:
            e = graph.Dense(k, k + 1, syn.in_features, syn.out_features)
        b = graph.Bias(k + 1, syn.bias.shape)
        with torch.no_grad():
            e.weight.copy_(syn.weight)
            b.bias.copy_(syn.bias)
        couplings.append(e)
        biases.append(b)
    return graph.EnergyGraph(layers, couplings, biases, net.T, net.Kmax, net.beta).to(net.synapses[0].weight)

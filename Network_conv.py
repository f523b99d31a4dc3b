"""Binary EP, convolutional (Laydevant et al. 2021): conv + max-pool layers and a fully connected classifier with
binary weights ±α_k (α per output channel for convs, per layer for the classifier), trained by the flip rule of
Network_fc.py. The dynamics, pooling feedback and EP gradient are those of the suite's prototypical conv net
(netClasses.convEP): s ← ρ(∂Φ/∂s), feedback through MaxUnpool + transposed convolution with the forward kernel.

convList is given deepest first, input channels last (e.g. 64 32 1); layersList is the classifier (e.g. 10).
--padding is the padding of every convolution, --kernelSize its size, --Fpool the pooling size and stride.
"""
import torch

from Network_fc import BinaryLayer, BinaryNeurons, BinaryOutput, binarize_
from netClasses import convEP


class Network_conv_bin_W(BinaryOutput, convEP):
    """convEP with binary weights ±α (per output channel for the convs, per layer for the classifier) and
    full-precision hardsigm neurons; states start at 0.5 (no clipping in this class)."""

    def __init__(self, layers_list, conv_list, T, Kmax, beta, activation='hardsigm', kernel_size=5, Fpool=2,
                 padding=0, in_size=28, expand_output=1):
        super().__init__(layers_list, conv_list, T, Kmax, beta, activation, Fconv=kernel_size,
                         Fpool=Fpool, in_size=in_size, P=padding)
        self.expand_output = expand_output
        self.register_buffer('alpha_fc', torch.stack([binarize_(m.weight) for m in self.fc]))
        for k, m in enumerate(self.conv):
            self.register_buffer(f'alpha_conv_{k}', binarize_(m.weight, per_channel=True))

    def init_state(self, batch, device=None, dtype=None):
        return [torch.full_like(si, 0.5) for si in super().init_state(batch, device, dtype)]

    def binary_layers(self):
        """Classifier layers then conv layers; every layer flips on ≥ τ, as the original conv nets."""
        fc = [BinaryLayer(m.weight, m.bias, self.alpha_fc[k], False, 1.0, True) for k, m in enumerate(self.fc)]
        conv = [BinaryLayer(m.weight, m.bias, getattr(self, f'alpha_conv_{k}'), True, 1.0, True)
                for k, m in enumerate(self.conv)]
        return fc + conv


class Network_conv_bin_W_N(BinaryNeurons, Network_conv_bin_W):
    """Binary weights and binary neurons (see Network_fc.BinaryNeurons) on the conv net; biases start at 0.
    The nudge is β (y − s_0) (the original's constant force β (y − ŷ_free) is not reproduced)."""

    def __init__(self, *a, gamma_neur=0.5, rho_threshold=0.5, **kw):
        kw.setdefault('activation', 'heaviside')
        super().__init__(*a, **kw)
        self.gamma_neur, self.theta = gamma_neur, rho_threshold
        with torch.no_grad():
            for m in list(self.fc) + list(self.conv):
                m.bias.zero_()

    def phi(self, x, s, y=None, beta=0.0):
        """Φ of the binary outputs (for the EP update only: H has no useful derivative)."""
        return super().phi(x, [self.post(si) for si in s], y, beta)

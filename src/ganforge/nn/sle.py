"""Skip-layer excitation (SLE) of FastGAN.

Liu et al., "Towards Faster and Stabilized GAN Training for High-fidelity Few-shot Image Synthesis", ICLR 2021,
Sec. 3.1, Eq. 1 and Fig. 3: y = F(x_low, {W_i}) * x_high, where F pools x_low to 4x4, a 4x4 conv (valid, so 1x1
out), LeakyReLU(0.1), a 1x1 conv to x_high's channel count and a sigmoid. The gate is one number per (sample,
channel) of x_high, computed from x_low alone: a channel-wise excitation across a long skip (e.g. 8x8 -> 128x128).
The paper's figure says LeakyReLU(0.1); the official code uses Swish there. Convs are bias-free, as in the code.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SkipLayerExcitation(nn.Module):
    """SLE(low, high) = high * sigmoid(conv1x1(lrelu_0.1(conv4x4(adaptive_avg_pool(low, 4))))), Eq. 1."""

    def __init__(self, low_channels: int, high_channels: int):
        super().__init__()
        self.conv4 = nn.Conv2d(low_channels, high_channels, 4, bias=False)  # 4x4 -> 1x1
        self.conv1 = nn.Conv2d(high_channels, high_channels, 1, bias=False)

    def gate(self, low: torch.Tensor) -> torch.Tensor:
        """The (B, C_high, 1, 1) factor in (0, 1), a function of `low` only."""
        pooled = F.adaptive_avg_pool2d(low, 4)  # (B, C_low, 4, 4)
        return torch.sigmoid(self.conv1(F.leaky_relu(self.conv4(pooled), 0.1)))

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        return high * self.gate(low)

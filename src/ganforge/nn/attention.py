"""SAGAN's self-attention block ("Self-Attention Generative Adversarial Networks", Zhang et al., ICML 2019, Sec. 3),
in the form of the BigGAN / StudioGAN reference code: theta, phi: 1x1 convs C -> C/8; g: 1x1 conv C -> C/2; phi and g
max-pooled 2x2 (so each of the HW queries attends over HW/4 keys); o: 1x1 conv C/2 -> C; no biases.
beta = softmax_keys(theta^T phi); output x + gamma * o(g beta^T), with the scalar gamma initialised to 0 (the block
starts as the identity and learns how much non-local evidence to add). Spectral norm is applied by the architecture.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GanforgeError


class SelfAttention(nn.Module):
    """x + gamma * o(g(x) softmax(theta(x)^T phi(x))^T); needs even H, W. Below 8 (2) channels the query (value) size
    is 1 rather than C/8 (C/2), so tiny test models work."""

    def __init__(self, channels: int):
        super().__init__()
        if channels < 1:
            raise GanforgeError(f"self-attention: needs at least 1 channel, got {channels}")
        qk, val = max(1, channels // 8), max(1, channels // 2)
        self.theta = nn.Conv2d(channels, qk, 1, bias=False)
        self.phi = nn.Conv2d(channels, qk, 1, bias=False)
        self.g = nn.Conv2d(channels, val, 1, bias=False)
        self.o = nn.Conv2d(val, channels, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(()))

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """(B, HW, HW/4): for each query position, its softmax weights over the pooled key positions."""
        theta = self.theta(x).flatten(2)  # (B, C/8, HW)
        phi = F.max_pool2d(self.phi(x), 2).flatten(2)  # (B, C/8, HW/4)
        return torch.softmax(theta.transpose(1, 2) @ phi, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        if h % 2 or w % 2:
            raise GanforgeError(f"self-attention: needs even feature-map sides (2x2 max-pool), got {h}x{w}")
        beta = self.attention(x)
        g = F.max_pool2d(self.g(x), 2).flatten(2)  # (B, C/2, HW/4)
        out = (g @ beta.transpose(1, 2)).view(b, -1, h, w)  # (B, C/2, H, W)
        return x + self.gamma * self.o(out)

"""Residual blocks of the SNGAN / WGAN-GP ResNet generator and discriminator.

"Improved Training of Wasserstein GANs" (Gulrajani et al., 2017, Appendix F) introduced the ResNet GAN;
"Spectral Normalization for Generative Adversarial Networks" (Miyato et al., 2018, Appendix B.4, Fig. 8) fixed the
form used here. G blocks take labels through their norm layers (`norm(x, y)`), so any G conditioning fits.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..conditioning.base import GConditioning
from ..nn.fused_resample import conv_pool, up_conv


class GBlock(nn.Module):
    """norm -> ReLU -> up x2 -> conv3x3 -> norm -> ReLU -> conv3x3, plus conv1x1(up(x)) shortcut."""

    def __init__(self, in_ch: int, out_ch: int, g_cond: GConditioning):
        super().__init__()
        self.norm1 = g_cond.norm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm2 = g_cond.norm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.shortcut = nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = up_conv(torch.relu(self.norm1(x, y)), self.conv1)  # up then conv, as one conv (nn/fused_resample.py)
        h = self.conv2(torch.relu(self.norm2(h, y)))
        return h + up_conv(x, self.shortcut)  # (B, out_ch, 2H, 2W)


class DBlock(nn.Module):
    """ReLU -> conv3x3 -> ReLU -> conv3x3 [-> avgpool], plus [conv1x1 -> avgpool] shortcut."""

    def __init__(self, in_ch: int, out_ch: int, down: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, in_ch, 3, padding=1)  # hidden width = in_ch, as in SNGAN
        self.conv2 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.shortcut = nn.Conv2d(in_ch, out_ch, 1) if (down or in_ch != out_ch) else None
        self.down = down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv1(torch.relu(x)))
        if not self.down:
            return self.conv2(h) + (x if self.shortcut is None else self.shortcut(x))
        s = F.avg_pool2d(x, 2) if self.shortcut is None else conv_pool(x, self.shortcut)
        return conv_pool(h, self.conv2) + s  # conv then pool, as one conv (nn/fused_resample.py)


class OptimizedDBlock(nn.Module):
    """D's first block (no ReLU on the image): conv3x3 -> ReLU -> conv3x3 -> avgpool, plus avgpool -> conv1x1."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.shortcut = nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = conv_pool(torch.relu(self.conv1(x)), self.conv2)
        return h + conv_pool(x, self.shortcut)  # (B, out_ch, H/2, W/2)

"""Residual blocks of BigGAN and BigGAN-deep ("Large Scale GAN Training for High Fidelity Natural Image Synthesis",
Brock et al., ICLR 2019, Appendix B, Fig. 15 and Fig. 16), in the form of the authors' BigGAN-PyTorch code.

- BigGAN's G block is the SNGAN up block (`resnet_blocks.GBlock`: BN-ReLU-up-conv3x3-BN-ReLU-conv3x3, 1x1 shortcut
  on the upsampled input) with BigGAN's conditional norms; its D block (`BigGANDBlock`) is "wide": the hidden width is
  the block's output width, and only D's first block goes without the pre-activation ReLU.
- BigGAN-deep (Fig. 16) uses bottleneck blocks: 1x1 conv down to width/channel_ratio, two 3x3 convs, 1x1 conv back.
  Its skips have no weights in G (`DeepGBlock`: keep the first out channels of x, Fig. 16 "drop channels") and in D
  only for the new channels (`DeepDBlock`: x joined with a 1x1 conv of x that makes the missing out - in channels).
Norm layers come from the G conditioning (`g_cond.norm2d`) and are called `norm(x, c)`, so any conditioning fits.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..conditioning.base import GConditioning
from ..errors import GanforgeError
from ..nn.fused_resample import conv_pool, up_conv


class BigGANDBlock(nn.Module):
    """[ReLU] -> conv3x3 (in -> out) -> ReLU -> conv3x3 (out -> out) [-> avgpool], plus a 1x1 shortcut when the width or
    size changes. `preact=False` (D's first block, which sees the image) drops the leading ReLU and pools the shortcut
    before its 1x1 conv, as BigGAN-PyTorch's `DBlock(preactivation=False)` does."""

    def __init__(self, in_ch: int, out_ch: int, down: bool, preact: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)  # wide D: hidden width = out_ch
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.shortcut = nn.Conv2d(in_ch, out_ch, 1) if (down or in_ch != out_ch) else None
        self.down, self.preact = down, preact

    def _skip(self, x: torch.Tensor) -> torch.Tensor:
        # BigGAN-PyTorch convolves then pools in pre-activation blocks and pools the image first in D's first block;
        # for a 1x1 conv both orders are the same function, and conv_pool takes the cheaper one (pool, then conv).
        if self.shortcut is None:
            return F.avg_pool2d(x, 2) if self.down else x
        return conv_pool(x, self.shortcut) if self.down else self.shortcut(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(x) if self.preact else x  # out of place: the shortcut needs x itself
        h = torch.relu(self.conv1(h))
        h = conv_pool(h, self.conv2) if self.down else self.conv2(h)  # conv then pool as one conv
        return h + self._skip(x)  # (B, out_ch, H/2, W/2) when down


class DeepGBlock(nn.Module):
    """BigGAN-deep G block: BN-ReLU-conv1x1 (in -> in/r), BN-ReLU-[up]-conv3x3, BN-ReLU-conv3x3, BN-ReLU-conv1x1
    (-> out); the skip is x[:, :out], upsampled with h."""

    def __init__(self, in_ch: int, out_ch: int, g_cond: GConditioning, up: bool, channel_ratio: int = 4):
        super().__init__()
        if out_ch > in_ch:
            raise GanforgeError(f"BigGAN-deep G block: the skip drops channels, so out_ch ({out_ch}) must be <= in_ch "
                                f"({in_ch})")
        hidden = max(1, in_ch // channel_ratio)
        self.in_ch, self.out_ch, self.up = in_ch, out_ch, up
        self.norm1 = g_cond.norm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, hidden, 1)
        self.norm2 = g_cond.norm2d(hidden)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, padding=1)
        self.norm3 = g_cond.norm2d(hidden)
        self.conv3 = nn.Conv2d(hidden, hidden, 3, padding=1)
        self.norm4 = g_cond.norm2d(hidden)
        self.conv4 = nn.Conv2d(hidden, out_ch, 1)

    def forward(self, x: torch.Tensor, c: object = None) -> torch.Tensor:
        h = self.conv1(torch.relu(self.norm1(x, c)))  # (B, in/r, H, W)
        h = torch.relu(self.norm2(h, c))
        skip = x[:, :self.out_ch]  # Fig. 16: drop channels, no weights on the skip
        if self.up:  # up then conv2, as one conv (nn/fused_resample.py)
            h, skip = up_conv(h, self.conv2), F.interpolate(skip, scale_factor=2, mode="nearest")
        else:
            h = self.conv2(h)
        h = self.conv3(torch.relu(self.norm3(h, c)))
        h = self.conv4(torch.relu(self.norm4(h, c)))  # (B, out_ch, 2H, 2W) when up
        return h + skip


class DeepDBlock(nn.Module):
    """BigGAN-deep D block: ReLU-conv1x1 (in -> out/r), ReLU-conv3x3, ReLU-conv3x3, ReLU-[avgpool]-conv1x1 (-> out);
    the skip is [avgpool] x joined with a 1x1 conv of it that adds the missing out - in channels."""

    def __init__(self, in_ch: int, out_ch: int, down: bool, channel_ratio: int = 4):
        super().__init__()
        if out_ch < in_ch:
            raise GanforgeError(f"BigGAN-deep D block: the skip pads channels, so out_ch ({out_ch}) must be >= in_ch "
                                f"({in_ch})")
        hidden = max(1, out_ch // channel_ratio)
        self.down = down
        self.conv1 = nn.Conv2d(in_ch, hidden, 1)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, padding=1)
        self.conv3 = nn.Conv2d(hidden, hidden, 3, padding=1)
        self.conv4 = nn.Conv2d(hidden, out_ch, 1)
        self.extra = nn.Conv2d(in_ch, out_ch - in_ch, 1) if out_ch > in_ch else None  # the new channels only

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(torch.relu(x))
        h = self.conv3(torch.relu(self.conv2(torch.relu(h))))
        h = torch.relu(h)
        if self.down:
            h, x = F.avg_pool2d(h, 2), F.avg_pool2d(x, 2)
        skip = x if self.extra is None else torch.cat([x, self.extra(x)], dim=1)  # (B, out_ch, ...)
        return self.conv4(h) + skip

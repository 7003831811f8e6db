"""BigGAN-deep ("Large Scale GAN Training for High Fidelity Natural Image Synthesis", Brock et al., ICLR 2019,
Appendix B, Table 8 / Fig. 16), as in the authors' BigGAN-PyTorch `BigGANdeep.py`.

Differences from BigGAN (`models/biggan.py`, whose width tables, attention placement, init and SN this reuses):
- bottleneck residual blocks (`biggan_blocks.DeepGBlock` / `DeepDBlock`): 1x1 conv to width / channel_ratio (4), two
  3x3 convs, 1x1 conv back; `g_depth` / `d_depth` (2) blocks per resolution;
- G's skips drop channels (x[:, :out]); only the last block of each G stage upsamples and narrows. D's skips keep x
  and add a 1x1 conv of it for the extra channels; only the first block of each D stage downsamples and widens;
- D starts with a 3x3 conv from the image to the first width, so every D block is pre-activated;
- no hierarchical split: the full z joined with the shared class embedding feeds the input layer and every block's
  norms (conditioning g=shared with hier: false; z 128, embedding 128 -> cBN input 256).
D's stages run from the input conv's width through the table's next widths (64 px: ch -> 2, 4, 8, 16 ch), halving at
every stage (at 32 px and below as BigGAN's: 32 -> 16 -> 8 -> 8).
"""
from __future__ import annotations

from functools import partial

from torch import nn

from ..conditioning.base import GConditioning
from ..registries import ARCHITECTURES
from .base import ArchPair
from .biggan import (BigGANDiscriminator, BigGANGenerator, attention_sides, biggan_layout, d_sides, finish,
                     g_sides)
from .biggan_blocks import DeepDBlock, DeepGBlock
from .layout import check_positive


def _g_stage(in_ch: int, out_ch: int, g_cond: GConditioning, depth: int, ratio: int) -> list[nn.Module]:
    """One G resolution: depth - 1 blocks at in_ch, then one that upsamples and drops to out_ch."""
    return [DeepGBlock(in_ch, in_ch if j < depth - 1 else out_ch, g_cond, up=j == depth - 1, channel_ratio=ratio)
            for j in range(depth)]


def _d_stage(in_ch: int, out_ch: int, down: bool, depth: int, ratio: int) -> list[nn.Module]:
    """One D resolution: a block that [downsamples and] widens to out_ch, then depth - 1 blocks at out_ch."""
    return [DeepDBlock(in_ch if j == 0 else out_ch, out_ch, down=down and j == 0, channel_ratio=ratio)
            for j in range(depth)]


@ARCHITECTURES.register("biggan-deep")
def biggan_deep(*, img_shape: tuple, num_classes: int, g_cond: GConditioning, z_dim: int = 128, g_ch: int = 128,
                d_ch: int = 128, g_depth: int = 2, d_depth: int = 2, channel_ratio: int = 4, g_sn: bool = True,
                d_sn: bool = True, init: str = "ortho", attn_res: int | list[int] | None = None) -> ArchPair:
    """BigGAN-deep (Brock et al. 2019): bottleneck residual blocks, 2 per resolution, channel-dropping skips.

    Args:
        z_dim: latent size (BigGAN-deep: 128, given whole to every block with conditioning g=shared hier: false).
        g_ch: G's base width `ch` (BigGAN-deep: 128); widths are ch x BigGAN's multipliers.
        d_ch: D's base width `ch` (BigGAN-deep: 128).
        g_depth: G blocks per resolution (BigGAN-deep: 2).
        d_depth: D blocks per resolution (BigGAN-deep: 2).
        channel_ratio: bottleneck reduction of the 1x1 convs (BigGAN-deep: 4).
        g_sn: spectral norm on G's conv / linear layers.
        d_sn: spectral norm on D's layers.
        init: weight init scheme (ortho, normal, xavier, default); BigGAN-deep: ortho.
        attn_res: feature-map side(s) after which G and D get a self-attention block (default: 64, or half the image
            side below 128 px; 0 for none).
    """
    check_positive("biggan-deep", z_dim=z_dim, g_ch=g_ch, d_ch=d_ch, g_depth=g_depth, d_depth=d_depth,
                   channel_ratio=channel_ratio)
    layout = biggan_layout(img_shape, "biggan-deep", g_ch, d_ch)
    widths = layout.d_widths  # input conv's width, then each stage's
    sides = d_sides(img_shape, layout, len(widths) - 1)
    attn = attention_sides("biggan-deep", attn_res, img_shape, g_sides(layout), sides)
    G = BigGANGenerator(tuple(img_shape), num_classes, g_cond, layout, z_dim,
                        partial(_g_stage, depth=g_depth, ratio=channel_ratio), attn)
    stages = [_d_stage(a, b, i < layout.d_downs, d_depth, channel_ratio)
              for i, (a, b) in enumerate(zip(widths[:-1], widths[1:]))]
    stem = nn.Conv2d(img_shape[0], widths[0], 3, padding=1)
    D = BigGANDiscriminator(stages, list(widths[1:]), sides, attn, stem=stem)
    return finish("biggan-deep", G, D, g_sn, d_sn, init)

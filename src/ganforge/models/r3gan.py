"""R3GAN: the modern baseline G and D of "The GAN is dead; long live the GAN! A Modern GAN Baseline" (Huang et al.,
NeurIPS 2024, Sec. 4 and Fig. 3; layer facts from the authors' code, `R3GAN/Networks.py`).

A StyleGAN2 stripped of its tricks and rebuilt as a ResNeXt-style ResNet: no normalization layers, no mapping network,
styles, noise or minibatch-std. G = generative basis (a learned h x w tensor scaled per channel by a linear map of
z, Sec. 4 "Stage 2") -> stages, each a transition (1x1 conv if the width changes + [1, 2, 1]-filtered 2x upsampling)
followed by `blocks_per_stage` residual blocks -> a 1x1 conv to the image. D mirrors it: a 1x1 conv from the image,
stages of residual blocks each ended by a transition (2x downsampling + 1x1 conv), and a discriminative basis (an
h x w depthwise conv + linear) that gives the features h; the D head (conditioning.d) turns h into the logit, so the
paper's conditional D (h projected onto a class embedding) is the `projection` head and its unconditional one `linear`.
Blocks: 1x1 expand (x expansion) -> grouped 3x3 (groups of `group_width` channels) -> 1x1 back, biased LeakyReLU(0.2);
fix-up init makes every block the identity at init (`r3gan_blocks.py`). The paper trains it with the relativistic loss
(`loss: relativistic`, its Eq. 2) plus R1 and R2 (Sec. 2.3): see configs/cifar10-r3gan.yaml.

Conditioning in G enters at the input only (the paper concatenates z with a linear class embedding; `concat`'s
one-hot labels into the basis' linear map span the same functions), so conditionings that need norm layers are refused.
"""
from __future__ import annotations

import torch
from torch import nn

from ..conditioning.base import GConditioning
from ..errors import GanforgeError
from ..registries import ARCHITECTURES
from .base import ArchPair, DBackbone, Generator
from .layout import Grid, check_positive, conv_grid
from .r3gan_blocks import (DiscriminativeBasis, DownTransition, GenerativeBasis, ResidualBlock, UpTransition, conv)

ARCH = "r3gan"


def _blocks(width: int, count: int, expansion: int, group_width: int, total: int) -> list[nn.Module]:
    return [ResidualBlock(width, expansion, group_width, total) for _ in range(count)]


class R3GANGenerator(Generator):
    """Generative basis -> stages (transition + residual blocks), coarse to fine -> 1x1 conv to the image."""

    channels_last = True

    def __init__(self, img_shape: tuple[int, int, int], num_classes: int, g_cond: GConditioning, grid: Grid, *,
                 z_dim: int, widths: list[int], blocks_per_stage: int, expansion: int, group_width: int,
                 tanh: bool):
        super().__init__()
        self.z_dim, self.num_classes, self.img_shape = z_dim, num_classes, tuple(img_shape)
        self.g_cond, self.base, self.tanh = g_cond, grid.base, tanh
        self.bounded_output = tanh  # in [-1, 1] only with tanh (the paper's output is linear)
        g_cond.bind(z_dim, num_blocks=len(widths))  # one value per stage; R3GAN reads only G's input vector
        total = len(widths) * blocks_per_stage  # L of the fix-up gain
        self.basis = GenerativeBasis(g_cond.in_features(z_dim), widths[0], grid.base)
        stages = [nn.Sequential(*_blocks(widths[0], blocks_per_stage, expansion, group_width, total))]
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            stages.append(nn.Sequential(UpTransition(c_in, c_out),
                                        *_blocks(c_out, blocks_per_stage, expansion, group_width, total)))
        self.stages = nn.ModuleList(stages)
        self.to_img = conv(widths[-1], img_shape[0], 1)  # the paper's "aggregation" layer

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        x = self.basis(self.g_cond.prepare(z, y).x)  # (B, widths[0], base_h, base_w)
        for stage in self.stages:
            x = stage(x)  # resolution x2 from the second stage on
        x = self.to_img(x)  # (B, C, H, W)
        return torch.tanh(x) if self.tanh else x


class R3GANDiscriminator(DBackbone):
    """1x1 conv from the image -> stages (residual blocks + 2x down transition), fine to coarse -> discriminative
    basis (depthwise conv over the base grid + linear) -> features h (B, widths[0])."""

    channels_last = True

    def __init__(self, img_shape: tuple[int, int, int], grid: Grid, *, widths: list[int], blocks_per_stage: int,
                 expansion: int, group_width: int):
        super().__init__()
        total = len(widths) * blocks_per_stage
        fine_first = widths[::-1]  # D's stage i sees the resolution of G's stage n-1-i, at the same width
        stages = []
        for i, width in enumerate(fine_first):
            layers = [conv(img_shape[0], width, 1)] if i == 0 else []  # the paper's "extraction" layer
            layers += _blocks(width, blocks_per_stage, expansion, group_width, total)
            if i + 1 < len(fine_first):
                layers.append(DownTransition(width, fine_first[i + 1]))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.basis = DiscriminativeBasis(fine_first[-1], grid.base, fine_first[-1])
        self.feature_dim = fine_first[-1]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)  # resolution /2 after every stage but the last
        return self.basis(x)  # (B, feature_dim)

    def taps(self) -> dict[str, nn.Module]:
        return {f"stage{i}": stage for i, stage in enumerate(self.stages)}  # each stage's output map

    def block_list(self) -> list[nn.Module]:
        return [*self.stages, self.basis]  # input side first; the first stage holds the extraction conv


def _stage_widths(ch: int, width_mults: list[float] | None, stages: int, key: str) -> list[int]:
    """Per-stage widths, coarsest first: round(ch * mult), checked to be >= 1."""
    mults = [1.0] * stages if width_mults is None else list(width_mults)
    if len(mults) != stages:
        raise GanforgeError(f"architecture {ARCH!r}: option width_mults needs one factor per stage ({stages} at this "
                            f"resolution, coarsest first), got {len(mults)}: {mults}")
    widths = [round(ch * m) for m in mults]
    if not all(m > 0 for m in mults) or min(widths) < 1:
        raise GanforgeError(f"architecture {ARCH!r}: option width_mults must give every stage >= 1 channel "
                            f"({key} x factor), got factors {mults} -> widths {widths}")
    return widths


def _check_groups(widths: list[int], expansion: int, group_width: int, key: str) -> None:
    """Every stage's expanded width must split into whole groups of group_width channels (or be one narrower group)."""
    for i, width in enumerate(widths):
        wide = width * expansion
        if wide % min(group_width, wide):
            raise GanforgeError(f"architecture {ARCH!r}: option group_width={group_width} must divide every stage's "
                                f"expanded width ({key} stage {i}: width {width} x expansion {expansion} = {wide})")


@ARCHITECTURES.register(ARCH)
def r3gan(*, img_shape: tuple, num_classes: int, g_cond: GConditioning, z_dim: int = 64, g_ch: int = 768,
          d_ch: int = 768, width_mults: list[float] | None = None, blocks_per_stage: int = 2, expansion: int = 2,
          group_width: int = 16, tanh: bool = True) -> ArchPair:
    """R3GAN (Huang et al. 2024): norm-free ResNeXt G/D, generative / discriminative basis, fix-up init; any conv size.

    Args:
        z_dim: latent size (64 in every paper preset).
        g_ch: G's width (CIFAR-10: 768 at every stage).
        d_ch: D's width (CIFAR-10: 768).
        width_mults: per-stage width factors of g_ch / d_ch, coarsest stage first (one per resolution from the base
            grid up, D mirrored); null: every stage at full width. FFHQ-64 in the paper: [1, 1, 1, 1, 0.5].
        blocks_per_stage: residual blocks per resolution (2).
        expansion: width factor inside a block (the 1x1 expand; 2).
        group_width: channels per group of the grouped 3x3 conv (16: CIFAR-10's cardinality 96 at 768 x 2).
        tanh: tanh on G's output; the paper's output is linear (false), metrics clamp to [-1, 1].
    """
    check_positive(ARCH, z_dim=z_dim, g_ch=g_ch, d_ch=d_ch, blocks_per_stage=blocks_per_stage, expansion=expansion,
                   group_width=group_width)
    if getattr(g_cond, "labels_in_norms", False):
        raise GanforgeError(f"architecture {ARCH!r}: this G conditioning ({type(g_cond).__name__}) enters through "
                            "norm layers, which R3GAN has none of (labels enter at G's input); use conditioning "
                            "g=concat")
    grid = conv_grid(tuple(img_shape), ARCH)
    stages = grid.steps + 1
    g_widths = _stage_widths(g_ch, width_mults, stages, "g_ch")
    d_widths = _stage_widths(d_ch, width_mults, stages, "d_ch")
    _check_groups(g_widths, expansion, group_width, "G")
    _check_groups(d_widths, expansion, group_width, "D")
    shape = tuple(img_shape)
    G = R3GANGenerator(shape, num_classes, g_cond, grid, z_dim=z_dim, widths=g_widths,
                       blocks_per_stage=blocks_per_stage, expansion=expansion, group_width=group_width, tanh=tanh)
    D = R3GANDiscriminator(shape, grid, widths=d_widths, blocks_per_stage=blocks_per_stage, expansion=expansion,
                           group_width=group_width)
    D.spectral_norm = False  # the paper uses none; heads follow (projection / linear without SN)
    return ArchPair(G, D)

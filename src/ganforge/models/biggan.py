"""BigGAN ("Large Scale GAN Training for High Fidelity Natural Image Synthesis", Brock et al., ICLR 2019).

Architecture of Appendix B (Table 4, Fig. 15) as in the authors' BigGAN-PyTorch code (`BigGAN.py`): G maps its input
through a linear layer to a 4x4 grid, residual up blocks (`resnet_blocks.GBlock`) with conditional BatchNorm, then
BN-ReLU-conv3x3-tanh; D is a stack of wide residual down blocks (`biggan_blocks.BigGANDBlock`; the first without the
pre-activation ReLU), ReLU and global sum pooling -> h. Labels enter G through the G conditioning (BigGAN's own is
conditioning g=shared: one shared class embedding and hierarchical z chunks feeding every block's norms, skip-z)
and D through its head (BigGAN's: conditioning d=projection), so any conditioning method plugs in. One
self-attention block (SAGAN's, `nn/attention.py`) sits after the G block and after the first D block whose output has
the side `attn_res`. Orthogonal init (Sec. 4 / App. B) and spectral norm in G and D with eps 1e-6 (the reference's
`--SN_eps 1e-6`; StudioGAN's `snconv2d`).

Widths are `ch` times a multiplier per block boundary, from BigGAN-PyTorch's `G_arch` / `D_arch` (512 px from
StudioGAN's `big_resnet.py`), chosen by the number k of doublings from the base grid:
  k = 4 (64 px)  G 16,16,8,4,2         D 1,2,4,8,16          (D: k down blocks, then 1 plain block)
  k = 5 (128 px) G 16,16,8,4,2,1       D 1,2,4,8,16,16
  k = 6 (256 px) G 16,16,8,8,4,2,1     D 1,2,4,8,8,16,16
  k = 7 (512 px) G 16,16,8,8,4,2,1,1   D 1,1,2,4,8,8,16,16
  k <= 3 (32 px and below) every width 4: G k blocks; D max(1, k-1) down blocks, then 2 plain (32 px: 32->16->8->8->8)
The base grid comes from `layout.conv_grid` (4..7 on the smaller side), so 48, 28 or non-square 16x32 images work too.
Note: StudioGAN's 32 px D is 2 x d_conv_dim wide, so its CIFAR-10 `d_conv_dim: 96` is `d_ch: 48` here.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import nn

from ..conditioning.base import GConditioning
from ..errors import GanforgeError
from ..nn.attention import SelfAttention
from ..nn.init import init_weights
from ..nn.spectral_norm import maybe_sn
from ..registries import ARCHITECTURES
from .base import ArchPair, DBackbone, Generator
from .layout import Grid, check_positive, conv_grid
from .biggan_blocks import BigGANDBlock
from .resnet_blocks import GBlock

SN_EPS = 1e-6  # BigGAN-PyTorch launch scripts (--SN_eps 1e-6) and StudioGAN's snconv2d / snlinear
BN_EPS = 1e-4  # G's output BatchNorm (StudioGAN's batchnorm_2d)
# doublings k -> width multipliers at G's block boundaries (k + 1) and of D's blocks / stages
G_MULT = {4: (16, 16, 8, 4, 2), 5: (16, 16, 8, 4, 2, 1), 6: (16, 16, 8, 8, 4, 2, 1), 7: (16, 16, 8, 8, 4, 2, 1, 1)}
D_MULT = {4: (1, 2, 4, 8, 16), 5: (1, 2, 4, 8, 16, 16), 6: (1, 2, 4, 8, 8, 16, 16), 7: (1, 1, 2, 4, 8, 8, 16, 16)}
SMALL_MULT = 4  # 32 px and below: BigGAN-PyTorch's arch[32] (every width 4 ch)


class Layout(NamedTuple):
    grid: Grid  # base grid and number of doublings
    g_widths: tuple[int, ...]  # G's widths at the base grid and after each up stage (k + 1 values)
    d_widths: tuple[int, ...]  # BigGAN: each D block's output width; BigGAN-deep: input conv, then each stage's
    d_downs: int  # how many of D's blocks / stages halve the resolution (the first ones)


def biggan_layout(img_shape: tuple, arch: str, g_ch: int, d_ch: int) -> Layout:
    """The width tables above for this image shape (one-line error for sizes the tables do not cover)."""
    grid = conv_grid(tuple(img_shape), arch)
    k = grid.steps
    if k > max(G_MULT):
        _, h, w = img_shape
        raise GanforgeError(f"architecture {arch!r}: image size {h}x{w} not supported; BigGAN's width tables go up to "
                            f"{max(G_MULT)} doublings of a 4..7 px base grid (512x512)")
    if k in G_MULT:
        return Layout(grid, tuple(g_ch * m for m in G_MULT[k]), tuple(d_ch * m for m in D_MULT[k]), k)
    downs = max(1, k - 1)  # 32 px: 32 -> 16 -> 8, then two blocks at 8x8 (SNGAN / BigGAN-PyTorch arch[32])
    return Layout(grid, (g_ch * SMALL_MULT,) * (k + 1), (d_ch * SMALL_MULT,) * (downs + 2), downs)


def attention_sides(arch: str, attn_res: int | list[int] | None, img_shape: tuple, g_sides: list[int],
                    d_sides: list[int]) -> frozenset[int]:
    """Validated feature-map sides (smaller side) after which self-attention sits.

    None: BigGAN's default, 64 at 128 px and above (Appendix B tables, `--G_attn 64 --D_attn 64`) and half the image
    side below (StudioGAN's CIFAR-10 placement: 16 at 32 px), left out where that side is odd. 0 or []: none.
    """
    side = min(img_shape[1:])
    if attn_res is None:
        default = min(64, side // 2)
        return frozenset() if default % 2 else frozenset([default])
    values = [attn_res] if isinstance(attn_res, int) else list(attn_res)
    values = [v for v in values if v != 0]
    allowed = sorted(set(g_sides) | set(d_sides))
    for v in values:
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise GanforgeError(f"architecture {arch!r} option attn_res: expected feature-map sides (ints), got {v!r}")
        if v % 2:
            raise GanforgeError(f"architecture {arch!r} option attn_res: self-attention max-pools 2x2, so the side "
                                f"must be even, got {v}")
        if v not in allowed:
            raise GanforgeError(f"architecture {arch!r} option attn_res: no G or D block outputs {v} px maps at this "
                                f"image size; choose from {allowed} (0 for none)")
    return frozenset(values)


def g_sides(layout: Layout) -> list[int]:
    """Smaller side of G's maps after each up stage."""
    return [min(layout.grid.base) << (i + 1) for i in range(layout.grid.steps)]


def d_sides(img_shape: tuple, layout: Layout, stages: int) -> list[int]:
    """Smaller side of D's maps after each of its `stages` blocks / stages (the first `d_downs` halve it)."""
    side, out = min(img_shape[1:]), []
    for i in range(stages):
        side = side // 2 if i < layout.d_downs else side
        out.append(side)
    return out


StageFn = Callable[[int, int, GConditioning], list[nn.Module]]  # (in_ch, out_ch, g_cond) -> one up stage's blocks


class BigGANGenerator(Generator):
    """Linear to the base grid, up stages (one block each in BigGAN, g_depth in BigGAN-deep), BN-ReLU-conv3x3-tanh.

    The G conditioning serves one value per up stage: `prepare(z, y).blocks[s]` goes to every block of stage s (with
    g=shared hier: stage s's norms see [e(y), z chunk s+1] and the linear layer sees z chunk 0 only).
    """

    channels_last = True

    def __init__(self, img_shape: tuple[int, int, int], num_classes: int, g_cond: GConditioning, layout: Layout,
                 z_dim: int, stage: StageFn, attn: frozenset[int] = frozenset()):
        super().__init__()
        self.z_dim, self.num_classes, self.img_shape = z_dim, num_classes, tuple(img_shape)
        self.g_cond = g_cond
        self.base = layout.grid.base
        widths = layout.g_widths
        g_cond.bind(z_dim, num_blocks=layout.grid.steps)  # one conditioning value per up stage
        self.linear = nn.Linear(g_cond.in_features(z_dim), widths[0] * self.base[0] * self.base[1])
        blocks: list[nn.Module] = []
        attention: dict[str, nn.Module] = {}
        self.stage_of: list[int] = []  # block index -> its stage (which conditioning value it reads)
        for s, (side, a, b) in enumerate(zip(g_sides(layout), widths[:-1], widths[1:])):
            for block in stage(a, b, g_cond):
                blocks.append(block)
                self.stage_of.append(s)
            if side in attn:
                attention[str(len(blocks))] = SelfAttention(b)  # after the stage's last block (1-based index)
        self.blocks = nn.ModuleList(blocks)
        self.attn = nn.ModuleDict(attention)
        self.norm = nn.BatchNorm2d(widths[-1], eps=BN_EPS)  # unconditional (BigGAN-PyTorch's output_layer)
        self.to_img = nn.Conv2d(widths[-1], img_shape[0], 3, padding=1)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        inp = self.g_cond.prepare(z, y)
        x = self.linear(inp.x)
        x = x.view(x.shape[0], -1, *self.base)  # (B, widths[0], base_h, base_w)
        for k, (block, s) in enumerate(zip(self.blocks, self.stage_of), start=1):
            x = block(x, inp.blocks[s])
            if str(k) in self.attn:
                x = self.attn[str(k)](x)
        return torch.tanh(self.to_img(torch.relu(self.norm(x))))  # (B, C, H, W)


class BigGANDiscriminator(DBackbone):
    """A sequence of residual down stages (with self-attention where placed), ReLU, global sum pooling -> h."""

    channels_last = True

    def __init__(self, stages: list[list[nn.Module]], widths: list[int], sides: list[int],
                 attn: frozenset[int] = frozenset(), stem: nn.Module | None = None):
        super().__init__()
        modules: list[nn.Module] = [] if stem is None else [stem]
        placed: set[int] = set()
        for blocks, width, side in zip(stages, widths, sides):
            modules += blocks
            if side in attn and side not in placed:  # after the first stage whose output has that side
                modules.append(SelfAttention(width))
                placed.add(side)
        self.blocks = nn.Sequential(*modules)
        self.feature_dim = widths[-1]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.blocks(x))
        return h.sum(dim=(2, 3))  # global sum pooling (SNGAN, BigGAN): (B, feature_dim)

    def taps(self) -> dict[str, nn.Module]:
        return {f"block{i}": block for i, block in enumerate(self.blocks)}  # each block's output

    def block_list(self) -> list[nn.Module]:
        return list(self.blocks)  # [stem,] blocks and attention, input side first; ReLU + sum pooling: no parameters


def finish(name: str, G: nn.Module, D: DBackbone, g_sn: bool, d_sn: bool, init: str) -> ArchPair:
    """Initialize (before SN, so its power iteration starts from the final weights), then spectral-normalize."""
    for net in (G, D):
        init_weights(net, init, where=f"architecture '{name}' option init")  # weight layers only: gamma stays 0
    maybe_sn(G, g_sn, eps=SN_EPS)
    maybe_sn(D, d_sn, eps=SN_EPS)
    D.spectral_norm = d_sn
    return ArchPair(G, D)


def _biggan_stage(in_ch: int, out_ch: int, g_cond: GConditioning) -> list[nn.Module]:
    return [GBlock(in_ch, out_ch, g_cond)]


@ARCHITECTURES.register("biggan")
def biggan(*, img_shape: tuple, num_classes: int, g_cond: GConditioning, z_dim: int = 120, g_ch: int = 96,
           d_ch: int = 96, g_sn: bool = True, d_sn: bool = True, init: str = "ortho",
           attn_res: int | list[int] | None = None) -> ArchPair:
    """BigGAN (Brock et al. 2019): residual G/D with BigGAN-PyTorch's width tables, self-attention, SN in G and D.

    Args:
        z_dim: latent size (BigGAN 128 px: 120, split 6 x 20 by conditioning g=shared with hier).
        g_ch: G's base width `ch` (BigGAN: 96); widths are ch x the table's multipliers.
        d_ch: D's base width `ch` (BigGAN: 96).
        g_sn: spectral norm on G's conv / linear layers (BigGAN: on).
        d_sn: spectral norm on D's layers (BigGAN: on).
        init: weight init scheme (ortho, normal, xavier, default); BigGAN: ortho.
        attn_res: feature-map side(s) after which G and D get a self-attention block (default: 64, or half the image
            side below 128 px; 0 for none).
    """
    check_positive("biggan", z_dim=z_dim, g_ch=g_ch, d_ch=d_ch)
    layout = biggan_layout(img_shape, "biggan", g_ch, d_ch)
    sides = d_sides(img_shape, layout, len(layout.d_widths))
    attn = attention_sides("biggan", attn_res, img_shape, g_sides(layout), sides)
    G = BigGANGenerator(tuple(img_shape), num_classes, g_cond, layout, z_dim, _biggan_stage, attn)
    ins = (img_shape[0],) + layout.d_widths[:-1]
    stages = [[BigGANDBlock(a, b, down=i < layout.d_downs, preact=i > 0)]
              for i, (a, b) in enumerate(zip(ins, layout.d_widths))]
    D = BigGANDiscriminator(stages, list(layout.d_widths), sides, attn)
    return finish("biggan", G, D, g_sn, d_sn, init)

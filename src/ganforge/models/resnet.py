"""SNGAN-style ResNet G and D.

"Spectral Normalization for Generative Adversarial Networks" (Miyato et al., 2018, Appendix B.4) and "cGANs with
Projection Discriminator" (Miyato & Koyama, 2018), after "Improved Training of Wasserstein GANs" (Gulrajani et al.,
2017). G: Linear z -> base grid, k up blocks, BN -> ReLU -> conv3x3 -> tanh. D: optimized block (down), down blocks
to twice the base grid (8x8 for square images), two plain blocks, ReLU, global sum pooling -> features.
At 32px this is exactly SNGAN's CIFAR model (G 4->8->16->32 at 256 wide, D 32->16->8->8->8 at 128 wide).
Widths: `g_ch` / `d_ch` at every resolution up to `full_width_res` (smaller side); each doubling above it halves the
width (at most 3 halvings), so 64-128px models stay affordable.
"""
from __future__ import annotations

import torch
from torch import nn

from ..conditioning.base import GConditioning
from ..nn.init import init_weights
from ..nn.spectral_norm import maybe_sn
from ..registries import ARCHITECTURES
from .base import ArchPair, DBackbone, Generator
from .layout import Grid, check_positive, conv_grid
from .resnet_blocks import DBlock, GBlock, OptimizedDBlock
from ..nn.attention import SelfAttention


def width_at(ch: int, side: int, full_width_res: int) -> int:
    """Channel count at a feature map whose smaller side is `side`: ch, halved per doubling above full_width_res."""
    halvings = 0
    while halvings < 3 and side > full_width_res << halvings:
        halvings += 1
    return max(1, ch >> halvings)


class ResNetGenerator(Generator):
    """Linear to the base grid, up ResBlocks, BN -> ReLU -> conv3x3 -> tanh."""

    channels_last = True

    def __init__(self, img_shape: tuple[int, int, int], num_classes: int, g_cond: GConditioning, grid: Grid,
                 z_dim: int, g_ch: int, full_width_res: int, attn: tuple[int, ...] = ()):
        super().__init__()
        self.z_dim, self.num_classes, self.img_shape = z_dim, num_classes, tuple(img_shape)
        self.g_cond = g_cond
        self.base = grid.base
        side = min(grid.base)
        widths = [width_at(g_ch, side << i, full_width_res) for i in range(grid.steps + 1)]
        g_cond.bind(z_dim, num_blocks=grid.steps)  # one conditioning value per up block
        self.linear = nn.Linear(g_cond.in_features(z_dim), widths[0] * grid.base[0] * grid.base[1])
        self.blocks = nn.ModuleList(GBlock(a, b, g_cond) for a, b in zip(widths[:-1], widths[1:]))
        self.attn = nn.ModuleDict({str(k): SelfAttention(widths[k]) for k in attn})  # after block k (1-based)
        self.norm = nn.BatchNorm2d(widths[-1])  # unconditional, as in SNGAN / BigGAN
        self.to_img = nn.Conv2d(widths[-1], img_shape[0], 3, padding=1)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        inp = self.g_cond.prepare(z, y)
        x = self.linear(inp.x)
        x = x.view(x.shape[0], -1, *self.base)  # (B, g_ch, base_h, base_w)
        for k, (block, c) in enumerate(zip(self.blocks, inp.blocks), start=1):
            x = block(x, c)  # resolution x2
            if str(k) in self.attn:
                x = self.attn[str(k)](x)
        return torch.tanh(self.to_img(torch.relu(self.norm(x))))  # (B, C, H, W)


class ResNetDiscriminator(DBackbone):
    """Optimized block, down blocks to 2x the base grid, two plain blocks, ReLU, global sum pooling."""

    channels_last = True

    def __init__(self, img_shape: tuple[int, int, int], grid: Grid, d_ch: int, full_width_res: int,
                 attn: tuple[int, ...] = ()):
        super().__init__()
        side = min(img_shape[1:]) // 2  # smaller side after the optimized block
        width = width_at(d_ch, side, full_width_res)
        blocks: list[nn.Module] = [OptimizedDBlock(img_shape[0], width)]
        for _ in range(max(0, grid.steps - 2)):
            side //= 2
            blocks.append(DBlock(width, width_at(d_ch, side, full_width_res), down=True))
            width = width_at(d_ch, side, full_width_res)
        blocks += [DBlock(width, width, down=False), DBlock(width, width, down=False)]
        for k in sorted(attn, reverse=True):  # after block k (1-based), at that block's output width
            blocks.insert(k, SelfAttention(blocks[k - 1].conv2.out_channels))
        self.blocks = nn.Sequential(*blocks)
        self.feature_dim = width

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.blocks(x))
        return h.sum(dim=(2, 3))  # global sum pooling (SNGAN): (B, d_ch)

    def taps(self) -> dict[str, nn.Module]:
        return {f"block{i}": block for i, block in enumerate(self.blocks)}  # each block's output

    def block_list(self) -> list[nn.Module]:
        return list(self.blocks)  # optimized block, down blocks, two plain blocks; ReLU + sum pooling: no parameters


@ARCHITECTURES.register("resnet")
def resnet(*, img_shape: tuple, num_classes: int, g_cond: GConditioning, z_dim: int = 128, g_ch: int = 256,
           d_ch: int = 128, g_sn: bool = False, d_sn: bool = True, init: str = "ortho",
           full_width_res: int = 32) -> ArchPair:
    """SNGAN ResNet (Miyato et al. 2018): residual up/down blocks, global sum pooling; any size, non-square too.

    Args:
        z_dim: latent size.
        g_ch: G width (at resolutions up to full_width_res).
        d_ch: D width (at resolutions up to full_width_res).
        g_sn: spectral norm on G's conv/linear layers (SAGAN/BigGAN practice).
        d_sn: spectral norm on D's layers (SNGAN).
        init: weight init scheme (ortho, normal, xavier, default).
        full_width_res: largest resolution (smaller side) at full width; widths halve per doubling above it.
    """
    return build_resnet("resnet", img_shape, num_classes, g_cond, z_dim=z_dim, g_ch=g_ch, d_ch=d_ch, g_sn=g_sn,
                        d_sn=d_sn, init=init, full_width_res=full_width_res)


def build_resnet(name: str, img_shape: tuple, num_classes: int, g_cond: GConditioning, *, z_dim: int, g_ch: int,
                 d_ch: int, g_sn: bool, d_sn: bool, init: str, full_width_res: int, attn_g: tuple[int, ...] = (),
                 attn_d: tuple[int, ...] = ()) -> ArchPair:
    """The ResNet pair of architecture `name` (resnet, sagan), with self-attention after the listed blocks."""
    check_positive(name, z_dim=z_dim, g_ch=g_ch, d_ch=d_ch, full_width_res=full_width_res)
    grid = conv_grid(tuple(img_shape), name)
    G = ResNetGenerator(tuple(img_shape), num_classes, g_cond, grid, z_dim, g_ch, full_width_res, tuple(attn_g))
    D = ResNetDiscriminator(tuple(img_shape), grid, d_ch, full_width_res, tuple(attn_d))
    for net in (G, D):
        init_weights(net, init, where=f"architecture '{name}' option init")  # weight layers only: gamma stays 0
    maybe_sn(G, g_sn)
    maybe_sn(D, d_sn)
    D.spectral_norm = d_sn
    return ArchPair(G, D)

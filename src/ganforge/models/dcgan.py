"""DCGAN: transposed-convolution G and strided-convolution D.

"Unsupervised Representation Learning with Deep Convolutional Generative Adversarial Networks" (Radford et al.,
2016), in the 32px form of the SNGAN / StudioGAN CIFAR baselines ("Spectral Normalization for Generative
Adversarial Networks", Miyato et al., 2018, Table 3 "standard CNN"):
G: Linear z -> (base_h, base_w, 8ch; 2^k ch when k < 3) -> norm -> ReLU, then k x (ConvTranspose 4x4 stride 2 -> norm -> ReLU) halving
the width, then Conv 3x3 -> tanh. D: Conv 3x3 -> LReLU(0.1), then k x (Conv 4x4 stride 2 -> LReLU, Conv 3x3 ->
LReLU) doubling the width (capped at 8ch), flattened to the features. k and the base grid come from the image size
(see `layout.py`: 8px -> k=1, 16px -> 2, 32px -> 3, 64px -> 4; non-square sizes keep their aspect ratio).
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

MAX_MULT = 8  # widest layer = 8 * ch, at the base grid


class DCGANGenerator(Generator):
    """Linear to the base grid, then transposed convs doubling the resolution, conv to the image, tanh."""

    channels_last = True

    def __init__(self, img_shape: tuple[int, int, int], num_classes: int, g_cond: GConditioning, grid: Grid,
                 z_dim: int, g_ch: int):
        super().__init__()
        self.z_dim, self.num_classes, self.img_shape = z_dim, num_classes, tuple(img_shape)
        self.g_cond = g_cond
        self.base = grid.base
        widths = [g_ch * min(MAX_MULT, 2 ** (grid.steps - i)) for i in range(grid.steps + 1)]
        g_cond.bind(z_dim, num_blocks=grid.steps + 1)  # the base grid's norm, then one per transposed conv
        self.linear = nn.Linear(g_cond.in_features(z_dim), widths[0] * grid.base[0] * grid.base[1])
        self.norm0 = g_cond.norm2d(widths[0])
        self.ups = nn.ModuleList(nn.ConvTranspose2d(a, b, 4, stride=2, padding=1, bias=False)
                                 for a, b in zip(widths[:-1], widths[1:]))
        self.norms = nn.ModuleList(g_cond.norm2d(b) for b in widths[1:])
        self.to_img = nn.Conv2d(widths[-1], img_shape[0], 3, padding=1)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        inp = self.g_cond.prepare(z, y)
        x = self.linear(inp.x)
        x = x.view(x.shape[0], -1, *self.base)  # (B, 8ch, base_h, base_w)
        x = torch.relu(self.norm0(x, inp.blocks[0]))
        for up, norm, c in zip(self.ups, self.norms, inp.blocks[1:]):
            x = torch.relu(norm(up(x), c))  # resolution x2, width /2
        return torch.tanh(self.to_img(x))  # (B, C, H, W)


class DCGANDiscriminator(DBackbone):
    """Conv 3x3, then k x (strided conv 4x4, conv 3x3) with LeakyReLU(0.1); flattened features."""

    channels_last = True

    def __init__(self, img_shape: tuple[int, int, int], grid: Grid, d_ch: int):
        super().__init__()
        widths = [d_ch * min(MAX_MULT, 2 ** i) for i in range(grid.steps + 1)]
        layers: list[nn.Module] = [nn.Conv2d(img_shape[0], widths[0], 3, padding=1), nn.LeakyReLU(0.1)]
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(a, a, 4, stride=2, padding=1), nn.LeakyReLU(0.1),  # resolution /2
                       nn.Conv2d(a, b, 3, padding=1), nn.LeakyReLU(0.1)]  # width x2
        self.net = nn.Sequential(*layers, nn.Flatten())
        self.feature_dim = widths[-1] * grid.base[0] * grid.base[1]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, 8ch * base_h * base_w)

    def taps(self) -> dict[str, nn.Module]:
        # the activation after the first conv, then after each resolution level's 3x3 conv
        acts = [m for m in self.net if isinstance(m, nn.LeakyReLU)]
        return {f"block{i}": m for i, m in enumerate([acts[0], *acts[2::2]])}

    def block_list(self) -> list[nn.Module]:
        # the first conv, then each resolution level's (strided conv, conv), with their LeakyReLUs; Flatten is the
        # epilogue. Views (slices) of `net`, so parameter names and checkpoints are unchanged.
        return [self.net[0:2], *(self.net[i:i + 4] for i in range(2, len(self.net) - 1, 4))]


@ARCHITECTURES.register("dcgan")
def dcgan(*, img_shape: tuple, num_classes: int, g_cond: GConditioning, z_dim: int = 100, g_ch: int = 64,
          d_ch: int = 64, d_sn: bool = False, init: str = "normal") -> ArchPair:
    """DCGAN (Radford et al. 2016), 32px CIFAR form; any size b*2^k, b in 4..7, non-square too.

    Args:
        z_dim: latent size.
        g_ch: G width at the image resolution (8x this at the base grid).
        d_ch: D width at the image resolution (up to 8x this at the base grid).
        d_sn: spectral norm on D's layers (SNGAN's "standard CNN").
        init: weight init scheme (ortho, normal, xavier, default); DCGAN uses N(0, 0.02).
    """
    check_positive("dcgan", z_dim=z_dim, g_ch=g_ch, d_ch=d_ch)
    grid = conv_grid(tuple(img_shape), "dcgan")
    G = DCGANGenerator(tuple(img_shape), num_classes, g_cond, grid, z_dim, g_ch)
    D = DCGANDiscriminator(tuple(img_shape), grid, d_ch)
    for net in (G, D):
        init_weights(net, init, where="architecture 'dcgan' option init")
    maybe_sn(D, d_sn)
    D.spectral_norm = d_sn
    return ArchPair(G, D)

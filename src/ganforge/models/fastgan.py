"""FastGAN: a light G with skip-layer excitation and a self-supervised D.

Liu et al., "Towards Faster and Stabilized GAN Training for High-fidelity Few-shot Image Synthesis", ICLR 2021.

From the paper (Sec. 3, Fig. 3/4) and its official code (widths, kernels):
- G: z (B, z_dim, 1, 1) -> ConvTranspose 4x4 -> BN -> GLU (the 4x4 base), then up blocks "nearest x2 -> conv3x3 ->
  BN -> GLU" (the conv makes 2C channels, GLU halves them), then conv3x3 -> tanh. Skip-layer excitation (Eq. 1,
  `nn/sle.py`) gates the map at side 16s by the map at side s: 4->64, 8->128, 16->256 at 256 px.
- D: a conv3x3 + LeakyReLU(0.2) stem, then down blocks "(conv4x4 s2 -> BN -> lrelu -> conv3x3 -> BN -> lrelu) +
  (avgpool2 -> conv1x1 -> BN -> lrelu), averaged" down to 8x8, then conv1x1 -> BN -> lrelu -> conv4x4 (valid).
  Spectral norm on every conv of G and D, N(0, 0.02) init (presets; default ortho), widths from the paper's table
  nfc = {4: 16, 8: 8, 16: 4, 32: 2, 64: 2, 128: 1, 256: 0.5, 512: 0.25, 1024: 0.125} x ngf (g_ch) / ndf (d_ch).
- D is also an auto-encoder on reals (Eq. 2): decoders on D's 8x8 map and on a random quadrant of its 16x16 map
  reconstruct the real image and that quadrant of it. That loss is the registered regularizer `fastgan-recon`
  (objectives/fastgan_recon.py, which owns the decoders); the presets add it. This D exposes the maps it needs as
  taps: "image" (the input D saw, after augmentation: the reconstruction target), "part" (the map at twice the last
  map's size, 16x16 for square power-of-two images; the last map itself when D has no down block) and "last".

Choices of this module (not in the paper):
- Small images. SLE pairs are (s, s * r) with r = min(sle_ratio, image side / base side): 4->16 at 16 px, 4->32 at
  32 px, 4->8 at 8 px; every pair whose high side fits is used (so at 1024 px also 64->1024, which the code omits).
  The widths table is indexed by the side class 4 * 2^k of the k-th doubling, so 28 px (base 7) uses 4 px's widths.
  Non-square images follow the shared layout (models/layout.py): the base grid keeps the aspect ratio.
- Interface. The paper's D outputs a 5x5 logit map (8x8 -> conv4x4) and averages the hinge over it. Here the
  conv4x4 makes `d_ch` channels, averaged over positions into h (B, d_ch); the D head (conditioning.d, linear by
  default) maps h to one logit, so with the linear head D(x) is exactly the mean of a 4x4-conv logit map, but the
  hinge is taken of that mean. D's second branch on a 128 px copy of the image (`rf_small`, `decoder_small`) and D's
  own SLE layers are left out; G's "UpBlockComp" (noise injection + a second conv) is the plain up block here.
- Conditioning. G's BNs come from `g_cond.norm2d` (one conditioning value per block: the init layer is block 0, up
  block i is block i), and G's input is `g_cond.prepare(z, y).x`, so none / concat / cbn / shared all fit.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..conditioning.base import GConditioning
from ..errors import GanforgeError
from ..nn.fused_resample import up_conv
from ..nn.init import init_weights
from ..nn.sle import SkipLayerExcitation
from ..nn.spectral_norm import maybe_sn
from ..registries import ARCHITECTURES
from .base import ArchPair, DBackbone, Generator
from .layout import Grid, check_positive, conv_grid

NAME = "fastgan"
# The official code's width table nfc[side] / ngf, indexed by doubling k: side class 4 * 2^k.
WIDTH_MULT = (16, 8, 4, 2, 2, 1, 0.5, 0.25, 0.125)


def width(ch: int, k: int) -> int:
    """Channel count at the k-th doubling of the base grid (side class 4 * 2^k): ch * nfc multiplier, at least 1."""
    return max(1, int(ch * WIDTH_MULT[min(k, len(WIDTH_MULT) - 1)]))


def sle_pairs(steps: int, base_side: int, img_side: int, ratio: int) -> list[tuple[int, int]]:
    """(low, high) map indices (0 = base) joined by SLE: every pair `gap` doublings apart, gap = log2 min(ratio,
    img_side / base_side)."""
    gap = min(ratio, img_side // base_side).bit_length() - 1
    return [(j, j + gap) for j in range(0, steps - gap + 1)] if gap >= 1 else []


class InitLayer(nn.Module):
    """z (B, F) -> ConvTranspose to the base grid (2C channels) -> BN -> GLU: (B, C, base_h, base_w)."""

    def __init__(self, in_features: int, out_ch: int, base: tuple[int, int], g_cond: GConditioning):
        super().__init__()
        self.conv = nn.ConvTranspose2d(in_features, 2 * out_ch, base, bias=False)
        self.norm = g_cond.norm2d(2 * out_ch)

    def forward(self, x: torch.Tensor, c: object = None) -> torch.Tensor:
        return F.glu(self.norm(self.conv(x[:, :, None, None]), c), dim=1)


class UpBlock(nn.Module):
    """Nearest x2 -> conv3x3 (2C) -> BN -> GLU (C), the paper's up block."""

    def __init__(self, in_ch: int, out_ch: int, g_cond: GConditioning):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, 2 * out_ch, 3, padding=1, bias=False)
        self.norm = g_cond.norm2d(2 * out_ch)

    def forward(self, x: torch.Tensor, c: object = None) -> torch.Tensor:
        return F.glu(self.norm(up_conv(x, self.conv), c), dim=1)  # up then conv, as one conv


class FastGANGenerator(Generator):
    """Init layer, up blocks with skip-layer excitation, conv3x3 -> tanh."""

    channels_last = True

    def __init__(self, img_shape: tuple[int, int, int], num_classes: int, g_cond: GConditioning, grid: Grid,
                 z_dim: int, g_ch: int, sle_ratio: int):
        super().__init__()
        self.z_dim, self.num_classes, self.img_shape = z_dim, num_classes, tuple(img_shape)
        self.g_cond = g_cond
        g_cond.bind(z_dim, num_blocks=grid.steps + 1)  # block 0: the init layer; block i: up block i
        widths = [width(g_ch, k) for k in range(grid.steps + 1)]
        self.init = InitLayer(g_cond.in_features(z_dim), widths[0], grid.base, g_cond)
        self.blocks = nn.ModuleList(UpBlock(a, b, g_cond) for a, b in zip(widths[:-1], widths[1:]))
        pairs = sle_pairs(grid.steps, min(grid.base), min(img_shape[1:]), sle_ratio)
        self.sle_low = {high: low for low, high in pairs}  # high map index -> low map index
        self.sle = nn.ModuleDict({str(high): SkipLayerExcitation(widths[low], widths[high]) for low, high in pairs})
        self.to_img = nn.Conv2d(widths[-1], img_shape[0], 3, padding=1)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        inp = self.g_cond.prepare(z, y)
        x = self.init(inp.x, inp.blocks[0])
        maps = [x]  # maps[k]: the map after k doublings
        for k, block in enumerate(self.blocks, start=1):
            x = block(x, inp.blocks[k])
            if str(k) in self.sle:
                x = self.sle[str(k)](maps[self.sle_low[k]], x)
            maps.append(x)
        return torch.tanh(self.to_img(x))  # (B, C, H, W)


class DownBlock(nn.Module):
    """The paper's DownBlockComp: mean of a strided conv4x4 -> conv3x3 path and an avgpool -> conv1x1 path."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.LeakyReLU(0.2),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.LeakyReLU(0.2))
        self.direct = nn.Sequential(
            nn.AvgPool2d(2), nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch), nn.LeakyReLU(0.2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.main(x) + self.direct(x)) / 2


class FastGANDiscriminator(DBackbone):
    """Stem, down blocks to twice the base grid (8x8), conv1x1 -> BN -> lrelu -> conv4x4, mean over positions."""

    channels_last = True

    def __init__(self, img_shape: tuple[int, int, int], grid: Grid, d_ch: int):
        super().__init__()
        ks = list(range(grid.steps, 0, -1))  # doublings of each D map, image side first, down to k = 1 (8x8)
        self.image = nn.Identity()  # tap: the (augmented) input D saw, the reconstruction target
        self.stem = nn.Sequential(nn.Conv2d(img_shape[0], width(d_ch, ks[0]), 3, padding=1, bias=False),
                                  nn.LeakyReLU(0.2))
        self.downs = nn.ModuleList(DownBlock(width(d_ch, a), width(d_ch, b)) for a, b in zip(ks[:-1], ks[1:]))
        last = width(d_ch, 1)
        self.logits = nn.Sequential(nn.Conv2d(last, width(d_ch, 0), 1, bias=False), nn.BatchNorm2d(width(d_ch, 0)),
                                    nn.LeakyReLU(0.2), nn.Conv2d(width(d_ch, 0), d_ch, 4, bias=False))
        self.feature_dim = d_ch

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(self.image(x))
        for block in self.downs:
            h = block(h)
        return self.logits(h).mean(dim=(2, 3))  # (B, d_ch): the mean of the 4x4-conv "logit" map's features

    def taps(self) -> dict[str, nn.Module]:
        stages = [self.stem, *self.downs]
        return {"image": self.image, "part": stages[-2] if len(stages) > 1 else stages[-1], "last": stages[-1]}

    def block_list(self) -> list[nn.Module]:
        return [self.stem, *self.downs, self.logits]


def _check_ratio(sle_ratio: int) -> None:
    if not isinstance(sle_ratio, int) or isinstance(sle_ratio, bool) or sle_ratio < 2 or sle_ratio & (sle_ratio - 1):
        raise GanforgeError(f"architecture {NAME!r}: option sle_ratio must be a power of two >= 2 (paper: 16), "
                            f"got {sle_ratio!r}")


@ARCHITECTURES.register(NAME)
def fastgan(*, img_shape: tuple, num_classes: int, g_cond: GConditioning, z_dim: int = 256, g_ch: int = 64,
            d_ch: int = 64, sle_ratio: int = 16, g_sn: bool = True, d_sn: bool = True,
            init: str = "ortho") -> ArchPair:
    """FastGAN (Liu et al. 2021): GLU up blocks with skip-layer excitation; add regularizer fastgan-recon for D's
    self-supervised decoders (the presets do). Any image size conv_grid accepts (8, 16, 28, 32, 64, ..., non-square).

    Args:
        z_dim: latent size (paper: 256).
        g_ch: ngf, G's width unit: width at side class s is ngf * {4: 16, 8: 8, 16: 4, 32: 2, 64: 2, 128: 1, ...}.
        d_ch: ndf, D's width unit (same table); also the width of D's features h.
        sle_ratio: side ratio of the maps an SLE joins (paper: 16); capped at image side / base side.
        g_sn: spectral norm on G's convs (official code: on).
        d_sn: spectral norm on D's convs (official code: on).
        init: weight init scheme (default ortho; the official code and the presets: normal, N(0, 0.02)).
    """
    check_positive(NAME, z_dim=z_dim, g_ch=g_ch, d_ch=d_ch)
    _check_ratio(sle_ratio)
    grid = conv_grid(tuple(img_shape), NAME)
    G = FastGANGenerator(tuple(img_shape), num_classes, g_cond, grid, z_dim, g_ch, sle_ratio)
    D = FastGANDiscriminator(tuple(img_shape), grid, d_ch)
    for net in (G, D):
        init_weights(net, init, where=f"architecture {NAME!r} option init")
    maybe_sn(G, g_sn)
    maybe_sn(D, d_sn)
    D.spectral_norm = d_sn
    return ArchPair(G, D)

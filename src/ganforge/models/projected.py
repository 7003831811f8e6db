"""Projected GAN (Sauer, Chitta, Müller, Geiger, "Projected GANs Converge Faster", NeurIPS 2021).

D looks at images through a frozen pretrained feature network and judges them at several scales:

- Feature network. Any backbone of the evaluation registry that names its stages (`pyramid_layers`:
  efficientnet-lite0 blocks.1/2/4/6, resnet50 layer1-4, inception-fid Conv2d_4a/Mixed_5d/6e/7c, the
  (stacked-)digits-classifier's two conv stages), run on a differentiable resize of the image to `input_size`
  (default: the backbone's own protocol size) with the backbone's normalization (metrics/backbones/pyramid.py). The
  paper's best network, EfficientNet-lite0 (timm tf_efficientnet_lite0, its 24/40/112/320-channel levels at /4 to
  /32), is `backbone: efficientnet-lite0`.
- Cross-channel mixing (CCM): a random 1x1 conv per scale to `proj_ch * 2^i` channels (`expand`, as the paper's
  code) or `proj_ch`. Cross-scale mixing (CSM), the paper code's fusion blocks: from the deepest scale up, add the
  deeper output, upsample x2 (bilinear), random 1x1 conv (FeatureMixer). Both random (PyTorch's default init, fixed
  by the run seed) and frozen, like the feature network.
- Multi-scale mini-discriminators: per scale, strided 4x4 conv + BN + LeakyReLU(0.2) blocks down to `end_side`
  (paper: 8), spectral norm on the convs, then a 4x4 conv to `cmap_dim` channels whose every position is one part
  of the image D judges: the D head (conditioning.d, linear by default) maps each part's `cmap_dim` features to a
  logit (a linear head composed with the conv is the paper's conv-to-one-logit; the projection head is its
  per-position class-map projection) and the adversarial loss averages its per-logit values over all parts and
  scales (`adv_parts`, see models/base.py), as the paper's code does.
- Frozen means: `frozen_modules()` lists the feature network and the mixers; the trainer keeps them out of the
  optimizer, never switches their gradients on (so DDP's gradient all-reduce skips them) and never power-steps them.
  Gradients still flow through them to G.

G: the paper uses FastGAN's generator; `generator` names any registered family whose G is used (its D discarded).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..conditioning.base import GConditioning
from ..errors import GanforgeError
from ..metrics.backbones.pyramid import check_pyramid, feature_pyramid
from ..nn.spectral_norm import maybe_sn
from ..registries import ARCHITECTURES, BACKBONES
from .base import ArchPair, DBackbone
from .layout import check_positive

NAME = "projected"


class FeatureMixer(nn.Module):
    """Random, frozen cross-channel (CCM) and cross-scale (CSM) mixing, as the paper's projector.

    CCM: a 1x1 conv per level to `proj_ch * 2^i` channels (`expand`) or `proj_ch`. CSM, from the deepest level up:
    out_i = conv1x1(up2(ccm_i + out_{i+1})) (the deepest adds nothing), bilinear x2 with aligned corners, the conv
    halving the channels when `expand` except on level 0 — so every output is twice its level's resolution and
    out_{i+1} arrives at level i's size and width (a backbone whose stages are not exactly /2 apart, inception-fid,
    gets out_{i+1} resized to level i's size first)."""

    def __init__(self, in_chs: list[int], proj_ch: int, expand: bool):
        super().__init__()
        ccm = [proj_ch * (2 ** i if expand else 1) for i in range(len(in_chs))]
        self.out_chs = [c // 2 if expand and i > 0 else c for i, c in enumerate(ccm)]
        self.ccm = nn.ModuleList(nn.Conv2d(c, o, 1) for c, o in zip(in_chs, ccm))
        self.csm = nn.ModuleList(nn.Conv2d(c, o, 1) for c, o in zip(ccm, self.out_chs))

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        mixed = [ccm(f) for ccm, f in zip(self.ccm, feats)]
        out: list[torch.Tensor] = []
        for i in range(len(mixed) - 1, -1, -1):
            x = mixed[i]
            if out:
                deeper = out[0]
                if deeper.shape[-2:] != x.shape[-2:]:
                    deeper = F.interpolate(deeper, size=x.shape[-2:], mode="bilinear", align_corners=True)
                x = x + deeper
            size = (2 * x.shape[-2], 2 * x.shape[-1])
            out.insert(0, self.csm[i](F.interpolate(x, size=size, mode="bilinear", align_corners=True)))
        return out


WIDTHS = {4: 512, 8: 512, 16: 256, 32: 128, 64: 64, 128: 64, 256: 32, 512: 16, 1024: 8}  # the paper's, at ndf=64


def disc_width(d_ch: int, side: int) -> int:
    """The paper's mini-D width for a block whose output has this side (the nearest tabulated side when it is not a
    power of two, as its code), scaled by d_ch / 64."""
    key = min(WIDTHS, key=lambda k: (abs(k - side), k))
    return max(1, WIDTHS[key] * d_ch // 64)


class MiniDiscriminator(nn.Module):
    """One scale's D: strided conv4x4 -> BN -> LeakyReLU(0.2) blocks down to `end_side`, then a bias-free conv4x4
    to cmap_dim channels: each output position is one judged part."""

    def __init__(self, in_ch: int, hw: tuple[int, int], d_ch: int, end_side: int, cmap_dim: int):
        super().__init__()
        layers: list[nn.Module] = []
        (h, w), c = hw, in_ch
        while min(h, w) > end_side and min(h, w) >= 8:
            h, w = h // 2, w // 2
            out = disc_width(d_ch, min(h, w))
            layers += [nn.Conv2d(c, out, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(out),
                       nn.LeakyReLU(0.2)]
            c = out
        self.down = nn.Sequential(*layers)
        k = min(4, h, w)
        self.out = nn.Conv2d(c, cmap_dim, k, bias=False)
        self.parts = (h - k + 1) * (w - k + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.down(x))  # (B, cmap_dim, ph, pw)


class ProjectedDiscriminator(DBackbone):
    """Frozen feature network + frozen mixing + one mini-D per scale; features are (B, parts * cmap_dim)."""

    channels_last = True

    def __init__(self, img_shape: tuple[int, int, int], net: nn.Module, input_size: tuple[int, int] | None,
                 proj_ch: int, expand: bool, d_ch: int, end_side: int, cmap_dim: int):
        super().__init__()
        self.net, self.input_size = net, input_size
        with torch.no_grad():  # the pyramid's channels, then the mixed maps' sizes, from one blank image
            probe = feature_pyramid(net, torch.zeros(1, *img_shape, device=net.device), input_size)
            self.mixer = FeatureMixer([f.shape[1] for f in probe], proj_ch, expand)
            probe = self.mixer(probe)
        self.discs = nn.ModuleList(MiniDiscriminator(c, tuple(f.shape[-2:]), d_ch, end_side, cmap_dim)
                                   for c, f in zip(self.mixer.out_chs, probe))
        self.mixer.requires_grad_(False)
        self.feature_dim = cmap_dim
        self.parts = sum(d.parts for d in self.discs)
        self.scale_sides = [tuple(f.shape[-2:]) for f in probe]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        mixed = self.mixer(feature_pyramid(self.net, x, self.input_size))
        parts = [d(m).flatten(2).transpose(1, 2) for d, m in zip(self.discs, mixed)]  # (B, p_s, cmap_dim) each
        return torch.cat(parts, dim=1).flatten(1)  # (B, parts * cmap_dim), part-major

    def frozen_modules(self) -> list[nn.Module]:
        return [self.net, self.mixer]

    def taps(self) -> dict[str, nn.Module]:
        return {f"scale{i}": d.down for i, d in enumerate(self.discs)}

    def block_list(self) -> list[nn.Module]:
        raise GanforgeError("architecture 'projected': its D is several mini-discriminators side by side, not a "
                            "chain of blocks, so block-wise methods (freeze-d) do not apply; its feature network is "
                            "frozen already")

    def train(self, mode: bool = True) -> "ProjectedDiscriminator":
        super().train(mode)
        self.mixer.train(False)  # frozen parts stay in eval mode (the backbone does so itself)
        return self


def _size(input_size: int | list | None) -> tuple[int, int] | None:
    if input_size is None:
        return None
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if len(size) != 2 or min(size) < 4:
        raise GanforgeError(f"architecture {NAME!r}: option input_size must be a side >= 4 or [height, width], "
                            f"got {input_size!r}")
    return int(size[0]), int(size[1])


def _generator(name: str, options: dict[str, Any], img_shape: tuple, num_classes: int, g_cond: GConditioning):
    if name == NAME:
        raise GanforgeError(f"architecture {NAME!r}: option generator must name another family, got {name!r}")
    entry = ARCHITECTURES.get(name, f"architecture {NAME!r} option generator")
    wanted = entry.options()
    unknown = sorted(set(options) - set(wanted))
    if unknown:
        raise GanforgeError(f"architecture {NAME!r}: generator {name!r} has no option(s) {', '.join(unknown)}; "
                            f"it takes: {', '.join(wanted)}")
    try:
        pair = ARCHITECTURES.build(name, options, f"architecture {NAME!r} generator",
                                   img_shape=img_shape, num_classes=num_classes, g_cond=g_cond)
    except GanforgeError as err:  # e.g. a size the generator family cannot make: say which family refused
        raise GanforgeError(f"architecture {NAME!r} (generator {name!r}): "
                            f"{str(err).removeprefix(f'architecture {name!r}: ')}") from None
    return pair.G


def _feature_network(backbone: str, weights: str | None):
    where = f"architecture {NAME!r} option backbone"
    check_pyramid(BACKBONES.get(backbone, where).obj, where, backbone)  # before any weights are fetched
    try:
        net = BACKBONES.build(backbone, {}, where, weights=weights, device="cpu")
    except GanforgeError as err:  # e.g. offline: say where the weights go in a run config
        raise GanforgeError(f"{err} (for the Projected GAN D: model.backbone_weights: PATH)") from None
    return net


@ARCHITECTURES.register(NAME)
def projected(*, img_shape: tuple, num_classes: int, g_cond: GConditioning, generator: str = "fastgan",
              z_dim: int = 256, g_ch: int = 64, g_options: dict | None = None, backbone: str = "resnet50",
              backbone_weights: str | None = None, input_size: int | list | None = None, proj_ch: int = 64,
              expand: bool = True, d_ch: int = 64, end_side: int = 8, cmap_dim: int = 64,
              d_sn: bool = True) -> ArchPair:
    """Projected GAN's D (frozen feature network, frozen mixing, multi-scale mini-Ds) with another family's G.

    Args:
        generator: the family whose G is used (paper: fastgan); z_dim and g_ch go to it where it has them,
            g_options holds its other options.
        backbone: feature network, a registered evaluation backbone with pyramid_layers (resnet50,
            efficientnet-lite0, inception-fid, digits-classifier).
        backbone_weights: its weights (None: the backbone's standard file; "random": seeded init, for tests).
        input_size: side (or [h, w]) images are resized to before the feature network (None: its protocol size).
        proj_ch, expand: CCM width of the first scale, doubled per scale when expand (paper: 64, true).
        d_ch: mini-D width unit (paper's ndf: 64); end_side: side the mini-Ds downsample to (paper: 8).
        cmap_dim: width of each part's features the D head reads (paper's cmap_dim: 64).
        d_sn: spectral norm on the mini-Ds' convs (paper: on).
    """
    check_positive(NAME, z_dim=z_dim, g_ch=g_ch, proj_ch=proj_ch, d_ch=d_ch, end_side=end_side, cmap_dim=cmap_dim)
    if len(img_shape) != 3:
        raise GanforgeError(f"architecture {NAME!r}: needs an image shape (C, H, W), got {tuple(img_shape)}; use "
                            f"'mlp' for points")
    g_opts = dict(g_options or {})
    wanted = ARCHITECTURES.get(generator, f"architecture {NAME!r} option generator").options()
    g_opts.update({k: v for k, v in (("z_dim", z_dim), ("g_ch", g_ch)) if k in wanted and k not in g_opts})
    G = _generator(generator, g_opts, tuple(img_shape), num_classes, g_cond)
    net = _feature_network(backbone, backbone_weights)
    D = ProjectedDiscriminator(tuple(img_shape), net, _size(input_size), proj_ch, expand, d_ch, end_side, cmap_dim)
    maybe_sn(D.discs, d_sn)
    D.spectral_norm = d_sn
    return ArchPair(G, D)

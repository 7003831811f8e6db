"""Interfaces every architecture family implements.

- `Generator`: `G(z, y=None) -> x` in model space ((B, C, H, W) images in [-1, 1], or (B, D) points).
- `DBackbone`: `D.features(x) -> h` (B, feature_dim); a D head (conditioning/) turns `(h, y)` into a `DOutput`.
  `taps()` names the intermediate feature maps (input side first) that terms can ask for.
- `Discriminator`: backbone + head, `D(x, y) -> DOutput` (with `h` and, on request, the tapped feature maps).
  Conditioning is therefore written once, not per family.
- An architecture is a registered factory `fn(*, img_shape, num_classes, g_cond, **opts) -> ArchPair`.
- Families declare `channels_last = True` on their G / D classes when channels-last memory format speeds them up
  (convolutional families); the trainer reads that, never the family's name.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ..conditioning.base import DHead, DOutput
from ..errors import GanforgeError


class Generator(nn.Module):
    """Base class: subclasses set `z_dim`, `num_classes`, `img_shape` and implement `forward(z, y)`."""

    z_dim: int
    num_classes: int
    img_shape: tuple[int, ...]  # (C, H, W) for images, (D,) for points
    channels_last: bool = False  # channels-last memory format helps this family (convolutional)

    @property
    def channels(self) -> int:
        return self.img_shape[0]

    @property
    def resolution(self) -> int | tuple[int, int]:
        if len(self.img_shape) != 3:
            return 0
        _, h, w = self.img_shape
        return h if h == w else (h, w)

    def sample_z(self, n: int, generator: torch.Generator | None = None, truncation: float | None = None,
                 device: torch.device | str = "cpu") -> torch.Tensor:
        """Standard normal latents; with `truncation` psi, values with |z| > psi are resampled (BigGAN's trick)."""
        z = torch.randn(n, self.z_dim, generator=generator)
        if truncation is not None:
            if truncation <= 0:
                raise ValueError(f"truncation must be > 0, got {truncation}")
            while True:
                bad = z.abs() > truncation
                if not bad.any():
                    break
                z[bad] = torch.randn(int(bad.sum()), generator=generator)
        return z.to(device)


class DBackbone(nn.Module):
    """Base class: subclasses set `feature_dim` and implement `features(x) -> (B, feature_dim)`."""

    feature_dim: int
    channels_last: bool = False  # channels-last memory format helps this family (convolutional)
    spectral_norm: bool = False  # whether the factory spectrally normalized this D (heads follow it by default)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def taps(self) -> dict[str, nn.Module]:
        """Intermediate feature maps terms may ask for: name -> module whose output is the map, input side first."""
        return {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class Discriminator(nn.Module):
    """A D backbone followed by a D head: `D(x, y) -> DOutput`."""

    def __init__(self, backbone: DBackbone, head: DHead):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, features: bool = False) -> DOutput:
        """D's verdict on `x`; `features=True` also returns every tapped intermediate map as `out.features`."""
        maps: dict[str, torch.Tensor] = {}
        hooks = []
        if features:
            taps = self.backbone.taps()
            if not taps:
                raise GanforgeError(f"{type(self.backbone).__name__} exposes no intermediate features (taps); choose "
                                    f"an architecture whose D does, or a term that does not need them")
            for name, module in taps.items():
                hooks.append(module.register_forward_hook(lambda _m, _i, out, name=name: maps.__setitem__(name, out)))
        try:
            h = self.backbone.features(x)  # (B, F)
        finally:
            for hook in hooks:
                hook.remove()
        out = self.head(h, y)
        out.extras["h"] = h
        if features:
            out.extras["features"] = maps
        return out


class ArchPair(NamedTuple):
    G: Generator
    D: DBackbone

"""Interfaces every architecture family implements.

- `Generator`: `G(z, y=None) -> x` in model space ((B, C, H, W) images in [-1, 1], or (B, D) points).
- `DBackbone`: `D.features(x) -> h` (B, feature_dim); a D head (conditioning/) turns `(h, y)` into a `DOutput`.
  `taps()` names the intermediate feature maps (input side first) that terms can ask for; `block_list()` lists
  the backbone's stages, input side first (block-wise methods such as FreezeD address blocks by index, never by name).
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

from ..checks import check_int, check_positive_float, describe
from ..conditioning.base import DHead, DOutput
from ..errors import GanforgeError


class Generator(nn.Module):
    """Base class: subclasses set `z_dim`, `num_classes`, `img_shape` and implement `forward(z, y)`."""

    z_dim: int
    num_classes: int
    img_shape: tuple[int, ...]  # (C, H, W) for images, (D,) for points
    channels_last: bool = False  # channels-last memory format helps this family (convolutional)
    bounded_output: bool = True  # images come out in [-1, 1] (tanh); False for a linear output (StyleGAN2, R3GAN)

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
        """Standard normal latents; with `truncation` psi, values with |z| > psi are resampled (BigGAN's trick).

        A G conditioning with latent codes (InfoGAN) then writes them over its part of z (`sample_codes`), so
        truncation acts on the noise only.
        """
        n = check_int(n, "n", minimum=0)
        truncation = check_positive_float(truncation, "truncation", allow_none=True)
        z = torch.randn(n, self.z_dim, generator=generator)
        if truncation is not None:
            while True:
                bad = z.abs() > truncation
                if not bad.any():
                    break
                z[bad] = torch.randn(int(bad.sum()), generator=generator)
        sample_codes = getattr(getattr(self, "g_cond", None), "sample_codes", None)
        if sample_codes is not None:
            z = sample_codes(z, generator)
        return z.to(device)

    def __call__(self, *args, **kwargs):
        """`G(z, y)`: check the inputs against this generator (one-line errors naming z or y), then run forward.

        Overriding `__call__` (rather than asking every family to check in `forward`) covers every subclass, plugins'
        included, and leaves `forward`'s signature (e.g. a style G's `truncation_psi`) to the family.
        """
        z = args[0] if args else kwargs.get("z")
        y = args[1] if len(args) > 1 else kwargs.get("y")
        self.check_inputs(z, y)
        return super().__call__(*args, **kwargs)

    @property
    def text_dim(self) -> int:
        """Width of the sentence embeddings a text-conditional G reads (its G conditioning's), 0 otherwise."""
        return int(getattr(getattr(self, "g_cond", None), "text_dim", 0) or 0)

    def check_inputs(self, z: object, y: object) -> None:
        """Raise a one-line GanforgeError when (z, y) cannot be this generator's input."""
        z_dim = getattr(self, "z_dim", None)
        want = f"(N, z_dim={z_dim})"
        if not isinstance(z, torch.Tensor):
            raise GanforgeError(f"z: expected a float tensor of shape {want}, got {describe(z)}")
        if not z.is_floating_point():
            raise GanforgeError(f"z: expected a floating-point tensor of shape {want}, got dtype {z.dtype}")
        if isinstance(z_dim, int) and (z.ndim != 2 or z.shape[1] != z_dim):
            raise GanforgeError(f"z: expected shape {want}, got {tuple(z.shape)}")
        text_dim = self.text_dim
        if text_dim > 0:  # a text-conditional G: y is one sentence embedding per latent
            if not isinstance(y, torch.Tensor) or not y.is_floating_point() or tuple(y.shape) != (z.shape[0], text_dim):
                raise GanforgeError(f"y: this generator is text-conditional; pass sentence embeddings of shape "
                                    f"({z.shape[0]}, {text_dim}) (e.g. `ganforge sample RUN --text ...`), got "
                                    f"{describe(y)}")
            return
        k = getattr(self, "num_classes", 0) or 0
        if k <= 0:
            if y is not None:
                raise GanforgeError(f"y: this generator is unconditional (num_classes=0); pass y=None, got "
                                    f"{describe(y)}")
            return
        if y is None:
            raise GanforgeError(f"y: this generator is class-conditional; pass class labels of shape (N,) in "
                                f"[0, {k - 1}], got None")
        if not isinstance(y, torch.Tensor) or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise GanforgeError(f"y: expected an integer tensor of class labels in [0, {k - 1}], got {describe(y)}")
        if tuple(y.shape) != (z.shape[0],):
            raise GanforgeError(f"y: expected shape ({z.shape[0]},), one label per latent, got {tuple(y.shape)}")
        # The range check reads the labels' values, which for a GPU tensor is a host sync. It runs only where that is
        # free or negligible: labels on the CPU, or G in eval mode (sampling, evaluation, exports: a user's labels, and
        # the output is usually fetched right after anyway). A training-mode forward on the GPU is not synced every
        # step; its labels come from the trainer's own randint(0, K), which cannot leave the range. Compiled graphs
        # skip it too (a data-dependent branch would break the graph).
        cheap = y.device.type == "cpu" or (not self.training and y.device.type != "meta")
        if cheap and y.numel() and not torch.compiler.is_compiling():
            lo, hi = int(y.min()), int(y.max())
            if lo < 0 or hi >= k:
                raise GanforgeError(f"y: class labels must lie in [0, {k - 1}], got values in [{lo}, {hi}]")


class DBackbone(nn.Module):
    """Base class: subclasses set `feature_dim` and implement `features(x) -> (B, feature_dim)`."""

    feature_dim: int
    channels_last: bool = False  # channels-last memory format helps this family (convolutional)
    spectral_norm: bool = False  # whether the factory spectrally normalized this D (heads follow it by default)

    # Logits per image: a backbone with parts > 1 returns (B, parts * feature_dim) features laid out part-major
    # (several positions / scales, e.g. Projected GAN's per-scale patch logits); the head then judges every part.
    parts: int = 1

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def frozen_modules(self) -> list[nn.Module]:
        """Modules training must never change (a pretrained feature network): no optimizer, no gradient."""
        return []

    def taps(self) -> dict[str, nn.Module]:
        """Intermediate feature maps terms may ask for: name -> module whose output is the map, input side first."""
        return {}

    def block_list(self) -> list[nn.Module]:
        """The backbone's stages, input side first: disjoint, each run before the next, together holding every
        parameter except possibly an epilogue run after the last one. Indexed, never matched by name (FreezeD). Not
        called `blocks`: families keep their stages in a `self.blocks` submodule, which a method would shadow."""
        raise GanforgeError(f"{type(self).__name__} does not list its blocks (DBackbone.block_list()), which "
                            f"block-wise methods such as freeze-d need; choose an architecture whose D does (dcgan, "
                            f"resnet, mlp)")

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
        parts = int(getattr(self.backbone, "parts", 1))
        if parts > 1:
            return self._judge_parts(h, y, parts, maps if features else None)
        out = self.head(h, y)
        out.extras["h"] = h
        if features:
            out.extras["features"] = maps
        return out

    def _judge_parts(self, h: torch.Tensor, y: torch.Tensor | None, parts: int,
                     maps: dict[str, torch.Tensor] | None) -> DOutput:
        """The head on each part's features: `adv_parts` (B, parts) logits; `adv`, `h` and per-row extras are their
        means over parts (one value per image, for terms that need one); adversarial losses average over parts."""
        b = h.shape[0]
        h = h.reshape(b * parts, -1)  # part-major rows: image i's parts are rows i * parts ... (i + 1) * parts - 1
        if isinstance(y, torch.Tensor) and y.shape[:1] == (b,):
            y = y.repeat_interleave(parts, dim=0)
        out = self.head(h, y)
        adv_parts = out.adv.reshape(b, parts)
        extras = {k: _part_mean(v, b, parts) for k, v in out.extras.items()}
        result = DOutput(adv_parts.mean(dim=1), **extras, adv_parts=adv_parts, h=h.reshape(b, parts, -1).mean(1))
        if maps is not None:
            result.extras["features"] = maps
        return result


def _part_mean(v, b: int, parts: int):
    """A head extra with one row per part -> its mean per image; anything else unchanged."""
    if isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == b * parts:
        return v.reshape(b, parts, *v.shape[1:]).mean(dim=1)
    return v


class ArchPair(NamedTuple):
    G: Generator
    D: DBackbone

"""DiffAugment: differentiable augmentation applied to both reals and fakes before D.

Zhao et al., "Differentiable Augmentation for Data-Efficient GAN Training", 2020. The same random, differentiable
transformation family T is applied to every image D sees (reals and fakes, in both the D and G phases), so G receives
gradients through T. Policies (Sec. 3 / Appendix of the paper), each drawn independently per sample:
- color: brightness + U(-0.5, 0.5); saturation x U(0, 2) around the per-pixel channel mean; contrast x U(0.5, 1.5)
  around the per-image mean;
- translation: integer shift of up to `translation` x size pixels on each axis, zero-filled;
- cutout: one zeroed rectangle of `cutout` x size, centred at a uniformly random position (clipped at the border).
Ops live in the `OPS` table (name -> function); the policy string picks and orders them. Every random draw comes from
the `SampleRNG` the trainer passes (per-sample numbers keyed by the global batch row).
Images are 4-D (B, C, H, W); any other shape (e.g. 2-D point batches) passes through unchanged.
"""
from __future__ import annotations

from typing import Callable, Mapping

import torch

from ..errors import GanforgeError
from ..registries import AUGMENTATIONS
from ..training.rng import SampleRNG
from .base import Augment


def _uniform(x: torch.Tensor, low: float, high: float, rng: SampleRNG) -> torch.Tensor:
    """One U(low, high) factor per sample, shaped (B, 1, 1, 1) to broadcast over an image batch."""
    return low + (high - low) * rng.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype)


def rand_brightness(x: torch.Tensor, rng: SampleRNG) -> torch.Tensor:
    """Add U(-0.5, 0.5) to every pixel of each image."""
    return x + _uniform(x, -0.5, 0.5, rng)


def rand_saturation(x: torch.Tensor, rng: SampleRNG) -> torch.Tensor:
    """Scale each pixel's deviation from its channel mean by U(0, 2) (a no-op on 1-channel images)."""
    mean = x.mean(dim=1, keepdim=True)  # (B, 1, H, W)
    return (x - mean) * _uniform(x, 0.0, 2.0, rng) + mean


def rand_contrast(x: torch.Tensor, rng: SampleRNG) -> torch.Tensor:
    """Scale each image's deviation from its global mean by U(0.5, 1.5)."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    return (x - mean) * _uniform(x, 0.5, 1.5, rng) + mean


def _max_shift(size: int, ratio: float) -> int:
    return int(size * ratio + 0.5)


def rand_translation(x: torch.Tensor, ratio: float, rng: SampleRNG) -> torch.Tensor:
    """Shift each image by integers (dy, dx), |dy| <= ratio*H, |dx| <= ratio*W (rounded), filling with zeros.

    out[b, :, i, j] = x[b, :, i - dy_b, j - dx_b] where that index is inside the image, else 0.
    """
    b, _, h, w = x.shape
    sh, sw = _max_shift(h, ratio), _max_shift(w, ratio)
    if sh == 0 and sw == 0:
        return x
    dy = rng.randint(-sh, sh + 1, b, 1, 1, device=x.device)
    dx = rng.randint(-sw, sw + 1, b, 1, 1, device=x.device)
    padded = torch.nn.functional.pad(x, (sw, sw, sh, sh))  # zeros around: (B, C, H + 2sh, W + 2sw)
    rows = torch.arange(h, device=x.device).view(1, h, 1) - dy + sh  # (B, H, 1), always inside `padded`
    cols = torch.arange(w, device=x.device).view(1, 1, w) - dx + sw  # (B, 1, W)
    batch = torch.arange(b, device=x.device).view(b, 1, 1)
    # Advanced indexing (differentiable): gather a (B, H, W, C) view, then back to channels-first.
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def rand_cutout(x: torch.Tensor, ratio: float, rng: SampleRNG) -> torch.Tensor:
    """Zero one (ratio*H) x (ratio*W) rectangle per image, centred uniformly at random and clipped at the border."""
    b, _, h, w = x.shape
    ch, cw = _max_shift(h, ratio), _max_shift(w, ratio)
    if ch == 0 or cw == 0:
        return x
    # Centre offsets as in the paper's code: range [0, size + (1 - cut % 2)) so even and odd cuts are symmetric.
    cy = rng.randint(0, h + (1 - ch % 2), b, 1, 1, device=x.device)
    cx = rng.randint(0, w + (1 - cw % 2), b, 1, 1, device=x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1) - (cy - ch // 2)  # (B, H, 1): row index within the cut
    cols = torch.arange(w, device=x.device).view(1, 1, w) - (cx - cw // 2)  # (B, 1, W)
    inside = (rows >= 0) & (rows < ch) & (cols >= 0) & (cols < cw)  # (B, H, W)
    return x * (~inside).unsqueeze(1).to(x.dtype)


# name -> op(x, ratios, rng); `ratios` holds the size options of the policy ("translation", "cutout").
OPS: dict[str, Callable[[torch.Tensor, Mapping[str, float], SampleRNG], torch.Tensor]] = {
    "color": lambda x, r, g: rand_contrast(rand_saturation(rand_brightness(x, g), g), g),
    "brightness": lambda x, r, g: rand_brightness(x, g),
    "saturation": lambda x, r, g: rand_saturation(x, g),
    "contrast": lambda x, r, g: rand_contrast(x, g),
    "translation": lambda x, r, g: rand_translation(x, r["translation"], g),
    "cutout": lambda x, r, g: rand_cutout(x, r["cutout"], g),
}


def parse_policy(policy: str) -> list[str]:
    """Split "color,translation,cutout" into op names, checking each against `OPS`."""
    names = [p.strip() for p in policy.split(",") if p.strip()]
    for name in names:
        if name not in OPS:
            raise GanforgeError(f"augment.policy: unknown DiffAugment op {name!r}; choose from: {', '.join(OPS)}")
    return names


@AUGMENTATIONS.register("diffaugment")
class DiffAugment(Augment):
    """DiffAugment (Zhao 2020): differentiable color, translation and cutout on reals and fakes.

    Args:
        policy: comma-separated ops applied in order; choices: color, brightness, saturation, contrast,
            translation, cutout ("" = identity).
        translation: maximum shift as a fraction of the image size (per axis).
        cutout: side of the cut rectangle as a fraction of the image size (per axis).
    """

    def __init__(self, policy: str = "color,translation,cutout", translation: float = 0.125, cutout: float = 0.5):
        super().__init__()
        if not 0.0 <= translation <= 1.0:
            raise GanforgeError(f"augment.translation: expected a fraction in [0, 1], got {translation!r}")
        if not 0.0 <= cutout <= 1.0:
            raise GanforgeError(f"augment.cutout: expected a fraction in [0, 1], got {cutout!r}")
        self.policy = parse_policy(policy)
        self.ratios = {"translation": translation, "cutout": cutout}

    def forward(self, x: torch.Tensor, rng: SampleRNG | None = None) -> torch.Tensor:
        if x.dim() != 4:  # only image batches (B, C, H, W) are augmented; points and vectors pass through
            return x
        rng = rng or SampleRNG()
        for name in self.policy:
            x = OPS[name](x, self.ratios, rng)
        return x

    def extra_repr(self) -> str:
        policy = ",".join(self.policy)
        return f"policy={policy!r}, translation={self.ratios['translation']}, cutout={self.ratios['cutout']}"

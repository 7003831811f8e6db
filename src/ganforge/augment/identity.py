"""No augmentation: D sees reals and fakes as they are (the standard GAN setup, Goodfellow et al. 2014)."""
from __future__ import annotations

import torch

from ..registries import AUGMENTATIONS
from ..training.rng import SampleRNG
from .base import Augment


@AUGMENTATIONS.register("none")
class NoAugment(Augment):
    """No augmentation (identity)."""

    def forward(self, x: torch.Tensor, rng: SampleRNG | None = None) -> torch.Tensor:
        return x

"""No augmentation: D sees reals and fakes as they are (the standard GAN setup, Goodfellow et al. 2014)."""
from __future__ import annotations

import torch

from ..registries import AUGMENTATIONS
from .base import Augment


@AUGMENTATIONS.register("none")
class NoAugment(Augment):
    """No augmentation (identity)."""

    def __init__(self, num_classes: int = 0):
        super().__init__()
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

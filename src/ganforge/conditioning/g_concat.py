"""Label concatenated to z: G's input is [z, one_hot(y)], norm layers stay plain BatchNorm.

"Conditional Generative Adversarial Nets" (Mirza & Osindero, 2014): y is fed to G as an extra input next to z.
Works with any family, including ones without norm layers (e.g. `mlp` with `g_norm: false`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import GanforgeError
from ..registries import G_CONDITIONING
from .base import GInput
from .g_none import Unconditional


@G_CONDITIONING.register("concat")
class ConcatLabel(Unconditional):
    """Concatenate one-hot labels to z (Mirza & Osindero 2014); plain BatchNorm elsewhere."""

    uses_labels = True
    labels_in_norms = False  # labels enter through the input

    def __init__(self, *, num_classes: int):
        if num_classes < 1:
            raise GanforgeError("G conditioning 'concat': needs a labelled dataset (num_classes >= 1), "
                                f"got num_classes={num_classes}; use 'none' for unlabelled data")
        super().__init__(num_classes=num_classes)

    def in_features(self, z_dim: int) -> int:
        return z_dim + self.num_classes

    def prepare(self, z: torch.Tensor, y: torch.Tensor | None) -> GInput:
        if y is None:
            raise GanforgeError("G conditioning 'concat': needs class labels y, got None")
        x = torch.cat([z, F.one_hot(y, self.num_classes).to(z.dtype)], dim=1)  # (B, z_dim + K)
        return GInput(x, [None] * self.num_blocks)  # plain BatchNorm in the blocks

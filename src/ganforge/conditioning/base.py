"""Conditioning interfaces.

G side: a `GConditioning` object that architectures ask for their norm layers and input transform, so any family
accepts any method. Norm layers it returns are called as `norm(x, y)`; unconditional ones ignore `y`.
D side: a `DHead` maps backbone features `(h, y)` to a `DOutput`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class DOutput:
    """What D says about a batch. `adv`: (B,) adversarial logits; the rest are for conditioning losses."""

    adv: torch.Tensor
    cls_logits: torch.Tensor | None = None  # (B, K) classifier logits (AC-style heads)
    embed: torch.Tensor | None = None  # (B, E) embeddings (contrastive heads)


class GConditioning:
    """How labels enter G. Subclasses override what they change."""

    # True when labels reach G only through the norm layers (cBN): families without norms must then add them.
    labels_in_norms: bool = False

    def __init__(self, *, num_classes: int = 0):
        self.num_classes = num_classes

    def norm1d(self, num_features: int) -> nn.Module:
        """A norm layer over (B, F) features, called as `norm(x, y)`."""
        raise NotImplementedError

    def norm2d(self, num_features: int) -> nn.Module:
        """A norm layer over (B, C, H, W) features, called as `norm(x, y)`."""
        raise NotImplementedError

    def in_features(self, z_dim: int) -> int:
        """Width of G's input after `prepare`."""
        return z_dim

    def prepare(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """G's input vector from z and labels."""
        return z


class DHead(nn.Module):
    """Maps D backbone features (B, F) and labels (B,) to a `DOutput`."""

    def forward(self, h: torch.Tensor, y: torch.Tensor | None = None) -> DOutput:
        raise NotImplementedError

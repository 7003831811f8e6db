"""Differentiable augmentation interface: `aug(x) -> x` on real and fake before D.

Stateful augmentations (ADA) implement `update(stats)` and keep their state in buffers (e.g. `p`), so the module's
`state_dict()` is what the checkpoint saves. Randomness comes from torch's global RNG, which the trainer reseeds from (seed, rank, step).
"""
from __future__ import annotations

import torch
from torch import nn


class Augment(nn.Module):
    """Base class; the default is the identity."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def update(self, stats: dict[str, float]) -> None:
        """Adapt to training statistics (e.g. `d_real_sign`); stateless augmentations ignore this."""

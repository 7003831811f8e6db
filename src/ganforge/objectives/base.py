"""Objective terms: the adversarial loss and every regularizer share one interface.

A term contributes named, already-weighted scalars for the D phase (`d_terms`) and/or the G phase (`g_terms`).
`every` > 1 makes it lazy: the trainer runs it in its own phase every `every` steps, multiplies it by `every`, and
rescales Adam as StyleGAN2 does. `Context` computes D outputs lazily and caches them, so two terms that need D(real)
run D once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from ..conditioning.base import DOutput


class ObjectiveTerm:
    """Base class for losses and regularizers."""

    every: int = 1

    def d_terms(self, ctx: "Context") -> dict[str, torch.Tensor]:
        return {}

    def g_terms(self, ctx: "Context") -> dict[str, torch.Tensor]:
        return {}


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


@dataclass
class Context:
    """One phase's inputs. `phase` is "D" or "G"; in the D phase fakes are generated without grad (detached)."""

    G: nn.Module
    D: nn.Module
    real: torch.Tensor  # (B, ...) model-space reals
    y_real: torch.Tensor | None
    z: torch.Tensor  # (B, z_dim)
    y_fake: torch.Tensor | None
    phase: str = "D"
    augment: Callable[[torch.Tensor], torch.Tensor] = _identity
    _cache: dict = field(default_factory=dict, repr=False)

    def _cached(self, key: str, fn: Callable[[], object]):
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    @property
    def fake(self) -> torch.Tensor:
        """G(z, y_fake); detached in the D phase."""
        def make():
            if self.phase == "D":
                with torch.no_grad():
                    return self.G(self.z, self.y_fake).detach()
            return self.G(self.z, self.y_fake)
        return self._cached("fake", make)

    def D_of(self, x: torch.Tensor, y: torch.Tensor | None) -> DOutput:
        """D on augmented `x` (not cached: for terms that need gradients w.r.t. their own inputs)."""
        return self.D(self.augment(x), y)

    @property
    def d_real(self) -> DOutput:
        return self._cached("d_real", lambda: self.D_of(self.real, self.y_real))

    @property
    def d_fake(self) -> DOutput:
        return self._cached("d_fake", lambda: self.D_of(self.fake, self.y_fake))

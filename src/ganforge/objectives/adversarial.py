"""Shared shape of the adversarial losses: a pair of functions on D's logits.

Every adversarial loss in this package (non-saturating, least squares, hinge, Wasserstein, relativistic) is fully
described by two functions of D's (B,) logits: `d_loss(real, fake)` and `g_loss(fake, real)`. `AdversarialLoss`
turns that pair into an `ObjectiveTerm`, reading the cached `ctx.d_real` / `ctx.d_fake`, so a new loss is two
one-line formulas. Reference for the pairing of phases: Goodfellow et al., "Generative Adversarial Nets", 2014.
"""
from __future__ import annotations

import torch

from .base import Context, ObjectiveTerm


class AdversarialLoss(ObjectiveTerm):
    """Base class: subclasses implement `d_loss` and `g_loss` on logits; outputs are batch means."""

    # Relativistic losses pair each fake logit with a real one, so their G loss needs D(real) too.
    uses_real_in_g: bool = False

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """D's loss from real logits (B,) and fake logits (B,); a scalar."""
        raise NotImplementedError

    def g_loss(self, fake: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        """G's loss from fake logits (B,) (and real logits (B,) for relativistic losses); a scalar."""
        raise NotImplementedError

    def d_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        # Losses are computed in float32 even when D ran under autocast.
        return {"d_loss": self.d_loss(ctx.d_real.adv.float(), ctx.d_fake.adv.float())}

    def g_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        # D(real) is a constant for G: detach it so the G phase keeps no graph through D on reals.
        real = ctx.d_real.adv.detach().float() if self.uses_real_in_g else None
        return {"g_loss": self.g_loss(ctx.d_fake.adv.float(), real)}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({opts})"

"""Shared shape of the adversarial losses: per-sample functions of D's logits, reduced by one hook.

Every adversarial loss in this package (non-saturating, least squares, hinge, Wasserstein, relativistic) is fully
described by per-sample functions of D's (B,) logits: `d_per_sample(real, fake) -> (loss on reals, loss on fakes)`
and `g_per_sample(fake, real) -> loss per fake`. `reduce(values, role)` turns each (B,) vector into a scalar (the
batch mean); a wrapper such as top-k training (Sinha et al. 2020) overrides it to keep only some samples, so it works
with any loss. `AdversarialLoss` turns that into an `ObjectiveTerm`, reading the cached `ctx.d_real` / `ctx.d_fake`.
Reference for the pairing of phases: Goodfellow et al., "Generative Adversarial Nets", 2014.
"""
from __future__ import annotations

import torch

from .base import Context, ObjectiveTerm


class AdversarialLoss(ObjectiveTerm):
    """Base class: subclasses implement `d_per_sample` and `g_per_sample` on logits."""

    # Relativistic losses pair each fake logit with a real one, so their G loss needs D(real) too.
    uses_real_in_g: bool = False

    def d_per_sample(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """D's per-sample losses from real logits (B,) and fake logits (B,): (on reals, on fakes), each (B,)."""
        raise NotImplementedError

    def g_per_sample(self, fake: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        """G's per-sample loss (B,) from fake logits (and real logits for relativistic losses)."""
        raise NotImplementedError

    def reduce(self, values: torch.Tensor, role: str) -> torch.Tensor:
        """A (B,) vector of per-sample losses -> scalar; `role` is "d_real", "d_fake" or "g". Default: the mean."""
        return values.mean()

    def per_sample(self, values: torch.Tensor) -> torch.Tensor:
        """Per-logit losses (B,) or (B, parts) -> per-sample (B,): a D with several logits per image (Projected
        GAN's per-scale patch logits) is trained on the mean of its per-logit losses, as in Sauer et al. 2021."""
        return values.mean(dim=1) if values.dim() == 2 else values

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """D's loss (a scalar) from real and fake logits."""
        on_real, on_fake = self.d_per_sample(real, fake)
        return self.reduce(self.per_sample(on_real), "d_real") + self.reduce(self.per_sample(on_fake), "d_fake")

    def g_loss(self, fake: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        """G's loss (a scalar) from fake logits (and real logits for relativistic losses)."""
        return self.reduce(self.per_sample(self.g_per_sample(fake, real)), "g")

    def d_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        # Losses are computed in float32 even when D ran under autocast.
        return {"d_loss": self.d_loss(_logits(ctx.d_real), _logits(ctx.d_fake))}

    def g_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        # D(real) is a constant for G: detach it so the G phase keeps no graph through D on reals.
        real = _logits(ctx.d_real).detach() if self.uses_real_in_g else None
        return {"g_loss": self.g_loss(_logits(ctx.d_fake), real)}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({opts})"


def _logits(out) -> torch.Tensor:
    """D's logits for the adversarial loss, float32: (B, parts) where D judges parts of each image, else (B,)."""
    parts = out.get("adv_parts")
    return (out.adv if parts is None else parts).float()

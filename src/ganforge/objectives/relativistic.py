"""Relativistic pairing GAN loss (RpGAN).

Jolicoeur-Martineau, "The relativistic discriminator: a key element missing from standard GAN", 2018; the form used
here is R3GAN's: Huang et al., "The GAN is dead; long live the GAN! A Modern GAN Baseline", 2024 (Eq. 2): each fake
is paired with a real of the same batch position, D minimises softplus(-(D(x_r) - D(x_f))) and G minimises
softplus(-(D(x_f) - D(x_r))). R3GAN pairs it with R1 + R2 (the `r1` and `r2` regularizers) every step.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..registries import LOSSES
from .adversarial import AdversarialLoss


def _paired(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pair logits position by position; if the batches differ in size, use the first min(B_a, B_b) of each."""
    n = min(a.shape[0], b.shape[0])
    return a[:n], b[:n]


@LOSSES.register("relativistic")
class RelativisticLoss(AdversarialLoss):
    """Relativistic pairing loss (R3GAN 2024): D softplus(D(x_f)-D(x_r)), G softplus(D(x_r)-D(x_f))."""

    uses_real_in_g = True

    def d_per_sample(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        real, fake = _paired(real, fake)
        # R3GAN Eq. 2, D side: f(-(D(x_r) - D(x_f))) with f = softplus; one loss per (real, fake) pair, counted
        # with the reals (the fake side adds nothing of its own).
        return F.softplus(fake - real), torch.zeros_like(fake)

    def g_per_sample(self, fake: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        if real is None:
            raise ValueError("relativistic G loss needs the real logits")
        fake, real = _paired(fake, real)
        # R3GAN Eq. 2, G side: f(-(D(x_f) - D(x_r))); D(x_r) is a constant for G but still couples the pair.
        return F.softplus(real - fake)

"""Hinge GAN loss.

Lim & Ye, "Geometric GAN", 2017; used by Miyato et al., "Spectral Normalization for Generative Adversarial
Networks", 2018 (Eq. 16-17): D minimises E[relu(1 - D(x))] + E[relu(1 + D(G(z)))], G minimises -E[D(G(z))].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..registries import LOSSES
from .adversarial import AdversarialLoss


@LOSSES.register("hinge")
class HingeLoss(AdversarialLoss):
    """Hinge loss (Lim & Ye 2017, Miyato 2018): D relu(1-D(x_r)) + relu(1+D(x_f)), G -D(x_f)."""

    def d_per_sample(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Miyato 2018, Eq. 16: margins of 1 on both sides.
        return F.relu(1.0 - real), F.relu(1.0 + fake)

    def g_per_sample(self, fake: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        # Miyato 2018, Eq. 17.
        return -fake

"""Wasserstein GAN loss.

Arjovsky et al., "Wasserstein GAN", 2017 (Eq. 3): the critic D estimates W(P_r, P_g) as E[D(x_r)] - E[D(x_f)] and
maximises it; G minimises -E[D(x_f)]. The critic must be kept Lipschitz by a regularizer (e.g. `gp`, Gulrajani 2017).
The optional drift term eps * E[D(x_r)^2] is from Karras et al., "Progressive Growing of GANs", 2018 (Sec. A.1,
eps = 0.001 there), which keeps the critic's outputs from drifting away from zero.
"""
from __future__ import annotations

import torch

from ..errors import GanforgeError
from ..registries import LOSSES
from .adversarial import AdversarialLoss


@LOSSES.register("wasserstein")
class WassersteinLoss(AdversarialLoss):
    """Wasserstein loss (Arjovsky 2017): D D(x_f) - D(x_r), G -D(x_f); pair it with the `gp` regularizer.

    Args:
        drift: weight of the drift penalty E[D(x_r)^2] added to D's loss (ProGAN uses 0.001; 0 disables it).
    """

    def __init__(self, drift: float = 0.0):
        if drift < 0:
            raise GanforgeError(f"loss.drift: expected a number >= 0, got {drift!r}")
        self.drift = drift

    def d_per_sample(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Negated critic objective of Eq. 3, plus ProGAN's drift term on the reals.
        return -real + self.drift * real.pow(2), fake

    def g_per_sample(self, fake: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        return -fake

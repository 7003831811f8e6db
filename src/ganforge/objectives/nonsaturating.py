"""Non-saturating logistic GAN loss ("vanilla").

Goodfellow et al., "Generative Adversarial Nets", 2014. D minimises the binary cross-entropy of real vs fake;
G uses the non-saturating variant (maximise log D(G(z)) instead of minimising log(1 - D(G(z)))), written with
softplus on logits: -log sigmoid(t) = softplus(-t).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..registries import LOSSES
from .adversarial import AdversarialLoss


@LOSSES.register("vanilla")
class NonSaturatingLoss(AdversarialLoss):
    """Non-saturating logistic loss (Goodfellow 2014): D softplus(-D(x_r)) + softplus(D(x_f)), G softplus(-D(x_f))."""

    def d_per_sample(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # -log sigmoid(D(x_r)) - log(1 - sigmoid(D(x_f)))  (Eq. 1 of the paper, on logits).
        return F.softplus(-real), F.softplus(fake)

    def g_per_sample(self, fake: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        # -log sigmoid(D(G(z))): the non-saturating generator objective (Sec. 3 of the paper).
        return F.softplus(-fake)

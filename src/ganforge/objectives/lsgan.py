"""Least-squares GAN loss.

Mao et al., "Least Squares Generative Adversarial Networks", 2017. With targets a (fake), b (real) and c (what G
wants D to say about fakes), Eq. 2: D minimises 1/2 E[(D(x) - b)^2] + 1/2 E[(D(G(z)) - a)^2] and G minimises
1/2 E[(D(G(z)) - c)^2]. The paper's default is a = 0, b = c = 1 (Eq. 9).
"""
from __future__ import annotations

import torch

from ..registries import LOSSES
from .adversarial import AdversarialLoss


@LOSSES.register("lsgan")
class LeastSquaresLoss(AdversarialLoss):
    """Least-squares loss (Mao 2017): D 0.5(D(x_r)-1)^2 + 0.5 D(x_f)^2, G 0.5(D(x_f)-1)^2.

    Args:
        real_target: b in the paper, D's target for reals.
        fake_target: a in the paper, D's target for fakes.
        g_target: c in the paper, the value G wants D to give its fakes.
    """

    def __init__(self, real_target: float = 1.0, fake_target: float = 0.0, g_target: float = 1.0):
        self.real_target = real_target
        self.fake_target = fake_target
        self.g_target = g_target

    def d_per_sample(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Eq. 2, D part: 1/2 (D(x) - b)^2 + 1/2 (D(G(z)) - a)^2.
        return 0.5 * (real - self.real_target).pow(2), 0.5 * (fake - self.fake_target).pow(2)

    def g_per_sample(self, fake: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        # Eq. 2, G part: 1/2 (D(G(z)) - c)^2.
        return 0.5 * (fake - self.g_target).pow(2)

"""WGAN-GP gradient penalty.

Gulrajani et al., "Improved Training of Wasserstein GANs", 2017 (Eq. 3, Algorithm 1): on random interpolates
x_hat = t x_r + (1 - t) x_f, t ~ U(0, 1) per sample, penalise lambda (||grad D(x_hat)||_2 - 1)^2 with lambda = 10.
`center` = 0 gives the zero-centred variant (Thanh-Tung et al., "Improving Generalization and Stability of GANs",
2019), which penalises ||grad D(x_hat)||^2.
"""
from __future__ import annotations

import torch

from ..registries import REGULARIZERS
from .base import Context, ObjectiveTerm
from .gradients import check_every, check_nonnegative, input_gradient, interpolates, norms, squared_norms


@REGULARIZERS.register("gp")
class GradientPenalty(ObjectiveTerm):
    """WGAN-GP (Gulrajani 2017): weight * (||grad D(x_hat)|| - center)^2 on real/fake interpolates.

    Args:
        weight: lambda in the paper.
        center: target gradient norm: 1 = two-sided GP (the paper), 0 = zero-centred GP.
        every: apply every `every` steps (lazy regularization; the trainer scales the term by `every`).
    """

    def __init__(self, weight: float = 10.0, center: float = 1.0, every: int = 1):
        self.weight = check_nonnegative(weight, "gp.weight")
        self.center = check_nonnegative(center, "gp.center")
        self.every = check_every(every, "gp")

    def d_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        x_hat, y = interpolates(ctx)  # Algorithm 1, line 5: one t ~ U(0, 1) per sample
        grad = input_gradient(ctx, x_hat, y)  # (B, N) float32
        if self.center == 0:
            penalty = squared_norms(grad)  # zero-centred: (||g|| - 0)^2 without a square root
        else:
            # Eq. 3: (||grad_x_hat D(x_hat)||_2 - 1)^2.
            penalty = (norms(grad) - self.center).pow(2)
        return {"gp": self.weight * penalty.mean()}

    def __repr__(self) -> str:
        return f"GradientPenalty(weight={self.weight}, center={self.center}, every={self.every})"

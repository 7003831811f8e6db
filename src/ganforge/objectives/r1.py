"""R1 and R2 zero-centred gradient penalties.

Mescheder et al., "Which Training Methods for GANs do actually Converge?", 2018 (Eq. 9): R1 = gamma/2 *
E_{x ~ p_data}[||grad_x D(x)||^2]; R2 is the same on generated samples (Eq. 10). Karras et al., "Analyzing and
Improving the Image Quality of StyleGAN", 2020 (Sec. 3.1, lazy regularization) apply R1 only every 16 steps with
the term scaled by 16 — here the trainer does the scaling, so these terms never multiply by `every`. Huang et al.,
"The GAN is dead; long live the GAN!", 2024 (R3GAN) use R1 + R2 every step with the relativistic loss.
"""
from __future__ import annotations

import torch

from ..registries import REGULARIZERS
from .base import Context, ObjectiveTerm
from .gradients import check_every, check_nonnegative, input_gradient, squared_norms


@REGULARIZERS.register("r1")
class R1Penalty(ObjectiveTerm):
    """R1 (Mescheder 2018): gamma/2 * ||grad_x D(x_r)||^2 on reals; every=16 makes it lazy as in StyleGAN2.

    Args:
        gamma: R1 weight (StyleGAN2 uses 10 at 1024px, smaller for small images; scale it roughly with resolution^2).
        every: apply every `every` steps (lazy regularization; the trainer scales the term by `every`).
    """

    name = "r1"

    def __init__(self, gamma: float = 10.0, every: int = 1):
        self.gamma = check_nonnegative(gamma, f"{self.name}.gamma")
        self.every = check_every(every, self.name)

    def inputs(self, ctx: Context) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The samples (and their labels) at which the gradient is penalised: the reals."""
        return ctx.real, ctx.y_real

    def d_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        x, y = self.inputs(ctx)
        # Eq. 9: gamma/2 * E[||grad_x D(x)||^2], taken through the (differentiable) augmentation.
        sq = squared_norms(input_gradient(ctx, x, y))  # (B,) float32
        return {self.name: 0.5 * self.gamma * sq.mean()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(gamma={self.gamma}, every={self.every})"


@REGULARIZERS.register("r2")
class R2Penalty(R1Penalty):
    """R2 (Mescheder 2018): gamma/2 * ||grad_x D(x_f)||^2 on fakes; R3GAN pairs it with r1 and `relativistic`."""

    name = "r2"

    def inputs(self, ctx: Context) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The samples at which the gradient is penalised: the (detached) fakes."""
        return ctx.fake, ctx.y_fake

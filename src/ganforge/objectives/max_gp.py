"""MaxGP: the largest squared gradient norm in the batch, from Lipschitz GANs.

Zhou et al., "Lipschitz Generative Adversarial Nets", ICML 2019. Instead of WGAN-GP's mean of (||grad|| - 1)^2, LGAN
penalises the Lipschitz constant estimated over the batch: on WGAN-GP's interpolates
x_hat_i = t_i x_r + (1 - t_i) x_f (t ~ U(0, 1) per sample),

    R = lambda * max_i ||grad_x D(x_hat_i)||_2^2        (no "- 1"; StudioGAN `cal_maxgrad_penalty`)

with lambda = 10 and the non-saturating ("vanilla") loss in StudioGAN's `LGAN.yaml`. Only the sample attaining the
maximum receives gradient. The maximum is over the *global* batch (the squared norms are gathered over ranks, and the
gradient reaches the rank that holds the maximum), so the term is declared non-decomposable: the maximum of a batch
is not the mean of its accumulation rounds' maxima.
"""
from __future__ import annotations

import torch

from ..registries import REGULARIZERS
from .base import Context, ObjectiveTerm
from .gradients import check_every, check_nonnegative, input_gradient, interpolates, squared_norms


@REGULARIZERS.register("maxgp")
class MaxGradientPenalty(ObjectiveTerm):
    """MaxGP (Zhou 2019, LGAN): weight * max_i ||grad D(x_hat_i)||^2 over real/fake interpolates of the batch.

    Args:
        weight: lambda (10 in StudioGAN's LGAN config).
        every: apply every `every` D steps (lazy regularization; the trainer scales the term by `every`).
    """

    decomposable = False  # a batch maximum

    def __init__(self, weight: float = 10.0, every: int = 1):
        self.weight = check_nonnegative(weight, "maxgp.weight")
        self.every = check_every(every, "maxgp")

    def d_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        x_hat, y = interpolates(ctx)
        sq = squared_norms(input_gradient(ctx, x_hat, y))  # (B,) float32
        return {"maxgp": self.weight * ctx.all_gather(sq).max()}

    def __repr__(self) -> str:
        return f"MaxGradientPenalty(weight={self.weight}, every={self.every})"

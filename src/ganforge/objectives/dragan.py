"""DRAGAN: a gradient penalty at noisy perturbations of the real data.

Kodali et al., "On Convergence and Stability of GANs", 2017. D's gradient norm is pushed toward 1 in a neighbourhood
of the data manifold, where the paper locates the sharp gradients of mode collapse (not, as in WGAN-GP, on lines
between reals and fakes). The perturbation is the one of the reference implementations (StudioGAN
`cal_dra_penalty`, compare_gan `DRAGAN.py`):

    x_p   = x + c * std(x) * u,    u ~ U[0, 1)^d   (std over the whole batch tensor, c = 0.5)
    x_hat = x + a * (x_p - x),     a ~ U[0, 1) per sample
    R     = lambda * mean_i (||grad D(x_hat_i)||_2 - 1)^2,   lambda = 10 (StudioGAN `WGAN-DRA.yaml`)

The reference noise is one-sided (u >= 0, not zero-mean), so every perturbation points into the positive orthant;
`noise: two_sided` draws u ~ U[-1, 1) instead (zero-mean, the same maximum size). std is the population standard
deviation (ddof 0) of the *global* batch: all ranks' reals are gathered for it, so N ranks compute what one process
does. Because that std is a statistic of the whole batch, the term is not a mean of per-sample terms and is declared
non-decomposable (`train.accumulate > 1` is refused rather than silently using each round's own std).
"""
from __future__ import annotations

from typing import Literal

import torch

from ..errors import GanforgeError
from ..registries import REGULARIZERS
from .base import Context, ObjectiveTerm
from .gradients import check_every, check_nonnegative, input_gradient, norms


@REGULARIZERS.register("dragan")
class DRAGANPenalty(ObjectiveTerm):
    """DRAGAN (Kodali 2017): weight * (||grad D(x_hat)|| - 1)^2 at x_hat = x + a*c*std(x)*u near the reals.

    Args:
        weight: lambda (10 in StudioGAN's WGAN-DRA config).
        scale: c, the perturbation size in units of the batch's standard deviation (0.5 in the reference code).
        noise: "one_sided" (u ~ U[0, 1), the reference code) or "two_sided" (u ~ U[-1, 1), zero-mean).
        every: apply every `every` D steps (lazy regularization; the trainer scales the term by `every`).
    """

    decomposable = False  # the noise scale is the std of the whole batch

    def __init__(self, weight: float = 10.0, scale: float = 0.5, noise: Literal["one_sided", "two_sided"] = "one_sided",
                 every: int = 1):
        self.weight = check_nonnegative(weight, "dragan.weight")
        self.scale = check_nonnegative(scale, "dragan.scale")
        if noise not in ("one_sided", "two_sided"):
            raise GanforgeError(f"dragan.noise: expected one of 'one_sided', 'two_sided', got {noise!r}")
        self.noise = noise
        self.every = check_every(every, "dragan")

    def perturb(self, ctx: Context) -> torch.Tensor:
        """x_hat for this micro-batch's reals (B, ...), detached."""
        x = ctx.real.detach()
        std = ctx.all_gather(x).float().std(correction=0).to(x.dtype)  # scalar: std over the global batch tensor
        rng = ctx.sample_rng()
        u = rng.rand(x.shape[0], *x.shape[1:], device=x.device, dtype=x.dtype)  # (B, ...) in [0, 1)
        if self.noise == "two_sided":
            u = 2 * u - 1  # [-1, 1)
        a = rng.rand(x.shape[0], *([1] * (x.dim() - 1)), device=x.device, dtype=x.dtype)  # (B, 1, ...)
        # x_hat = x + a (x_p - x) with x_p = x + c std u.
        return x + a * (self.scale * std * u)

    def d_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        grad = input_gradient(ctx, self.perturb(ctx), ctx.y_real)  # (B, N) float32
        return {"dragan": self.weight * (norms(grad) - 1).pow(2).mean()}

    def __repr__(self) -> str:
        return (f"DRAGANPenalty(weight={self.weight}, scale={self.scale}, noise={self.noise!r}, "
                f"every={self.every})")

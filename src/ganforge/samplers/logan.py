"""LOGAN's latent optimisation at sampling time.

Wu et al., "LOGAN: Latent Optimisation for Generative Adversarial Networks", 2019 (see `objectives/logan.py` for the
training-time term). Before G renders a sample its latent takes `steps` natural-gradient ascent steps on D's logit:

    g = grad_z d(G(z)),   z <- z + alpha * g / (beta + ||g||^2)       (clamped to [-clamp, clamp] when set)

StudioGAN configures 10 such steps for evaluation (`lo_steps4eval`) but, as in training, its loop returns after one;
here `steps` steps are taken. Every sample is optimised (no Bernoulli mask at sampling time: `rate` = 1 in
StudioGAN's evaluation path too). Unlike DDLS there is no prior term and no noise: it is mode seeking, moving samples
toward what D rates most real. `stats`: mean logit before and after (`logit_start`, `logit_end`).
"""
from __future__ import annotations

import math

import torch

from ..checks import check_int
from ..errors import GanforgeError
from ..objectives.logan import natural_step
from ..registries import SAMPLERS
from .base import LatentSampler


def _positive(value: float, key: str, strict: bool) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (strict and value == 0):
        raise GanforgeError(f"{key}: expected a number {'>' if strict else '>='} 0, got {value!r}")
    return float(value)


@SAMPLERS.register("logan")
class LatentOptimisationSampler(LatentSampler):
    """LOGAN at sampling time (Wu 2019): `steps` natural-gradient steps z += alpha g / (beta + ||g||^2) on D's logit.

    Args:
        steps: latent updates per sample (StudioGAN's lo_steps4eval = 10).
        alpha: step size (0.9).
        beta: damping (0.1), > 0.
        clamp: None, or c > 0 to clamp latents to [-c, c] after each step.
        calibrate: use a logistic recalibration a d + b of D's logit (see `ganforge.samplers.base`).
        calibration_samples: real images (and as many fakes) the recalibration fits on.
    """

    name = "logan"
    measured = ("logit_start", "logit_end")

    def __init__(self, steps: int = 10, alpha: float = 0.9, beta: float = 0.1, clamp: float | None = None,
                 calibrate: bool = False, calibration_samples: int = 5000):
        super().__init__(calibrate, calibration_samples)
        self.steps = check_int(steps, "logan.steps", minimum=1)
        self.alpha = _positive(alpha, "logan.alpha", strict=False)
        self.beta = _positive(beta, "logan.beta", strict=True)
        self.clamp = None if clamp is None else _positive(clamp, "logan.clamp", strict=True)

    def summary(self) -> str:
        if "logit_start" not in self.stats:
            return ""
        return f"logan: mean D logit {self.stats['logit_start']:.4g} -> {self.stats['logit_end']:.4g}"

    def refine(self, G, D, z: torch.Tensor, y: torch.Tensor | None, gen=None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(z after `steps` updates, logits before (B,), logits after (B,))."""
        with torch.enable_grad():
            z = z.detach().float().requires_grad_(True)
            d = self.logit(D, G(z, y), y)
            start = d.detach()
            for _ in range(self.steps):
                (g,) = torch.autograd.grad(d.sum(), z)  # samples are independent: row i is grad of d_i
                z = z.detach() + natural_step(g, self.alpha, self.beta)
                if self.clamp is not None:
                    z = z.clamp(-self.clamp, self.clamp)
                z.requires_grad_(True)
                d = self.logit(D, G(z, y), y)
        return z.detach(), start, d.detach()

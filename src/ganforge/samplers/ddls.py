"""Discriminator Driven Latent Sampling (DDLS).

Che et al., "Your GAN is Secretly an Energy-based Model and You Should Use Discriminator Driven Latent Sampling",
NeurIPS 2020. With the Gaussian latent prior p0(z) = N(0, I) and D's logit d (a log density ratio), the data density
is p0(z) exp(d(G(z))) pushed through G, i.e. latents of energy

    E(z) = ||z||^2 / 2 - d(G(z))                                   (Eq. 11, up to a constant)

sampled by (unadjusted) Langevin dynamics from the plain latents z_0:

    z_{t+1} = z_t - (eps / 2) grad_z E(z_t) + sqrt(eps) * noise * n_t,   n_t ~ N(0, I)   (Eq. 12; noise = 1)

then x = G(z_T). Labels of a conditional G/D stay fixed along the chain (d = D(G(z, y), y)).

Defaults: eps (`step_size`) = 0.01 and 1000 `steps`, the values public re-implementations of the paper's CIFAR-10
setting use (StudioGAN's langevin sampler); `noise` scales the injected noise (1: Langevin dynamics proper; 0: plain
gradient descent on E, a mode-seeking variant). Departures from that reference code: the energy gradient is taken
without `create_graph` (no second-order graph is kept: same update, far less memory), and no step-size / noise decay
schedule is applied (the paper's update rule has none). `truncation` truncates the chain's start only: the energy
keeps the untruncated Gaussian prior. `calibrate=True` (see base.py) replaces d by a d + b, needed when D was not
trained with the logistic loss: E is only the data energy when d is the log density ratio.

`stats`: mean energy of the latents before and after the chain (`energy_start`, `energy_end`).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..checks import check_int
from ..errors import GanforgeError
from ..registries import SAMPLERS
from .base import LatentSampler


@SAMPLERS.register("ddls")
class DDLS(LatentSampler):
    """DDLS (Che 2020): Langevin dynamics on E(z) = ||z||^2/2 - d(G(z)) in latent space, then x = G(z).

    Args:
        steps: Langevin steps per sample.
        step_size: eps; 0 leaves the latents (and so G's samples) unchanged.
        noise: scale of the injected noise sqrt(eps) * n (1: Langevin; 0: gradient descent on E).
        calibrate: use a logistic recalibration a d + b of D's logit (see `ganforge.samplers.base`).
        calibration_samples: real images (and as many fakes) the recalibration fits on.
    """

    name = "ddls"
    measured = ("energy_start", "energy_end")

    def __init__(self, steps: int = 1000, step_size: float = 0.01, noise: float = 1.0, calibrate: bool = False,
                 calibration_samples: int = 5000):
        super().__init__(calibrate, calibration_samples)
        self.steps = check_int(steps, "ddls.steps", minimum=1)
        if not (step_size >= 0 and math.isfinite(step_size)):
            raise GanforgeError(f"ddls.step_size: expected a number >= 0, got {step_size!r}")
        if not (noise >= 0 and math.isfinite(noise)):
            raise GanforgeError(f"ddls.noise: expected a number >= 0, got {noise!r}")
        self.step_size, self.noise = float(step_size), float(noise)

    def summary(self) -> str:
        if "energy_start" not in self.stats:
            return ""
        return f"ddls: mean energy {self.stats['energy_start']:.4g} -> {self.stats['energy_end']:.4g}"

    def energy(self, G: nn.Module, D: nn.Module, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """(B,) E(z) = ||z||^2 / 2 - d(G(z, y), y) (Eq. 11)."""
        return 0.5 * z.float().pow(2).sum(1) - self.logit(D, G(z, y), y)

    def refine(self, G: nn.Module, D: nn.Module, z: torch.Tensor, y: torch.Tensor | None,
               gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run the chain from z (B, z_dim); returns (z_T, E(z_0), E(z_T)), the energies (B,) detached."""
        eps = self.step_size
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            e = self.energy(G, D, z, y)
            e_start = e.detach()
            for _ in range(self.steps):
                (grad,) = torch.autograd.grad(e.sum(), z)  # samples are independent: d sum / d z_i = grad E(z_i)
                n = torch.randn(z.shape, generator=gen).to(z.device)  # drawn on the CPU: same on every device
                z = (z.detach() - 0.5 * eps * grad + math.sqrt(eps) * self.noise * n).requires_grad_(True)  # Eq. 12
                e = self.energy(G, D, z, y)
        return z.detach(), e_start, e.detach()

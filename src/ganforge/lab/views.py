"""What the lab sends the page each frame: the views of "GAN Lab: Understanding Complex Deep Generative Models using
Interactive Visual Experimentation" (Kahng et al., 2019) computed from a live ganforge Trainer.

- real points (a fixed sample of the training set) and generated points G(z) (fixed latents, so motion is training);
- D's output on a `HEATMAP` x `HEATMAP` grid of cell centres over the plot square [-e, e]^2, row 0 at the top:
  D's logit t; the page shows sigmoid(t), D's probability "real" under the logistic losses;
- G's manifold: the image under G of a `MANIFOLD` x `MANIFOLD` grid over [-2, 2]^2 in the first two latent
  coordinates (the others 0: a 2-D slice when z_dim > 2; a line when z_dim = 1);
- gradient arrows: -dL_G/dx at generated points x, the direction the adversarial loss pushes each sample (L_G is the
  loss's own G term, written per sample: the batch mean times the batch size, without augmentation);
- PacGAN mode metrics (modes / hq_frac / kl, `metrics/modes.py`) for sets that define them.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..metrics.modes import ModeCoverage
from ..objectives.base import Context, StepInfo
from ..training.rng import generator
from ..training.trainer import Trainer

HEATMAP = 50  # cells per side of D's heatmap
MANIFOLD = 15  # latent grid points per side
N_POINTS = 500  # real and generated points drawn
N_ARROWS = 100  # generated points with a gradient arrow
LATENT_RANGE = 2.0  # the latent grid spans [-2, 2] in each drawn coordinate (about 95% of N(0, 1))


class _Fixed(nn.Module):
    """A stand-in generator returning given points, so the loss's G term can be differentiated w.r.t. them."""

    def __init__(self, x: torch.Tensor):
        super().__init__()
        self.x = x

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.x


def plot_extent(trainer: Trainer) -> float:
    """Half-width of the plotted square: the dataset's own (PointModality.extent)."""
    return float(getattr(trainer.dataset.info.modality, "extent", 1.5))


def cell_centres(extent: float, size: int = HEATMAP) -> torch.Tensor:
    """(size * size, 2) centres of a size x size grid over [-e, e]^2, row-major with row 0 at the top (largest y)."""
    step = 2 * extent / size
    c = -extent + (torch.arange(size, dtype=torch.float32) + 0.5) * step  # increasing
    ys, xs = torch.meshgrid(c.flip(0), c, indexing="ij")  # (size, size) each
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1)


@torch.no_grad()
def heatmap(trainer: Trainer, extent: float, size: int = HEATMAP) -> torch.Tensor:
    """(size, size) D logits at the cell centres (row 0 at the top)."""
    x = cell_centres(extent, size).to(trainer.device)
    return trainer.D(x, None).adv.float().reshape(size, size).cpu()


def latent_grid(z_dim: int, size: int = MANIFOLD) -> torch.Tensor:
    """(rows * cols, z_dim) latents: a grid over the first two coordinates (one for z_dim 1), the rest 0."""
    v = torch.linspace(-LATENT_RANGE, LATENT_RANGE, size)
    rows = size if z_dim >= 2 else 1
    z = torch.zeros(rows * size, z_dim)
    if z_dim >= 2:
        a, b = torch.meshgrid(v, v, indexing="ij")
        z[:, 0], z[:, 1] = a.reshape(-1), b.reshape(-1)
    else:
        z[:, 0] = v
    return z


@torch.no_grad()
def manifold(trainer: Trainer, size: int = MANIFOLD) -> dict[str, Any]:
    """G's image of the latent grid: {"rows", "cols", "points": (rows * cols, 2)} row-major."""
    z = latent_grid(trainer.G.z_dim, size)
    x = trainer.G(z.to(trainer.device), None).float().reshape(len(z), -1)[:, :2].cpu()
    return {"rows": len(z) // size, "cols": size, "points": x}


def fixed_latents(trainer: Trainer, n: int = N_POINTS) -> torch.Tensor:
    """n latents that stay the same for the whole session (seeded by the run's seed)."""
    return trainer.G.sample_z(n, generator=generator(trainer.cfg.seed, "lab-view")).to(trainer.device)


def real_sample(trainer: Trainer, n: int = N_POINTS) -> torch.Tensor:
    """A fixed random sample of the training points (all of them when there are fewer than n)."""
    ds = trainer.dataset
    idx = torch.randperm(len(ds), generator=generator(trainer.cfg.seed, "lab-real"))[:n]
    return trainer.modality.to_model(ds.get_batch(idx)[0]).float()


def loss_key(trainer: Trainer) -> str:
    """The adversarial loss's key among the Trainer's terms (`loss:NAME`, training/build.py)."""
    return next(k for k in trainer.terms if k.startswith("loss:"))


def gradients(trainer: Trainer, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """(n, 2) -dl_G(x_i)/dx_i at the generated points: the per-sample G loss of the adversarial loss."""
    x = fake.detach().clone().to(trainer.device).requires_grad_(True)
    n = len(x)
    reals = real[torch.arange(n) % len(real)].to(trainer.device)
    ctx = Context(G=_Fixed(x), D=trainer.D, real=reals, y_real=None, z=torch.zeros(n, 1, device=trainer.device),
                  y_fake=None, phase="G", info=StepInfo(trainer.step, trainer.step, trainer.cfg.train.steps, n, 0))
    with torch.enable_grad():
        values = trainer.terms[loss_key(trainer)].g_terms(ctx)
        if not values:
            return torch.zeros(n, 2)
        total = sum(v.float() for v in values.values()) * n  # batch mean -> sum of per-sample losses
        (grad,) = torch.autograd.grad(total, x)
    return -grad.detach().float().reshape(n, -1)[:, :2].cpu()


def mode_metrics(trainer: Trainer) -> dict[str, float] | None:
    """PacGAN mode coverage of the live G (the protocol's sample count and eval.seed), None for sets without it."""
    if trainer.dataset.mode_samples <= 0:
        return None
    return ModeCoverage().compute_samples(trainer.G, trainer.dataset, seed=trainer.cfg.eval.seed, device=trainer.device)


def _rounded(t: torch.Tensor, digits: int = 4) -> list:
    """Rounded values as lists; non-finite ones clipped (JSON has no NaN / Infinity)."""
    t = torch.nan_to_num(t.float(), nan=0.0, posinf=1e6, neginf=-1e6)
    return torch.round(t, decimals=digits).tolist()


def finite_or_none(values: dict[str, float] | None) -> dict[str, float | None] | None:
    """A dict of numbers with NaN / Infinity replaced by None (JSON null)."""
    if values is None:
        return None
    return {k: (float(v) if math.isfinite(float(v)) else None) for k, v in values.items()}


def frame(trainer: Trainer, z: torch.Tensor, real: torch.Tensor, extra: dict[str, Any] | None = None
          ) -> dict[str, Any]:
    """One JSON-able frame of every view (see the module docstring)."""
    extent = plot_extent(trainer)
    with torch.no_grad():
        fake = trainer.G(z, None).float().reshape(len(z), -1)[:, :2].cpu()
    arrows = gradients(trainer, fake[:N_ARROWS], real)
    heat = heatmap(trainer, extent)
    grid = manifold(trainer)
    return {
        "type": "frame",
        "step": trainer.step,
        "extent": extent,
        "real": _rounded(real[:, :2]),
        "fake": _rounded(fake),
        "heatmap": {"size": HEATMAP, "values": _rounded(heat.reshape(-1))},
        "manifold": {"rows": grid["rows"], "cols": grid["cols"], "points": _rounded(grid["points"])},
        "arrows": _rounded(torch.cat([fake[:N_ARROWS], arrows], dim=1)),  # x, y, -dL/dx, -dL/dy
        "modes": finite_or_none(mode_metrics(trainer)),
        **(extra or {}),
    }

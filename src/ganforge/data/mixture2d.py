"""2D Gaussian-mixture toy sets and their mode-coverage metrics.

Protocol of "PacGAN: The power of two samples in generative adversarial networks" (Lin et al., 2018), after
"VEEGAN: Reducing Mode Collapse in GANs using Implicit Variational Learning" (Srivastava et al., 2017):
`ring8` — 8 Gaussians on the unit circle, sigma 0.01; `grid25` — 25 Gaussians at {-4,-2,0,2,4}^2, sigma 0.05.
Two more sets after the toy distributions of "GAN Lab: Understanding Complex Deep Generative Models using Interactive
Visual Experimentation" (Kahng et al., 2019), scored with the same protocol: `two-gaussians` — 2 Gaussians at
+-(0.75, 0.75), sigma 0.15; `three-blobs` — 3 disjoint Gaussians on a circle of radius 1, sigma 0.1.
Evaluated on 2,500 samples: a sample is "high quality" when it lies within 3 sigma of its nearest mode; a mode is
"captured" when at least one high-quality sample is nearest to it; the reverse KL compares the histogram of the
high-quality samples' modes with the uniform distribution over modes. All three are computed from that histogram
(`mode_counts`: high-quality samples per mode), which training also logs per evaluation (RUN/modes.jsonl) for the
report's mode-coverage plots.
"""
from __future__ import annotations

import math

import torch

from ..errors import GanforgeError
from ..registries import DATASETS
from .base import DataInfo, PointModality, TensorDataset
from .common import check_split, fingerprint, split_seed


def kl_to_uniform(counts: torch.Tensor) -> float:
    """KL(q || uniform over K) of the histogram q = counts / sum(counts) over K = len(counts) bins; the sum must be
    positive. KL(q || u) = sum_i q_i log(q_i / (1/K)), empty bins contributing 0 (clamped at 0 against rounding)."""
    q = counts.double() / counts.sum()
    nz = q > 0
    return max(float((q[nz] * (q[nz] * len(counts)).log()).sum()), 0.0)


def mixture_mode_counts(fake: torch.Tensor, centers: torch.Tensor, sigma: float) -> torch.Tensor:
    """(K,) int64: how many high-quality samples of the 2D points `fake` (N, 2) lie nearest to each of the mixture's
    `centers` (K, 2); a sample is high quality within 3 `sigma` of its nearest mode, so the counts sum to the number of
    high-quality samples (samples far from every mode are in no bin)."""
    fake = fake.detach().float().reshape(len(fake), -1)[:, :2].cpu()
    dist = torch.cdist(fake, centers.float())  # (N, K)
    nearest_dist, nearest = dist.min(dim=1)
    hq = nearest_dist <= 3 * sigma  # high quality: within 3 sigma of the nearest mode
    return torch.bincount(nearest[hq], minlength=len(centers))


def mixture_metrics_from_counts(counts: torch.Tensor, n: int) -> dict[str, float]:
    """The PacGAN scalars from the per-mode high-quality counts (K,) of `n` samples.

    Returns {"modes": modes with >= 1 high-quality sample, "hq_frac": high-quality samples / n, "kl": KL(q || uniform
    over K) of the nearest-mode histogram q of the high-quality samples}. With no high-quality sample q is undefined;
    we return kl = log K, the KL of a histogram collapsed on a single mode (the largest value KL(q || uniform) can
    take), so "nothing good" never scores better than "everything in one mode".
    """
    n_hq = int(counts.sum())
    kl = kl_to_uniform(counts) if n_hq > 0 else math.log(len(counts))
    return {"modes": int((counts > 0).sum()), "hq_frac": n_hq / n if n else 0.0, "kl": kl}


def mixture_mode_metrics(fake: torch.Tensor, centers: torch.Tensor, sigma: float) -> dict[str, float]:
    """Mode coverage of 2D points `fake` (N, 2) against mixture `centers` (K, 2) with std `sigma`: the scalars of
    `mixture_metrics_from_counts` on the counts of `mixture_mode_counts`."""
    return mixture_metrics_from_counts(mixture_mode_counts(fake, centers, sigma), len(fake))


class GaussianMixture2D(TensorDataset):
    """Points pre-drawn from an equal-weight isotropic Gaussian mixture; label = mode index."""

    name = "mixture2d"
    mode_samples = 2500  # PacGAN protocol

    def __init__(self, centers: torch.Tensor, sigma: float, extent: float, *, split: str, n: int, seed: int):
        check_split(split, f"data ({self.name})")
        if n < 1:
            raise GanforgeError(f"data.n: expected a positive number of samples, got {n}")
        self.centers, self.sigma = centers.float(), float(sigma)
        g = torch.Generator().manual_seed(split_seed(seed, split))
        y = torch.randint(len(centers), (n,), generator=g)  # mode of each sample, uniform
        x = self.centers[y] + self.sigma * torch.randn(n, 2, generator=g)  # x = mu_k + sigma * eps
        super().__init__(x, y, DataInfo((2,), len(centers), PointModality(extent)),
                         fingerprint(self.name, {"split": split, "n": n, "seed": seed}, x, y))

    def mode_counts(self, fake: torch.Tensor) -> torch.Tensor:
        """(K,): high-quality samples of `fake` nearest to each mode (they sum to the high-quality count)."""
        return mixture_mode_counts(fake, self.centers, self.sigma)

    def mode_results(self, fake: torch.Tensor) -> tuple[dict[str, float], torch.Tensor]:
        """(mode_metrics, mode_counts) of `fake` from one pass: the scalars are computed from the counts."""
        counts = self.mode_counts(fake)
        return mixture_metrics_from_counts(counts, len(fake)), counts

    def mode_metrics(self, fake: torch.Tensor) -> dict[str, float]:
        return self.mode_results(fake)[0]


def ring_centers(k: int = 8, radius: float = 1.0) -> torch.Tensor:
    """`k` points evenly spaced on a circle, starting at angle 0."""
    theta = torch.arange(k, dtype=torch.float64) * (2 * math.pi / k)
    return torch.stack([radius * theta.cos(), radius * theta.sin()], dim=1).float()


def grid_centers(values: tuple[float, ...] = (-4.0, -2.0, 0.0, 2.0, 4.0)) -> torch.Tensor:
    """The Cartesian grid values x values, row by row."""
    v = torch.tensor(values, dtype=torch.float32)
    return torch.cartesian_prod(v, v)


@DATASETS.register("ring8")
class Ring8(GaussianMixture2D):
    """8 Gaussians on the unit circle, sigma 0.01 (PacGAN/VEEGAN 2D ring); 8 modes."""

    name = "ring8"

    def __init__(self, *, split: str = "train", cache_dir: str | None = None, n: int = 100000, seed: int = 0):
        super().__init__(ring_centers(8), 0.01, 1.5, split=split, n=n, seed=seed)


@DATASETS.register("grid25")
class Grid25(GaussianMixture2D):
    """25 Gaussians at {-4,-2,0,2,4}^2, sigma 0.05 (PacGAN/VEEGAN 2D grid); 25 modes."""

    name = "grid25"

    def __init__(self, *, split: str = "train", cache_dir: str | None = None, n: int = 100000, seed: int = 0):
        super().__init__(grid_centers(), 0.05, 6.0, split=split, n=n, seed=seed)


@DATASETS.register("two-gaussians")
class TwoGaussians(GaussianMixture2D):
    """2 Gaussians at (-0.75, -0.75) and (0.75, 0.75), sigma 0.15 (GAN Lab's two-Gaussian set); 2 modes."""

    name = "two-gaussians"

    def __init__(self, *, split: str = "train", cache_dir: str | None = None, n: int = 100000, seed: int = 0):
        centers = torch.tensor([[-0.75, -0.75], [0.75, 0.75]])
        super().__init__(centers, 0.15, 1.5, split=split, n=n, seed=seed)


@DATASETS.register("three-blobs")
class ThreeBlobs(GaussianMixture2D):
    """3 disjoint Gaussians at angles 90, 210, 330 degrees on the unit circle, sigma 0.1 (GAN Lab-style); 3 modes."""

    name = "three-blobs"

    def __init__(self, *, split: str = "train", cache_dir: str | None = None, n: int = 100000, seed: int = 0):
        theta = torch.tensor([90.0, 210.0, 330.0]) * (math.pi / 180)
        centers = torch.stack([theta.cos(), theta.sin()], dim=1)  # (3, 2), pairwise distance sqrt(3) >> 6 sigma
        super().__init__(centers, 0.1, 1.5, split=split, n=n, seed=seed)

"""Kernel Inception Distance.

"Demystifying MMD GANs" (Binkowski et al., 2018): KID is the unbiased estimate of the squared maximum mean
discrepancy between feature distributions under the cubic polynomial kernel k(x, y) = (x^T y / d + 1)^3, averaged over
random subsets (each subset_size fakes vs subset_size reals, drawn without replacement with a seeded generator).
Kernel sums are formed in float64 on the features' device.
"""
from __future__ import annotations

import torch

from ..errors import GanforgeError
from ..registries import METRICS
from .base import Features, Metric, check_positive, require


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """k(x, y) = (x^T y / d + 1)^3 for all row pairs: (M, d), (N, d) -> (M, N)."""
    d = x.shape[1]
    return (x @ y.T / d + 1.0) ** 3  # Binkowski et al. (2018): KID's cubic polynomial kernel


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased MMD^2_u (Gretton et al., 2012, Lemma 6) between samples x (M, d) and y (N, d), polynomial kernel."""
    m, n = x.shape[0], y.shape[0]
    if m < 2 or n < 2:
        raise GanforgeError(f"mmd2_unbiased: need at least 2 samples per set, got {m} and {n}")
    x, y = x.double(), y.double()
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    # MMD^2_u = sum_{i!=j} k(x_i,x_j)/(m(m-1)) + sum_{i!=j} k(y_i,y_j)/(n(n-1)) - 2 sum_{i,j} k(x_i,y_j)/(mn)
    sum_xx = k_xx.sum() - k_xx.diagonal().sum()
    sum_yy = k_yy.sum() - k_yy.diagonal().sum()
    return float(sum_xx / (m * (m - 1)) + sum_yy / (n * (n - 1)) - 2.0 * k_xy.sum() / (m * n))


def kernel_inception_distance(
    fake: torch.Tensor, real: torch.Tensor, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """Mean and (population) standard deviation of MMD^2_u over `subsets` random subsets.

    Args:
        fake, real: (N, d) features. subset_size is clamped to min(subset_size, n_fake, n_real).
        subsets: number of subsets. seed: seeds the subset draws (CPU generator, so results match across devices).
    """
    if fake.ndim != 2 or real.ndim != 2 or fake.shape[1] != real.shape[1]:
        raise GanforgeError(f"kid: feature shapes differ: generated {tuple(fake.shape)}, reference {tuple(real.shape)}")
    n_fake, n_real = fake.shape[0], real.shape[0]
    m = min(subset_size, n_fake, n_real)
    if m < 2:
        raise GanforgeError(f"kid: need at least 2 samples per set, got {n_fake} generated and {n_real} reference")
    gen = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(subsets):
        idx_f = torch.randperm(n_fake, generator=gen)[:m].to(fake.device)
        idx_r = torch.randperm(n_real, generator=gen)[:m].to(real.device)
        values.append(mmd2_unbiased(fake[idx_f], real[idx_r].to(fake.device)))
    v = torch.tensor(values, dtype=torch.float64)
    return float(v.mean()), float(v.std(unbiased=False))


@METRICS.register("kid")
class KID(Metric):
    """Kernel Inception Distance: unbiased polynomial-kernel MMD^2 over random subsets (Binkowski et al., 2018)."""

    name = "kid"
    needs = frozenset({"pool"})
    keys = ("kid", "kid_std")
    min_defined = 2
    min_defined_reason = "the unbiased MMD estimate needs 2 samples per set"
    # `subset_size` (default 1000): `sample_floor` reads the option.
    min_samples = 1000
    min_samples_reason = "subsets shrink to the whole set"

    def __init__(self, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> None:
        self.subsets = check_positive(subsets, "kid.subsets")
        self.subset_size = check_positive(subset_size, "kid.subset_size", minimum=2)
        self.seed = seed

    def sample_floor(self, features: Features) -> tuple[int, str]:
        return self.subset_size, (f"subsets of subset_size={self.subset_size} shrink to the whole set, so kid is "
                                  f"noisy and kid_std understates it (use more samples or a smaller "
                                  f"kid:subset_size)")

    def compute(self, fake: Features, real: Features | None) -> dict[str, float]:
        x = require(fake, "pool", "kid", "generated")
        y = require(real, "pool", "kid", "reference")
        assert isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)
        mean, std = kernel_inception_distance(x, y, self.subsets, self.subset_size, self.seed)
        return {"kid": mean, "kid_std": std}

    def __repr__(self) -> str:
        return f"KID(subsets={self.subsets}, subset_size={self.subset_size}, seed={self.seed})"

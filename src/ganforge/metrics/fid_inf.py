"""FID-infinity: FID extrapolated to an infinite number of generated samples.

"Effectively Unbiased FID and Inception Score and where to find them" (Chong & Forsyth, 2020): FID computed from N
samples is biased, with bias linear in 1/N. FID is evaluated at `points` sample counts N evenly spaced from `min_n` to
n (each from an independent random subset of the generated pool features, against the full reference statistics),
a least-squares line FID(N) = a + b / N is fitted, and FID-infinity is its intercept a (the value at 1/N = 0).
The estimate is not clipped at 0.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

from ..errors import GanforgeError
from ..registries import METRICS
from .base import Features, Metric, check_positive, feature_dim, require
from .fid import fid_from_stats
from .stats import RunningStats


def fit_fid_infinity(ns: np.ndarray | list[int], values: np.ndarray | list[float]) -> tuple[float, float]:
    """Least-squares fit of values = a + b / N; returns (a, b), a being the extrapolation to N = infinity."""
    ns, values = np.asarray(ns, dtype=np.float64), np.asarray(values, dtype=np.float64)
    if ns.shape != values.shape or len(np.unique(ns)) < 2:
        raise GanforgeError(f"fit_fid_infinity: need values at >= 2 distinct N, got N = {ns.tolist()}")
    design = np.stack([np.ones_like(ns), 1.0 / ns], axis=1)  # Chong & Forsyth (2020): FID_N = FID_inf + b / N
    (a, b), *_ = np.linalg.lstsq(design, values, rcond=None)
    return float(a), float(b)


def sample_counts(n: int, points: int, min_n: int) -> np.ndarray:
    """`points` distinct sample counts from min(min_n, n) to n (min_n >= n falls back to n // 2)."""
    low = min(min_n, n)
    if low >= n:
        low = n // 2
    ns = np.unique(np.linspace(low, n, points).astype(np.int64))
    if len(ns) < 2 or ns[0] < 2:
        raise GanforgeError(f"fid_inf: need at least 4 generated samples for 2 distinct sample counts, got {n}")
    return ns


def fid_infinity(
    pool: torch.Tensor, real: RunningStats, points: int = 15, min_n: int = 5000, seed: int = 0, batch: int = 4096
) -> tuple[float, np.ndarray, np.ndarray]:
    """FID-infinity of generated features `pool` (n, F) against reference statistics `real`.

    Returns (FID-infinity, the sample counts N, the FID at each N).
    """
    n = pool.shape[0]
    ns = sample_counts(n, points, min_n)
    if ns[0] < pool.shape[1] <= n:  # (n itself below the dimension: the metric's check_samples warned)
        warnings.warn(
            f"metric fid_inf: smallest subset has {ns[0]} samples < {pool.shape[1]} feature dims; the 1/N fit "
            f"includes rank-deficient covariances (use more samples or a larger min_n)",
            stacklevel=2,
        )
    gen = torch.Generator().manual_seed(seed)
    fids = []
    for size in ns.tolist():
        idx = torch.randperm(n, generator=gen)[:size].to(pool.device)
        stats = RunningStats(num_features=pool.shape[1])
        for start in range(0, size, batch):  # bounded float64 working memory
            stats.update(pool[idx[start:start + batch]])
        fids.append(fid_from_stats(stats, real))
    values = np.asarray(fids)
    return fit_fid_infinity(ns, values)[0], ns, values


@METRICS.register("fid_inf")
class FIDInfinity(Metric):
    """FID-infinity: FID at several sample counts extrapolated linearly in 1/N to 1/N = 0 (Chong & Forsyth 2020)."""

    name = "fid_inf"
    needs = frozenset({"pool"})
    keys = ("fid_inf",)
    min_defined = 4
    min_defined_reason = "the 1/N fit needs 2 distinct subset sizes of >= 2 samples"
    # The feature dimension (2048 for Inception), read from the features by `sample_floor`.
    min_samples = 2048
    min_samples_reason = ("every subset's covariance is rank-deficient, so the 1/N fit extrapolates strongly biased "
                          "FIDs")

    def defined_floor(self, features: Features) -> tuple[int, str]:
        if features.pool is None:  # the reference: only its statistics are used, as FID's
            return 2, "a covariance needs at least 2 samples"
        return self.min_defined, self.min_defined_reason

    def sample_floor(self, features: Features) -> tuple[int, str]:
        return feature_dim(features) or self.min_samples, self.min_samples_reason

    def __init__(self, points: int = 15, min_n: int = 5000, seed: int = 0) -> None:
        self.points = check_positive(points, "fid_inf.points", minimum=2)
        self.min_n = check_positive(min_n, "fid_inf.min_n", minimum=2)
        self.seed = seed

    @property
    def reference_needs(self) -> frozenset[str]:
        return frozenset({"stats"})

    def compute(self, fake: Features, real: Features | None) -> dict[str, float]:
        pool = require(fake, "pool", "fid_inf", "generated")
        s_real = require(real, "stats", "fid_inf", "reference")
        assert isinstance(pool, torch.Tensor) and isinstance(s_real, RunningStats)
        if pool.ndim != 2 or pool.shape[1] != s_real.num_features:
            raise GanforgeError(
                f"fid_inf: feature dims differ: generated {tuple(pool.shape)}, reference {s_real.num_features}"
            )
        value, _, _ = fid_infinity(pool, s_real, self.points, self.min_n, self.seed)
        return {"fid_inf": value}

    def __repr__(self) -> str:
        return f"FIDInfinity(points={self.points}, min_n={self.min_n}, seed={self.seed})"

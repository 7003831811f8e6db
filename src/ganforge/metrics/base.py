"""Metric interface: what feature extraction produces for one image set, and what a metric computes from it.

Extraction runs a backbone once per image set and keeps only what the chosen metrics declare in `needs`
(`Features`); a metric then turns the fake set's features (and the reference set's, when `needs_reference`) into
named floats. Metrics implement evaluation protocols from their papers: FID (Heusel et al., 2017), KID (Binkowski
et al., 2018), IS (Salimans et al., 2016), precision/recall (Kynkaanniemi et al., 2019), density/coverage (Naeem et
al., 2020), FID-infinity (Chong & Forsyth, 2020).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from ..errors import GanforgeError
from .stats import RunningStats

# Everything a metric may ask extraction to keep.
NEEDS = frozenset({"stats", "pool", "logits", "labels", "class_stats"})


@dataclass
class Features:
    """Backbone outputs for one image set; fields a metric did not ask for stay None."""

    n: int  # number of images
    stats: RunningStats | None = None  # float64 mean/covariance of pool features
    pool: torch.Tensor | None = None  # (N, F) raw pool features, kept compactly (float32)
    logits: torch.Tensor | None = None  # (N, K) classifier logits (IS)
    labels: torch.Tensor | None = None  # (N,) int64 class labels
    class_stats: dict[int, RunningStats] | None = None  # per-class pool statistics (intra-class FID)


class Metric:
    """Base class: `compute(fake, real)` returns named floats (keys listed in `keys`)."""

    # What extraction must keep for the generated set (a subset of NEEDS).
    needs: frozenset[str] = frozenset()
    # Whether `compute` needs a reference (real) set at all.
    needs_reference: bool = True
    # Output keys of `compute`.
    keys: tuple[str, ...] = ()

    @property
    def reference_needs(self) -> frozenset[str]:
        """What extraction must keep for the reference set (defaults to `needs`; empty without a reference)."""
        return self.needs if self.needs_reference else frozenset()

    def compute(self, fake: Features, real: Features | None) -> dict[str, float]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def require(features: Features | None, field: str, metric: str, which: str) -> object:
    """Return `features.<field>`, or raise a one-line error saying which set lacks it."""
    if features is None:
        raise GanforgeError(f"metric {metric}: needs a reference ({which}) feature set, got none")
    value = getattr(features, field)
    if value is None:
        raise GanforgeError(f"metric {metric}: the {which} features lack '{field}' (extraction did not keep it)")
    return value


def check_positive(value: int, key: str, minimum: int = 1) -> int:
    """Validate an integer option (`key` names it, e.g. 'kid.subsets')."""
    if value < minimum:
        raise GanforgeError(f"{key}: expected an integer >= {minimum}, got {value}")
    return value


def warn_rank_deficient(metric: str, which: str, n: int, dim: int) -> None:
    """One-line warning: fewer samples than feature dims makes the covariance singular and the metric biased."""
    if n < dim:
        warnings.warn(
            f"metric {metric}: {which} set has {n} samples < {dim} feature dims; its covariance is rank-deficient "
            f"and the value is strongly biased (use more samples)",
            stacklevel=3,
        )

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
    """Base class: `compute(fake, real)` returns named floats (keys listed in `keys`).

    Each metric also declares how many samples per set it needs (`check_samples`, run by the Evaluator before
    `compute`): below `min_defined` it is mathematically undefined (a GanforgeError); below `min_samples` its value
    means little (a one-line warning naming the metric, the N used and what it needs, with `min_samples_reason`).
    Metrics whose floors depend on their options or on the features (FID: the feature dimension) override
    `defined_floor` / `sample_floor`.
    """

    # Registered name, used in messages (the class name when unset).
    name: str = ""
    # What extraction must keep for the generated set (a subset of NEEDS).
    needs: frozenset[str] = frozenset()
    # Whether `compute` needs a reference (real) set at all.
    needs_reference: bool = True
    # Output keys of `compute`.
    keys: tuple[str, ...] = ()
    # Fewest samples per set at which the metric is defined at all, and why.
    min_defined: int = 1
    min_defined_reason: str = "it needs at least one sample"
    # Fewest samples per set at which its value means anything, and why.
    min_samples: int = 1
    min_samples_reason: str = ""

    @property
    def reference_needs(self) -> frozenset[str]:
        """What extraction must keep for the reference set (defaults to `needs`; empty without a reference)."""
        return self.needs if self.needs_reference else frozenset()

    def compute(self, fake: Features, real: Features | None) -> dict[str, float]:
        raise NotImplementedError

    def defined_floor(self, features: Features) -> tuple[int, str]:
        """(fewest samples for which the metric is defined, why) for this set and these options."""
        return self.min_defined, self.min_defined_reason

    def sample_floor(self, features: Features) -> tuple[int, str]:
        """(fewest samples for a meaningful value, why) for this set and these options."""
        return self.min_samples, self.min_samples_reason

    def check_samples(self, fake: Features, real: Features | None) -> None:
        """Raise when a set is too small for the metric to be defined; warn when too small for it to mean much."""
        label = self.name or type(self).__name__
        sets = [("n", "source", fake)]
        if self.needs_reference and real is not None:
            sets.append(("n_ref", "reference", real))
        for key, which, features in sets:
            need, why = self.defined_floor(features)
            if features.n < need:
                raise GanforgeError(f"metric {label}: undefined with {key}={features.n} {which} samples; needs at "
                                    f"least {need} ({why})")
            floor, why = self.sample_floor(features)
            if features.n < floor:
                warnings.warn(f"metric {label}: {key}={features.n} {which} samples, fewer than the {floor} it needs: "
                              f"{why}", stacklevel=3)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def feature_dim(features: Features) -> int | None:
    """The feature dimension of a set, from whatever extraction kept (None when it kept no features)."""
    if features.stats is not None and features.stats.num_features:
        return int(features.stats.num_features)
    if features.pool is not None and features.pool.ndim == 2:
        return int(features.pool.shape[1])
    for st in (features.class_stats or {}).values():
        if st.num_features:
            return int(st.num_features)
    return None


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
    from ..checks import check_int

    return check_int(value, key, minimum)

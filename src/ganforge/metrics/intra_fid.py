"""Intra-class FID: the FID between class-conditional feature statistics, averaged over classes.

Used for conditional GANs since "cGANs with Projection Discriminator" (Miyato & Koyama, 2018): for each class c,
FID(generated images of class c, reference images of class c), then the mean over classes. FID itself is from
"GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium" (Heusel et al., 2017).
"""
from __future__ import annotations

import warnings

from ..errors import GanforgeError
from ..registries import METRICS
from .base import Features, Metric, feature_dim, require
from .fid import fid_from_stats
from .stats import RunningStats


def intra_class_fid(fake: dict[int, RunningStats], real: dict[int, RunningStats]) -> tuple[float, dict[int, float]]:
    """Mean FID over classes present (with >= 2 samples) in both sets, and the per-class values."""
    classes = sorted(c for c in fake.keys() & real.keys() if fake[c].n >= 2 and real[c].n >= 2)
    if not classes:
        raise GanforgeError(
            "ifid: no class has at least 2 samples in both the generated and the reference set (is the model "
            "class-conditional, and were labels extracted?)"
        )
    skipped = sorted((fake.keys() | real.keys()) - set(classes))
    if skipped:
        warnings.warn(f"metric ifid: {len(skipped)} class(es) lack samples in one set and are left out", stacklevel=2)
    per_class = {c: fid_from_stats(fake[c], real[c]) for c in classes}
    return sum(per_class.values()) / len(per_class), per_class


@METRICS.register("ifid")
class IntraFID(Metric):
    """Intra-class FID: mean over classes of the FID between class-conditional generated and reference features."""

    name = "ifid"
    needs = frozenset({"class_stats"})
    keys = ("ifid",)
    # Per class, as FID: 2 to be defined (classes with fewer are left out), the feature dimension to mean much.
    min_defined = 2
    min_samples = 2048
    min_samples_reason = ("its covariance is rank-deficient and its FID strongly biased (compare values only at "
                          "equal N per class)")

    def check_samples(self, fake: Features, real: Features | None) -> None:
        """Warn when the smallest class (of those both sets have) is below the feature dimension."""
        sets = [("n", "source", fake)] + ([("n_ref", "reference", real)] if real is not None else [])
        per_set = [(key, which, f.class_stats or {}, feature_dim(f)) for key, which, f in sets]
        common = set.intersection(*(set(c) for _, _, c, _ in per_set)) if per_set else set()
        for key, which, stats, dim in per_set:
            counts = {c: stats[c].n for c in common if stats[c].n >= self.min_defined}
            floor = dim or self.min_samples
            if counts and min(counts.values()) < floor:
                c = min(counts, key=counts.get)
                warnings.warn(f"metric ifid: {key}={counts[c]} {which} samples of class {c} (the smallest of "
                              f"{len(counts)}), fewer than the {floor} it needs per class: {self.min_samples_reason}",
                              stacklevel=2)

    def compute(self, fake: Features, real: Features | None) -> dict[str, float]:
        s_fake = require(fake, "class_stats", "ifid", "generated")
        s_real = require(real, "class_stats", "ifid", "reference")
        assert isinstance(s_fake, dict) and isinstance(s_real, dict)
        mean, _ = intra_class_fid(s_fake, s_real)
        return {"ifid": mean}

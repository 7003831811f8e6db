"""Intra-class FID: the FID between class-conditional feature statistics, averaged over classes.

Used for conditional GANs since "cGANs with Projection Discriminator" (Miyato & Koyama, 2018): for each class c,
FID(generated images of class c, reference images of class c), then the mean over classes. FID itself is from
"GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium" (Heusel et al., 2017).
"""
from __future__ import annotations

import warnings

from ..errors import GanforgeError
from ..registries import METRICS
from .base import Features, Metric, require
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
    small = [c for c in classes if min(fake[c].n, real[c].n) < (fake[c].num_features or 0)]
    if small:
        warnings.warn(
            f"metric ifid: {len(small)} class(es) have fewer samples than feature dims; their covariances are "
            f"rank-deficient and their FIDs strongly biased",
            stacklevel=2,
        )
    per_class = {c: fid_from_stats(fake[c], real[c]) for c in classes}
    return sum(per_class.values()) / len(per_class), per_class


@METRICS.register("ifid")
class IntraFID(Metric):
    """Intra-class FID: mean over classes of the FID between class-conditional generated and reference features."""

    needs = frozenset({"class_stats"})
    keys = ("ifid",)

    def compute(self, fake: Features, real: Features | None) -> dict[str, float]:
        s_fake = require(fake, "class_stats", "ifid", "generated")
        s_real = require(real, "class_stats", "ifid", "reference")
        assert isinstance(s_fake, dict) and isinstance(s_real, dict)
        mean, _ = intra_class_fid(s_fake, s_real)
        return {"ifid": mean}

"""Class-conditional precision, recall, density and coverage: PRDC within each class, averaged over classes.

For each class c, precision/recall ("Improved Precision and Recall Metric for Assessing Generative Models",
Kynkaanniemi et al., 2019) and density/coverage ("Reliable Fidelity and Diversity Metrics for Generative Models",
Naeem et al., 2020) between the generated images labelled c and the reference images of class c, computed exactly as
the global `prdc` metric (prdc.py: k-NN balls, k = 3 for P/R and 5 for D/C, strict "<"); the results are the
unweighted means over classes. Global PRDC cannot see a G that draws class c's images from class c + 1 (the pooled
sets are alike); per class, coverage and recall collapse.

A class is left out (with a one-line warning) when either set has at most k = max(k_pr, k_dc) images of it, since
its k-NN radii are undefined, or lacks it altogether. This mirrors intra-class FID (ifid).
"""
from __future__ import annotations

import warnings

import torch

from ..errors import GanforgeError
from ..registries import METRICS
from .base import Features, Metric, check_positive, require
from .class_acc import require_labels
from .prdc import prdc

KEYS = ("precision", "recall", "density", "coverage")


def usable_classes(fake_y: torch.Tensor, real_y: torch.Tensor, k: int) -> tuple[list[int], list[int]]:
    """(classes with more than k images in both sets, classes of either set left out), both sorted."""
    counts_f = dict(zip(*(t.tolist() for t in torch.unique(fake_y, return_counts=True))))
    counts_r = dict(zip(*(t.tolist() for t in torch.unique(real_y, return_counts=True))))
    used = sorted(c for c in counts_f.keys() & counts_r.keys() if counts_f[c] > k and counts_r[c] > k)
    return used, sorted((counts_f.keys() | counts_r.keys()) - set(used))


def class_prdc(real_x: torch.Tensor, real_y: torch.Tensor, fake_x: torch.Tensor, fake_y: torch.Tensor, k_pr: int = 3,
               k_dc: int = 5, chunk_size: int = 1024) -> tuple[dict[str, float], dict[int, dict[str, float]]]:
    """Mean over usable classes of PRDC(real of class c, generated of class c), and the per-class values."""
    k = max(k_pr, k_dc)
    classes, skipped = usable_classes(fake_y, real_y, k)
    if not classes:
        raise GanforgeError(f"prdc-class: no class has more than k = {k} images in both the generated and the "
                            f"reference set (is the model class-conditional? evaluate more images)")
    if skipped:
        warnings.warn(f"metric prdc-class: {len(skipped)} class(es) (e.g. {skipped[0]}) have at most k = {k} images "
                      f"in one set and are left out", stacklevel=2)
    per_class = {c: prdc(real_x[real_y == c], fake_x[fake_y == c], k_pr, k_dc, chunk_size) for c in classes}
    means = {key: sum(v[key] for v in per_class.values()) / len(per_class) for key in KEYS}
    return means, per_class


@METRICS.register("prdc-class")
class ClassPRDC(Metric):
    """Precision/recall/density/coverage within each class (generated label c vs reference class c), averaged."""

    name = "prdc-class"
    needs = frozenset({"pool", "labels"})
    keys = tuple(f"class_{key}" for key in KEYS)

    def __init__(self, *, k_pr: int = 3, k_dc: int = 5, chunk_size: int = 1024) -> None:
        self.k_pr = check_positive(k_pr, "prdc-class.k_pr")
        self.k_dc = check_positive(k_dc, "prdc-class.k_dc")
        self.chunk_size = check_positive(chunk_size, "prdc-class.chunk_size")

    def defined_floor(self, features: Features) -> tuple[int, str]:
        k = max(self.k_pr, self.k_dc)
        return k + 1, f"k-NN radii with k = max(k_pr, k_dc) = {k} need more than k images of a class"

    def sample_floor(self, features: Features) -> tuple[int, str]:
        return self.defined_floor(features)

    def check_samples(self, fake: Features, real: Features | None) -> None:
        """Labels on both sets and at least one class with more than k images in each, before anything is computed."""
        super().check_samples(fake, real)
        y_f = require_labels(fake, self.name, "generated")
        y_r = require_labels(real, self.name, "reference")
        k = max(self.k_pr, self.k_dc)
        if not usable_classes(y_f, y_r, k)[0]:
            raise GanforgeError(f"metric prdc-class: no class has more than k = {k} images in both the generated "
                                f"(n={fake.n}) and the reference set; evaluate more images")

    def compute(self, fake: Features, real: Features | None) -> dict[str, float]:
        x_f = require(fake, "pool", self.name, "generated")
        x_r = require(real, "pool", self.name, "reference")
        assert isinstance(x_f, torch.Tensor) and isinstance(x_r, torch.Tensor)
        y_f = require_labels(fake, self.name, "generated")
        y_r = require_labels(real, self.name, "reference")
        means, _ = class_prdc(x_r, y_r, x_f, y_f, self.k_pr, self.k_dc, self.chunk_size)
        return {f"class_{key}": value for key, value in means.items()}

    def __repr__(self) -> str:
        return f"ClassPRDC(k_pr={self.k_pr}, k_dc={self.k_dc})"

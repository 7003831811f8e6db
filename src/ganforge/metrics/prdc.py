"""Precision, recall, density and coverage of generated features against reference features.

Precision and recall: "Improved Precision and Recall Metric for Assessing Generative Models" (Kynkaanniemi et al.,
2019), with manifolds estimated by k_pr-NN balls (k = 3). Density and coverage: "Reliable Fidelity and Diversity
Metrics for Generative Models" (Naeem et al., 2020), with k_dc-NN balls around reference samples (k = 5). A ball's
radius is the distance to the k-th nearest neighbour in the same set, excluding the sample itself; membership is
strict ("<"). Distances are computed in chunks (knn.py) on features centred on the reference mean.
"""
from __future__ import annotations

import torch

from ..errors import GanforgeError
from ..registries import METRICS
from .base import Features, Metric, check_positive, require
from .knn import ball_counts, knn_radii


def prdc(
    real: torch.Tensor, fake: torch.Tensor, k_pr: int = 3, k_dc: int = 5, chunk_size: int = 1024
) -> dict[str, float]:
    """Precision, recall, density and coverage of `fake` (M, F) w.r.t. `real` (N, F).

    Computed in the inputs' dtype (float32 at least) on the device of `real`.
    """
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise GanforgeError(
            f"prdc: feature shapes differ: generated {tuple(fake.shape)}, reference {tuple(real.shape)}"
        )
    for which, x in (("reference", real), ("generated", fake)):
        if x.shape[0] <= max(k_pr, k_dc):
            raise GanforgeError(
                f"prdc: the {which} set needs more than k = {max(k_pr, k_dc)} samples, got {x.shape[0]}"
            )
    dtype = torch.promote_types(torch.promote_types(real.dtype, fake.dtype), torch.float32)
    center = real.double().mean(dim=0).to(dtype)  # distances are translation-invariant; centring cuts rounding
    real = real.to(dtype) - center
    fake = fake.to(device=real.device, dtype=dtype) - center
    n_fake = fake.shape[0]

    r_real_pr, r_real_dc = knn_radii(real, [k_pr, k_dc], chunk_size)  # (N,), (N,)
    (r_fake_pr,) = knn_radii(fake, [k_pr], chunk_size)  # (M,)
    (in_real_pr, in_real_dc), _ = ball_counts(fake, real, [r_real_pr, r_real_dc], chunk_size)  # (M,) each
    (in_fake_pr,), nearest_fake = ball_counts(real, fake, [r_fake_pr], chunk_size)  # (N,), (N,)

    return {
        # Kynkaanniemi et al. (2019): precision = mean_j f(fake_j, real balls), recall = mean_i f(real_i, fake balls)
        "precision": float((in_real_pr > 0).double().mean()),
        "recall": float((in_fake_pr > 0).double().mean()),
        # Naeem et al. (2020), density: (1 / kM) sum_j sum_i 1[Y_j in B(X_i, NND_k(X_i))]
        "density": float(in_real_dc.double().sum() / (k_dc * n_fake)),
        # Naeem et al. (2020), coverage: (1 / N) sum_i 1[exists j: Y_j in B(X_i, NND_k(X_i))]
        "coverage": float((nearest_fake < r_real_dc).double().mean()),
    }


def _subsample(x: torch.Tensor, max_samples: int | None, gen: torch.Generator) -> torch.Tensor:
    if max_samples is None or x.shape[0] <= max_samples:
        return x
    return x[torch.randperm(x.shape[0], generator=gen)[:max_samples].to(x.device)]


@METRICS.register("prdc")
class PRDC(Metric):
    """Precision/recall (Kynkaanniemi 2019) and density/coverage (Naeem 2020) from k-NN balls on pool features."""

    name = "prdc"
    needs = frozenset({"pool"})
    keys = ("precision", "recall", "density", "coverage")
    # max(k_pr, k_dc) + 1 (default 6): a sample's k-th nearest neighbour, itself excluded, must exist.
    min_defined = 6
    min_defined_reason = "k-NN radii need more than k samples"
    min_samples = 6
    min_samples_reason = min_defined_reason

    def __init__(
        self, k_pr: int = 3, k_dc: int = 5, max_samples: int | None = None, seed: int = 0, chunk_size: int = 1024
    ) -> None:
        self.k_pr = check_positive(k_pr, "prdc.k_pr")
        self.k_dc = check_positive(k_dc, "prdc.k_dc")
        self.max_samples = None if max_samples is None else check_positive(max_samples, "prdc.max_samples", 2)
        self.seed = seed
        self.chunk_size = check_positive(chunk_size, "prdc.chunk_size")

    def defined_floor(self, features: Features) -> tuple[int, str]:
        k = max(self.k_pr, self.k_dc)
        return k + 1, f"k-NN radii with k = max(k_pr, k_dc) = {k} need more than k samples"

    def sample_floor(self, features: Features) -> tuple[int, str]:
        return self.defined_floor(features)

    def compute(self, fake: Features, real: Features | None) -> dict[str, float]:
        x_fake = require(fake, "pool", "prdc", "generated")
        x_real = require(real, "pool", "prdc", "reference")
        assert isinstance(x_fake, torch.Tensor) and isinstance(x_real, torch.Tensor)
        gen = torch.Generator().manual_seed(self.seed)
        x_real = _subsample(x_real, self.max_samples, gen)
        x_fake = _subsample(x_fake, self.max_samples, gen)
        return prdc(x_real, x_fake, self.k_pr, self.k_dc, self.chunk_size)

    def __repr__(self) -> str:
        return f"PRDC(k_pr={self.k_pr}, k_dc={self.k_dc}, max_samples={self.max_samples}, seed={self.seed})"

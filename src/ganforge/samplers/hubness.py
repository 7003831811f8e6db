"""Hubness-prior latent sampling (Liang et al., "Exploring and Exploiting Hubness Priors for High-Quality GAN Latent
Sampling", ICML 2022).

In a large sample of latents, the k-occurrence N_k(z) of a latent is how many other latents of the sample have z
among their k nearest neighbours (Euclidean, in latent space). Latents with a high k-occurrence ("hubs") lie where
the sample is dense and, as the paper finds, give better images than random latents, without truncation's collapse
towards one mean image. The sampler draws pools of `pool` latents z ~ N(0, I), computes N_k within each pool and keeps
the latents whose N_k >= `threshold` (or, when `threshold` is not set, the `keep` fraction of each pool with the
highest N_k, ties broken by pool order), until n latents are collected; x = G(z).

Defaults (k = 5, pool = 10000, keep = 0.1) are ganforge's choices; the paper's own k, sample size and threshold are
UNCONFIRMED here. `threshold` follows the paper's form (N_k >= t). The discriminator is not used (the sampler
accepts D=None). Sample i keeps the label of its plain latent (`sampling.latents`), so a conditional G's requested
labels are honoured; pools are drawn from generator(seed, "hubness"). `stats`: pools drawn, latents scored, kept
fraction and the mean k-occurrence of the kept latents vs the pools'.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..checks import check_int
from ..errors import GanforgeError
from ..registries import SAMPLERS
from ..sampling import latents
from ..training.rng import generator
from .base import Batches, Sampler

MAX_POOLS = 10000  # pools one draw may take before giving up (a threshold almost no latent reaches)


def k_occurrence(points: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    """(N,) int64: N_k(i) = number of points j != i whose k nearest neighbours (excluding j itself) include i."""
    x = points.detach().double().flatten(1)
    n = x.shape[0]
    if not 1 <= k < n:
        raise GanforgeError(f"hubness.k: needs 1 <= k < pool size ({n}), got {k}")
    counts = torch.zeros(n, dtype=torch.long)
    for i in range(0, n, chunk):
        d = torch.cdist(x[i: i + chunk], x)
        rows = torch.arange(d.shape[0])
        d[rows, rows + i] = math.inf  # a point is not its own neighbour
        nn_idx = d.topk(k, dim=1, largest=False).indices
        counts += torch.bincount(nn_idx.flatten(), minlength=n)
    return counts


def select_hubs(counts: torch.Tensor, keep: float, threshold: int | None) -> torch.Tensor:
    """Indices of the kept latents in pool order: N_k >= threshold, or the top `keep` fraction by N_k."""
    if threshold is not None:
        return (counts >= threshold).nonzero().flatten()
    m = max(1, int(round(keep * len(counts))))
    order = torch.argsort(-counts, stable=True)  # highest first; ties by pool order
    return order[:m].sort().values


@SAMPLERS.register("hubness")
class Hubness(Sampler):
    """Hubness prior (Liang 2022): keep latents with high k-occurrence N_k in pools of N(0, I) draws; no D needed.

    Args:
        k: neighbours per latent in the k-occurrence.
        pool: latents per pool N_k is computed in.
        keep: fraction of each pool kept (the highest N_k) when `threshold` is not set.
        threshold: keep latents with N_k >= threshold instead.
        calibrate, calibration_samples: unused (no D); accepted for the common sampler interface.
    """

    name = "hubness"
    uses_discriminator = False

    def __init__(self, k: int = 5, pool: int = 10000, keep: float = 0.1, threshold: int | None = None,
                 calibrate: bool = False, calibration_samples: int = 5000):
        super().__init__(False, calibration_samples)
        self.k = check_int(k, "hubness.k", minimum=1)
        self.pool = check_int(pool, "hubness.pool", minimum=2)
        if self.k >= self.pool:
            raise GanforgeError(f"hubness.k: must be below hubness.pool ({self.pool}), got {self.k}")
        if not (0 < keep <= 1 and math.isfinite(keep)):
            raise GanforgeError(f"hubness.keep: expected a fraction in (0, 1], got {keep!r}")
        self.threshold = check_int(threshold, "hubness.threshold", minimum=0, allow_none=True)
        self.keep = float(keep)
        if calibrate:
            raise GanforgeError("hubness.calibrate: the hubness sampler does not use D, so there is nothing to "
                                "calibrate")

    def summary(self) -> str:
        if "scored" not in self.stats:
            return ""
        st = self.stats
        return (f"hubness: kept {st['kept']} of {st['scored']} latents ({100 * st['kept_fraction']:.1f}%), mean "
                f"k-occurrence {st['mean_k_occurrence_kept']:.2f} kept vs {st['mean_k_occurrence_pool']:.2f}")

    def generate_batches(self, G: nn.Module, D: nn.Module | None = None, n: int = 1, seed: int = 0,
                         batch_size: int = 256, labels=None, truncation: float | None = None, device=None,
                         data=None) -> Batches:
        """Like Sampler.generate_batches, but D may be None (it is not used); `truncation` does not apply."""
        batch_size = check_int(batch_size, "batch_size", minimum=1)
        if truncation is not None:
            raise GanforgeError("hubness: truncation does not combine with the hubness prior (it selects latents "
                                "itself); leave truncation unset")
        if device is None:
            param = next(iter(G.parameters()), None)
            device = param.device if param is not None else "cpu"
        z, y = latents(G, n, seed, labels)
        return self._draw(G, D, z, y, batch_size, device, seed, truncation)

    def hub_latents(self, G: nn.Module, n: int, seed: int) -> torch.Tensor:
        """n latents with high k-occurrence, drawn pool by pool."""
        gen = generator(seed, "hubness")
        kept, got, pools, scored, occ_kept, occ_all = [], 0, 0, 0, 0.0, 0.0
        while got < n:
            if pools >= MAX_POOLS:
                raise GanforgeError(f"hubness: kept only {got} of {n} latents in {pools} pools of {self.pool}; "
                                    f"lower hubness.threshold")
            z = G.sample_z(self.pool, generator=gen)
            counts = k_occurrence(z, self.k)
            idx = select_hubs(counts, self.keep, self.threshold)
            kept.append(z[idx])
            got, pools, scored = got + len(idx), pools + 1, scored + len(z)
            occ_kept, occ_all = occ_kept + float(counts[idx].sum()), occ_all + float(counts.sum())
        self.stats = {"pools": pools, "scored": scored, "kept": got, "kept_fraction": got / scored,
                      "mean_k_occurrence_kept": occ_kept / max(got, 1), "mean_k_occurrence_pool": occ_all / scored}
        return torch.cat(kept)[:n]

    def _draw(self, G, D, z, y, batch_size, device, seed, truncation) -> Batches:
        hubs = self.hub_latents(G, len(z), seed)
        for i in range(0, len(hubs), batch_size):
            yb = None if y is None else y[i: i + batch_size]
            with torch.no_grad():
                x = G(hubs[i: i + batch_size].to(device), None if yb is None else yb.to(device))
            yield x.float().cpu(), yb

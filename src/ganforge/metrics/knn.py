"""Chunked nearest-neighbour queries on feature sets, for the k-NN manifold metrics.

"Improved Precision and Recall Metric for Assessing Generative Models" (Kynkaanniemi et al., 2019) and "Reliable
Fidelity and Diversity Metrics for Generative Models" (Naeem et al., 2020) estimate a set's manifold as the union of
balls around its samples, each ball's radius being the distance to the sample's k-th nearest neighbour (itself
excluded). Both need distances between every pair of samples; here they are formed `chunk_size` query rows at a
time, so 50k x 50k queries need O(chunk_size * N) memory instead of O(N^2).

Distances use ||a - b||^2 = ||a||^2 + ||b||^2 - 2 a.b (one GEMM per chunk) in the inputs' dtype (at least float32),
clamped at 0. In float32 the rounding error of a squared distance is ~1e-7 (||a||^2 + ||b||^2); callers centre the
features first (prdc.py subtracts the reference mean) so that squared norms are comparable to squared distances, and a
"<" comparison against a radius can then only flip for pairs within ~1e-7 relative of that radius. (An exact duplicate
lands at ~3e-4 ||a|| rather than 0, still far inside any radius of a set without near-duplicates.) float64 inputs are
computed in float64.
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..errors import GanforgeError


def _work_dtype(*xs: torch.Tensor) -> torch.dtype:
    dtype = torch.float32
    for x in xs:
        dtype = torch.promote_types(dtype, x.dtype)
    return dtype


def sq_distances(a: torch.Tensor, b: torch.Tensor, b_sq_norms: torch.Tensor | None = None) -> torch.Tensor:
    """Squared Euclidean distances between the rows of a (M, F) and b (N, F) -> (M, N), clamped at 0."""
    b_sq = (b * b).sum(dim=1) if b_sq_norms is None else b_sq_norms
    d2 = (a * a).sum(dim=1, keepdim=True) + b_sq[None, :] - 2.0 * (a @ b.T)  # ||a||^2 + ||b||^2 - 2 a.b
    return d2.clamp_min_(0.0)


def knn_radii(x: torch.Tensor, ks: Sequence[int], chunk_size: int = 1024) -> list[torch.Tensor]:
    """Distance from each row of x (N, F) to its k-th nearest other row, for each k in `ks`.

    Returns one (N,) tensor per k, in order. Self-distances are excluded explicitly (set to +inf), so duplicate rows
    count as neighbours at distance 0.
    """
    n = x.shape[0]
    k_max = max(ks)
    if min(ks) < 1:
        raise GanforgeError(f"knn_radii: k must be >= 1, got {list(ks)}")
    if n <= k_max:
        raise GanforgeError(f"knn_radii: need more than k = {k_max} samples, got {n}")
    x = x.to(_work_dtype(x))
    sq_norms = (x * x).sum(dim=1)
    out = torch.empty(n, len(ks), dtype=x.dtype, device=x.device)
    cols = torch.tensor([k - 1 for k in ks], device=x.device)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        d2 = sq_distances(x[start:stop], x, sq_norms)  # (c, N)
        rows = torch.arange(stop - start, device=x.device)
        d2[rows, rows + start] = float("inf")  # exclude self
        nearest = torch.topk(d2, k_max, dim=1, largest=False, sorted=True).values  # (c, k_max)
        out[start:stop] = nearest[:, cols].sqrt()
    return [out[:, i] for i in range(len(ks))]


def ball_counts(
    query: torch.Tensor, points: torch.Tensor, radii: Sequence[torch.Tensor], chunk_size: int = 1024
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """For each query row: how many balls B(points_j, radius_j) contain it, and its distance to the nearest point.

    Args:
        query: (Q, F). points: (P, F). radii: one or more (P,) radius sets (strict "<": on the sphere is outside).
        chunk_size: query rows per distance block.

    Returns:
        ([counts (Q,) int64 per radius set], nearest distance (Q,)).
    """
    if query.shape[1] != points.shape[1]:
        raise GanforgeError(f"ball_counts: feature dims differ: {query.shape[1]} (query) vs {points.shape[1]} (points)")
    for r in radii:
        if r.shape != (points.shape[0],):
            raise GanforgeError(f"ball_counts: expected radii of shape ({points.shape[0]},), got {tuple(r.shape)}")
    dtype = _work_dtype(query, points)
    query, points = query.to(dtype), points.to(device=query.device, dtype=dtype)
    radii = [r.to(device=query.device, dtype=dtype) for r in radii]
    p_sq = (points * points).sum(dim=1)
    q = query.shape[0]
    counts = [torch.zeros(q, dtype=torch.int64, device=query.device) for _ in radii]
    nearest = torch.empty(q, dtype=dtype, device=query.device)
    for start in range(0, q, chunk_size):
        stop = min(start + chunk_size, q)
        d = sq_distances(query[start:stop], points, p_sq).sqrt_()  # (c, P)
        for count, r in zip(counts, radii):
            count[start:stop] = (d < r[None, :]).sum(dim=1)
        nearest[start:stop] = d.min(dim=1).values
    return counts, nearest

"""Benchmark: the Frechet distance on 2048-d features (FID's final step), ours vs the two common routes.

Routes timed on the same pair of covariance matrices:
  ours (auto)    ganforge.metrics.fid.frechet_distance: Cholesky of S1, eigvalsh of L^T S2 L
  ours (eigh)    the same with method="eigh": eigh of S1, eigvalsh of sqrt(S1)-rotated S2 (rank-deficient fallback)
  sqrtm          tr(scipy.linalg.sqrtm(S1 @ S2)) as in pytorch-fid / clean-fid
  eigvals        sum sqrt(Re eigvals(S1 @ S2)), the general (non-symmetric) eigenvalue route
Features come from a random low-rank + noise model with a power-law spectrum, the shape of real pool features:
x = (z * s) B + 0.02 noise + 0.3, with z ~ N(0, I), s_i = i^-0.8 over `rank` orthonormal directions B.

Run: python benchmarks/bench_fid.py [--n 10000] [--dim 2048] [--rank 512] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import platform
import time
import warnings
from typing import Callable

import numpy as np
import scipy
import scipy.linalg
import torch

from ganforge.metrics.fid import frechet_distance
from ganforge.metrics.stats import RunningStats


def make_stats(n: int, dim: int, rank: int, seed: int, basis: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of n synthetic features: power-law low-rank signal in `basis` plus isotropic noise."""
    g = torch.Generator().manual_seed(seed)
    scales = torch.arange(1, rank + 1, dtype=torch.float32) ** -0.8
    stats = RunningStats(num_features=dim)
    for start in range(0, n, 2048):
        b = min(2048, n - start)
        z = torch.randn(b, rank, generator=g) * scales  # (B, rank)
        x = z @ basis + 0.02 * torch.randn(b, dim, generator=g) + 0.3  # (B, dim)
        stats.update(x)
    return stats.mean.numpy(), stats.cov.numpy()


def fd_sqrtm(mu1, s1, mu2, s2) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root = scipy.linalg.sqrtm(s1 @ s2)  # no `disp`: SciPy >= 1.18 removed it
    root = root[0] if isinstance(root, tuple) else root
    d = mu1 - mu2
    return float(d @ d + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(root).real)


def fd_eigvals(mu1, s1, mu2, s2) -> float:
    w = np.linalg.eigvals(s1 @ s2).real
    d = mu1 - mu2
    return float(d @ d + np.trace(s1) + np.trace(s2) - 2.0 * np.sqrt(np.clip(w, 0.0, None)).sum())


def best_time(fn: Callable[[], float], repeats: int) -> tuple[float, float]:
    times, value = [], float("nan")
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return min(times), value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--rank", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3, help="repeats for our routes (best time is reported)")
    ap.add_argument("--baseline-repeats", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads "
          f"{torch.get_num_threads()}; numpy {np.__version__}, scipy {scipy.__version__}, torch {torch.__version__}")
    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(args.seed)
    basis = torch.linalg.qr(torch.randn(args.dim, args.rank, generator=g))[0].T.contiguous()  # (rank, dim)
    tilt = torch.linalg.qr(torch.randn(args.dim, args.rank, generator=g))[0].T.contiguous()
    real = make_stats(args.n, args.dim, args.rank, args.seed + 1, basis)
    fake = make_stats(args.n, args.dim, args.rank, args.seed + 2, 0.95 * basis + 0.05 * tilt)
    print(f"features: {args.n} x {args.dim}, rank {args.rank} + noise; stats in {time.perf_counter() - t0:.1f}s; "
          f"cond(S_real) = {np.linalg.cond(real[1]):.3g}")

    routes = {
        "ours (auto)": (lambda: frechet_distance(*fake, *real), args.repeats),
        "ours (eigh)": (lambda: frechet_distance(*fake, *real, method="eigh"), args.repeats),
        "sqrtm": (lambda: fd_sqrtm(*fake, *real), args.baseline_repeats),
        "eigvals": (lambda: fd_eigvals(*fake, *real), args.baseline_repeats),
    }
    results = {name: best_time(fn, r) for name, (fn, r) in routes.items()}
    ref = results["sqrtm"][1]
    ours_t = results["ours (auto)"][0]
    print(f"{'route':14s} {'time (s)':>9s} {'ours is x faster':>17s} {'FID':>22s} {'rel. diff vs sqrtm':>19s}")
    for name, (t, v) in results.items():
        print(f"{name:14s} {t:9.3f} {t / ours_t:17.2f} {v:22.15f} {abs(v - ref) / abs(ref):19.2e}")


if __name__ == "__main__":
    main()

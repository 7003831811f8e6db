"""KID, IS, PRDC, intra-class FID and FID-infinity against brute-force formulas; every registered metric's contract."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from ganforge.errors import GanforgeError
from ganforge.metrics.base import NEEDS, Features, Metric
from ganforge.metrics.fid import frechet_distance
from ganforge.metrics.fid_inf import fid_infinity, fit_fid_infinity, sample_counts
from ganforge.metrics.inception_score import inception_score as is_fn
from ganforge.metrics.intra_fid import intra_class_fid
from ganforge.metrics.kid import kernel_inception_distance
from ganforge.metrics.knn import ball_counts, knn_radii
from ganforge.metrics.prdc import prdc as prdc_fn
from ganforge.metrics.stats import RunningStats
from ganforge.registries import METRICS

# ---------------------------------------------------------------------------------------------------------------------
# KID


def _mmd2_brute(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, written as explicit double sums."""
    d = x.shape[1]
    k = lambda a, b: (a @ b / d + 1.0) ** 3  # noqa: E731
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2.0 * xy


def test_kid_single_full_subset_is_the_unbiased_mmd() -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(25, 6, generator=g, dtype=torch.float64), torch.randn(25, 6, generator=g, dtype=torch.float64)
    y = y * 1.3 + 0.2
    mean, std = kernel_inception_distance(x, y, subsets=1, subset_size=1000)  # clamped to 25: all samples
    assert mean == pytest.approx(_mmd2_brute(x.numpy(), y.numpy()), rel=1e-12)
    assert std == 0.0


def test_kid_separates_shifted_from_identical_distributions() -> None:
    g = torch.Generator().manual_seed(1)
    real, same, shifted = (torch.randn(400, 8, generator=g) for _ in range(3))
    same_kid, same_std = kernel_inception_distance(same, real, subsets=20, subset_size=100)
    shift_kid, _ = kernel_inception_distance(shifted + 0.5, real, subsets=20, subset_size=100)
    assert abs(same_kid) < 0.05 and same_std > 0  # unbiased: ~0 (either sign) for one distribution
    assert shift_kid > 0.5 and shift_kid > 20 * abs(same_kid)


def test_kid_metric_is_seeded_and_validated() -> None:
    g = torch.Generator().manual_seed(2)
    fake = Features(n=50, pool=torch.randn(50, 4, generator=g))
    real = Features(n=60, pool=torch.randn(60, 4, generator=g))
    metric = METRICS.build("kid", {"subsets": 5, "subset_size": 30, "seed": 3})
    assert metric.compute(fake, real) == metric.compute(fake, real)
    assert metric.compute(fake, real) != METRICS.build("kid", {"subsets": 5, "subset_size": 30, "seed": 4}).compute(
        fake, real
    )
    with pytest.raises(GanforgeError, match="kid.subsets"):
        METRICS.build("kid", {"subsets": 0})


# ---------------------------------------------------------------------------------------------------------------------
# Inception Score


def test_inception_score_matches_direct_formula() -> None:
    logits = torch.randn(40, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2
    p = torch.softmax(logits, 1).numpy()
    py = p.mean(0)
    expected = math.exp(np.mean(np.sum(p * (np.log(p) - np.log(py)), axis=1)))  # exp(E_x KL(p(y|x) || p(y)))
    mean, std = is_fn(logits, splits=1)
    assert mean == pytest.approx(expected, rel=1e-12) and std == 0.0


def test_inception_score_splits_cover_all_images() -> None:
    logits = torch.randn(23, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    perm = torch.randperm(23, generator=torch.Generator().manual_seed(7))
    p = torch.softmax(logits[perm], 1).numpy()
    parts = [p[i * 23 // 4:(i + 1) * 23 // 4] for i in range(4)]
    scores = [math.exp(np.mean(np.sum(q * (np.log(q) - np.log(q.mean(0))), axis=1))) for q in parts]
    mean, std = is_fn(logits, splits=4, seed=7)
    assert sum(len(q) for q in parts) == 23
    assert mean == pytest.approx(np.mean(scores), rel=1e-12) and std == pytest.approx(np.std(scores), rel=1e-9)


def test_inception_score_extremes() -> None:
    k = 6
    one_hot = torch.full((60, k), -1e3, dtype=torch.float64)
    one_hot[:, 2] = 0.0  # every image confidently class 2: no diversity
    assert is_fn(one_hot, splits=10)[0] == pytest.approx(1.0, abs=1e-12)
    uniform = torch.full((60, k), -1e3, dtype=torch.float64)
    uniform[torch.arange(60), torch.arange(60) % k] = 0.0  # confident and balanced over K classes
    assert is_fn(uniform, splits=1)[0] == pytest.approx(k, rel=1e-12)
    with pytest.raises(GanforgeError, match="is.splits"):
        is_fn(uniform, splits=61)


# ---------------------------------------------------------------------------------------------------------------------
# PRDC


def _prdc_brute(real: np.ndarray, fake: np.ndarray, k_pr: int, k_dc: int) -> dict[str, float]:
    """Full distance matrices; radii = k-th smallest off-diagonal distance; strict '<'."""
    dist = lambda a, b: np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))  # noqa: E731
    d_rr, d_ff, d_rf = dist(real, real), dist(fake, fake), dist(real, fake)
    np.fill_diagonal(d_rr, np.inf)
    np.fill_diagonal(d_ff, np.inf)
    r_pr, r_dc = np.sort(d_rr, 1)[:, k_pr - 1], np.sort(d_rr, 1)[:, k_dc - 1]
    f_pr = np.sort(d_ff, 1)[:, k_pr - 1]
    return {
        "precision": float((d_rf < r_pr[:, None]).any(0).mean()),
        "recall": float((d_rf < f_pr[None, :]).any(1).mean()),
        "density": float((d_rf < r_dc[:, None]).sum() / (k_dc * len(fake))),
        "coverage": float((d_rf.min(1) < r_dc).mean()),
    }


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 1000])
@pytest.mark.parametrize("k_pr, k_dc", [(3, 5), (1, 2)])
def test_prdc_matches_brute_force(chunk_size: int, k_pr: int, k_dc: int) -> None:
    g = torch.Generator().manual_seed(k_pr)
    real = torch.randn(70, 5, generator=g, dtype=torch.float64)
    fake = torch.randn(55, 5, generator=g, dtype=torch.float64) * 0.8 + 0.8
    got = prdc_fn(real, fake, k_pr, k_dc, chunk_size)
    expected = _prdc_brute(real.numpy(), fake.numpy(), k_pr, k_dc)
    assert got == pytest.approx(expected, abs=1e-15)
    assert 0 < got["precision"] < 1 and 0 < got["recall"] < 1  # a non-trivial case


def test_prdc_float32_close_to_float64() -> None:
    g = torch.Generator().manual_seed(5)
    real, fake = torch.randn(150, 16, generator=g) + 50.0, torch.randn(120, 16, generator=g) + 50.2  # offset: centred
    a, b = prdc_fn(real, fake), prdc_fn(real.double(), fake.double())
    assert a == pytest.approx(b, abs=1.5 / 120)  # at most one borderline sample may flip


def test_knn_radii_exclude_self_and_count_duplicates() -> None:
    x = torch.tensor([[0.0], [0.0], [1.0], [3.0]], dtype=torch.float64)
    (r1,), (r2,) = knn_radii(x, [1], chunk_size=3), knn_radii(x, [2], chunk_size=2)
    assert r1.tolist() == [0.0, 0.0, 1.0, 2.0] and r2.tolist() == [1.0, 1.0, 1.0, 3.0]
    (counts,), nearest = ball_counts(torch.tensor([[0.5], [2.0]], dtype=torch.float64), x, [r2])
    assert counts.tolist() == [4, 1] and nearest.tolist() == [0.5, 1.0]  # strict: 2.0 is on the sphere of 1.0


def test_prdc_identical_and_far_apart_sets() -> None:
    x = torch.randn(80, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    same = prdc_fn(x, x.clone())
    assert same["precision"] == 1.0 and same["recall"] == 1.0 and same["coverage"] == 1.0
    far = prdc_fn(x, x + 1e3)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_prdc_metric_subsamples_with_seed() -> None:
    g = torch.Generator().manual_seed(4)
    fake = Features(n=90, pool=torch.randn(90, 4, generator=g))
    real = Features(n=90, pool=torch.randn(90, 4, generator=g))
    metric = METRICS.build("prdc", {"max_samples": 40, "seed": 1})
    assert metric.compute(fake, real) == metric.compute(fake, real)
    gen = torch.Generator().manual_seed(1)
    sub_real = real.pool[torch.randperm(90, generator=gen)[:40]]
    sub_fake = fake.pool[torch.randperm(90, generator=gen)[:40]]
    assert metric.compute(fake, real) == prdc_fn(sub_real, sub_fake)


# ---------------------------------------------------------------------------------------------------------------------
# Intra-class FID and FID-infinity


def test_intra_fid_is_mean_of_per_class_fids() -> None:
    g = torch.Generator().manual_seed(0)
    fake = {c: RunningStats().update(torch.randn(30, 3, generator=g, dtype=torch.float64) + c) for c in range(3)}
    real = {c: RunningStats().update(torch.randn(40, 3, generator=g, dtype=torch.float64)) for c in (0, 1, 2, 9)}
    expected = np.mean([frechet_distance(fake[c].mean, fake[c].cov, real[c].mean, real[c].cov) for c in range(3)])
    with pytest.warns(UserWarning, match="1 class"):  # class 9 has no generated samples
        mean, per_class = intra_class_fid(fake, real)
    assert sorted(per_class) == [0, 1, 2] and mean == pytest.approx(expected, rel=1e-12)
    assert per_class[2] > per_class[0]  # class 2 is shifted by 2
    with pytest.raises(GanforgeError, match="no class"):
        intra_class_fid({0: fake[0]}, {1: real[1]})


def test_fid_inf_fit_recovers_intercept() -> None:
    ns = np.linspace(5000, 50000, 15).astype(int)
    a, b = fit_fid_infinity(ns, 3.21 + 4567.0 / ns)
    assert a == pytest.approx(3.21, rel=1e-10) and b == pytest.approx(4567.0, rel=1e-8)
    assert sample_counts(50000, 15, 5000)[[0, -1]].tolist() == [5000, 50000]
    assert sample_counts(3000, 15, 5000)[0] == 1500  # min_n >= n falls back to n // 2


def test_fid_inf_removes_sample_size_bias() -> None:
    # Fakes drawn from the reference Gaussian N(0, I) itself: the true FID is 0, while FID from N samples is biased by
    # ~ (d + d (d + 1) / 4) / N (E||mean||^2 = d / N, trace term ~ ||S - I||_F^2 / 4). Averaged over independent sets,
    # the extrapolated value must be ~0 and the fitted slope must match that bias.
    dim, n = 6, 1000
    real = RunningStats.from_state(
        {"n": torch.tensor(10**9), "mean": torch.zeros(dim, dtype=torch.float64),
         "m2": torch.eye(dim, dtype=torch.float64) * (10**9 - 1)}
    )
    values, slopes, last = [], [], []
    for seed in range(24):
        pool = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))
        value, ns, fids = fid_infinity(pool, real, points=8, min_n=100, seed=seed)
        assert ns[0] == 100 and ns[-1] == n and fids[-1] > 0
        values.append(value)
        slopes.append(fit_fid_infinity(ns, fids)[1])
        last.append(fids[-1])
    assert abs(np.mean(values)) < 0.5 * np.mean(last)  # most of the bias at full N is removed (std of ratio ~0.17)
    assert np.mean(slopes) == pytest.approx(dim + dim * (dim + 1) / 4, rel=0.2)


# ---------------------------------------------------------------------------------------------------------------------
# Contract shared by every registered metric


def _toy_features(shift: float, seed: int) -> Features:
    g = torch.Generator().manual_seed(seed)
    pool = torch.randn(64, 4, generator=g) + shift
    labels = torch.arange(64) % 2
    class_stats = {c: RunningStats().update(pool[labels == c]) for c in (0, 1)}
    logits = torch.randn(64, 5, generator=g) * 3
    return Features(n=64, stats=RunningStats().update(pool), pool=pool, logits=logits, labels=labels,
                    class_stats=class_stats)


FEATURE_METRICS = ["fid", "kid", "is", "prdc", "ifid", "fid_inf"]  # the metrics computed from `Features`


def test_feature_metrics_are_registered() -> None:
    assert set(FEATURE_METRICS) <= set(METRICS.names())


@pytest.mark.parametrize("name", FEATURE_METRICS)
def test_registered_metric_contract(name: str) -> None:
    metric = METRICS.build(name)
    assert isinstance(metric, Metric) and METRICS.get(name).description
    assert metric.needs <= NEEDS and metric.reference_needs <= NEEDS and metric.keys
    fake, real = _toy_features(0.3, 0), _toy_features(0.0, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the toy sets are big enough for every metric
        out = metric.compute(fake, real if metric.needs_reference else None)
    assert tuple(out) == metric.keys and all(isinstance(v, float) and math.isfinite(v) for v in out.values())
    if metric.needs_reference:  # the metric states what it needs: everything else may be dropped
        keep = lambda f, needs: Features(n=f.n, **{k: getattr(f, k) for k in needs})  # noqa: E731
        assert metric.compute(keep(fake, metric.needs), keep(real, metric.reference_needs)) == out

"""Frechet distance and streaming statistics: checked against independent float64 references."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from ganforge.errors import GanforgeError
from ganforge.metrics.base import Features
from ganforge.metrics.fid import FID, frechet_distance, trace_sqrt_product
from ganforge.metrics.stats import RunningStats, update_per_class

METHODS = ["auto", "cholesky", "eigh"]


def _features(n: int, dim: int, seed: int, offset: float = 0.1) -> np.ndarray:
    """Gaussian features with a decaying spectrum in a random rotation (like a network's pool features)."""
    rng = np.random.default_rng(seed)
    rotation = np.linalg.qr(rng.standard_normal((dim, dim)))[0]
    x = rng.standard_normal((n, dim)) / np.sqrt(np.arange(1, dim + 1)) @ rotation.T
    return x + offset * rng.standard_normal(dim)


def _gaussian(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x.mean(axis=0), np.cov(x, rowvar=False)


def _fid_sqrtm(mu1, s1, mu2, s2) -> float:
    """The classic reference computation: trace of scipy.linalg.sqrtm(S1 @ S2)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sqrtm warns on singular products
        root = scipy.linalg.sqrtm(s1 @ s2)
    root = root[0] if isinstance(root, tuple) else root  # SciPy < 1.18 with disp=False returns a tuple
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(root).real)


def _fid_nuclear(x: np.ndarray, y: np.ndarray) -> float:
    """Exact reference from raw samples: tr((S1 S2)^(1/2)) = ||X1c X2c^T||_* / sqrt((n1 - 1)(n2 - 1))."""
    xc, yc = x - x.mean(0), y - y.mean(0)
    nuclear = np.linalg.svd(xc @ yc.T, compute_uv=False).sum() / np.sqrt((len(x) - 1) * (len(y) - 1))
    (mu1, s1), (mu2, s2) = _gaussian(x), _gaussian(y)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * nuclear)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("seed", [0, 1])
def test_frechet_distance_full_rank_matches_sqrtm(method: str, seed: int) -> None:
    x, y = _features(400, 48, seed), _features(500, 48, seed + 10)
    ours = frechet_distance(*_gaussian(x), *_gaussian(y), method=method)
    assert ours == pytest.approx(_fid_sqrtm(*_gaussian(x), *_gaussian(y)), rel=1e-9)
    assert ours == pytest.approx(_fid_nuclear(x, y), rel=1e-9)


@pytest.mark.parametrize("n1, n2", [(30, 40), (30, 400), (400, 30)])
def test_frechet_distance_rank_deficient(n1: int, n2: int) -> None:
    # N < dim: singular covariances. "auto" falls back to the other set's Cholesky or to eigh.
    x, y = _features(n1, 64, 3), _features(n2, 64, 4)
    for method in ("auto", "eigh"):
        ours = frechet_distance(*_gaussian(x), *_gaussian(y), method=method)
        # sqrtm of a singular product is itself only good to ~3e-8 here; the nuclear-norm form is exact
        assert ours == pytest.approx(_fid_sqrtm(*_gaussian(x), *_gaussian(y)), rel=1e-7)
        assert ours == pytest.approx(_fid_nuclear(x, y), rel=1e-12)


def test_cholesky_route_rejects_singular() -> None:
    x, y = _features(10, 32, 0), _features(100, 32, 1)
    with pytest.raises(np.linalg.LinAlgError):
        trace_sqrt_product(np.cov(x, rowvar=False), np.cov(y, rowvar=False), method="cholesky")


@pytest.mark.parametrize("n", [500, 20])
def test_frechet_distance_identical_sets_is_zero(n: int) -> None:
    mu, sigma = _gaussian(_features(n, 32, 5, offset=3.0))
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-10 * np.trace(sigma))


def test_frechet_distance_mean_shift_only() -> None:
    mu, sigma = _gaussian(_features(200, 16, 6))
    shift = np.full(16, 0.5)
    assert frechet_distance(mu, sigma, mu + shift, sigma) == pytest.approx(shift @ shift, rel=1e-9)


def test_frechet_distance_accepts_tensors() -> None:
    mu, sigma = _gaussian(_features(200, 16, 7))
    mu2, sigma2 = _gaussian(_features(200, 16, 8))
    expected = frechet_distance(mu, sigma, mu2, sigma2)
    got = frechet_distance(*(torch.from_numpy(a).float() for a in (mu, sigma, mu2, sigma2)))
    assert got == pytest.approx(expected, rel=1e-5)  # float32 inputs: only the input rounding differs


def test_frechet_distance_rejects_bad_input() -> None:
    mu, sigma = _gaussian(_features(100, 8, 0))
    mu4, sigma4 = _gaussian(_features(100, 4, 1))
    with pytest.raises(GanforgeError, match="set 1 has 8, set 2 has 4"):
        frechet_distance(mu, sigma, mu4, sigma4)
    with pytest.raises(GanforgeError, match=r"covariance \(F, F\)"):
        frechet_distance(mu, sigma[:4], mu, sigma)
    bad = sigma.copy()
    bad[0, 0] = np.nan
    with pytest.raises(GanforgeError, match="sigma2 contains NaN"):
        frechet_distance(mu, sigma, mu, bad)
    with pytest.raises(GanforgeError, match="mu1 contains NaN or Inf"):
        frechet_distance(np.full(8, np.inf), sigma, mu, sigma)


# ---------------------------------------------------------------------------------------------------------------------
# RunningStats


def test_running_stats_streamed_equals_whole_set() -> None:
    # A large common offset would cancel catastrophically in a raw sum of outer products; Chan's update keeps it exact.
    x = _features(257, 12, 0) + 1e4
    stats = RunningStats()
    for batch in np.array_split(x, [1, 50, 51, 180]):  # uneven batches, including single rows
        stats.update(torch.from_numpy(batch))
    assert stats.n == 257
    np.testing.assert_allclose(stats.mean.numpy(), x.mean(0), rtol=1e-14)
    np.testing.assert_allclose(stats.cov.numpy(), np.cov(x, rowvar=False), rtol=1e-9, atol=1e-12)
    assert torch.equal(stats.cov, stats.cov.T)


def test_running_stats_merge_equals_single_accumulation() -> None:
    x = torch.from_numpy(_features(300, 10, 1))
    whole = RunningStats().update(x)
    a, b, c = RunningStats().update(x[:70]), RunningStats().update(x[70:71]), RunningStats().update(x[71:])
    merged = RunningStats().merge(a).merge(b.merge(c))  # merge into an empty accumulator too
    assert merged.n == whole.n
    torch.testing.assert_close(merged.mean, whole.mean, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(merged.cov, whole.cov, rtol=1e-12, atol=1e-15)


def test_running_stats_state_roundtrip_and_errors() -> None:
    stats = RunningStats().update(torch.randn(20, 6))
    state = stats.state_dict()
    assert set(state) == {"n", "mean", "m2"} and all(isinstance(v, torch.Tensor) for v in state.values())
    again = RunningStats.from_state(state)
    assert again.n == 20 and torch.equal(again.cov, stats.cov) and torch.equal(again.mean, stats.mean)
    with pytest.raises(GanforgeError, match="expected 6 features, got 5"):
        stats.update(torch.randn(3, 5))
    with pytest.raises(GanforgeError, match="at least 2 samples"):
        _ = RunningStats().update(torch.randn(1, 6)).cov
    with pytest.raises(GanforgeError, match="missing key"):
        RunningStats.from_state({"n": torch.tensor(3)})


def test_update_per_class_routes_rows() -> None:
    x, labels = torch.randn(60, 4, dtype=torch.float64), torch.arange(60) % 3
    per_class: dict[int, RunningStats] = {}
    update_per_class(per_class, x[:25], labels[:25])
    update_per_class(per_class, x[25:], labels[25:])
    assert sorted(per_class) == [0, 1, 2]
    for c in range(3):
        torch.testing.assert_close(per_class[c].cov, torch.cov(x[labels == c].T), rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------------------------------------------------
# FID metric


def test_fid_metric_matches_frechet_distance_and_warns_when_rank_deficient() -> None:
    x, y = torch.from_numpy(_features(100, 8, 0)), torch.from_numpy(_features(120, 8, 1))
    fake, real = Features(n=100, stats=RunningStats().update(x)), Features(n=120, stats=RunningStats().update(y))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # N > dim: no warning
        FID().check_samples(fake, real)
        out = FID().compute(fake, real)
    assert out == {"fid": pytest.approx(_fid_nuclear(x.numpy(), y.numpy()), rel=1e-9)}
    small = Features(n=5, stats=RunningStats().update(x[:5]))
    with pytest.warns(UserWarning, match="metric fid: n=5 source samples, fewer than the 8 it needs: .*rank-deficient"):
        FID().check_samples(small, real)  # the Evaluator's check before compute
    with pytest.raises(GanforgeError, match="reference features lack 'stats'"):
        FID().compute(fake, Features(n=120))

"""2D Gaussian mixtures (ring8, grid25): sample statistics and PacGAN mode metrics on samples with known answers."""
import math

import pytest
import torch

from ganforge.errors import GanforgeError
from ganforge.registries import DATASETS

# name -> (number of modes, sigma)
MIXTURES = {"ring8": (8, 0.01), "grid25": (25, 0.05)}


def build(name, **opts):
    return DATASETS.build(name, opts, split="train", cache_dir=None)


@pytest.mark.parametrize("name", sorted(MIXTURES))
def test_samples_follow_the_mixture(name):
    k, sigma = MIXTURES[name]
    ds = build(name, n=20000)
    x, y = ds.get_batch(torch.arange(len(ds)))
    assert x.dtype == torch.float32 and x.shape == (20000, 2) and ds.info.shape == (2,)
    assert ds.info.num_classes == k and y.min() == 0 and y.max() == k - 1
    counts = torch.bincount(y, minlength=k).float()
    assert (counts / counts.mean() - 1).abs().max() < 0.2  # equal weights
    offsets = x - ds.centers[y]  # per-sample deviation from its own mode
    assert offsets.mean(0).abs().max() < 5 * sigma / math.sqrt(20000 / k)
    assert abs(offsets.std().item() / sigma - 1) < 0.05
    assert ds.mode_samples == 2500


def test_mode_centers():
    ring = build("ring8", n=10).centers
    assert torch.allclose(ring.norm(dim=1), torch.ones(8), atol=1e-6)
    angles = torch.atan2(ring[:, 1], ring[:, 0]).remainder(2 * math.pi)
    assert torch.allclose(angles.sort().values, torch.arange(8) * (math.pi / 4), atol=1e-5)
    grid = build("grid25", n=10).centers
    assert {tuple(p) for p in grid.tolist()} == {(a, b) for a in (-4, -2, 0, 2, 4) for b in (-4, -2, 0, 2, 4)}


@pytest.mark.parametrize("name", sorted(MIXTURES))
def test_deterministic_and_fingerprinted(name):
    a, b = build(name, n=500, seed=3), build(name, n=500, seed=3)
    assert torch.equal(a.x, b.x) and a.fingerprint() == b.fingerprint()
    c = build(name, n=500, seed=4)
    test = DATASETS.build(name, {"n": 500, "seed": 3}, split="test", cache_dir=None)
    assert len({a.fingerprint(), c.fingerprint(), test.fingerprint()}) == 3
    assert not torch.equal(a.x, test.x)


@pytest.mark.parametrize("name", sorted(MIXTURES))
def test_mode_metrics_known_answers(name):
    k, sigma = MIXTURES[name]
    ds = build(name, n=100)
    c = ds.centers
    on_modes = c.repeat(10, 1)  # 10 samples exactly on each mode
    m = ds.mode_metrics(on_modes)
    assert m["modes"] == k and m["hq_frac"] == 1.0 and m["kl"] == pytest.approx(0.0, abs=1e-9)

    one_mode = c[:1].repeat(50, 1) + 0.5 * sigma  # all within 3 sigma of mode 0
    m = ds.mode_metrics(one_mode)
    assert m["modes"] == 1 and m["hq_frac"] == 1.0 and m["kl"] == pytest.approx(math.log(k))

    far = torch.full_like(on_modes, 100.0)  # half the samples nowhere near a mode
    m = ds.mode_metrics(torch.cat([on_modes, far]))
    assert m["modes"] == k and m["hq_frac"] == 0.5 and m["kl"] == pytest.approx(0.0, abs=1e-9)

    just_outside = c + torch.tensor([3.2 * sigma, 0.0])  # beyond 3 sigma: not high quality
    m = ds.mode_metrics(just_outside)
    assert m["modes"] == 0 and m["hq_frac"] == 0.0 and m["kl"] == pytest.approx(math.log(k))  # documented choice


@pytest.mark.parametrize("name", ["ring8", "grid25", "two-gaussians", "three-blobs"])
def test_mode_counts_are_high_quality_samples_per_nearest_mode(name):
    ds = build(name, n=10)
    c, sigma, k = ds.centers, ds.sigma, len(ds.centers)
    fake = torch.cat([c[:1].repeat(3, 1) + torch.tensor([0.5 * sigma, 0.0]),  # 3 samples at mode 0
                      c[-1:] - torch.tensor([0.0, 2.9 * sigma]),  # 1 at the last mode, just inside 3 sigma
                      torch.tensor([[100.0, 100.0]])])  # 1 far from every mode: in no bin
    counts = ds.mode_counts(fake)
    assert counts.dtype == torch.int64 and counts.tolist() == [3] + [0] * (k - 2) + [1]
    assert int(counts.sum()) == 4  # the high-quality samples
    # the scalars come from those counts: 2 modes, 4/5 high quality, KL of q = (3/4, 0, ..., 1/4) to uniform over k
    m = ds.mode_metrics(fake)
    assert m["modes"] == 2 and m["hq_frac"] == pytest.approx(0.8)
    assert m["kl"] == pytest.approx(0.75 * math.log(0.75 * k) + 0.25 * math.log(0.25 * k))
    metrics, again = ds.mode_results(fake)
    assert metrics == m and torch.equal(again, counts)


@pytest.mark.parametrize("name", sorted(MIXTURES))
def test_real_samples_score_as_the_protocol_expects(name):
    k, _ = MIXTURES[name]
    ds = build(name, n=5000)
    m = ds.mode_metrics(ds.x[: ds.mode_samples])
    assert m["modes"] == k
    assert m["hq_frac"] == pytest.approx(1 - math.exp(-4.5), abs=0.01)  # P(|N(0, s^2 I_2)| < 3s) = 1 - e^{-9/2}
    assert m["kl"] < 0.05


def test_bad_options():
    with pytest.raises(GanforgeError, match="data.n"):
        build("ring8", n=0)
    with pytest.raises(GanforgeError, match="split"):
        DATASETS.build("grid25", {}, split="val", cache_dir=None)

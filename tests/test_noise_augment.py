"""Instance noise and Diffusion-GAN noise: identity limits, noise statistics, shard invariance, the sigma / T rules,
checkpointed state and option errors."""
from __future__ import annotations

import math

import pytest
import torch

from ganforge.augment.diffusion import DiffusionNoise, alpha_bars
from ganforge.augment.instance_noise import InstanceNoise
from ganforge.errors import GanforgeError
from ganforge.registries import AUGMENTATIONS
from ganforge.training.rng import SampleRNG


def images(b: int = 8, c: int = 3, h: int = 6, w: int = 6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, h, w, generator=g) * 2 - 1


def rng(b: int, key: str = "k") -> SampleRNG:
    return SampleRNG((key,), slice(0, b), b)


# --------------------------------------------------------------------------------------------------- instance noise
def test_instance_noise_at_sigma_zero_is_the_identity_on_images_and_points():
    aug = InstanceNoise(sigma=0.0)
    x, pts = images(), torch.randn(16, 2)
    assert aug(x, rng(8)) is x and aug(pts, rng(16)) is pts
    annealed = InstanceNoise(sigma=0.3)  # default sigma_end = 0: at the end of training it is the identity too
    annealed.update({"progress": 1.0})
    assert torch.equal(annealed(x, rng(8)), x)


@pytest.mark.parametrize("shape", [(4000, 2), (500, 2, 3, 3)])
def test_instance_noise_has_mean_zero_and_variance_sigma_squared(shape):
    sigma = 0.3  # variance 0.09
    x = torch.randn(*shape)
    d = InstanceNoise(sigma=sigma)(x, rng(shape[0])) - x
    assert d.mean().item() == pytest.approx(0.0, abs=0.01)
    assert d.var().item() == pytest.approx(0.09, rel=0.05)


def test_instance_noise_anneals_linearly_with_progress_and_logs_sigma():
    aug = InstanceNoise(sigma=0.2, sigma_end=0.05)
    assert aug.log_values() == {"noise_sigma": 0.2}  # before any update: progress 0
    for progress, expected in [(0.0, 0.2), (0.5, 0.125), (0.8, 0.08), (1.0, 0.05), (1.7, 0.05)]:
        aug.update({"progress": progress, "step": 0})
        assert aug.log_values()["noise_sigma"] == pytest.approx(expected)
        assert float(aug.sigma_t) == pytest.approx(expected)
    aug.update({"progress": 0.5})  # sigma 0.125: noise variance 0.015625
    x = torch.zeros(20000, 2)
    assert aug(x, rng(20000)).var().item() == pytest.approx(0.015625, rel=0.05)


def test_instance_noise_state_dict_round_trip():
    a = InstanceNoise(sigma=0.4)
    a.update({"progress": 0.25})  # 0.3
    b = InstanceNoise(sigma=0.4)
    b.load_state_dict(a.state_dict())
    assert b.log_values() == {"noise_sigma": pytest.approx(0.3)}
    x = images()
    assert torch.equal(a(x, rng(8)), b(x, rng(8)))


# -------------------------------------------------------------------------------------------------------- diffusion
def test_alpha_bar_schedule_hand_values():
    ab = alpha_bars(10)
    assert ab[0].item() == 1.0 and ab.shape == (11,)
    assert ab[1].item() == pytest.approx(0.9999, abs=1e-12)  # 1 - beta_1
    ab2 = alpha_bars(2)  # betas 1e-4, 2e-2
    assert ab2[2].item() == pytest.approx(0.9999 * 0.98, abs=1e-12)
    assert bool((ab[1:] < ab[:-1]).all())  # strictly decreasing in t


def test_diffusion_t0_leaves_images_unchanged_and_points_pass_through():
    aug = DiffusionNoise(clean=1.0)  # every sample gets t = 0, alpha_bar_0 = 1
    x = images()
    assert torch.equal(aug(x, rng(8)), x)
    pts = torch.randn(16, 2)
    assert DiffusionNoise()(pts) is pts


def test_diffusion_t1_at_T10_is_the_hand_value():
    """METHODS.md: T = 10, alpha_bar_1 = 0.9999, x_1 = 0.99995 x + 0.01 * 0.05 * eps."""
    aug = DiffusionNoise(t_min=10, t_max=10, sampling="uniform", clean=0.0)
    drawn = aug.timesteps
    aug.timesteps = lambda b, r: drawn(b, r).clamp(max=1)  # same draws, but every sample at t = 1
    x = images()
    y = aug(x, rng(8))
    r = rng(8)
    r.rand(8), r.rand(8)  # the two timestep draws come first
    eps = r.randn(8, 3, 6, 6)
    torch.testing.assert_close(y, math.sqrt(0.9999) * x + math.sqrt(1e-4) * 0.05 * eps)
    assert math.sqrt(0.9999) == pytest.approx(0.99995, abs=1e-8) and math.sqrt(1e-4) * 0.05 == pytest.approx(5e-4)


def test_diffusion_noise_statistics_at_fixed_t():
    """T = 2 with priority sampling: P(1) = 0, so every noisy sample has t = 2, alpha_bar_2 = 0.9999 * 0.98 = 0.979902.
    y - sqrt(ab) x = sqrt(1 - ab) * 0.05 * eps has mean 0 and variance 0.020098 * 0.0025 = 5.0245e-5."""
    aug = DiffusionNoise(t_min=2, t_max=2, clean=0.0)
    x = images(b=400)
    y = aug(x, rng(400))
    d = y - math.sqrt(0.979902) * x
    assert d.mean().item() == pytest.approx(0.0, abs=2e-4)
    assert d.var().item() == pytest.approx(5.0245e-5, rel=0.05)


def test_priority_and_uniform_timestep_frequencies():
    n = 60000
    pri = DiffusionNoise(t_min=4, t_max=4).timesteps(n, rng(n))  # half clean, half P(t) = (t - 1) / 6 on {1..4}
    freq = torch.bincount(pri, minlength=5).double() / n
    torch.testing.assert_close(freq, torch.tensor([0.5, 0.0, 0.5 / 6, 1.0 / 6, 1.5 / 6], dtype=torch.float64),
                               atol=0.01, rtol=0)
    uni = DiffusionNoise(t_min=4, t_max=4, sampling="uniform", clean=0.0).timesteps(n, rng(n))
    freq = torch.bincount(uni, minlength=5).double() / n
    torch.testing.assert_close(freq, torch.tensor([0.0, 0.25, 0.25, 0.25, 0.25], dtype=torch.float64),
                               atol=0.01, rtol=0)


@pytest.mark.parametrize("aug", [InstanceNoise(), DiffusionNoise(p=0.5)], ids=["instance-noise", "diffusion"])
def test_a_sample_gets_the_same_noise_in_any_micro_batch_split(aug):
    x = images(b=8)
    whole = aug(x, rng=SampleRNG(("k",), slice(0, 8), 8))
    for parts in (2, 4, 8):
        n = 8 // parts
        pieces = [aug(x[i * n:(i + 1) * n], rng=SampleRNG(("k",), slice(i * n, (i + 1) * n), 8)) for i in range(parts)]
        assert torch.equal(torch.cat(pieces), whole)
    assert not torch.equal(aug(x, rng=SampleRNG(("other",), slice(0, 8), 8)), whole)
    assert not torch.equal(whole, x)


def test_T_is_505_at_p_half_and_moves_with_r_d():
    """p = 0.5: T = 10 + round(0.5 * 990) = 505. One window of B = 64, interval 4, ada_kimg 100 moves p by
    256 / 100000 = 0.00256, i.e. T (unrounded) by C = 2.5344: 10 + round(0.50256 * 990) = 10 + round(497.53) = 508
    when r_d > target, 10 + round(0.49744 * 990) = 10 + round(492.47) = 502 when r_d < target."""
    aug = DiffusionNoise(p=0.5)
    assert int(aug.T) == 505 and aug.log_values() == {"diffusion_T": 505.0, "diffusion_p": 0.5}
    aug.update({"d_real_sign": 0.9, "window_nimg": 256})
    assert float(aug.p) == pytest.approx(0.50256) and int(aug.T) == 508
    assert aug.log_values() == {"diffusion_T": 508.0, "diffusion_p": pytest.approx(0.50256), "diffusion_rd": 0.9}
    low = DiffusionNoise(p=0.5)
    low.update({"d_real_sign": 0.2, "window_nimg": 256})
    assert int(low.T) == 502
    same = DiffusionNoise(p=0.5)
    same.update({"d_real_sign": 0.6, "window_nimg": 256})  # r_d == target: no move
    assert int(same.T) == 505
    same.update({"d_real_sign": float("nan"), "window_nimg": 256})  # no reals in the window: no move
    assert int(same.T) == 505


def test_T_is_clamped_to_t_min_and_t_max_and_the_table_follows_T():
    aug = DiffusionNoise()  # p = 0: T = t_min = 10
    assert int(aug.T) == 10
    aug.update({"d_real_sign": -1.0, "window_nimg": 256})
    assert int(aug.T) == 10 and float(aug.p) == 0.0
    top = DiffusionNoise(p=0.999)
    top.update({"d_real_sign": 1.0, "window_nimg": 100000})  # p would be 1.999: clipped to 1
    assert float(top.p) == 1.0 and int(top.T) == 1000
    assert top._alpha_bar.shape == (1001,)
    fixed = DiffusionNoise(p=0.5, schedule="fixed")
    fixed.update({"d_real_sign": 1.0, "window_nimg": 256})
    assert int(fixed.T) == 505


def test_adaptive_diffusion_needs_d_real_sign():
    with pytest.raises(GanforgeError, match="d_real_sign|sign D"):
        DiffusionNoise().update({"window_nimg": 256})


def test_diffusion_state_dict_round_trip():
    a = DiffusionNoise(p=0.5)
    a.update({"d_real_sign": 1.0, "window_nimg": 256})
    b = DiffusionNoise()
    b.load_state_dict(a.state_dict())
    assert int(b.T) == 508 and b.log_values() == a.log_values() and b._alpha_bar.shape == (509,)
    x = images()
    assert torch.equal(a(x, rng(8)), b(x, rng(8)))


# ------------------------------------------------------------------------------------------------------- options
@pytest.mark.parametrize("name, options, key", [
    ("instance-noise", {"sigma": -1}, "augment.sigma"),
    ("instance-noise", {"sigma_end": -0.5}, "augment.sigma_end"),
    ("instance-noise", {"interval": 0}, "augment.interval"),
    ("diffusion", {"p": 1.5}, "augment.p"),
    ("diffusion", {"target": 2.0}, "augment.target"),
    ("diffusion", {"ada_kimg": 0}, "augment.ada_kimg"),
    ("diffusion", {"interval": 0}, "augment.interval"),
    ("diffusion", {"schedule": "linear"}, "augment.schedule"),
    ("diffusion", {"sampling": "random"}, "augment.sampling"),
    ("diffusion", {"t_min": 1}, "augment.t_min"),  # priority needs T >= 2
    ("diffusion", {"t_min": 20, "t_max": 10}, "augment.t_max"),
    ("diffusion", {"clean": -0.1}, "augment.clean"),
    ("diffusion", {"beta_start": 0.1, "beta_end": 0.01}, "augment.beta_end"),
    ("diffusion", {"noise_sd": -1}, "augment.noise_sd"),
])
def test_bad_options_raise_one_line_errors_naming_the_key(name, options, key):
    with pytest.raises(GanforgeError) as err:
        AUGMENTATIONS.build(name, options, where="augment", num_classes=0)
    msg = str(err.value)
    assert msg.startswith(key + ":") and "\n" not in msg


def test_uniform_sampling_allows_T_one():
    aug = DiffusionNoise(t_min=1, t_max=1, sampling="uniform", clean=0.0)
    assert set(aug.timesteps(100, rng(100)).tolist()) == {1}

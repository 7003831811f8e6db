"""Hyperparameter schedules (training/schedules.py) and the half-life EMA: R3GAN's curve, live values, exact resume."""
from __future__ import annotations

import copy
import math

import pytest
import torch

from helpers import TINY_DIGITS, last_state
from ganforge.config import from_dict
from ganforge.errors import GanforgeError
from ganforge.training.ema import halflife_decay
from ganforge.training.schedules import Schedule
from ganforge.training.trainer import Trainer, train

B = 16
KIMG = 0.064  # 64 images: the schedules end after 4 steps of 16


def _raw(**train) -> dict:
    raw = copy.deepcopy(TINY_DIGITS)
    raw["regularizers"] = [{"name": "r1", "gamma": 0.05}, {"name": "r2", "gamma": 0.05}]
    raw["augment"] = {"name": "ada", "p": 0.0, "schedule": "fixed"}
    raw["optim"] = {"g_lr": 2e-4, "d_lr": 2e-4, "betas": [0.0, 0.9]}
    raw["train"].update({"steps": 6, "ckpt_every": 3, "ema_kimg": 0.0, **train})
    raw["schedules"] = [
        {"key": "optim.g_lr", "to": 5e-5, "kimg": KIMG}, {"key": "optim.d_lr", "to": 5e-5, "kimg": KIMG},
        {"key": "optim.betas.1", "to": 0.99, "kimg": KIMG},
        {"key": "regularizers.0.gamma", "to": 0.005, "kimg": KIMG},
        {"key": "regularizers.1.gamma", "to": 0.005, "kimg": KIMG},
        {"key": "train.ema_kimg", "to": 0.5, "kimg": KIMG},
        {"key": "augment.p", "to": 0.55, "kimg": KIMG, "shape": "linear"},
    ]
    return raw


def test_r3gan_cifar_gamma_halfway_is_0_0275_and_the_curve_is_flat_at_both_ends():
    sch = Schedule("regularizers.0.gamma", to=0.005, kimg=20000)  # 0.05 -> 0.005 over 20M images (R3GAN CIFAR-10)
    assert sch.value(0.05, 10_000_000) == pytest.approx(0.0275)
    assert sch.value(0.05, 0) == 0.05 and sch.value(0.05, 20_000_000) == pytest.approx(0.005)
    assert sch.value(0.05, 40_000_000) == pytest.approx(0.005)  # constant afterwards
    eps = 1000  # cosine: zero slope at both ends, half the change at the middle
    assert abs(sch.value(0.05, eps) - 0.05) < 1e-8 and abs(sch.value(0.05, 20_000_000 - eps) - 0.005) < 1e-8
    lin = Schedule("augment.p", to=0.55, kimg=20000, shape="linear", start_kimg=1000)
    assert lin.value(0.0, 1_000_000) == 0.0 and lin.value(0.0, 11_000_000) == pytest.approx(0.275)


def test_halflife_decay_is_stylegan2_adas_rule_with_rampup():
    assert halflife_decay(32, 10.0, 10**9) == pytest.approx(0.5 ** (32 / 10_000))
    assert halflife_decay(32, 10.0, 1000, rampup=0.05) == pytest.approx(0.5 ** (32 / 50))  # capped at 0.05 x 1000
    assert halflife_decay(32, 10.0, 0, rampup=0.05) == 0.0  # nothing shown yet: G_ema copies G


def test_each_step_trains_with_the_scheduled_values(tmp_path):
    torch.set_num_threads(1)
    t = Trainer(from_dict(_raw()), tmp_path / "run", progress=False)
    seen = []
    for _ in range(5):
        t.train_step()
        terms = {k.split(":")[0]: v for k, v in t.terms.items()}
        seen.append((t.opt["G"].param_groups[0]["lr"], t.opt["D"].param_groups[0]["betas"][1],
                     terms["regularizers.0"].gamma, terms["regularizers.1"].gamma, float(t.augment.p)))
    for step, (lr, beta2, g0, g1, p) in enumerate(seen):
        frac = 1 - 0.5 * (1 + math.cos(math.pi * min(step * B / 64, 1)))  # images shown before the step
        assert lr == pytest.approx(2e-4 + frac * (5e-5 - 2e-4))
        assert beta2 == pytest.approx(0.9 + frac * 0.09)
        assert g0 == g1 == pytest.approx(0.05 + frac * (0.005 - 0.05))
        assert p == pytest.approx(0.55 * min(step * B / 64, 1))
    assert seen[-1][0] == pytest.approx(5e-5) and seen[0][0] == pytest.approx(2e-4)


def test_g_ema_follows_the_scheduled_half_life(tmp_path):
    """ema_kimg 0 -> 0.5 over 64 images: step 0 copies G (half-life 0); later steps average with 0.5 ** (B / hl)."""
    raw = _raw(steps=3)
    raw["schedules"] = [{"key": "train.ema_kimg", "to": 0.5, "kimg": KIMG}]
    t = Trainer(from_dict(raw), tmp_path / "run", progress=False)
    t.train_step()
    for p, q in zip(t.G_ema.parameters(), t.G.parameters()):
        assert torch.equal(p, q)
    before = [p.detach().clone() for p in t.G_ema.parameters()]
    t.train_step()  # step 1: 16 images shown, half-life 0.5 * cos-fraction(0.25) thousand images
    hl = 500 * (1 - 0.5 * (1 + math.cos(math.pi * 0.25)))
    beta = 0.5 ** (B / hl)
    for p_ema, p0, p in zip(t.G_ema.parameters(), before, t.G.parameters()):
        torch.testing.assert_close(p_ema, beta * p0 + (1 - beta) * p)


def test_a_resumed_run_has_the_uninterrupted_runs_weights(tmp_path):
    torch.set_num_threads(1)
    raw = _raw()
    train(from_dict(raw), tmp_path / "straight", progress=False)
    half = copy.deepcopy(raw)
    half["train"]["steps"] = 3
    train(from_dict(half), tmp_path / "resumed", progress=False)
    train(from_dict(raw), tmp_path / "resumed", progress=False)
    a, b = last_state(tmp_path / "straight"), last_state(tmp_path / "resumed")
    assert a["step"] == b["step"] == 6
    for net in ("G", "D", "G_ema", "augment"):
        assert all(torch.allclose(a[net][k], b[net][k], rtol=0, atol=0, equal_nan=True) for k in a[net]), net
    assert float(b["augment"]["p"]) == pytest.approx(0.55)


@pytest.mark.parametrize("entry,expect", [
    ({"key": "optim.lr", "to": 1, "kimg": 1}, "schedules.0.key: expected one of optim.g_lr"),
    ({"key": "optim.g_lr", "to": 1}, "schedules.0: expected a mapping with key, to and kimg"),
    ({"key": "optim.g_lr", "to": 1, "kimg": 0}, "schedules.0.kimg: expected a number > 0"),
    ({"key": "optim.g_lr", "to": "x", "kimg": 1}, "schedules.0.to: expected a number"),
    ({"key": "optim.g_lr", "to": 1, "kimg": 1, "shape": "step"}, "schedules.0.shape: expected one of cosine, linear"),
    ({"key": "optim.g_lr", "to": 1, "kimg": 1, "every": 2}, "schedules.0.every: unknown key"),
    ({"key": "regularizers.3.gamma", "to": 1, "kimg": 1}, "names regularizers.3, which this config does not have"),
    ({"key": "regularizers.0.lambda", "to": 1, "kimg": 1}, "regularizers.0 'r1' has no option 'lambda'"),
])
def test_bad_schedules_get_one_line_errors_naming_the_key(entry, expect):
    raw = _raw()
    raw["schedules"] = [entry]
    with pytest.raises(GanforgeError, match=expect.replace(".", r"\.")) as err:
        from_dict(raw)
    assert "\n" not in str(err.value)


def test_an_adaptive_augment_p_cannot_also_be_scheduled(tmp_path):
    raw = _raw()
    raw["augment"] = {"name": "ada", "p": 0.0}  # schedule: adaptive (default)
    raw["schedules"] = [{"key": "augment.p", "to": 0.5, "kimg": 1}]
    with pytest.raises(GanforgeError, match="needs augment.schedule 'fixed'"):
        Trainer(from_dict(raw), tmp_path / "run", progress=False)


def test_schedules_round_trip_through_the_saved_config():
    cfg = from_dict(_raw())
    again = from_dict(cfg.to_dict())
    assert again.schedules == cfg.schedules and len(cfg.schedules) == 7
    assert "schedules" not in from_dict(copy.deepcopy(TINY_DIGITS)).to_dict()  # old runs' configs are unchanged

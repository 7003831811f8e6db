"""The adaptive augmentations (ADA, APA, Diffusion-GAN) in real runs: their p / T adapts during training, survives a
SIGKILL + resume bit for bit, and moves identically on 2 gloo ranks and in one process (their statistics are
reduced over ranks; their per-sample randomness follows the sample's row in the global batch).

The speed is raised (ada_kimg 0.5: p can move by 0.128 per 4-step window of 16 images) so that p visibly moves within
a few dozen steps; the networks are BatchNorm-free MLPs so 2 ranks compare with 1 process exactly.
"""
from __future__ import annotations

import copy

import pytest
import torch

from helpers import last_state, torchrun, train_killed_then_resumed, write_config

from ganforge.config import from_dict
from ganforge.training.trainer import train

ADAPTIVE = ["ada", "apa", "diffusion"]
BASE = {
    "seed": 0,
    "data": {"name": "digits", "resolution": 8},
    "model": {"name": "mlp", "z_dim": 8, "hidden": 32, "layers": 2},
    "loss": {"name": "hinge"},
    "optim": {"g_lr": 2e-3, "d_lr": 2e-3},
    "train": {"steps": 40, "batch_size": 16, "log_every": 4, "sample_every": 0, "ckpt_every": 10, "mode_every": 0,
              "tensorboard": False, "threads": 1},
}


def config(name: str, **train_options) -> dict:
    raw = copy.deepcopy(BASE)
    speed = "apa_kimg" if name == "apa" else "ada_kimg"  # each keeps its paper's option name
    raw["augment"] = {"name": name, speed: 0.5, "target": 0.2}
    raw["train"].update(train_options)
    return raw


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _p(state: dict) -> float:
    return float(state["augment"]["p"])


@pytest.mark.parametrize("name", ADAPTIVE)
def test_adaptive_augmentation_resumes_bit_for_bit_after_sigkill(name, tmp_path):
    raw = config(name)
    train(from_dict(raw), tmp_path / "uninterrupted", progress=False)
    train_killed_then_resumed(raw, tmp_path / "killed", kill_after=20)
    a, b = last_state(tmp_path / "uninterrupted"), last_state(tmp_path / "killed")
    assert a["step"] == b["step"] == raw["train"]["steps"]
    assert _p(a) > 0, f"{name}'s p never moved: the test would not see a lost state"
    for key in ("augment", "G", "D", "G_ema"):
        assert _equal(a[key], b[key]), key
    assert a["stats_windows"] == b["stats_windows"]


@pytest.mark.parametrize("name", ADAPTIVE)
def test_adaptive_augmentation_on_two_gloo_ranks_equals_one_process(name, tmp_path):
    raw = config(name, steps=24, ckpt_every=12)
    train(from_dict(raw), tmp_path / "single", progress=False)
    torchrun(write_config(tmp_path, raw), tmp_path / "ddp")
    a, b = last_state(tmp_path / "single"), last_state(tmp_path / "ddp")
    assert _p(a) > 0
    for k, v in a["augment"].items():  # p (and T) from all-reduced statistics: the same on both
        torch.testing.assert_close(b["augment"][k], v, rtol=1e-6, atol=1e-7, msg=f"augment.{k}")
    for net in ("G", "D"):
        for k, v in a[net].items():
            torch.testing.assert_close(b[net][k], v, rtol=1e-4, atol=1e-5, msg=f"{net}.{k}")

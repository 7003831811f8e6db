"""Resume after SIGKILL == uninterrupted (bit for bit) and 2 gloo ranks == 1 process, for full recipes.

The recipes combine what the single-feature tests cannot: labels through cBN and a projection D, LeCam's stateful
anchors, lazy R1 with two D steps per G step, DiffAugment's per-sample randomness, gradient accumulation, lr decay,
spectral norm, and bf16 autocast with channels-last; plus the test plugin's Q head (parameters trained with G), an
adaptive augmentation fed with all-reduced statistics and a batch-level term that all-gathers.

BatchNorm normalizes over each micro-batch, so 2 ranks x accumulate 2 is compared with 1 process x accumulate 4 (the
same four micro-batches of the global batch); BN running statistics are per rank and are not compared.
"""
from __future__ import annotations

import copy

import pytest
import torch

from helpers import PLUGIN_ENV, TINY_POINTS, last_state, torchrun, train_killed_then_resumed, write_config

from ganforge.config import from_dict
from ganforge.training.trainer import train

RECIPE = {
    "seed": 0,
    "data": {"name": "digits", "resolution": 8},
    "model": {"name": "dcgan", "z_dim": 16, "g_ch": 8, "d_ch": 8, "d_sn": True},
    "conditioning": {"g": {"name": "cbn"}, "d": {"name": "projection"}},
    "loss": {"name": "hinge"},
    "regularizers": [{"name": "lecam", "weight": 0.1}, {"name": "r1", "gamma": 0.1, "every": 2}],
    "augment": {"name": "diffaugment"},
    "optim": {"d_steps": 2, "lr_decay": "linear", "lr_decay_start": 0.5},
    "train": {"steps": 160, "batch_size": 16, "accumulate": 2, "log_every": 20, "sample_every": 1000,
              "ckpt_every": 20, "tensorboard": False, "threads": 1, "grid_size": 16},
}
VARIANTS = {"fp32": {}, "bf16-channels-last": {"amp": "bf16", "channels_last": True}}

PLUGINS = {
    **copy.deepcopy(TINY_POINTS),
    "plugins": ["ganforge_testplugin"],
    "regularizers": [{"name": "lecam", "weight": 0.1}, {"name": "test-latent-q"}, {"name": "test-batchwise"}],
    "augment": {"name": "test-adaptive-noise", "target": 0.0},
}


def recipe(variant: str, **train) -> dict:
    raw = copy.deepcopy(RECIPE)
    raw["train"].update(VARIANTS[variant], **train)
    return raw


def _params(state: dict, net: str) -> dict[str, torch.Tensor]:
    """Parameters and SN vectors (not BN running statistics, which are per rank) of a checkpointed network."""
    return {k: v for k, v in state[net].items() if not k.split(".")[-1].startswith(("running_", "num_batches"))}


@pytest.mark.parametrize("variant", VARIANTS)
def test_recipe_resumes_bit_for_bit_after_sigkill(variant, tmp_path):
    raw = recipe(variant)
    reference = tmp_path / "uninterrupted"
    train(from_dict(raw), reference, progress=False)
    run = tmp_path / "killed"
    train_killed_then_resumed(raw, run, kill_after=60)
    a, b = last_state(reference), last_state(run)
    assert a["step"] == b["step"] == raw["train"]["steps"]
    for key in ("G", "D", "G_ema", "augment"):
        assert a[key].keys() == b[key].keys() and all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
    assert a["terms"] == b["terms"] and a["terms"]["regularizers.0:lecam"]["steps"] == 2 * raw["train"]["steps"]
    for opt in ("opt_G", "opt_D"):
        for i, s in a[opt]["state"].items():
            assert all(torch.equal(s[k], b[opt]["state"][i][k]) for k in s)


@pytest.mark.parametrize("variant", VARIANTS)
def test_recipe_on_two_gloo_ranks_equals_one_process(variant, tmp_path):
    steps = 12
    single_raw = recipe(variant, steps=steps, accumulate=4, ckpt_every=6)  # the same 4 micro-batches as 2 x 2
    # both runs stop half way and are extended (train.steps changes the lr-decay schedule, so the paths must match,
    # and the change must be allowed explicitly)
    train(from_dict(recipe(variant, steps=steps // 2, accumulate=4, ckpt_every=6)), tmp_path / "single", progress=False)
    train(from_dict(single_raw), tmp_path / "single", progress=False, allow_config_change=True)
    ddp_raw = recipe(variant, steps=steps, accumulate=2, ckpt_every=6)
    cfg_path = write_config(tmp_path, ddp_raw)
    torchrun(cfg_path, tmp_path / "ddp", f"train.steps={steps // 2}")  # stop half way ...
    torchrun(cfg_path, tmp_path / "ddp", "--allow-config-change")  # ... and resume on 2 ranks
    a, b = last_state(tmp_path / "single"), last_state(tmp_path / "ddp")
    tol = {"rtol": 2e-3, "atol": 2e-3} if variant != "fp32" else {"rtol": 1e-4, "atol": 1e-5}
    for net in ("G", "D"):
        pa, pb = _params(a, net), _params(b, net)
        assert pa.keys() == pb.keys()
        for k in pa:
            torch.testing.assert_close(pb[k], pa[k], **tol, msg=f"{net}.{k}")
    la, lb = a["terms"]["regularizers.0:lecam"], b["terms"]["regularizers.0:lecam"]
    assert la["steps"] == lb["steps"] == 2 * steps
    assert lb["ema_real"] == pytest.approx(la["ema_real"], **{"rel": tol["rtol"], "abs": tol["atol"]})
    assert lb["ema_fake"] == pytest.approx(la["ema_fake"], **{"rel": tol["rtol"], "abs": tol["atol"]})


def test_plugin_components_on_two_gloo_ranks_equal_one_process(tmp_path):
    raw = copy.deepcopy(PLUGINS)
    raw["train"].update(steps=24, batch_size=32, ckpt_every=12)
    train(from_dict(raw), tmp_path / "single", progress=False)
    torchrun(write_config(tmp_path, raw), tmp_path / "ddp", env=PLUGIN_ENV)
    a, b = last_state(tmp_path / "single"), last_state(tmp_path / "ddp")
    assert float(a["augment"]["p"]) > 0  # the adaptive augmentation moved ...
    assert torch.equal(a["augment"]["p"], b["augment"]["p"])  # ... identically: its statistics are all-reduced
    for key, window in a["stats_windows"].items():  # mid-window sums are global-batch sums on every rank
        assert window["runs"] == b["stats_windows"][key]["runs"] and window["counts"] == b["stats_windows"][key]["counts"]
        assert window["sums"] == pytest.approx(b["stats_windows"][key]["sums"], rel=1e-5, abs=1e-6)
    for net in ("G", "D"):
        for k, v in a[net].items():
            torch.testing.assert_close(b[net][k], v, rtol=1e-4, atol=1e-5, msg=f"{net}.{k}")
    for k, v in a["terms"]["regularizers.1:test-latent-q"].items():  # the Q head trained with G on both
        torch.testing.assert_close(b["terms"]["regularizers.1:test-latent-q"][k], v, rtol=1e-4, atol=1e-5)
    lecam_a, lecam_b = a["terms"]["regularizers.0:lecam"], b["terms"]["regularizers.0:lecam"]
    assert lecam_b["ema_real"] == pytest.approx(lecam_a["ema_real"], rel=1e-4, abs=1e-6)

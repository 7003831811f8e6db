"""End-to-end training: outputs, exact resume after a kill, NaN stop, export/load without the training path."""
import copy
import json

import torch
from safetensors.torch import load_file

from helpers import TINY_POINTS, cli, last_state, train_killed_then_resumed, write_config

import ganforge
from ganforge.config import from_dict
from ganforge.training.checkpoint import list_checkpoints, load_checkpoint
from ganforge.training.trainer import train


def _cfg(**train):
    raw = copy.deepcopy(TINY_POINTS)
    raw["train"].update(train)
    return raw


def test_run_writes_logs_grids_checkpoints_and_export(tmp_path):
    raw = _cfg(tensorboard=True, sample_every=10, mode_every=15)
    summary = train(from_dict(raw), tmp_path / "run", progress=False)
    run = tmp_path / "run"
    events = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    train_events = [e for e in events if e["event"] == "train"]
    assert [e["step"] for e in train_events] == [5, 10, 15, 20, 25, 30]
    assert {"d_loss", "g_loss", "img_per_s", "kimg"} <= set(train_events[0])
    modes = [e for e in events if e["event"] == "modes"]
    assert [e["step"] for e in modes] == [15, 30] and {"modes", "hq_frac", "kl"} <= set(modes[0])
    assert {"modes", "hq_frac", "kl", "step"} <= set(summary)
    assert sorted(p.name for p in (run / "samples").glob("fakes-*.png")) == [
        "fakes-00000010.png", "fakes-00000020.png", "fakes-00000030.png"]
    assert list((run / "tb").glob("events.out.tfevents.*"))
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == [
        "ckpt-00000010.pt", "ckpt-00000020.pt", "ckpt-00000030.pt"]
    state = load_checkpoint(list_checkpoints(run / "checkpoints")[-1])
    assert {"G", "D", "G_ema", "opt_G", "opt_D", "scaler_G", "scaler_D", "augment", "rng_torch", "step"} <= set(state)
    assert (run / "config.yaml").exists() and (run / "export" / "generator.safetensors").exists()
    # export loads without the trainer and reproduces G_ema exactly
    G = ganforge.load_generator(run)
    for k, v in load_file(str(run / "export" / "generator.safetensors")).items():
        assert torch.equal(G.state_dict()[k], v)
    for k, v in state["G_ema"].items():
        assert torch.equal(G.state_dict()[k], v)


def test_zero_intervals_mean_at_the_end_only(tmp_path):
    raw = _cfg(log_every=0, sample_every=0, ckpt_every=0, mode_every=0, steps=12)
    train(from_dict(raw), tmp_path / "run", progress=False)
    run = tmp_path / "run"
    events = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(e["event"], e["step"]) for e in events if e["event"] in ("train", "modes")] == [
        ("train", 12), ("modes", 12)]
    assert [p.name for p in (run / "samples").glob("fakes-*.png")] == ["fakes-00000012.png"]
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == ["ckpt-00000012.pt"]


def _final_weights(run):
    return load_file(str(run / "export" / "generator.safetensors"))


def test_killed_run_resumes_bit_for_bit(tmp_path):
    raw = _cfg(steps=400, ckpt_every=40, log_every=20)
    reference = tmp_path / "uninterrupted"
    train(from_dict(raw), reference, progress=False)
    run = tmp_path / "killed"
    train_killed_then_resumed(raw, run, kill_after=80)
    a, b = _final_weights(reference), _final_weights(run)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    sa, sb = last_state(reference), last_state(run)
    for net in ("G", "D"):
        assert all(torch.equal(sa[net][k], sb[net][k]) for k in sa[net])
    steps = [json.loads(l)["step"] for l in (run / "metrics.jsonl").read_text().splitlines()
             if json.loads(l)["event"] == "train"]
    assert steps == sorted(set(steps)), "metrics.jsonl must not repeat steps after a resume"


def test_extending_steps_continues_where_it_stopped(tmp_path):
    full = tmp_path / "full"
    train(from_dict(_cfg(steps=20)), full, progress=False)
    part = tmp_path / "part"
    train(from_dict(_cfg(steps=10)), part, progress=False)
    train(from_dict(_cfg(steps=20)), part, progress=False)
    a, b = _final_weights(full), _final_weights(part)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_gradient_accumulation_matches_full_batch(tmp_path):
    train(from_dict(_cfg(steps=5)), tmp_path / "one", progress=False)
    train(from_dict(_cfg(steps=5, accumulate=4)), tmp_path / "acc", progress=False)
    a, b = _final_weights(tmp_path / "one"), _final_weights(tmp_path / "acc")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


def test_nan_divergence_stops_with_clear_message_and_keeps_checkpoint(tmp_path):
    raw = _cfg(steps=200, ckpt_every=1)
    raw["optim"] = {"g_lr": 1e30, "d_lr": 1e-3}  # G explodes after its first step
    cfg_path = write_config(tmp_path, raw)
    r = cli("train", str(cfg_path), "--out", str(tmp_path / "run"), "--no-progress")
    assert r.returncode != 0
    err = r.stderr.strip().splitlines()
    assert err[-1].startswith("ganforge: error: non-finite loss") and "Traceback" not in r.stderr
    assert "last good checkpoint" in err[-1]
    ckpts = list_checkpoints(tmp_path / "run" / "checkpoints")
    assert ckpts
    state = load_checkpoint(ckpts[-1])
    assert all(torch.isfinite(v).all() for v in state["G"].values() if v.is_floating_point())


def test_bf16_autocast_trains_on_cpu(tmp_path):
    train(from_dict(_cfg(steps=4, amp="bf16")), tmp_path / "bf16", progress=False)
    w = _final_weights(tmp_path / "bf16")
    assert all(torch.isfinite(v).all() for v in w.values() if v.is_floating_point())

"""Text-conditional training end to end: captions -> embeddings per phase, resume, 2 gloo ranks, export, --text.

A tiny run on the procedural captioned shapes (16 px) with the learned encoder (trained with D), `text-cbn` in G,
the text-projection D (with its mismatched-pair term) and MA-GP.
"""
from __future__ import annotations

import copy
import json

import pytest
import torch

from helpers import cli, last_state, torchrun, train_killed_then_resumed, write_config

from ganforge.config import from_dict
from ganforge.errors import GanforgeError
from ganforge.objectives.base import Context
from ganforge.training.distributed import DistInfo
from ganforge.training.trainer import Trainer, train

TEXT_RUN = {
    "seed": 0,
    "data": {"name": "shapes-captions", "resolution": 16, "n": 96},
    "model": {"name": "dcgan", "z_dim": 16, "g_ch": 8, "d_ch": 8, "d_sn": True},
    "conditioning": {"g": {"name": "text-cbn", "dim": 16}, "d": {"name": "text-projection"},
                     "text": {"name": "learned", "dim": 16, "embed_dim": 8}},
    "loss": {"name": "hinge"},
    "regularizers": [{"name": "ma-gp"}],
    "train": {"steps": 40, "batch_size": 16, "log_every": 10, "sample_every": 1000, "ckpt_every": 10,
              "tensorboard": False, "threads": 1, "grid_size": 16},
}


def _trainer(raw: dict, path) -> Trainer:
    return Trainer(from_dict(raw), path, progress=False, dist=DistInfo(), device=torch.device("cpu"))


def test_condition_is_a_caption_of_each_image_and_the_encoder_trains_with_d(tmp_path):
    tr = _trainer(TEXT_RUN, tmp_path / "run")
    text = tr.parts.text
    assert text.trains_with == "D" and any(m is text for m in tr.nets["D"])  # learned: in D's optimizer
    # image indices -> rows of that image's captions, uniform over them (floor(u * count))
    images = torch.tensor([0, 0, 0, 5])
    rows = text.pick(images, torch.tensor([0.0, 0.5, 0.999, 0.3]))
    counts = text.offsets[1:] - text.offsets[:-1]
    assert rows.tolist()[:3] == [0, int(counts[0]) // 2, int(counts[0]) - 1]
    assert text.offsets[5] <= rows[3] < text.offsets[6]
    # in a phase, y_real / y_fake become sentence embeddings of captions of the indexed images
    x, _ = tr.dataset.get_batch(torch.arange(4))
    ctx = Context(G=tr.G, D=tr.D, real=tr.modality.to_model(x), y_real=torch.arange(4), z=tr.G.sample_z(4),
                  y_fake=torch.tensor([7, 7, 7, 7]), phase="D", rng_key=(0, "t"))
    text.prepare(ctx)
    assert ctx.y_real.shape == (4, text.dim) and ctx.y_real.is_floating_point()
    for i, e in enumerate(ctx.y_real):  # each embedding is one of image i's captions'
        options = text.encode(torch.arange(int(text.offsets[i]), int(text.offsets[i + 1])), "cpu")
        assert (options - e).abs().amax(dim=1).min() < 1e-6
    # D's loss reaches the encoder's weights
    loss = ctx.d_real.adv.mean() + ctx.d_fake.adv.mean()
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in text.parameters())


def test_text_run_resumes_bit_for_bit_exports_and_samples_with_text(tmp_path):
    raw = copy.deepcopy(TEXT_RUN)
    reference = tmp_path / "uninterrupted"
    train(from_dict(raw), reference, progress=False)
    run = tmp_path / "killed"
    train_killed_then_resumed(raw, run, kill_after=20)
    a, b = last_state(reference), last_state(run)
    assert a["step"] == b["step"] == raw["train"]["steps"]
    for key in ("G", "D", "G_ema"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
    enc = "conditioning.text:learned"
    assert a["terms"][enc].keys() == b["terms"][enc].keys() and a["terms"][enc]
    assert all(torch.equal(a["terms"][enc][k], b["terms"][enc][k]) for k in a["terms"][enc])

    export = json.loads((run / "export" / "config.json").read_text())
    assert export["text_dim"] == 16 and export["text"]["name"] == "learned" and export["text"]["vocab"]
    out = tmp_path / "s.png"
    r = cli("sample", str(run), "--n", "4", "--out", str(out), "--text", "a small red circle",
            "--text", "a large blue square")
    assert r.returncode == 0, r.stderr
    assert out.exists() and out.stat().st_size > 0
    r = cli("sample", str(run), "--n", "4", "--out", str(tmp_path / "t.png"))  # no --text: training captions
    assert r.returncode == 0, r.stderr
    r = cli("sample", str(run), "--n", "4", "--out", str(out), "--text", " ")  # an empty caption
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and "--text" in r.stderr


def test_text_run_on_two_gloo_ranks_equals_one_process(tmp_path):
    raw = copy.deepcopy(TEXT_RUN)
    raw["train"].update(steps=6, ckpt_every=6)
    raw["model"]["d_sn"] = False  # BatchNorm-free D; G's BN runs per rank, so compare with accumulation
    raw["train"]["accumulate"] = 2
    train(from_dict(raw), tmp_path / "single", progress=False)
    ddp = copy.deepcopy(raw)
    ddp["train"]["accumulate"] = 1
    torchrun(write_config(tmp_path, ddp), tmp_path / "ddp")
    a, b = last_state(tmp_path / "single"), last_state(tmp_path / "ddp")
    for key in ("G", "D"):
        for k, v in a[key].items():
            if not k.split(".")[-1].startswith(("running_", "num_batches")):
                torch.testing.assert_close(b[key][k], v, rtol=1e-4, atol=1e-5, msg=f"{key}.{k}")
    for k, v in a["terms"]["conditioning.text:learned"].items():  # the encoder trained identically
        torch.testing.assert_close(b["terms"]["conditioning.text:learned"][k], v, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("change,match", [
    ({"data": {"name": "digits", "resolution": 16}}, "captioned dataset"),
    ({"conditioning": {"g": {"name": "text-cbn"}, "d": {"name": "text-projection"}}}, "no text encoder"),
    ({"conditioning": {"g": {"name": "cbn"}, "d": {"name": "text-projection"},
                       "text": {"name": "learned"}}}, "conditioning.g 'cbn'"),
])
def test_text_misconfigurations_are_one_line_errors(change, match, tmp_path):
    raw = {**copy.deepcopy(TEXT_RUN), **change}
    with pytest.raises(GanforgeError, match=match) as e:
        _trainer(raw, tmp_path / "run")
    assert "\n" not in str(e.value)


def test_evaluating_a_text_generator_draws_training_captions(tmp_path):
    """`ganforge eval` / the training hook on a text G without given captions: G is asked for the captions of random
    training images (seeded), so FID-style metrics work; the draw is reproducible and uses real captions."""
    from ganforge.metrics.evaluate import evaluate
    from ganforge.registries import DATASETS
    from ganforge.training.export import load_generator

    raw = copy.deepcopy(TEXT_RUN)
    raw["train"].update(steps=4, ckpt_every=4)
    raw["eval"] = {"every": 4, "metrics": ["fid"], "n": 64, "backbone": "digits-classifier"}
    train(from_dict(raw), tmp_path / "run", progress=False)
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    hook = [e for e in logged if e.get("event") == "eval"]
    assert hook and hook[-1]["fid"] > 0
    G = load_generator(tmp_path / "run")
    a = G.sample_condition(8, torch.Generator().manual_seed(1))
    b = G.sample_condition(8, torch.Generator().manual_seed(1))
    assert a.shape == (8, 16) and torch.equal(a, b)
    reference = DATASETS.build("shapes-captions", {"resolution": 16, "n": 96}, split="train", cache_dir=None)
    scores = evaluate(tmp_path / "run" / "export", reference, metrics="fid", backbone="digits-classifier", n=64,
                      progress=False)
    assert scores["fid"] == pytest.approx(hook[-1]["fid"], rel=1e-4)  # the CLI's number equals the hook's

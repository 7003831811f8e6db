"""The `damsm` text encoder (pretrained with AttnGAN's matching loss on the run's pairs, then frozen) and the
`damsm` G-side loss."""
from __future__ import annotations

import copy
import math
import os

import pytest
import torch

from helpers import last_state, torchrun, train_killed_then_resumed, write_config

from ganforge.config import from_dict
from ganforge.data.shapes_captioned import ShapesCaptions
from ganforge.errors import GanforgeError
from ganforge.objectives.base import Context
from ganforge.registries import REGULARIZERS, TEXT_ENCODERS, load_all
from ganforge.text.damsm import DAMSMTextEncoder, matching_loss, same_rows
from ganforge.training.distributed import DistInfo
from ganforge.training.export import load_text_encoder
from ganforge.training.trainer import Trainer, train

load_all()
OPTS = {"dim": 16, "embed_dim": 8, "image_ch": 4, "steps": 60, "batch_size": 16, "lr": 0.005}


@pytest.fixture(scope="module")
def shapes():
    return ShapesCaptions(n=200, resolution=16, seed=0)


def _build(dataset, **opts) -> DAMSMTextEncoder:
    return TEXT_ENCODERS.build("damsm", {**OPTS, **opts}, where="text", captions=dataset.caption_texts, vocab=None,
                               dataset=dataset)


# ---- the matching loss (AttnGAN Eqs. 10-11, 13) -------------------------------------------------------------

def test_matching_loss_hand_values():
    eye = torch.eye(3)
    # matching pairs orthonormal: logits 10 * I, each row's CE = log(1 + 2 e^-10), both directions
    assert matching_loss(eye, eye, 10.0).item() == pytest.approx(2 * math.log(1 + 2 * math.exp(-10)), abs=1e-6)
    # every image equally similar to every sentence: chance, 2 ln M
    same = torch.ones(3, 2)
    assert matching_loss(same, same, 10.0).item() == pytest.approx(2 * math.log(3), rel=1e-6)
    # ... unless the pairs share a caption: then none is a negative of another and the loss is 0
    assert matching_loss(same, same, 10.0, same_rows(same)).item() == pytest.approx(0.0, abs=1e-6)
    # the mismatched assignment costs more than the matching one
    assert matching_loss(eye, eye.flip(0), 10.0) > matching_loss(eye, eye, 10.0) + 10


# ---- pretraining ---------------------------------------------------------------------------------------------

def _pair_loss(enc: DAMSMTextEncoder, dataset, shuffle: bool) -> float:
    idx = torch.arange(64)
    x = dataset.info.modality.to_model(dataset.get_batch(idx)[0])
    texts = [dataset.captions(int(i))[0] for i in idx]
    if shuffle:
        texts = texts[1:] + texts[:1]
    with torch.no_grad():
        e = enc(texts).sentence
        return float(matching_loss(enc.encode_images(x), e, 10.0, same_rows(e)))


def test_pretraining_learns_to_match_images_with_their_captions(shapes):
    untrained = TEXT_ENCODERS.build("damsm", {**OPTS, "steps": 0}, where="text", captions=shapes.caption_texts,
                                    vocab=None, dataset=shapes)
    enc = _build(shapes, steps=300)
    assert not enc.trainable and enc.frozen  # frozen after pretraining: its embeddings are cacheable
    before, after = _pair_loss(untrained, shapes, False), _pair_loss(enc, shapes, False)
    assert after < 0.7 * before  # matching pairs score far better after pretraining ...
    assert _pair_loss(enc, shapes, True) > after + 1.0  # ... and better than mismatched ones


def test_pretraining_is_deterministic_cached_and_keyed_by_data_and_options(shapes, tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    first = _build(shapes)
    files = list((tmp_path / "cache" / "damsm").iterdir())
    assert len(files) == 1 and files[0].name.startswith("damsm-v")
    stamp = files[0].stat().st_mtime_ns
    again = _build(shapes)  # from the cache: same weights, file untouched
    assert files[0].stat().st_mtime_ns == stamp
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    os.remove(files[0])
    fresh = _build(shapes)  # pretrained again from scratch: bit for bit the same
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), fresh.state_dict().values()))
    other_data = ShapesCaptions(n=200, resolution=16, seed=1)
    _build(other_data)
    _build(shapes, seed=1)
    assert len(list((tmp_path / "cache" / "damsm").iterdir())) == 3  # new data or options: new entries
    assert first.cache_key(shapes) != first.cache_key(other_data)


def test_bad_options_name_the_key(shapes):
    for opts, key in (({"batch_size": 1}, "batch_size"), ({"lr": 0}, "lr"), ({"steps": -1}, "steps"),
                      ({"dim": 0}, "dim")):
        with pytest.raises(GanforgeError, match=key):
            _build(shapes, **opts)


# ---- the G-side loss ------------------------------------------------------------------------------------------

def test_damsm_loss_needs_a_damsm_encoder():
    learned = TEXT_ENCODERS.build("learned", {"dim": 16}, where="text", captions=["a red circle"])
    with pytest.raises(GanforgeError, match="conditioning.text: {name: damsm}"):
        REGULARIZERS.build("damsm", {}, text_dim=16, text_encoder=learned)


def test_damsm_loss_rewards_images_of_their_caption_and_reaches_only_g(shapes):
    enc = _build(shapes, steps=300)
    term = REGULARIZERS.build("damsm", {"weight": 2.0}, text_dim=16, text_encoder=enc)
    idx = torch.arange(32)
    real = shapes.info.modality.to_model(shapes.get_batch(idx)[0])
    with torch.no_grad():
        e = enc([shapes.captions(int(i))[0] for i in idx]).sentence

    class Echo(torch.nn.Module):
        """G that returns a fixed image per row, plus a learnable offset: G(z, e) = images[z index] + b."""

        def __init__(self, images):
            super().__init__()
            self.images, self.b = images, torch.nn.Parameter(torch.zeros(()))

        def forward(self, z, y=None):
            return self.images[z[:, 0].long()] + self.b

    z = torch.arange(32).float()[:, None]
    values = {}
    for name, images in (("matching", real), ("mismatched", real.roll(1, 0))):
        G = Echo(images)
        ctx = Context(G=G, D=torch.nn.Identity(), real=real, y_real=e, z=z, y_fake=e, phase="G")
        out = term.g_terms(ctx)["damsm"]
        out.backward()
        values[name] = out.item()
        assert G.b.grad is not None and G.b.grad.abs() > 0  # the gradient reaches G
        assert all(p.grad is None for p in enc.parameters())  # the frozen encoders get none
    assert values["mismatched"] > values["matching"] + 2.0
    expected = 2.0 * matching_loss(enc.encode_images(real), e, 10.0, same_rows(e)).item()
    assert values["matching"] == pytest.approx(expected, rel=1e-5)


# ---- a run with it ----------------------------------------------------------------------------------------------

DAMSM_RUN = {
    "seed": 0,
    "data": {"name": "shapes-captions", "resolution": 16, "n": 96},
    "model": {"name": "dcgan", "z_dim": 16, "g_ch": 8, "d_ch": 8, "d_sn": True},
    "conditioning": {"g": {"name": "dfgan"}, "d": {"name": "text-projection"},
                     "text": {"name": "damsm", **OPTS}},
    "loss": {"name": "hinge"},
    "regularizers": [{"name": "ma-gp"}, {"name": "damsm"}],
    "train": {"steps": 6, "batch_size": 16, "log_every": 2, "sample_every": 1000, "ckpt_every": 3,
              "tensorboard": False, "threads": 1, "grid_size": 16},
}


def test_a_damsm_run_resumes_bit_exactly_and_exports_both_encoders(tmp_path):
    train(from_dict(DAMSM_RUN), tmp_path / "whole", progress=False)
    train_killed_then_resumed(DAMSM_RUN, tmp_path / "killed", kill_after=3)
    a, b = last_state(tmp_path / "whole"), last_state(tmp_path / "killed")
    assert a["step"] == b["step"] == 6
    for key in ("G", "D"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key])
    run_enc = Trainer(from_dict(DAMSM_RUN), tmp_path / "whole", progress=False, dist=DistInfo(),
                      device=torch.device("cpu")).parts.text.text_encoder
    exported = load_text_encoder(tmp_path / "whole")
    texts = ["a small red circle above a large blue square", "there is a large green triangle"]
    assert torch.equal(exported(texts).sentence, run_enc(texts).sentence)
    x = torch.zeros(2, 3, 16, 16)
    assert torch.equal(exported.encode_images(x), run_enc.encode_images(x))  # the image encoder travels too


def test_damsm_run_on_two_gloo_ranks_equals_one_process(tmp_path):
    """The DAMSM loss's negatives are the global batch: all-gathered under DDP, so 2 ranks == 1 process (G is
    BatchNorm-free with dfgan; D without spectral norm has no BatchNorm either)."""
    raw = copy.deepcopy(DAMSM_RUN)
    raw["train"].update(steps=4, ckpt_every=4)
    raw["model"]["d_sn"] = False
    # the mismatched pairs roll within each rank's micro-batch (as within each accumulation round): off here
    raw["conditioning"]["d"]["mismatch_weight"] = 0.0
    train(from_dict(raw), tmp_path / "single", progress=False)
    torchrun(write_config(tmp_path, raw), tmp_path / "ddp")
    a, b = last_state(tmp_path / "single"), last_state(tmp_path / "ddp")
    for key in ("G", "D"):
        for k, v in a[key].items():
            torch.testing.assert_close(b[key][k], v, rtol=1e-4, atol=1e-5, msg=f"{key}.{k}")


def test_ganforge_eval_gives_the_r_precision_of_a_damsm_run(tmp_path):
    from ganforge.metrics.evaluate import build_backbone, evaluate
    from ganforge.metrics.r_precision import r_precision
    from ganforge.sampling import generate_batches
    from ganforge.training.export import load_generator

    train(from_dict(DAMSM_RUN), tmp_path / "run", progress=False)
    weights = str(tmp_path / "run" / "export" / "text_encoder.safetensors")
    with pytest.warns(UserWarning, match="r-precision"):  # 200 images: below the metric's meaningful size
        got = evaluate(tmp_path / "run", metrics="r-precision", backbone="damsm-image", weights=weights, n=200,
                       progress=False, use_cache=False)
    bb = build_backbone("damsm-image", weights=weights)
    pools, embeds = [], []
    for x, e in generate_batches(load_generator(tmp_path / "run"), 200, seed=0, batch_size=100):
        pools.append(bb(((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8))["pool"])
        embeds.append(e)
    assert got["r_precision"] == pytest.approx(r_precision(torch.cat(pools), torch.cat(embeds).float()))
    assert got["n"] == 200

"""R-precision (AttnGAN's protocol) and the `damsm-image` backbone it reads image vectors from."""
from __future__ import annotations

import pytest
import torch

from ganforge.errors import GanforgeError
from ganforge.metrics.base import Features
from ganforge.metrics.r_precision import r_precision
from ganforge.registries import BACKBONES, METRICS, TEXT_ENCODERS, load_all

load_all()


def test_hand_values():
    e = torch.eye(120)  # 120 distinct captions
    assert r_precision(e, e) == 1.0  # each image points exactly at its own caption
    assert r_precision(-e, e) == 0.0  # ... or away from it (cos -1 against 0 for the others)
    assert r_precision(torch.ones(120, 120), e) == 0.0  # every caption equally close: a tie is a miss
    half = e.clone()
    half[:60] = e[60:]  # the first 60 images point at the caption of image i + 60
    assert r_precision(half, e) == pytest.approx(0.5)


def test_a_repeated_caption_is_not_a_distractor():
    e = torch.cat([torch.eye(100), torch.eye(100)[:1]])  # sample 100 repeats sample 0's caption
    assert r_precision(e, e) == 1.0  # the copy of its own caption is never drawn against it
    with pytest.raises(GanforgeError, match="distractors"):
        r_precision(torch.eye(50), torch.eye(50))


def test_metric_needs_sentence_vectors_of_the_same_width():
    metric = METRICS.build("r-precision", {})
    v = torch.randn(150, 8)
    assert metric.compute(Features(150, pool=v, labels=v.clone()), None) == {"r_precision": 1.0}
    with pytest.raises(GanforgeError, match="sentence vectors"):
        metric.compute(Features(150, pool=v, labels=torch.arange(150)), None)  # class labels are not text
    with pytest.raises(GanforgeError, match="damsm-image"):
        metric.compute(Features(150, pool=v, labels=torch.randn(150, 6)), None)


def test_backbone_is_the_exported_image_encoder(tmp_path):
    from safetensors.torch import save_file

    enc = TEXT_ENCODERS.build("damsm", {"dim": 6, "image_ch": 4}, where="text", captions=["a red circle"])
    enc.attach_image_encoder((3, 16, 16))
    with torch.no_grad():
        for p in enc.parameters():
            p.normal_(0, 0.2)
    path = tmp_path / "text_encoder.safetensors"
    save_file({k: v.contiguous() for k, v in enc.state_dict().items()}, str(path))
    bb = BACKBONES.build("damsm-image", {}, weights=str(path))
    x = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8)
    with torch.no_grad():
        want = enc.encode_images(x.float() / 127.5 - 1)
    torch.testing.assert_close(bb(x)["pool"], want, rtol=1e-5, atol=1e-5)
    assert bb.feature_dim == 6
    learned = TEXT_ENCODERS.build("learned", {"dim": 6}, where="text", captions=["a red circle"])
    save_file({k: v.contiguous() for k, v in learned.state_dict().items()}, str(tmp_path / "learned.safetensors"))
    for weights, match in ((None, "needs --weights"), (str(tmp_path / "learned.safetensors"), "no DAMSM image")):
        with pytest.raises(GanforgeError, match=match):
            BACKBONES.build("damsm-image", {}, weights=weights)

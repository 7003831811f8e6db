"""Every regularizer with every augmentation trains: parametrized over both registries, so a new component of either
kind is combined with all the others automatically.

Each combination runs two real training steps on 8x8 digits (unconditional, MLP G/D; the style-based MLP for terms
that declare `needs_style_generator`) and must (1) log only finite losses, (2) change both networks' weights and
(3) change them differently from the same run without the regularizer — a term that silently contributed nothing
would fail (3); terms that act only after the optimizer step (weight clipping) or freeze parameters are checked by
their own effect instead.
"""
from __future__ import annotations

import copy
import math

import pytest
import torch

from ganforge.config import from_dict
from ganforge.registries import (ARCHITECTURES, AUGMENTATIONS, D_HEADS, G_CONDITIONING, REGULARIZERS, TEXT_ENCODERS,
                                 load_all)
from ganforge.training.distributed import DistInfo
from ganforge.training.trainer import Trainer

load_all()

BASE = {
    "seed": 0,
    "data": {"name": "digits", "resolution": 8},
    "model": {"name": "mlp", "z_dim": 8, "hidden": 32, "layers": 2},
    "loss": {"name": "hinge"},
    "train": {"steps": 2, "batch_size": 16, "log_every": 1, "sample_every": 0, "ckpt_every": 0, "mode_every": 0,
              "tensorboard": False, "threads": 1},
}
STYLE_MODEL = {"name": "style-mlp", "z_dim": 8, "w_dim": 16, "hidden": 32, "layers": 2, "mapping_layers": 2,
               "d_hidden": 32, "d_layers": 2}
TINY_CONV = {"z_dim": 8, "g_ch": 8, "d_ch": 8}
# Options that make a component act within two steps of a tiny run (a fixed p of 0.5 so augmentations do augment;
# lazy terms every step).
AUGMENT_OPTIONS = {"ada": {"p": 0.5, "schedule": "fixed"}, "diffusion": {"p": 0.5, "schedule": "fixed"},
                   "apa": {"p": 0.5, "schedule": "fixed"}}
REGULARIZER_OPTIONS = {"path-length": {"every": 1}, "r1": {"every": 1}, "r2": {"every": 1},
                       "lecam": {"one_sided": False}, "freeze-d": {"blocks": 1}}


def _options(registry, name: str, table: dict) -> dict:
    entry = registry.get(name)
    return {k: v for k, v in table.get(name, {}).items() if entry.accepts(k)}


def _first(registry, capability: str) -> str:
    return next(n for n in registry.names() if registry.get(n).declares(capability, False))


# terms that read sentence embeddings (MA-GP) train on the procedural captioned shapes with text components
TEXT = {"data": {"name": "shapes-captions", "resolution": 16, "n": 64},
        "conditioning": {"g": {"name": _first(G_CONDITIONING, "uses_text")},
                         "d": {"name": _first(D_HEADS, "uses_text")},
                         "text": {"name": "learned", "dim": 16, "embed_dim": 8}}}
# an encoder that also embeds images (for terms that take the run's text encoder): a tiny pretraining
IMAGE_TEXT_ENCODER = {"name": next(n for n in TEXT_ENCODERS.names() if hasattr(TEXT_ENCODERS.get(n).obj,
                                                                                 "encode_images")),
                      "dim": 16, "embed_dim": 8, "image_ch": 4, "steps": 5, "batch_size": 8}


def _config(regularizer: str | None, augment: str) -> dict:
    raw = copy.deepcopy(BASE)
    if regularizer is not None:
        raw["regularizers"] = [{"name": regularizer, **_options(REGULARIZERS, regularizer, REGULARIZER_OPTIONS)}]
        if REGULARIZERS.get(regularizer).declares("needs_style_generator", False):
            raw["model"] = dict(STYLE_MODEL)
        family = REGULARIZERS.get(regularizer).declares("needs_architecture", None)
        if family is not None:  # a term written for one family's D (FastGAN's reconstruction decoders)
            raw["model"] = {"name": family, **{k: v for k, v in TINY_CONV.items()
                                               if ARCHITECTURES.get(family).accepts(k)}}
        if REGULARIZERS.get(regularizer).declares("uses_text", False):
            raw.update(copy.deepcopy(TEXT))
            if REGULARIZERS.get(regularizer).accepts("text_encoder"):  # reads the encoder itself (DAMSM's images)
                raw["conditioning"]["text"] = dict(IMAGE_TEXT_ENCODER)
    raw["augment"] = {"name": augment, **_options(AUGMENTATIONS, augment, AUGMENT_OPTIONS)}
    return raw


def _train(raw: dict, tmp_path, name: str) -> tuple[Trainer, list[dict[str, float]]]:
    tr = Trainer(from_dict(raw), tmp_path / name, progress=False, dist=DistInfo(), device=torch.device("cpu"))
    logs = [tr.train_step() for _ in range(raw["train"]["steps"])]
    return tr, logs


def _weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items() if v.is_floating_point()}


def _changed(before: dict, after: dict) -> bool:
    return any(not torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("augment", AUGMENTATIONS.names())
@pytest.mark.parametrize("regularizer", REGULARIZERS.names())
def test_every_regularizer_trains_with_every_augmentation(regularizer, augment, tmp_path):
    raw = _config(regularizer, augment)
    torch.manual_seed(0)
    tr = Trainer(from_dict(raw), tmp_path / "run", progress=False, dist=DistInfo(), device=torch.device("cpu"))
    g0, d0 = _weights(tr.G), _weights(tr.D)
    logs = [tr.train_step() for _ in range(raw["train"]["steps"])]
    for step, values in enumerate(logs):
        assert values, f"step {step} logged nothing"
        bad = {k: v for k, v in values.items() if not math.isfinite(v)}
        assert not bad, f"non-finite losses at step {step}: {bad}"
    g1, d1 = _weights(tr.G), _weights(tr.D)
    assert _changed(g0, g1) and _changed(d0, d1), "a network did not train"

    # The same run without the regularizer ends elsewhere: the term took part in training.
    same = {k: raw[k] for k in ("model", "data", "conditioning") if k in raw}  # the run without the term
    plain, _ = _train(_config(None, augment) | same, tmp_path, "plain")
    assert _changed(_weights(plain.D), d1) or _changed(_weights(plain.G), g1), \
        f"{regularizer} left training exactly as without it"

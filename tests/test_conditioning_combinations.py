"""Every D-side conditioning method x every architecture x every G-side method trains: two real training steps.

Parametrized over the three registries, so a new head, family or G conditioning is combined with all the others
automatically. Each combination runs the real trainer on labelled 8x8 digits (on the procedural captioned shapes with
a learned text encoder when a component reads captions) and must (1) log only finite losses,
(2) log the terms its components bring (an auxiliary classifier's CE, 2C, InfoGAN's Q loss, ...) and (3) change
G's and D's weights. A combination a component refuses must say why in one line (a GanforgeError naming the key).
A head whose extras some loss requires (MH-GAN's K+1 scores) trains with that loss, the others with hinge.
"""
from __future__ import annotations

import math

import pytest
import torch

from ganforge.config import from_dict
from ganforge.errors import GanforgeError
from ganforge.registries import ARCHITECTURES, D_HEADS, G_CONDITIONING, LOSSES, load_all
from ganforge.training.distributed import DistInfo
from ganforge.training.phases import implements
from ganforge.training.trainer import Trainer

load_all()

TINY = {"backbone": "digits-classifier", "backbone_weights": "random",
        "g_ch": 8, "d_ch": 8, "hidden": 16, "layers": 2, "z_dim": 24, "w_dim": 16, "mapping_layers": 2,
        "d_hidden": 16, "d_layers": 2}  # applied where an architecture has the option


def _loss_for(head: str) -> str:
    """The loss that reads the head's extras (e.g. multi-hinge for mh), else hinge."""
    provided = set(D_HEADS.get(head).declares("provides", frozenset()))
    for name in LOSSES.names():
        needs = set(LOSSES.get(name).declares("requires", frozenset()))
        if needs and needs <= provided:
            return name
    return "hinge"


# condition -> (data, extra conditioning keys): class labels (digits) or captions (the procedural captioned set)
CONDITIONS = {
    "labels": ({"name": "digits", "resolution": 8}, {}),
    "text": ({"name": "shapes-captions", "resolution": 16, "n": 64},
             {"text": {"name": "learned", "dim": 16, "embed_dim": 8}}),
}


def _config(arch: str, g_cond: str, head: str, condition: str = "labels") -> dict:
    options = ARCHITECTURES.get(arch).options()
    data, extra = CONDITIONS[condition]
    return {
        "seed": 0,
        "data": dict(data),
        "model": {"name": arch, **{k: v for k, v in TINY.items() if k in options}},
        "conditioning": {"g": {"name": g_cond}, "d": {"name": head}, **extra},
        "loss": {"name": _loss_for(head)},
        "train": {"steps": 2, "batch_size": 16, "log_every": 1, "sample_every": 0, "ckpt_every": 0,
                  "mode_every": 0, "tensorboard": False, "threads": 1},
    }


def _weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items() if v.is_floating_point()}


def _changed(before: dict, after: dict) -> bool:
    return any(not torch.equal(before[k], after[k]) for k in before)


def _reads(name: str, g_cond: str, head: str) -> bool:
    return any(reg.get(n).declares(name, False) for reg, n in ((G_CONDITIONING, g_cond), (D_HEADS, head)))


@pytest.mark.parametrize("g_cond", G_CONDITIONING.names())
@pytest.mark.parametrize("arch", ARCHITECTURES.names())
@pytest.mark.parametrize("head", D_HEADS.names())
def test_every_head_trains_with_every_architecture_and_g_conditioning(head, arch, g_cond, tmp_path):
    torch.manual_seed(0)
    condition = "text" if _reads("uses_text", g_cond, head) else "labels"  # captions for text components
    try:
        tr = Trainer(from_dict(_config(arch, g_cond, head, condition)), tmp_path / "run", progress=False,
                     dist=DistInfo(), device=torch.device("cpu"))
        returned = {key: set() for key, term in tr.parts.terms.items()  # brought terms that have a loss
                    if key.startswith("conditioning.") and (implements(term, "d_terms") or implements(term, "g_terms"))}
        for key, names in returned.items():
            _record(tr.parts.terms[key], names)
        g0, d0 = _weights(tr.G), _weights(tr.D)
        logs = [tr.train_step() for _ in range(2)]
    except GanforgeError as err:  # a combination a component refuses: one line, naming where
        msg = str(err)
        assert "\n" not in msg and ("conditioning" in msg or "model" in msg), msg
        pytest.skip(f"refused: {msg}")
    for step, values in enumerate(logs):
        bad = {k: v for k, v in values.items() if not math.isfinite(v)}
        assert values and not bad, f"step {step}: {values}"
    logged = set().union(*logs)
    for key, names in returned.items():  # every brought term took part: it returned values that were logged
        assert names and names <= logged, f"{key} returned {sorted(names)}; logged: {sorted(logged)}"
    assert _changed(g0, _weights(tr.G)) and _changed(d0, _weights(tr.D)), "a network did not train"


def _record(term, names: set[str]) -> None:
    """Wrap a term's d_terms / g_terms so the names of the values it returns in training are collected."""
    for attr in ("d_terms", "g_terms"):
        fn = getattr(term, attr)

        def wrapped(ctx, fn=fn):
            out = fn(ctx)
            names.update(out)
            return out
        setattr(term, attr, wrapped)

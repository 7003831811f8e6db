"""Every explorer on every registered architecture: it runs where its method applies, and where it does not it stops
with a one-line error that names the method and the reason (before writing anything).

Image generators come from real 2-step digits runs of each family (so methods that need the run's data or checkpoint
have them); point generators are bare modules (every method here renders images, so each must refuse them)."""
from __future__ import annotations

import copy
import json

import pytest
import torch

from helpers import TINY_DIGITS, shared_cache
from test_explore import SMALL

from ganforge.config import from_dict
from ganforge.config_files import parse_value
from ganforge.errors import GanforgeError
from ganforge.explore import explore
from ganforge.registries import ARCHITECTURES, EXPLORERS, G_CONDITIONING, load_all

load_all()
TINY_OPTIONS = {"z_dim": 6, "w_dim": 6, "g_ch": 8, "d_ch": 8, "hidden": 16, "layers": 2, "g_dim": 12,
                "d_dim": 12}  # those a family has


def tiny(arch: str) -> dict:
    options = ARCHITECTURES.get(arch).options()
    return {k: v for k, v in TINY_OPTIONS.items() if k in options}


SHAPES = {"image": (1, 8, 8), "points": (2,)}
NOT_FOR: dict[str, tuple[str, ...]] = {  # arch -> explorers whose paper does not apply to that family
    "fastgan": ("householder",),  # z enters a 4x4 transposed conv, not the linear layer the projector replaces
}
OTHER_DATA = {"dissect"}  # explorers whose default model (the shapes segmenter) needs other data than these digits


def _generator(arch: str, shape: tuple[int, ...]) -> torch.nn.Module:
    g_cond = G_CONDITIONING.build("none", {}, num_classes=0, text_dim=0)
    torch.manual_seed(0)
    return ARCHITECTURES.build(arch, tiny(arch), img_shape=shape, num_classes=0, g_cond=g_cond).G.eval()


def _cases():
    for arch in ARCHITECTURES.names():
        for kind, shape in SHAPES.items():
            try:
                _generator(arch, shape)
            except GanforgeError:
                continue  # the family does not make this kind of sample
            yield arch, kind


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """arch -> a 2-step unconditional 8x8 digits run of that family (trained on first use)."""
    from ganforge.training.trainer import train

    made = {}

    def get(arch: str):
        if arch not in made:
            raw = copy.deepcopy(TINY_DIGITS)
            raw.pop("conditioning")
            raw["model"] = {"name": arch, **tiny(arch)}
            raw["train"].update(steps=2, ckpt_every=2)
            made[arch] = tmp_path_factory.mktemp(arch) / "run"
            with shared_cache(tmp_path_factory):
                train(from_dict(raw), made[arch], progress=False)
        return made[arch]
    return get


@pytest.mark.parametrize("method", EXPLORERS.names())
@pytest.mark.parametrize("arch,kind", list(_cases()))
def test_explorer_runs_or_names_why_not(method, arch, kind, runs, tmp_path):
    G = runs(arch) if kind == "image" else _generator(arch, SHAPES[kind])
    options = {k: parse_value(v) for k, v in (o.split("=", 1) for o in SMALL.get(method, []))}
    out = tmp_path / "out"
    try:
        explore(G, method, options, out=out, progress=False)
    except GanforgeError as e:
        msg = str(e)
        # image runs of every family qualify, unless the method's default needs other data
        assert kind != "image" or method in NOT_FOR.get(arch, ()) or method in OTHER_DATA, msg
        assert "\n" not in msg and method in msg, msg  # one line, naming the method
        assert not out.exists()  # refused before anything was written
        return
    record = json.loads((out / "result.json").read_text())
    assert record["method"] == method and record["results"]
    assert any(f.endswith((".png", ".gif")) for f in record["files"])

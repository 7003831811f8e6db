"""What every image architecture family must do, parametrized over the registry (so each new family is checked):
R1-style double backward through D and G, a bit-exact resume, an export that `load_generator` reproduces exactly,
and one-line errors for image sizes the family cannot make."""
from __future__ import annotations

import copy

import pytest
import torch

from helpers import TINY_DIGITS, last_state
import ganforge
from ganforge.config import from_dict
from ganforge.errors import GanforgeError
from ganforge.models.base import Discriminator
from ganforge.registries import ARCHITECTURES, D_HEADS, G_CONDITIONING, load_all
from ganforge.training.trainer import train

load_all()
TINY = {"backbone": "digits-classifier", "backbone_weights": "random",
        "z_dim": 24, "w_dim": 8, "g_ch": 8, "d_ch": 8, "hidden": 16, "layers": 2, "mapping_layers": 2,
        "d_hidden": 16, "g_dim": 12, "d_dim": 12}  # applied where a family has the option


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(arch: str) -> dict:
    options = ARCHITECTURES.get(arch).options()
    return {k: v for k, v in TINY.items() if k in options}


def _pair(arch: str, shape: tuple[int, ...], cond: str = "none", num_classes: int = 0):
    g_cond = G_CONDITIONING.build(cond, {}, num_classes=num_classes, text_dim=0)
    return ARCHITECTURES.build(arch, tiny(arch), img_shape=shape, num_classes=num_classes, g_cond=g_cond)


def _image_families() -> list[str]:
    out = []
    for arch in ARCHITECTURES.names():
        try:
            _pair(arch, (1, 8, 8))
        except GanforgeError:
            continue
        out.append(arch)
    return out


FAMILIES = _image_families()


def _trainable(module: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    return [(n, p) for n, p in module.named_parameters() if p.requires_grad]


@pytest.mark.parametrize("arch", FAMILIES)
def test_r1_double_backward_reaches_d_and_g_parameters(arch):
    """R1 = ||grad_x D(x)||^2 backpropagated into D (a second derivative through every D layer), and the same
    through G w.r.t. z (path-length-like): finite gradients for every trainable parameter, nonzero overall."""
    torch.manual_seed(0)
    G, backbone = _pair(arch, (3, 16, 16))
    D = Discriminator(backbone, D_HEADS.build("linear", {}, in_features=backbone.feature_dim, num_classes=0))
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    (grad,) = torch.autograd.grad(D(x).adv.sum(), x, create_graph=True)
    grad.pow(2).sum().backward()
    params = _trainable(D)
    missing = [(n, p) for n, p in params if p.grad is None]
    # a parameter R1 does not reach must truly not shape grad_x D (an additive bias before only linear maps);
    # compared in eval mode, where spectral norm does not power-step between the two evaluations
    D.eval()
    for name, p in missing:
        assert name.endswith("bias"), f"{name} gets no R1 gradient"
        (before,) = torch.autograd.grad(D(x).adv.sum(), x)
        with torch.no_grad():
            p.add_(1.0)
        (moved,) = torch.autograd.grad(D(x).adv.sum(), x)
        with torch.no_grad():
            p.sub_(1.0)
        assert torch.allclose(moved, before, atol=1e-5), f"{name} shapes grad_x D but gets no R1 gradient"
    params = [(n, p) for n, p in params if p.grad is not None]
    assert all(torch.isfinite(p.grad).all() for _, p in params)
    assert sum(float(p.grad.abs().sum()) for _, p in params) > 0
    z = G.sample_z(4).requires_grad_(True)
    (gz,) = torch.autograd.grad((G(z) * torch.randn(4, 3, 16, 16)).sum(), z, create_graph=True)
    gz.pow(2).sum().backward()
    params = [(n, p) for n, p in _trainable(G) if p.grad is not None]
    assert params and all(torch.isfinite(p.grad).all() for _, p in params)
    assert sum(float(p.grad.abs().sum()) for _, p in params) > 0


def _run_raw(arch: str, steps: int) -> dict:
    raw = copy.deepcopy(TINY_DIGITS)
    raw["model"] = {"name": arch, **tiny(arch)}
    raw["conditioning"] = {"g": {"name": "concat"}, "d": {"name": "projection"}}  # every family takes these
    raw["train"].update(steps=steps, ckpt_every=2, batch_size=8)
    return raw


@pytest.mark.parametrize("arch", FAMILIES)
def test_resume_is_bit_exact_and_the_export_reproduces_g_ema(arch, tmp_path):
    raw = _run_raw(arch, 4)
    train(from_dict(raw), tmp_path / "straight", progress=False)
    train(from_dict(_run_raw(arch, 2)), tmp_path / "resumed", progress=False)
    train(from_dict(raw), tmp_path / "resumed", progress=False)
    a, b = last_state(tmp_path / "straight"), last_state(tmp_path / "resumed")
    assert a["step"] == b["step"] == 4
    for net in ("G", "D", "G_ema"):
        assert a[net].keys() == b[net].keys()
        for k in a[net]:
            assert torch.equal(a[net][k], b[net][k]), f"{net}.{k}"
    G = ganforge.load_generator(tmp_path / "straight")
    state = G.state_dict()
    assert state.keys() == a["G_ema"].keys() and all(torch.equal(state[k], a["G_ema"][k]) for k in state)
    z, y = G.sample_z(3, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 4, 9])
    with torch.no_grad():
        x = G(z, y)
    assert x.shape == (3, 1, 8, 8) and torch.isfinite(x).all()


@pytest.mark.parametrize("arch", FAMILIES)
@pytest.mark.parametrize("shape", [(3, 9, 9), (3, 20, 20), (3, 2, 2)], ids=lambda s: "x".join(map(str, s)))
def test_sizes_the_family_cannot_make_get_a_one_line_error(arch, shape):
    """Either the family makes exactly that size, or it says in one line which sizes it allows."""
    try:
        G, D = _pair(arch, shape)
    except GanforgeError as err:
        msg = str(err)
        assert "\n" not in msg and arch in msg and f"{shape[1]}x{shape[2]}" in msg, msg
        return
    with torch.no_grad():
        x = G(G.sample_z(2))
        assert x.shape == (2, *shape)
        assert D.features(x).shape == (2, D.parts * D.feature_dim)  # parts > 1: several judged parts per image

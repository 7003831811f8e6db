"""Householder projector (Song et al. 2023): the orthogonal low-rank layer and the fine-tuning explorer."""
from __future__ import annotations

import copy
import json

import pytest
import torch

from helpers import TINY_DIGITS, shared_cache

from ganforge.config import from_dict
from ganforge.errors import GanforgeError
from ganforge.explore import explore
from ganforge.explore.householder import Householder, find_linear
from ganforge.nn.householder import HouseholderProjector, householder_product
from ganforge.registries import ARCHITECTURES, G_CONDITIONING
from ganforge.training.export import load_generator


def test_one_reflection_flips_its_vector_and_keeps_the_orthogonal_complement():
    v = torch.tensor([[1.0, 1.0, 0.0]])
    H = householder_product(v)
    torch.testing.assert_close(H @ v[0], -v[0])
    torch.testing.assert_close(H @ torch.tensor([1.0, -1.0, 0.0]), torch.tensor([1.0, -1.0, 0.0]))
    torch.testing.assert_close(H @ torch.tensor([0.0, 0.0, 1.0]), torch.tensor([0.0, 0.0, 1.0]))


def test_product_of_reflections_is_orthogonal_and_its_columns_are_a_prefix():
    V = torch.randn(7, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    Q = householder_product(V)
    torch.testing.assert_close(Q @ Q.t(), torch.eye(7, dtype=torch.float64))
    torch.testing.assert_close(householder_product(V, 3), Q[:, :3])


@pytest.mark.parametrize("shape", [(6, 40), (40, 6), (9, 9)])
def test_projector_has_exactly_rank_unit_singular_values_and_orthonormal_directions(shape):
    n_in, n_out = shape
    proj = HouseholderProjector(n_in, n_out, rank=4, generator=torch.Generator().manual_seed(1)).double()
    sv = torch.linalg.svdvals(proj.weight.detach())
    torch.testing.assert_close(sv[:4], torch.ones(4, dtype=torch.float64))
    assert sv[4:].abs().max() < 1e-12
    q = proj.q_v().detach()
    torch.testing.assert_close(q @ q.t(), torch.eye(n_in, dtype=torch.float64))
    d = proj.directions().detach()  # right singular vectors: W d_i^T is a unit vector, W x = 0 off their span
    torch.testing.assert_close((proj.weight.detach() @ d.t()).norm(dim=0), torch.ones(4, dtype=torch.float64))
    off = q[4:]  # the other rows of Q(V)
    assert (proj.weight.detach() @ off.t()).abs().max() < 1e-12 if len(off) else True


@pytest.mark.parametrize("seed", range(4))
def test_svd_start_is_the_top_rank_singular_subspaces_of_the_weight(seed):
    W = torch.randn(30, 7, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    U, _, Vh = torch.linalg.svd(W, full_matrices=False)
    proj = HouseholderProjector.from_weight(W, 3).double()
    torch.testing.assert_close(proj.weight.detach(), U[:, :3] @ Vh[:3], atol=1e-6, rtol=0)  # signs included
    torch.testing.assert_close(proj.directions().detach().abs(), Vh[:3].abs(), atol=1e-6, rtol=0)


def test_gradient_steps_keep_the_projector_orthogonal():
    proj = HouseholderProjector(5, 12, rank=3, generator=torch.Generator().manual_seed(2))
    opt = torch.optim.Adam(proj.parameters(), lr=0.1)
    target = torch.randn(12, 5, generator=torch.Generator().manual_seed(3))
    for _ in range(20):
        opt.zero_grad()
        (proj.weight - target).pow(2).sum().backward()
        opt.step()
    sv = torch.linalg.svdvals(proj.weight.detach().double())
    torch.testing.assert_close(sv[:3], torch.ones(3, dtype=torch.float64), atol=1e-5, rtol=0)
    assert sv[3:].max() < 1e-5


def test_rank_above_the_layer_size_is_a_one_line_error():
    with pytest.raises(GanforgeError, match=r"rank must be in \[1, 4\]"):
        HouseholderProjector(4, 8, rank=5)


# --------------------------------------------------------------------------------------------------- the explorer
@pytest.fixture(scope="module")
def dcgan_run(tmp_path_factory):
    """A class-conditional (cBN: G.linear reads z alone) 8x8 digits DCGAN run trained for 2 steps."""
    from ganforge.training.trainer import train

    raw = copy.deepcopy(TINY_DIGITS)
    raw["model"] = {"name": "dcgan", "z_dim": 8, "g_ch": 8, "d_ch": 8}
    raw["train"].update(steps=2, ckpt_every=2)
    out = tmp_path_factory.mktemp("householder") / "run"
    with shared_cache(tmp_path_factory):
        train(from_dict(raw), out, progress=False)
    return out


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("mode,init", [("projector", "random"), ("full", "svd")])
def test_finetuning_trains_the_projector_and_d_and_the_rest_of_g_only_in_full_mode(mode, init, dcgan_run, tmp_path):
    ex = Householder(rank=3, finetune_steps=3, train=mode, init=init)
    with torch.enable_grad():
        trainer = ex._trainer(dcgan_run, tmp_path, seed=0, device="cpu")
        ex._install(trainer, "linear", 8, 0, "test")
        g0, d0 = _snapshot(trainer.G), _snapshot(trainer.D)
        ex._finetune(trainer, progress=False)
    g1, d1 = _snapshot(trainer.G), _snapshot(trainer.D)
    assert isinstance(trainer.G.linear, HouseholderProjector) and isinstance(trainer.G_ema.linear, HouseholderProjector)
    assert not torch.equal(g0["linear.v"], g1["linear.v"]) and not torch.equal(g0["linear.u"], g1["linear.u"])
    assert any(not torch.equal(d0[k], d1[k]) for k in d0)  # D keeps training with the run's losses
    rest = [k for k in g0 if not k.startswith("linear.") and g0[k].is_floating_point() and "running" not in k]
    changed = [k for k in rest if not torch.equal(g0[k], g1[k])]
    assert (changed == []) if mode == "projector" else changed


def test_explore_householder_writes_directions_with_unit_singular_values(dcgan_run, tmp_path):
    out = explore(dcgan_run, "householder", {"rank": 4, "finetune_steps": 2, "k": 2, "samples": 1, "steps": 3},
                  out=tmp_path / "hh", progress=False)
    res = json.loads((out / "result.json").read_text())["results"]
    assert res["layer"] == "linear" and res["space"] == "z"
    assert res["singular_values"][:4] == pytest.approx([1.0] * 4, abs=1e-5)
    assert max(res["singular_values"][4:]) < 1e-5 and res["orthogonality_error"] < 1e-5
    d = torch.tensor(res["directions"])
    torch.testing.assert_close(d @ d.t(), torch.eye(2), atol=1e-5, rtol=0)
    assert (out / "direction-01.png").is_file() and (out / "projector.safetensors").is_file()
    from safetensors.torch import load_file

    saved = load_file(str(out / "projector.safetensors"))
    proj = HouseholderProjector(8, saved["u"].shape[1], rank=4, bias=saved["bias"])
    proj.load_state_dict(saved)
    torch.testing.assert_close(proj.directions()[:2].detach(), d, atol=1e-6, rtol=0)


def test_bad_layer_names_and_layers_that_read_a_condition_are_one_line_errors(dcgan_run, tmp_path):
    with pytest.raises(GanforgeError, match=r"layer 'nope' is not in .*linear layers: linear"):
        explore(dcgan_run, "householder", {"layer": "nope"}, out=tmp_path / "a", progress=False)
    with pytest.raises(GanforgeError, match=r"layer 'ups.0' is a ConvTranspose2d, not a linear layer"):
        explore(dcgan_run, "householder", {"layer": "ups.0"}, out=tmp_path / "b", progress=False)
    g_cond = G_CONDITIONING.build("concat", {}, num_classes=3, text_dim=0)  # G.linear reads [z, one_hot(y)]
    G = ARCHITECTURES.build("dcgan", {"z_dim": 6, "g_ch": 8, "d_ch": 8}, img_shape=(1, 8, 8), num_classes=3,
                            g_cond=g_cond).G
    with pytest.raises(GanforgeError, match=r"layer 'linear' reads 9 inputs, not the 6-dim latent"):
        find_linear(G, "linear", 6, "explore householder")


def test_a_bare_generator_without_its_run_is_refused(dcgan_run, tmp_path):
    G = load_generator(dcgan_run / "export")
    G.export_dir = None
    with pytest.raises(GanforgeError, match="needs a run directory"):
        explore(G, "householder", out=tmp_path / "c", progress=False)

"""Conditioning: G-side methods (norm layers / input transform) and D heads."""
from __future__ import annotations

import pytest
import torch

from ganforge.conditioning.base import DOutput
from ganforge.errors import GanforgeError
from ganforge.nn import has_sn, top_singular_value, weight_layers
from ganforge.registries import D_HEADS, G_CONDITIONING

K = 4
TEXT_DIM = 6


def test_builtin_methods_registered():
    assert {"none", "cbn", "concat"} <= set(G_CONDITIONING.names())
    assert {"linear", "projection"} <= set(D_HEADS.names())


@pytest.mark.parametrize("name", G_CONDITIONING.names())
def test_g_conditioning_interface(name):
    torch.manual_seed(0)
    text = G_CONDITIONING.get(name).declares("uses_text", False)  # reads sentence embeddings, not labels
    cond = G_CONDITIONING.build(name, {}, num_classes=0 if text else K, text_dim=TEXT_DIM if text else 0)
    z = torch.randn(6, 24)  # 24: room for InfoGAN's codes, 4 chunks of 6
    y = torch.randn(6, TEXT_DIM) if text else torch.tensor([0, 1, 2, 3, 0, 1])
    cond.bind(24, num_blocks=3)
    inp = cond.prepare(z, y)
    assert inp.x.shape == (6, cond.in_features(24)) and len(inp.blocks) == 3
    for norm, x in ((cond.norm1d(7), torch.randn(6, 7)), (cond.norm2d(3), torch.randn(6, 3, 4, 4))):
        out = norm(x, inp.blocks[0])
        assert out.shape == x.shape
        batch_norm = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in norm.modules())
        if batch_norm:  # normalised over the batch: per-channel mean ~ 0 at init
            with torch.no_grad():
                dims = [0] + list(range(2, x.dim()))
                assert out.mean(dims).abs().max() < 1e-4
        else:  # a norm-free fusion (DF-GAN) must still depend on its input
            assert not torch.allclose(norm(2 * x, inp.blocks[0]), out)


def test_cbn_raises_without_labels():
    cond = G_CONDITIONING.build("cbn", {}, num_classes=K)
    with pytest.raises(GanforgeError, match="labels"):
        cond.norm2d(3)(torch.randn(2, 3, 4, 4), None)


@pytest.mark.parametrize("name", ["cbn", "concat"])
def test_conditional_methods_need_classes(name):
    with pytest.raises(GanforgeError, match="num_classes"):
        G_CONDITIONING.build(name, {}, num_classes=0)


def test_cbn_norm_depends_on_label():
    torch.manual_seed(0)
    norm = G_CONDITIONING.build("cbn", {}, num_classes=K).norm2d(3)
    with torch.no_grad():
        norm.gamma.weight.normal_()
    x = torch.randn(4, 3, 2, 2)
    assert not torch.allclose(norm(x, torch.zeros(4, dtype=torch.long)), norm(x, torch.ones(4, dtype=torch.long)))


def test_concat_appends_one_hot():
    cond = G_CONDITIONING.build("concat", {}, num_classes=K)
    z = torch.randn(3, 2)
    out = cond.prepare(z, torch.tensor([2, 0, 3])).x
    assert torch.equal(out[:, :2], z)
    assert torch.equal(out[:, 2:], torch.eye(K)[[2, 0, 3]])
    with pytest.raises(GanforgeError, match="labels"):
        cond.prepare(z, None)


@pytest.mark.parametrize("name", D_HEADS.names())
@pytest.mark.parametrize("sn", [True, False])
def test_d_head_output_and_sn(name, sn):
    torch.manual_seed(0)
    text = D_HEADS.get(name).declares("uses_text", False)  # reads sentence embeddings, not labels
    if "sn" not in D_HEADS.get(name).options():  # SAN's unit-norm weight, SPD's equalized lr: no spectral norm
        with pytest.raises(GanforgeError, match="sn"):
            D_HEADS.build(name, {"sn": sn}, in_features=10, num_classes=K)
        return
    head = D_HEADS.build(name, {"sn": sn}, in_features=10, num_classes=0 if text else K,
                         text_dim=TEXT_DIM if text else 0)
    y = torch.randn(5, TEXT_DIM) if text else torch.tensor([0, 1, 2, 3, 0])
    out = head(torch.randn(5, 10), y)
    assert isinstance(out, DOutput) and out.adv.shape == (5,)
    layers = list(weight_layers(head))
    assert layers and all(has_sn(m) == sn for m in layers)
    if sn:
        for _ in range(3):
            head(torch.randn(5, 10), y)
        for m in layers:
            assert top_singular_value(m).item() == pytest.approx(1.0, abs=1e-2)


def test_linear_head_is_psi():
    head = D_HEADS.build("linear", {"sn": False}, in_features=6, num_classes=0)
    h = torch.randn(3, 6)
    expected = h @ head.psi.weight[0] + head.psi.bias[0]
    assert torch.allclose(head(h).adv, expected, atol=1e-6)
    assert torch.allclose(head(h, torch.tensor([0, 1, 1])).adv, expected, atol=1e-6)  # labels ignored


@pytest.mark.parametrize("sn", [False, True])
def test_projection_logit_is_psi_plus_inner_product(sn):
    torch.manual_seed(0)
    head = D_HEADS.build("projection", {"sn": sn}, in_features=6, num_classes=K).eval()  # eval: fixed SN weights
    h, y = torch.randn(5, 6), torch.tensor([3, 0, 1, 3, 2])
    with torch.no_grad():
        psi_w, psi_b, embed = head.psi.weight[0], head.psi.bias[0], head.embed.weight
        expected = h @ psi_w + psi_b + (embed[y] * h).sum(dim=1)  # psi(h) + <embed(y), h>
        manual = torch.stack([h[i] @ psi_w + psi_b + embed[y[i]] @ h[i] for i in range(5)])
    assert torch.allclose(head(h, y).adv, expected, atol=1e-5)
    assert torch.allclose(expected, manual, atol=1e-5)


def test_projection_needs_labels_and_classes():
    head = D_HEADS.build("projection", {}, in_features=6, num_classes=K)
    with pytest.raises(GanforgeError, match="labels"):
        head(torch.randn(2, 6), None)
    with pytest.raises(GanforgeError, match="num_classes"):
        D_HEADS.build("projection", {}, in_features=6, num_classes=0)

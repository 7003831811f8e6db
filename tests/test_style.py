"""The style-based generator protocol (mapping / synthesis / w_avg / truncation / mixing) on every style family."""
from __future__ import annotations

import pytest
import torch

from ganforge.models.style import StyleGenerator, is_style_based
from ganforge.models.style_mlp import ModulatedLinear
from ganforge.registries import ARCHITECTURES, G_CONDITIONING


# a family with a pretrained part (Projected GAN's feature network) gets a small, seeded one: nothing is downloaded
OFFLINE = {"backbone": "digits-classifier", "backbone_weights": "random"}


def _offline(name: str) -> dict:
    return {k: v for k, v in OFFLINE.items() if k in ARCHITECTURES.get(name).options()}


def _style_families() -> list[str]:
    out = []
    for name in ARCHITECTURES.names():
        g_cond = G_CONDITIONING.build("none", {}, num_classes=0)
        G = ARCHITECTURES.build(name, _offline(name), img_shape=(1, 8, 8), num_classes=0, g_cond=g_cond).G
        if is_style_based(G):
            out.append(name)
    return out


STYLE = _style_families()


def build(name: str, shape=(1, 8, 8), cond: str = "none", num_classes: int = 0):
    g_cond = G_CONDITIONING.build(cond, {}, num_classes=num_classes)
    return ARCHITECTURES.build(name, {}, img_shape=shape, num_classes=num_classes, g_cond=g_cond).G


def test_there_is_a_style_family():
    assert "style-mlp" in STYLE


@pytest.mark.parametrize("name", STYLE)
def test_forward_is_synthesis_of_mapping(name):
    torch.manual_seed(0)
    G = build(name).eval()
    z = G.sample_z(5)
    ws = G.mapping(z)
    assert isinstance(G, StyleGenerator) and ws.shape == (5, G.num_ws, G.w_dim)
    assert torch.equal(ws[:, 0], ws[:, -1])  # one w broadcast to every layer
    assert torch.allclose(G(z), G.synthesis(ws))


@pytest.mark.parametrize("name", STYLE)
def test_truncation_psi_zero_gives_the_average_w_and_one_changes_nothing(name):
    torch.manual_seed(0)
    G = build(name)
    G.train()
    for _ in range(3):
        G.mapping(G.sample_z(64))  # training-mode mapping calls move w_avg
    assert G.w_avg.abs().sum() > 0
    G.eval()
    z = G.sample_z(6)
    ws0 = G.mapping(z, truncation_psi=0.0)
    assert torch.allclose(ws0, G.w_avg.expand_as(ws0))
    x0 = G(z, truncation_psi=0.0)
    assert torch.allclose(x0, x0[:1].expand_as(x0), atol=1e-6)  # every z gives the same sample
    assert torch.equal(G.mapping(z, truncation_psi=1.0), G.mapping(z))
    half = G.mapping(z, truncation_psi=0.5, truncation_cutoff=1)
    full = G.mapping(z)
    assert torch.allclose(half[:, 0], G.w_avg + 0.5 * (full[:, 0] - G.w_avg), atol=1e-6)
    assert torch.equal(half[:, 1:], full[:, 1:])  # layers from the cutoff on are not truncated


@pytest.mark.parametrize("name", STYLE)
def test_w_avg_is_the_running_mean_of_w_in_training_mode_only(name):
    torch.manual_seed(0)
    G = build(name)
    z = G.sample_z(32)
    G.eval()
    G.mapping(z)
    assert torch.equal(G.w_avg, torch.zeros_like(G.w_avg))  # eval: untouched
    G.train()
    w = G.map(z, None)
    G.mapping(z)
    assert torch.allclose(G.w_avg, (1 - G.w_avg_beta) * w.mean(0), atol=1e-6)


@pytest.mark.parametrize("name", STYLE)
def test_mixing_switches_w_at_the_crossover_layer(name):
    torch.manual_seed(0)
    G = build(name).eval()
    wa, wb = G.mapping(G.sample_z(4)), G.mapping(G.sample_z(4))
    k = 1
    mixed = G.mix(wa, wb, k)
    assert torch.equal(mixed[:, :k], wa[:, :k]) and torch.equal(mixed[:, k:], wb[:, k:])
    assert not torch.allclose(G.synthesis(mixed), G.synthesis(wa))
    assert torch.allclose(G.synthesis(G.mix(wa, wb, G.num_ws)), G.synthesis(wa))  # crossover past the end: all a


def test_demodulation_gives_unit_output_variance_for_unit_input():
    torch.manual_seed(0)
    layer = ModulatedLinear(64, 32, w_dim=8)
    with torch.no_grad():
        layer.affine.weight.normal_(0, 1)  # styles that vary with w
    x, w = torch.randn(4096, 64), torch.randn(4096, 8)
    out = layer(x, w) - layer.bias
    # sum_i (s_i w_ij)^2 / sigma_j^2 = 1 per output: unit variance for iid unit-variance inputs (StyleGAN2 Eq. 3)
    assert out.var(dim=0).mean().item() == pytest.approx(1.0, abs=0.05)
    plain = ModulatedLinear(64, 32, w_dim=8, demodulate=False)
    with torch.no_grad():
        plain.affine.bias.fill_(3.0)  # s = 3: without demodulation the variance scales with s^2
    assert (plain(x, w) - plain.bias).var(dim=0).mean().item() > 5.0


def test_conditional_style_mlp_takes_labels_through_the_mapping_and_refuses_cbn():
    torch.manual_seed(0)
    G = build("style-mlp", cond="concat", num_classes=3).eval()
    z = G.sample_z(4)
    zeros, ones = torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.long)
    assert not torch.allclose(G.mapping(z, zeros), G.mapping(z, ones))
    with pytest.raises(Exception, match="use conditioning g=concat"):
        build("style-mlp", cond="cbn", num_classes=3)

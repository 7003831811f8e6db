"""FastGAN (Liu et al., ICLR 2021): skip-layer excitation (Eq. 1), SLE placement, D's reconstruction term (Eq. 2)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from ganforge.errors import GanforgeError
from ganforge.models.base import Discriminator
from ganforge.models.fastgan import sle_pairs
from ganforge.nn.sle import SkipLayerExcitation
from ganforge.objectives.base import Context
from ganforge.objectives.fastgan_recon import quadrant
from ganforge.registries import ARCHITECTURES, D_HEADS, G_CONDITIONING, REGULARIZERS
from ganforge.training.build import tap_shapes

SHAPE = (3, 16, 16)


def pair(shape=SHAPE, **opts):
    g_cond = G_CONDITIONING.build("none", {}, num_classes=0)
    arch = ARCHITECTURES.build("fastgan", {"g_ch": 8, "d_ch": 8, "z_dim": 24, **opts}, img_shape=shape,
                               num_classes=0, g_cond=g_cond)
    head = D_HEADS.build("linear", {}, in_features=arch.D.feature_dim, num_classes=0, d_sn=True)
    return arch.G, Discriminator(arch.D, head)


def recon_term(D, shape=SHAPE, **opts):
    return REGULARIZERS.build("fastgan-recon", {"width": 8, **opts}, tap_shapes=tap_shapes(D, shape, 0),
                              img_shape=shape)


class Constant(nn.Module):
    """A stub decoder: outputs `value` everywhere at a fixed size (whatever its input)."""

    def __init__(self, channels: int, size: tuple[int, int], value: float):
        super().__init__()
        self.channels, self.size, self.value = channels, size, value

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return torch.full((f.shape[0], self.channels, *self.size), self.value)


# ------------------------------------------------------------------------------------------------------- SLE
def test_sle_gate_is_a_channel_factor_in_0_1_from_low_only():
    torch.manual_seed(0)
    sle = SkipLayerExcitation(5, 7)
    low, high = torch.randn(2, 5, 8, 8), torch.randn(2, 7, 32, 32)
    gate = sle.gate(low)
    assert gate.shape == (2, 7, 1, 1) and bool(((gate > 0) & (gate < 1)).all())
    assert torch.allclose(sle(low, high), high * gate)  # y = F(x_low) * x_high
    assert torch.allclose(sle(low, 3 * high), 3 * sle(low, high))  # the gate does not read high
    assert not torch.allclose(sle.gate(low + torch.randn_like(low)), gate)  # ... but does read low
    assert sle(low + 1, high).shape == high.shape


def test_sle_with_zero_weights_halves_high():
    """conv weights 0 -> gate = sigmoid(0) = 0.5 exactly."""
    sle = SkipLayerExcitation(2, 3)
    for p in sle.parameters():
        nn.init.zeros_(p)
    high = torch.randn(1, 3, 16, 16)
    assert torch.equal(sle(torch.randn(1, 2, 4, 4), high), 0.5 * high)


def test_sle_pairs_follow_the_paper_at_256_and_adapt_to_small_images():
    assert sle_pairs(6, 4, 256, 16) == [(0, 4), (1, 5), (2, 6)]  # 4->64, 8->128, 16->256 (paper)
    assert sle_pairs(2, 4, 16, 16) == [(0, 2)]  # 4->16 at 16 px
    assert sle_pairs(1, 4, 8, 16) == [(0, 1)]  # 4->8 at 8 px
    assert sle_pairs(6, 4, 256, 4) == [(j, j + 2) for j in range(5)]  # ratio 4: 4->16, ..., 64->256


def test_generator_gates_the_16px_map_by_the_4px_map():
    torch.manual_seed(0)
    G, _ = pair()
    G.eval()  # fixed spectral-norm estimates, so the gate can be recomputed exactly
    assert list(G.sle) == ["2"] and G.sle_low == {2: 0}
    maps = {}
    G.init.register_forward_hook(lambda m, i, o: maps.__setitem__("low", o))
    G.blocks[1].register_forward_hook(lambda m, i, o: maps.__setitem__("high", o))
    G.sle["2"].register_forward_hook(lambda m, i, o: maps.__setitem__("out", o))
    with torch.no_grad():
        x = G(torch.randn(3, 24))
        gate = G.sle["2"].gate(maps["low"])
    assert x.shape == (3, *SHAPE) and float(x.abs().max()) <= 1
    assert torch.allclose(maps["out"], maps["high"] * gate)


# ---------------------------------------------------------------------------------------------- recon term
def test_quadrant_picks_row_major_quarters():
    t = torch.arange(16.0).view(1, 1, 4, 4).repeat(4, 1, 1, 1)
    q = quadrant(t, torch.tensor([0, 1, 2, 3]))
    assert q[0, 0].tolist() == [[0, 1], [4, 5]] and q[1, 0].tolist() == [[2, 3], [6, 7]]
    assert q[2, 0].tolist() == [[8, 9], [12, 13]] and q[3, 0].tolist() == [[10, 11], [14, 15]]


@pytest.mark.parametrize("distance, out, expected", [("l1", 0.5, 0.0), ("l1", 0.7, 2 * (0.2 + 0.2)),
                                                     ("mse", 0.7, 2 * (0.04 + 0.04))])
def test_recon_loss_is_the_distance_of_decoder_output_to_the_resized_real(distance, out, expected):
    """Image = 0.5 everywhere (every area-resized target too); stub decoders output `out`; weight 2."""
    _, D = pair()
    term = recon_term(D, weight=2.0, distance=distance)
    assert term.sizes == {"big": (16, 16), "part": (8, 8)}  # 8x8 map -> whole 16 px image; 8x8 quadrant -> 8x8
    term.decoders = nn.ModuleDict({k: Constant(3, term.sizes[k], out) for k in ("big", "part")})
    image = torch.full((2, *SHAPE), 0.5)
    maps = D(image, features=True).features
    assert torch.equal(maps["image"], image)
    loss = term.loss(maps, torch.tensor([0, 3]))
    assert float(loss) == pytest.approx(expected, abs=1e-6)


def test_recon_targets_are_area_downsampled_quadrants():
    _, D = pair()
    term = recon_term(D, max_res=8)  # whole image -> 8x8, quadrant -> 8x8 (unchanged)
    image = torch.arange(256.0).view(1, 1, 16, 16).repeat(1, 3, 1, 1)
    t = term.targets(image, torch.tensor([1]))
    assert t["big"].shape == (1, 3, 8, 8) and float(t["big"][0, 0, 0, 0]) == (0 + 1 + 16 + 17) / 4
    assert torch.equal(t["part"], image[:, :, :8, 8:])  # quadrant 1: top right


def test_recon_term_reads_reals_only_and_trains_d_and_decoders_not_g():
    torch.manual_seed(0)
    G, D = pair()
    term = recon_term(D)
    assert term.trains_with == "D" and term.needs_features
    ctx = Context(G=G, D=D, real=torch.rand(4, *SHAPE) * 2 - 1, y_real=None, z=torch.randn(4, 24), y_fake=None,
                  phase="D", want_features=True)
    loss = term.d_terms(ctx)["fastgan-recon"]
    assert ctx.cached("fake") is None and ctx.cached("d_fake") is None  # fakes never made
    loss.backward()
    assert all(p.grad is None for p in G.parameters())
    assert all(p.grad is not None for p in term.decoders.parameters())
    assert D.backbone.stem[0].parametrizations.weight.original.grad.abs().sum() > 0
    assert all(p.grad is None for p in D.head.parameters())  # the logit head is not on the reconstruction path


def test_recon_term_bad_options_name_the_key():
    _, D = pair()
    with pytest.raises(GanforgeError, match="fastgan-recon.distance"):
        recon_term(D, distance="lpips")
    with pytest.raises(GanforgeError, match="fastgan-recon.big_tap: D exposes no feature map 'x'"):
        recon_term(D, big_tap="x")


# ---------------------------------------------------------------------------------------------------- family
def test_bad_sle_ratio_is_refused():
    with pytest.raises(GanforgeError, match="option sle_ratio must be a power of two"):
        pair(sle_ratio=3)


def test_r1_double_backward_through_d_and_recon():
    torch.manual_seed(0)
    _, D = pair()
    term = recon_term(D)
    x = torch.randn(2, *SHAPE, requires_grad=True)
    out = D(x, features=True)
    (g,) = torch.autograd.grad(out.adv.sum(), x, create_graph=True)
    (g.pow(2).sum() + term.loss(out.features, torch.tensor([0, 2]))).backward()
    assert D.backbone.downs[0].main[0].parametrizations.weight.original.grad.abs().sum() > 0


def test_the_reconstruction_term_on_another_family_is_refused_at_config_time():
    import copy

    from helpers import TINY_DIGITS
    from ganforge.config import from_dict

    raw = copy.deepcopy(TINY_DIGITS)
    raw["regularizers"] = [{"name": "fastgan-recon"}]
    with pytest.raises(GanforgeError, match="regularizers.0: 'fastgan-recon' works on the 'fastgan' architecture"):
        from_dict(raw)

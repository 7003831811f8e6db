"""R3GAN (Huang et al., NeurIPS 2024): fix-up init (identity blocks, He gain x L^(-1/4)), no normalization anywhere,
the [1, 3, 3, 1] resampler, grouped convs, R1 + R2 double backward, the relativistic loss, option errors."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ganforge.errors import GanforgeError
from ganforge.models.base import Discriminator
from ganforge.models.r3gan_blocks import ResidualBlock, Resample2d
from ganforge.nn.norms import LabelNorm
from ganforge.nn.spectral_norm import has_sn
from ganforge.registries import ARCHITECTURES, D_HEADS, G_CONDITIONING, LOSSES, load_all

load_all()
SMALL = {"z_dim": 16, "g_ch": 16, "d_ch": 16}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _pair(shape=(3, 16, 16), cond="none", num_classes=0, **opts):
    g_cond = G_CONDITIONING.build(cond, {}, num_classes=num_classes, text_dim=0)
    torch.manual_seed(0)
    return ARCHITECTURES.build("r3gan", {**SMALL, **opts}, img_shape=shape, num_classes=num_classes, g_cond=g_cond)


def _blocks(net: nn.Module) -> list[ResidualBlock]:
    return [m for m in net.modules() if isinstance(m, ResidualBlock)]


def test_every_residual_block_is_exactly_the_identity_at_init():
    G, D = _pair()
    blocks = _blocks(G) + _blocks(D)
    assert len(_blocks(G)) == len(_blocks(D)) == 3 * 2  # 16 px: stages at 4, 8, 16; 2 blocks each
    x = torch.randn(2, 16, 5, 7)
    for block in blocks:
        assert torch.count_nonzero(block.conv3.weight) == 0
        assert torch.equal(block(x), x)
    # so at init G is basis -> resampling -> 1x1 conv: a 16 px G output equals the upsampled basis, mapped
    z = G.sample_z(2)
    with torch.no_grad():
        basis = G.basis(z)
        for stage in G.stages[1:]:
            basis = stage[0](basis)  # the transitions only
        assert torch.allclose(G(z), torch.tanh(G.to_img(basis)), atol=1e-6)


def test_init_std_is_lrelu_gain_times_L_to_the_minus_quarter_over_sqrt_fan_in():
    # 8 px: 2 stages x 2 blocks, L = 4, so g = sqrt(2 / 1.04) * 4^(-1/4) = 1 / sqrt(1.04) = 0.98058.
    # conv1 (1x1 from 256 channels): std = 0.98058 / 16 = 0.061286; grouped 3x3 (16 channels per group): fan_in
    # 16 * 9 = 144, std = 0.98058 / 12 = 0.081715. Samples: 131072 and 73728 weights (relative std error < 0.3%).
    G, _ = _pair((3, 8, 8), g_ch=256, d_ch=8)
    gain = 1.0 / math.sqrt(1.04)
    block = G.stages[0][0]
    assert block.conv1.weight.std().item() == pytest.approx(gain / 16, rel=0.01)
    assert block.conv2.weight.std().item() == pytest.approx(gain / 12, rel=0.015)
    assert block.conv1.weight.mean().abs().item() < 3 * gain / 16 / math.sqrt(block.conv1.weight.numel())
    # the transition-free parts use gain 1: G's basis map (fan_in z_dim = 16) and the 1x1 output conv (fan_in 256)
    assert G.basis.linear.weight.std().item() == pytest.approx(1 / 4, rel=0.05)
    assert G.to_img.weight.std().item() == pytest.approx(1 / 16, rel=0.1)


def test_no_normalization_or_spectral_norm_layers_in_g_or_d():
    norm_types = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm, LabelNorm)
    for cond, k in (("none", 0), ("concat", 3)):
        G, D = _pair(cond=cond, num_classes=k)
        for net in (G, D):
            found = [type(m).__name__ for m in net.modules() if isinstance(m, norm_types) or has_sn(m)]
            assert not found, found
    assert D.spectral_norm is False


def _ramp(n: int) -> torch.Tensor:
    return torch.arange(n, dtype=torch.float32).view(1, 1, 1, n).expand(1, 1, n, n).contiguous()


def test_resampler_is_bilinear_keeps_constants_and_means():
    up, down = Resample2d(1, up=True), Resample2d(1, up=False)
    const = torch.full((1, 1, 8, 8), 3.0)
    assert torch.allclose(up(const)[..., 2:-2, 2:-2], torch.full((12, 12), 3.0))  # constant away from the borders
    assert torch.allclose(down(const)[..., 1:-1, 1:-1], torch.full((2, 2), 3.0))
    assert torch.allclose(down(up(const))[..., 2:-2, 2:-2], torch.full((4, 4), 3.0))
    # ramp x_i = i: up gives bilinear with half-pixel centers, out_j = j/2 - 1/4; down gives
    # (x_{2i-1} + 3 x_{2i} + 3 x_{2i+1} + x_{2i+2}) / 8 = 2i + 1/2
    u = up(_ramp(6))[0, 0, 4]  # a row away from the top/bottom borders
    assert torch.allclose(u[1:-1], torch.arange(1, 11) / 2 - 0.25)
    d = down(_ramp(8))[0, 0, 1]
    assert torch.allclose(d[1:-1], torch.tensor([2.5, 4.5]))
    # an interior impulse: up spreads it over total weight 4 (the mean is kept), down over total weight 1/4
    impulse = torch.zeros(1, 1, 8, 8)
    impulse[..., 4, 4] = 1.0
    assert up(impulse).sum().item() == pytest.approx(4.0)
    assert down(impulse).sum().item() == pytest.approx(0.25)
    assert torch.allclose(up(impulse)[0, 0, 7:11, 7:11].sum(0), torch.tensor([0.25, 0.75, 0.75, 0.25]) * 2)


@pytest.mark.parametrize("g_ch,group_width,groups", [(64, 16, 8), (64, 32, 4), (8, 16, 1), (768, 16, 96)])
def test_grouped_conv_has_width_x_expansion_over_group_width_groups(g_ch, group_width, groups):
    block = ResidualBlock(g_ch, 2, group_width, total_blocks=4)
    assert block.conv2.groups == groups == block.groups
    assert block.conv2.weight.shape == (2 * g_ch, 2 * g_ch // groups, 3, 3)
    assert (block.conv1.kernel_size, block.conv3.kernel_size) == ((1, 1), (1, 1))


def test_paper_cifar_width_768_cardinality_96_blocks_and_param_count():
    g_cond = G_CONDITIONING.build("concat", {}, num_classes=10, text_dim=0)
    with torch.device("meta"):  # shapes only: no 20M-parameter init on the CPU
        G, D = ARCHITECTURES.build("r3gan", {}, img_shape=(3, 32, 32), num_classes=10, g_cond=g_cond)
    assert [b.conv2.groups for b in _blocks(G)] == [96] * 8  # 4 stages (4..32 px) x 2 blocks
    # per block: 1x1 768->1536, grouped 3x3 (16 in per group), 1x1 1536->768, two 1536 biases
    block = 2 * 768 * 1536 + 1536 * 16 * 9 + 2 * 1536
    g_rest = (64 + 10) * 768 + 768 * 4 * 4 + 768 * 3  # basis map of [z, one-hot], basis, to_img
    d_rest = 3 * 768 + 768 * 4 * 4 + 768 * 768  # extraction conv, depthwise basis, linear
    assert sum(p.numel() for p in G.parameters()) == 8 * block + g_rest
    assert sum(p.numel() for p in D.parameters()) == 8 * block + d_rest


def test_r1_and_r2_double_backward_give_finite_weight_grads_and_bias_grads_of_a_piecewise_linear_d():
    G, backbone = _pair(cond="concat", num_classes=3)
    D = Discriminator(backbone, D_HEADS.build("projection", {}, in_features=backbone.feature_dim, num_classes=3,
                                              d_sn=False))
    with torch.no_grad():  # as after some training: residual branches on, so every weight shapes grad_x D
        for block in _blocks(backbone):
            block.conv3.weight.normal_(0.0, 0.05)
    y = torch.tensor([0, 1, 2, 0])
    real = torch.randn(4, 3, 16, 16).requires_grad_(True)
    fake = G(G.sample_z(4), y).detach().requires_grad_(True)
    penalty = 0.0
    for x in (real, fake):  # R1 on reals + R2 on fakes (gamma/2 dropped)
        (grad,) = torch.autograd.grad(D(x, y).adv.sum(), x, create_graph=True)
        penalty = penalty + grad.pow(2).flatten(1).sum(1).mean()
    penalty.backward()
    for name, p in backbone.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        if name.endswith("bias"):  # D is piecewise linear: grad_x D does not move with the biases (a.e.)
            assert torch.count_nonzero(p.grad) == 0, name
        else:
            assert p.grad.abs().sum() > 0, name


def test_relativistic_loss_from_the_registry_is_ln2_when_d_cannot_tell_the_pair_apart():
    loss = LOSSES.build("relativistic", {})
    _, backbone = _pair()
    D = Discriminator(backbone, D_HEADS.build("linear", {}, in_features=backbone.feature_dim, num_classes=0,
                                              d_sn=False))
    x = torch.randn(4, 3, 16, 16)
    d_real, d_fake = D(x).adv, D(x.clone()).adv  # D(x_r) = D(x_f)
    assert loss.d_loss(d_real, d_fake).item() == pytest.approx(math.log(2), abs=1e-6)
    assert loss.g_loss(d_fake, d_real).item() == pytest.approx(math.log(2), abs=1e-6)
    # softplus(-(D_r - D_f)) for D: a margin of ln 3 in favour of the real gives ln(1 + 1/3)
    assert loss.d_loss(d_real + math.log(3), d_fake).item() == pytest.approx(math.log(4 / 3), abs=1e-6)


def test_non_square_images_get_a_non_square_basis():
    G, D = _pair((3, 16, 32))
    assert G.basis.basis.shape == (16, 4, 8) and D.basis.basis.kernel_size == (4, 8)
    x = G(G.sample_z(2))
    assert x.shape == (2, 3, 16, 32) and D.features(x).shape == (2, 16)


@pytest.mark.parametrize("opts,cond,match", [
    ({"blocks_per_stage": 0}, "none", "blocks_per_stage must be >= 1"),
    ({"expansion": 0}, "none", "expansion must be >= 1"),
    ({"group_width": 0}, "none", "group_width must be >= 1"),
    ({"g_ch": 24, "group_width": 32}, "none", r"group_width=32 must divide .*G stage 0: width 24 x expansion 2 = 48"),
    ({"width_mults": [1, 1]}, "none", r"width_mults needs one factor per stage \(3 at this resolution"),
    ({"width_mults": [1, 0.5, 0]}, "none", "width_mults must give every stage >= 1 channel"),
    ({}, "cbn", "use conditioning g=concat"),
    ({}, "shared", "use conditioning g=concat"),
])
def test_bad_options_get_one_line_errors(opts, cond, match):
    with pytest.raises(GanforgeError, match=match) as err:
        _pair(cond=cond, num_classes=3 if cond != "none" else 0, **opts)
    assert "\n" not in str(err.value) and "r3gan" in str(err.value)


@pytest.mark.parametrize("shape,match", [((2,), "shape"), ((3, 9, 9), "9x9")])
def test_unsupported_shapes_are_refused(shape, match):
    with pytest.raises(GanforgeError, match=match):
        _pair(shape)

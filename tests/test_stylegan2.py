"""StyleGAN2 (Karras et al. 2020; stylegan2-ada-pytorch): the properties that define its layers and networks."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from helpers import TINY_DIGITS

from ganforge.config import from_dict
from ganforge.errors import GanforgeError
from ganforge.models.base import Discriminator
from ganforge.models.stylegan2_layers import (DBlock, MinibatchStd, modulated_conv2d, modulated_weight,
                                              normalize_2nd_moment)
from ganforge.nn.equalized import EqualizedConv2d, EqualizedLinear
from ganforge.nn.resample import conv2d_down, conv2d_up, downsample2d, fir_filter, upsample2d
from ganforge.objectives import Context
from ganforge.objectives.path_length import PathLengthRegularizer
from ganforge.registries import ARCHITECTURES, D_HEADS, G_CONDITIONING, REGULARIZERS, load_all
from ganforge.training.distributed import DistInfo
from ganforge.training.trainer import Trainer

load_all()
TINY = {"g_ch": 8, "d_ch": 8, "z_dim": 24, "w_dim": 8, "mapping_layers": 2}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def build(shape=(3, 16, 16), cond: str = "none", num_classes: int = 0, **options):
    g_cond = G_CONDITIONING.build(cond, {}, num_classes=num_classes)
    return ARCHITECTURES.build("stylegan2", {**TINY, **options}, img_shape=shape, num_classes=num_classes,
                               g_cond=g_cond)


# ------------------------------------------------------------------------------------------ modulated convolution
def test_demodulated_filters_have_unit_norm_when_s_is_one():
    torch.manual_seed(0)
    weight = torch.randn(16, 8, 3, 3) * 5
    w = modulated_weight(weight, torch.ones(2, 8))  # (B, O, I, k, k)
    norms = w.square().sum(dim=(2, 3, 4))
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-6)  # sum w''^2 = S / (S + 1e-8)


def test_demodulation_gives_unit_output_variance_for_unit_variance_input():
    torch.manual_seed(0)
    weight = torch.randn(32, 64, 3, 3)
    styles = torch.exp(torch.randn(256, 64))  # styles that vary a lot across samples and channels
    x = torch.randn(256, 64, 8, 8)
    out = modulated_conv2d(x, weight, styles)[:, :, 1:-1, 1:-1]  # interior: all 9 taps see data
    assert out.var().item() == pytest.approx(1.0, abs=0.03)  # Eq. 3: ||w''_o|| = 1 and iid unit inputs
    plain = modulated_conv2d(x, weight, styles, demodulate=False)[:, :, 1:-1, 1:-1]
    assert plain.var().item() > 100  # without demodulation the variance is sum_i s_i^2 ||w_oi||^2


@pytest.mark.parametrize("up", [False, True])
def test_non_fused_modulated_conv_equals_per_sample_conv_with_modulated_weights(up):
    torch.manual_seed(0)
    weight, styles, x = torch.randn(6, 4, 3, 3), torch.randn(3, 4), torch.randn(3, 4, 5, 5)
    f = fir_filter()
    got = modulated_conv2d(x, weight, styles, up=up, resample_filter=f)
    w = modulated_weight(weight, styles)
    for b in range(3):
        want = conv2d_up(x[b:b + 1], w[b], f) if up else F.conv2d(x[b:b + 1], w[b], padding=1)
        assert torch.allclose(got[b:b + 1], want, atol=1e-5)


# ------------------------------------------------------------------------------------------------ equalized lr
def test_equalized_linear_stores_n01_over_lr_mul_and_scales_at_runtime():
    torch.manual_seed(0)
    layer = EqualizedLinear(256, 512, lr_mul=0.01, bias_init=0.5)
    assert layer.weight.std().item() == pytest.approx(100.0, rel=0.02)  # N(0, 1) / lr_mul
    assert torch.allclose(layer.bias, torch.full((512,), 50.0))  # bias_init / lr_mul: effective bias 0.5
    x = torch.randn(4, 256)
    want = x @ (layer.weight * 0.01 / 16).t() + layer.bias * 0.01  # 1/sqrt(256) = 1/16
    assert torch.allclose(layer(x), want, atol=1e-5)
    assert layer.effective_weight().std().item() == pytest.approx(1 / 16, rel=0.02)


def test_equalized_lr_gradient_and_adam_step_scale_with_lr_mul():
    torch.manual_seed(0)
    fast, slow = EqualizedLinear(16, 4, lr_mul=1.0).double(), EqualizedLinear(16, 4, lr_mul=0.01).double()
    with torch.no_grad():  # same effective layer (float64: the step is 1e-5 of the stored weight)
        slow.weight.copy_(fast.weight / 0.01)
        slow.bias.copy_(fast.bias / 0.01)
    x = torch.randn(8, 16, dtype=torch.double)
    assert torch.allclose(fast(x), slow(x))
    for layer in (fast, slow):
        layer(x).square().sum().backward()
    assert torch.allclose(slow.weight.grad, 0.01 * fast.weight.grad, rtol=1e-4)
    assert torch.allclose(slow.bias.grad, 0.01 * fast.bias.grad, rtol=1e-4, atol=1e-8)
    before = [fast.effective_weight().detach(), slow.effective_weight().detach()]
    for layer in (fast, slow):
        torch.optim.Adam(layer.parameters(), lr=1e-3).step()
    moved = [(layer.effective_weight().detach() - b) for layer, b in zip((fast, slow), before)]
    assert torch.allclose(moved[1], 0.01 * moved[0], rtol=1e-4, atol=0)  # 100x slower (up to Adam eps)


def test_equalized_conv_scales_by_fan_in_and_halves_with_down():
    torch.manual_seed(0)
    conv = EqualizedConv2d(4, 6, 3)
    x = torch.randn(2, 4, 8, 8)
    assert torch.allclose(conv(x), F.conv2d(x, conv.weight / 6.0, conv.bias, padding=1), atol=1e-5)  # sqrt(36)
    assert EqualizedConv2d(4, 6, 3, down=2)(x).shape == (2, 6, 4, 4)
    assert EqualizedConv2d(4, 6, 1, down=2, bias=False)(x).shape == (2, 6, 4, 4)


def test_mapping_runs_at_the_lr_multiplier_and_normalizes_its_input():
    assert normalize_2nd_moment(torch.tensor([[3.0, 4.0]])).tolist()[0] == pytest.approx([0.8485, 1.1314], abs=1e-4)
    G, _ = build(mapping_layers=3)
    assert [fc.lr_mul for fc in G.mapping_net.fcs] == [0.01] * 3 and G.mapping_net.embed is None
    torch.manual_seed(0)
    z = torch.randn(4, 24)
    assert torch.allclose(G.map(z, None), G.map(7 * z, None), atol=1e-5)  # only z's direction matters


# ------------------------------------------------------------------------------------------------ FIR resampling
def test_fir_filter_is_the_normalized_binomial():
    f = fir_filter()
    assert f.sum().item() == pytest.approx(1.0)
    assert torch.allclose(f, torch.outer(torch.tensor([1., 3, 3, 1]), torch.tensor([1., 3, 3, 1])) / 64)


def test_upsample_keeps_a_constant_and_spreads_an_impulse_with_gain_4():
    f = fir_filter()
    const = torch.full((1, 2, 6, 6), 0.7)
    up = upsample2d(const, f)
    assert up.shape == (1, 2, 12, 12)
    assert torch.allclose(up[..., 2:-2, 2:-2], torch.full_like(up[..., 2:-2, 2:-2], 0.7), atol=1e-6)
    impulse = torch.zeros(1, 1, 8, 8)
    impulse[0, 0, 3, 3] = 1.0
    out = upsample2d(impulse, f)[0, 0]
    assert out.sum().item() == pytest.approx(4.0)  # gain up^2 = 4
    patch = torch.outer(torch.tensor([1., 3, 3, 1]), torch.tensor([1., 3, 3, 1])) / 16
    assert torch.allclose(out[5:9, 5:9], patch) and out[5:9, 5:9].sum().item() == pytest.approx(out.sum().item())


def test_downsample_keeps_a_constant_and_filters_with_sum_one():
    f = fir_filter()
    const = torch.full((1, 1, 8, 8), -1.5)
    down = downsample2d(const, f)
    assert down.shape == (1, 1, 4, 4)
    assert torch.allclose(down[..., 1:-1, 1:-1], torch.full((1, 1, 2, 2), -1.5))
    impulse = torch.zeros(1, 1, 8, 8)
    impulse[0, 0, 4, 4] = 1.0
    out = downsample2d(impulse, f)[0, 0]
    assert torch.allclose(out[1:3, 1:3], torch.tensor([[1., 3], [3, 9]]) / 64)  # taps 3 and 1 of [1,3,3,1]/8
    assert out.sum().item() == pytest.approx(16 / 64)


def test_resampling_convs_are_resample_then_conv_and_double_backward():
    torch.manual_seed(0)
    f = fir_filter().double()
    x, w = torch.randn(1, 2, 8, 8, dtype=torch.double), torch.randn(3, 2, 3, 3, dtype=torch.double)
    # up: transposed conv + filter == upsample, then a true convolution (the reference's flip_weight=False), and
    # down: filter + strided conv == conv, then downsample; both away from the border, where the zero paddings differ
    up = conv2d_up(x, w, f)
    assert up.shape == (1, 3, 16, 16)
    assert torch.allclose(up[..., 1:-1, 1:-1], F.conv2d(upsample2d(x, f), w.flip([2, 3]), padding=1)[..., 1:-1, 1:-1])
    down = conv2d_down(x, w, f)
    assert down.shape == (1, 3, 4, 4)
    assert torch.allclose(down[..., 1:-1, 1:-1], downsample2d(F.conv2d(x, w, padding=1), f)[..., 1:-1, 1:-1])
    x = x[..., :4, :4].clone().requires_grad_(True)
    w.requires_grad_(True)
    assert torch.autograd.gradgradcheck(lambda a, b: conv2d_up(a, b, f), (x, w))
    assert torch.autograd.gradgradcheck(lambda a, b: conv2d_down(a, b, f), (x, w))


# ------------------------------------------------------------------------------------------------ minibatch std
def test_minibatch_std_adds_one_channel_and_is_1e_4_for_identical_samples():
    same = torch.randn(1, 5, 4, 4).repeat(8, 1, 1, 1)
    out = MinibatchStd(4)(same)
    assert out.shape == (8, 6, 4, 4)
    assert torch.equal(out[:, :5], same)
    assert torch.allclose(out[:, 5], torch.full((8, 4, 4), 1e-4))  # sqrt(0 + 1e-8)


def test_minibatch_std_groups_sample_i_with_i_plus_n_over_g():
    a, b = torch.zeros(1, 3, 2, 2), torch.full((1, 3, 2, 2), 2.0)
    strided = MinibatchStd(2)(torch.cat([a, b, a, b]))[:, 3]  # groups {0, 2} and {1, 3}: identical pairs
    assert torch.allclose(strided, torch.full_like(strided, 1e-4))
    mixed = MinibatchStd(2)(torch.cat([a, a, b, b]))[:, 3]  # groups {0, 2} = (0, 2): var 1, std sqrt(1 + 1e-8)
    assert torch.allclose(mixed, torch.ones_like(mixed))
    assert MinibatchStd(4).group(6) == 3 and MinibatchStd(32).group(8) == 8


# -------------------------------------------------------------------------------------------------- D block
def test_residual_d_block_is_sqrt_half_of_skip_plus_main_path():
    torch.manual_seed(0)
    block = DBlock(4, 4, 4, img_channels=3)
    with torch.no_grad():
        block.conv1.weight.zero_()  # main path outputs lrelu(0) = 0
        block.skip.weight.copy_(torch.eye(4).view(4, 4, 1, 1) * 2.0)  # effective weight = identity (sqrt(4) = 2)
    x = torch.randn(2, 4, 8, 8)
    assert torch.allclose(block(x), math.sqrt(0.5) * downsample2d(x, fir_filter()), atol=1e-6)
    orig = DBlock(4, 4, 4, img_channels=3, architecture="orig")
    assert orig.skip is None and orig(x).shape == (2, 4, 4, 4)


# ------------------------------------------------------------------------------------------------ the networks
def test_layout_widths_and_num_ws_follow_the_reference():
    g_cond = G_CONDITIONING.build("none", {}, num_classes=0)
    G, D = ARCHITECTURES.build("stylegan2", {"channel_base": 16384, "g_ch": 64, "d_ch": 32, "mapping_layers": 1,
                                             "z_dim": 8, "w_dim": 8}, img_shape=(3, 64, 64), num_classes=0,
                               g_cond=g_cond)
    assert [b.conv1.weight.shape[0] for b in G.blocks] == [64, 64, 64, 64, 64]  # min(16384 // r, 64), r = 4..64
    assert G.num_ws == 2 * 4 + 2 and G.blocks[0].const.shape == (64, 4, 4)
    G, D = build(channel_base=64, g_ch=512, d_ch=512)
    assert [b.conv1.weight.shape[0] for b in G.blocks] == [16, 8, 4]  # 64 // 4, 64 // 8, 64 // 16
    assert [b.conv0.weight.shape for b in D.blocks] == [(4, 4, 3, 3), (8, 8, 3, 3)] and D.feature_dim == 16


def test_cifar_config_has_the_reference_parameter_count():
    """StudioGAN's CIFAR10/StyleGAN2 log (cAdaIN + SPD): G 20,215,315 parameters; D 23,089,664, of which the SPD
    cmap mapping (10 -> 512 embed + 8 FC 512) is 2,106,880 and its 512-wide output FC 262,656."""
    G, D = build((3, 32, 32), "concat", 10, z_dim=512, w_dim=512, g_ch=512, d_ch=512, mapping_layers=2,
                 mbstd_group=32, d_architecture="orig")
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(G) == 20_215_315 and G.num_ws == 8
    assert count(D) == 23_089_664 - 2_106_880 - 262_656


def test_noise_starts_switched_off_and_eval_mode_is_deterministic():
    torch.manual_seed(0)
    G, _ = build()
    z = G.sample_z(3)
    ws = G.mapping(z, update_w_avg=False)
    assert torch.equal(G.synthesis(ws, "random"), G.synthesis(ws, "none"))  # strength 0 at init
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(1.0)
    assert not torch.allclose(G.synthesis(ws, "random"), G.synthesis(ws, "random"))  # fresh noise per call
    assert not torch.allclose(G.synthesis(ws, "const"), G.synthesis(ws, "none"))
    G.eval()
    assert torch.equal(G(z), G(z)) and torch.equal(G(z), G.synthesis(ws, "const"))  # eval: the fixed buffers


def test_every_w_drives_the_output():
    torch.manual_seed(0)
    G, _ = build()
    G.eval()
    ws = G.mapping(G.sample_z(2))
    base = G.synthesis(ws)
    for k in range(G.num_ws):
        moved = ws.clone()
        moved[:, k] += 1.0
        assert not torch.allclose(G.synthesis(moved), base, atol=1e-6), f"w {k} unused"


def _mixed_ws(G, z):
    """The ws a training-mode forward hands to synthesis."""
    seen = {}
    G.synthesis = lambda ws, noise_mode=None: seen.setdefault("ws", ws)
    G(z)
    del G.synthesis
    return seen["ws"]


def test_style_mixing_switches_w_at_a_uniform_crossover_in_training_mode():
    torch.manual_seed(0)
    G, _ = build(mixing_prob=1.0)
    z = G.sample_z(3)
    ws_a = G.mapping(z, update_w_avg=False)
    cutoffs = set()
    for _ in range(60):
        ws = _mixed_ws(G, z)
        differs = [not torch.allclose(ws[:, k], ws_a[:, k]) for k in range(G.num_ws)]
        c = differs.index(True)  # layers < c use ws_a, layers >= c one other w per sample
        assert 1 <= c < G.num_ws and all(differs[c:])
        assert torch.equal(ws[:, c:], ws[:, c:c + 1].expand_as(ws[:, c:]))
        cutoffs.add(c)
    assert cutoffs == set(range(1, G.num_ws))  # U{1..num_ws-1}
    G.eval()
    assert torch.equal(_mixed_ws(G, z), G.mapping(z))  # no mixing outside training
    G0, _ = build(mixing_prob=0.0)
    assert torch.equal(_mixed_ws(G0, z), G0.mapping(z, update_w_avg=False))


def test_truncation_psi_zero_gives_w_avg():
    torch.manual_seed(0)
    G, _ = build()
    for _ in range(3):
        G.mapping(G.sample_z(16))  # training mode: w_avg moves
    G.eval()
    ws = G.mapping(G.sample_z(4), truncation_psi=0.0)
    assert G.w_avg.abs().sum() > 0 and torch.allclose(ws, G.w_avg.expand_as(ws))


def test_labels_enter_through_the_embedded_mapping_input_and_cbn_is_refused():
    torch.manual_seed(0)
    G, _ = build(cond="concat", num_classes=3)
    assert G.mapping_net.embed.in_features == 3 and G.mapping_net.fcs[0].in_features == 24 + 8
    z = G.sample_z(2)
    assert not torch.allclose(G.map(z, torch.tensor([0, 0])), G.map(z, torch.tensor([1, 1])))
    with pytest.raises(GanforgeError, match="use conditioning g=concat"):
        build(cond="cbn", num_classes=3)


def test_non_square_images_and_one_line_option_errors():
    G, D = build((3, 16, 32))
    assert G.blocks[0].const.shape[1:] == (4, 8) and G(G.sample_z(2)).shape == (2, 3, 16, 32)
    assert D.epilogue.fc.in_features == 8 * 4 * 8
    for options, key in [({"mixing_prob": 1.5}, "mixing_prob"), ({"noise_mode": "loud"}, "noise_mode"),
                         ({"g_ch": 0}, "g_ch"), ({"conv_clamp": -1.0}, "conv_clamp"),
                         ({"d_architecture": "skip"}, "d_architecture")]:
        with pytest.raises(GanforgeError, match=key) as err:
            build(**options)
        assert "\n" not in str(err.value)
    with pytest.raises(GanforgeError, match="shape"):
        build((2,))


def test_conv_clamp_bounds_every_layer():
    torch.manual_seed(0)
    G, _ = build(conv_clamp=0.05)
    G.eval()
    assert G(G.sample_z(2)).abs().max().item() <= 0.05 * 3 + 1e-6  # sum of 3 ToRGBs, each clamped (16 px)


# ------------------------------------------------------------------------------- R1 and path length run through
def test_r1_double_backward_through_d():
    torch.manual_seed(0)
    _, backbone = build()
    D = Discriminator(backbone, D_HEADS.build("linear", {}, in_features=backbone.feature_dim, num_classes=0))
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    (g,) = torch.autograd.grad(D(x).adv.sum(), x, create_graph=True)
    g.square().sum().backward()
    weights = [p for n, p in backbone.named_parameters() if n.endswith("weight")]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in weights)
    assert all(p.grad.abs().sum() > 0 for p in weights)  # every conv / FC weight shapes ||grad_x D||


def test_path_length_term_runs_through_the_synthesis_network():
    torch.manual_seed(0)
    G, backbone = build()
    pl = REGULARIZERS.build("path-length")
    ctx = Context(G=G, D=backbone, real=torch.randn(4, 3, 16, 16), y_real=None, z=G.sample_z(4), y_fake=None,
                  phase="G")
    out = pl.g_terms(ctx)["pl"]
    out.backward()
    assert out.item() > 0 and math.isfinite(out.item())
    convs = [p for n, p in G.named_parameters() if n.startswith("blocks") and n.endswith("conv1.weight")]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 and torch.isfinite(p.grad).all() for p in convs)
    ws = G.mapping(G.sample_z(2), update_w_avg=False).detach().requires_grad_(True)
    x = G.synthesis(ws)
    assert PathLengthRegularizer.path_lengths(x, ws, torch.randn_like(x)).shape == (2,)


def test_training_step_with_lazy_r1_and_path_length(tmp_path):
    raw = copy.deepcopy(TINY_DIGITS)
    raw.pop("conditioning")
    raw["model"] = {"name": "stylegan2", **TINY, "z_dim": 6}
    raw["loss"] = {"name": "vanilla"}
    raw["regularizers"] = [{"name": "r1", "gamma": 0.01, "every": 2}, {"name": "path-length", "every": 2}]
    tr = Trainer(from_dict(raw), tmp_path / "run", progress=False, dist=DistInfo(), device=torch.device("cpu"))
    tr.train_step()
    pl = tr.terms["regularizers.1:path-length"]
    assert pl.pl_mean > 0 and math.isfinite(pl.pl_mean)

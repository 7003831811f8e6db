"""EfficientNet-lite0 (timm tf_efficientnet_lite0 layout): parameter count and state-dict layout, TF "SAME" padding,
residual blocks, the "half" input protocol, weight files in timm's layout (with and without the classifier), the
offline error, and Projected GAN's D on top of it (4 pyramid levels, frozen network)."""
from __future__ import annotations

import hashlib

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ganforge.errors import GanforgeError
from ganforge.metrics import weights as W
from ganforge.metrics.backbones import NORMALIZATIONS
from ganforge.metrics.backbones.efficientnet import Conv2dSame, EfficientNetLite0, same_pad
from ganforge.metrics.backbones.pyramid import feature_pyramid
from ganforge.metrics.resize import resize
from ganforge.models.base import Discriminator
from ganforge.registries import ARCHITECTURES, BACKBONES, D_HEADS, G_CONDITIONING

pytestmark = pytest.mark.usefixtures("one_torch_thread")
NAME = "efficientnet-lite0"


def _bn(shapes: dict, prefix: str, c: int) -> None:
    for p in ("weight", "bias", "running_mean", "running_var"):
        shapes[f"{prefix}.{p}"] = (c,)
    shapes[f"{prefix}.num_batches_tracked"] = ()


def lite0_layout(classifier: bool = True) -> dict[str, tuple]:
    """timm's tf_efficientnet_lite0 state dict, written out from its arch_def: names -> shapes."""
    s: dict[str, tuple] = {"conv_stem.weight": (32, 3, 3, 3)}
    _bn(s, "bn1", 32)
    s["blocks.0.0.conv_dw.weight"] = (32, 1, 3, 3)  # ds_r1_k3_s1_e1_c16
    _bn(s, "blocks.0.0.bn1", 32)
    s["blocks.0.0.conv_pw.weight"] = (16, 32, 1, 1)
    _bn(s, "blocks.0.0.bn2", 16)
    in_ch = 16
    for stage, (repeats, k, out) in enumerate([(2, 3, 24), (2, 5, 40), (3, 3, 80), (3, 5, 112), (4, 5, 192),
                                               (1, 3, 320)], start=1):
        for b in range(repeats):
            p, mid = f"blocks.{stage}.{b}", in_ch * 6
            s[f"{p}.conv_pw.weight"] = (mid, in_ch, 1, 1)
            _bn(s, f"{p}.bn1", mid)
            s[f"{p}.conv_dw.weight"] = (mid, 1, k, k)
            _bn(s, f"{p}.bn2", mid)
            s[f"{p}.conv_pwl.weight"] = (out, mid, 1, 1)
            _bn(s, f"{p}.bn3", out)
            in_ch = out
    s["conv_head.weight"] = (1280, 320, 1, 1)
    _bn(s, "bn2", 1280)
    if classifier:
        s["classifier.weight"], s["classifier.bias"] = (1000, 1280), (1000,)
    return s


def _images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def _perturbed_net(seed: int = 2) -> EfficientNetLite0:
    """The plain network (PyTorch's default init) with BN affine parameters and running statistics moved away
    from their defaults, so a file that was loaded wrongly or not at all gives other outputs."""
    torch.manual_seed(seed)
    net = EfficientNetLite0().eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(0.1 * torch.randn(c, generator=g))
                m.running_var.copy_(1.0 + 0.5 * torch.rand(c, generator=g))
                m.weight.copy_(1.0 + 0.1 * torch.randn(c, generator=g))
                m.bias.copy_(0.05 * torch.randn(c, generator=g))
                m.num_batches_tracked.fill_(7)
    return net


# --- the network -----------------------------------------------------------------------------------------------------


def test_parameter_count_and_timm_state_dict_layout():
    net = EfficientNetLite0()
    assert sum(p.numel() for p in net.parameters()) == 4_652_008  # timm's count for tf_efficientnet_lite0
    sd = net.state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == lite0_layout()
    spot = {"blocks.1.0.conv_pw.weight": (96, 16, 1, 1), "blocks.2.0.conv_dw.weight": (144, 1, 5, 5),
            "blocks.6.0.conv_pwl.weight": (320, 1152, 1, 1), "conv_head.weight": (1280, 320, 1, 1)}
    assert all(tuple(sd[k].shape) == shape for k, shape in spot.items())
    assert all(m.eps == 1e-3 for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 + 2 + 3 * 15 + 1 and all(m.bias is None for m in convs)


def test_tf_same_padding_is_asymmetric_for_stride_2_on_even_sizes():
    torch.manual_seed(0)
    conv = Conv2dSame(3, 4, 3, stride=2)
    x = torch.randn(2, 3, 8, 8)
    got = conv(x)
    want = F.conv2d(F.pad(x, (0, 1, 0, 1)), conv.weight, stride=2)  # 0 left/top, 1 right/bottom
    torch.testing.assert_close(got, want)
    assert not torch.allclose(got, F.conv2d(x, conv.weight, stride=2, padding=1), atol=1e-4)  # PyTorch's symmetric
    x9 = torch.randn(1, 3, 9, 9)  # odd size: total pad 2, split evenly
    torch.testing.assert_close(conv(x9), F.conv2d(x9, conv.weight, stride=2, padding=1))
    assert same_pad(224, 3, 2) == (0, 1) and same_pad(224, 5, 2) == (1, 2) and same_pad(9, 3, 2) == (1, 1)
    for n in (7, 8, 9, 10, 15, 224):
        for k, s in ((3, 2), (5, 2), (1, 1), (3, 1), (5, 1)):
            out = Conv2dSame(3, 2, k, stride=s)(torch.zeros(1, 3, n, n + 1))
            assert out.shape[-2:] == (-(-n // s), -(-(n + 1) // s)), (n, k, s)
    conv5 = Conv2dSame(3, 4, 5, stride=1)
    x = torch.randn(1, 3, 6, 7)
    torch.testing.assert_close(conv5(x), F.conv2d(x, conv5.weight, padding=2))  # stride 1: symmetric 'same'


def test_residual_blocks_add_their_input_only_at_stride_1_with_equal_widths():
    net = EfficientNetLite0().eval()
    with torch.no_grad():
        for block, bn in ((net.blocks[1][1], "bn3"), (net.blocks[1][0], "bn3"), (net.blocks[0][0], "bn2")):
            getattr(block, bn).weight.zero_()
            getattr(block, bn).bias.zero_()
        x = torch.randn(2, 24, 6, 6)
        torch.testing.assert_close(net.blocks[1][1](x), x)  # stride 1, 24 -> 24: the branch is 0, the skip remains
        assert not net.blocks[1][0](torch.randn(2, 16, 12, 12)).any()  # stride 2, 16 -> 24: no skip
        assert not net.blocks[0][0](torch.randn(2, 32, 12, 12)).any()  # ds block 32 -> 16: no skip


# --- the backbone ----------------------------------------------------------------------------------------------------


def test_half_normalization_and_the_input_protocol():
    half = NORMALIZATIONS["half"]
    torch.testing.assert_close(half(torch.tensor([0.0, 127.5, 255.0])), torch.tensor([-1.0, 0.0, 1.0]))
    bb = BACKBONES.build(NAME, {}, weights="random")
    assert bb.normalization == "half" and bb.input_size == (224, 224) and bb.resize_mode == "torch-bilinear"
    assert bb.protocol_id() == f"{NAME}_random-seed0_torch-bilinear"
    assert bb.feature_dim == 1280 and bb.outputs == ("pool", "logits")
    assert bb.pyramid_layers == ("blocks.1", "blocks.2", "blocks.4", "blocks.6")


def test_timm_layout_file_round_trip_with_and_without_classifier(tmp_path):
    net = _perturbed_net()
    state = net.state_dict()
    path = tmp_path / "my_lite0.pth"
    torch.save(state, path)
    bb = BACKBONES.build(NAME, {}, weights=str(path))
    assert all(torch.equal(v, state[k]) for k, v in bb.state_dict().items())
    assert bb.weights_id == hashlib.sha256(path.read_bytes()).hexdigest()
    x = _images(2, 40)
    out = bb(x)
    assert out["pool"].shape == (2, 1280) and out["logits"].shape == (2, 1000)
    with torch.no_grad():  # the protocol by hand: bilinear (no antialias) to 224, x / 127.5 - 1
        pool = net.pool_features(resize(x, 224, "torch-bilinear") / 127.5 - 1.0)
        torch.testing.assert_close(out["pool"], pool, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(out["logits"], net.classifier(pool), rtol=1e-4, atol=1e-5)
    rand = BACKBONES.build(NAME, {}, weights="random")(x)["pool"]
    assert not torch.allclose(out["pool"], rand, atol=1e-3)  # the file's weights, not the seeded ones

    features_only = {k: v for k, v in state.items() if not k.startswith("classifier.")
                     and not k.endswith("num_batches_tracked")}
    torch.save(features_only, tmp_path / "features_only.pth")
    bb2 = BACKBONES.build(NAME, {}, weights=str(tmp_path / "features_only.pth"))
    assert bb2.outputs == ("pool",) and bb2.classifier is None
    out2 = bb2(x)
    assert set(out2) == {"pool"}
    torch.testing.assert_close(out2["pool"], out["pool"])


def test_layout_errors_and_the_offline_error_are_one_line(tmp_path, monkeypatch):
    state = _perturbed_net().state_dict()
    del state["blocks.5.3.bn2.running_var"]
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(GanforgeError) as e:
        BACKBONES.build(NAME, {}, weights=str(tmp_path / "bad.pth"))
    assert "\n" not in str(e.value) and "'blocks.5.3.bn2.running_var'" in str(e.value)
    assert "tf_efficientnet_lite0" in str(e.value)
    info = W.KNOWN_WEIGHTS["tf-efficientnet-lite0"]
    assert info.filename == "tf_efficientnet_lite0-0aa007d2.pth" and info.url.endswith(info.filename)
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("GANFORGE_OFFLINE", "1")
    with pytest.raises(GanforgeError) as e:
        BACKBONES.build(NAME, {})  # weights=None: the standard file, not cached, offline
    assert "\n" not in str(e.value) and info.url in str(e.value) and "--weights" in str(e.value)


def test_feature_pyramid_levels_differentiable_and_frozen():
    bb = BACKBONES.build(NAME, {}, weights="random")
    x = (torch.rand(2, 3, 24, 24) * 2 - 1).requires_grad_(True)  # model space, resized to 224 by the protocol
    maps = feature_pyramid(bb, x)
    assert [tuple(m.shape) for m in maps] == [(2, 24, 56, 56), (2, 40, 28, 28), (2, 112, 14, 14), (2, 320, 7, 7)]
    (grad,) = torch.autograd.grad(sum(m.square().mean() for m in maps), x)
    assert grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in bb.parameters()) and not bb.training


def test_projected_d_on_efficientnet_lite0_trains_its_mini_ds_and_keeps_the_network_frozen():
    torch.manual_seed(0)
    g_cond = G_CONDITIONING.build("none", {}, num_classes=0, text_dim=0)
    options = {"backbone": NAME, "backbone_weights": "random", "z_dim": 8, "g_ch": 4, "d_ch": 4, "proj_ch": 4,
               "cmap_dim": 8}
    _, backbone = ARCHITECTURES.build("projected", options, img_shape=(3, 16, 16), num_classes=0, g_cond=g_cond)
    assert backbone.scale_sides == [(112, 112), (56, 56), (28, 28), (14, 14)]  # 56/28/14/7 doubled by the CSM
    D = Discriminator(backbone, D_HEADS.build("linear", {}, in_features=backbone.feature_dim, num_classes=0))
    D.train()
    assert not backbone.net.training
    frozen = {id(p) for m in backbone.frozen_modules() for p in m.parameters()}
    params = [p for p in D.parameters() if p.requires_grad]
    assert frozen and not frozen & {id(p) for p in params}
    net0 = {k: v.clone() for k, v in backbone.net.state_dict().items()}
    discs0 = {k: v.clone() for k, v in backbone.discs.state_dict().items()}
    opt = torch.optim.Adam(params, lr=1e-2)
    out = D(torch.rand(2, 3, 16, 16) * 2 - 1)
    assert out.adv.shape == (2,) and out.adv_parts.shape == (2, backbone.parts)
    F.softplus(-out.adv_parts).mean().backward()
    opt.step()
    assert all(torch.equal(v, backbone.net.state_dict()[k]) for k, v in net0.items())  # incl. BN running stats
    assert all(p.grad is None for p in backbone.net.parameters())
    assert any(not torch.equal(v, backbone.discs.state_dict()[k]) for k, v in discs0.items() if v.is_floating_point())


def test_pyramid_resize_under_torch_bilinear_is_plain_bilinear_as_projected_gan_resizes():
    from ganforge.metrics.backbones.pyramid import differentiable_resize

    x = torch.randn(2, 3, 256, 256)
    plain = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
    assert torch.equal(differentiable_resize(x, (224, 224), "torch-bilinear"), plain)
    assert not torch.allclose(differentiable_resize(x, (224, 224), "torch-bilinear-aa"), plain, atol=1e-3)

"""nn/fused_resample.py: up-then-conv and conv-then-pool as one strided conv are the same functions as the pairs."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ganforge.nn.fused_resample import conv_pool, up_conv
from ganforge.nn.spectral_norm import maybe_sn


def _reference_up(x, conv):
    return conv(F.interpolate(x, scale_factor=2, mode="nearest"))


def _reference_pool(x, conv):
    return F.avg_pool2d(conv(x), 2)


CASES = [  # (fused, reference, kernel, input size)
    (up_conv, _reference_up, 3, (5, 5)), (up_conv, _reference_up, 3, (4, 7)), (up_conv, _reference_up, 1, (4, 4)),
    (conv_pool, _reference_pool, 3, (8, 8)), (conv_pool, _reference_pool, 3, (7, 10)),
    (conv_pool, _reference_pool, 1, (6, 6)),
]


@pytest.mark.parametrize("fused,reference,k,size", CASES)
@pytest.mark.parametrize("bias", [True, False])
def test_fused_equals_the_pair_in_float64_with_gradients(fused, reference, k, size, bias):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, k, padding=k // 2, bias=bias).double()
    x = torch.randn(2, 3, *size, dtype=torch.float64, requires_grad=True)
    a, b = fused(x, conv), reference(x, conv)
    assert a.shape == b.shape
    assert torch.allclose(a, b, atol=1e-12, rtol=0)
    g = torch.randn_like(a)
    params = [x, *conv.parameters()]
    ga = torch.autograd.grad(a, params, g)
    gb = torch.autograd.grad(b, params, g)
    for u, v in zip(ga, gb):
        assert torch.allclose(u, v, atol=1e-11, rtol=0)


@pytest.mark.parametrize("fused,reference", [(up_conv, _reference_up), (conv_pool, _reference_pool)])
def test_fused_under_spectral_norm_reads_the_normalized_weight_and_double_backward_matches(fused, reference):
    torch.manual_seed(1)
    conv = maybe_sn(nn.Conv2d(2, 3, 3, padding=1)).eval()  # eval: no power step between the calls (SN is float32)
    x = torch.randn(2, 2, 6, 6, requires_grad=True)
    outs = []
    for f in (fused, reference):  # R1: the squared input gradient, differentiated again w.r.t. the weights
        y = f(x, conv)
        (gx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
        outs.append((y, gx, torch.autograd.grad(gx.square().sum(), conv.parametrizations.weight.original)[0]))
    for u, v in zip(*outs):
        assert torch.allclose(u, v, atol=1e-5, rtol=1e-5)
    assert outs[0][2].abs().sum() > 0


@pytest.mark.parametrize("fused,reference", [(up_conv, _reference_up), (conv_pool, _reference_pool)])
def test_fused_under_bf16_autocast_and_channels_last_stays_close(fused, reference):
    torch.manual_seed(2)
    conv = nn.Conv2d(16, 16, 3, padding=1)
    x = torch.randn(4, 16, 8, 8).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", torch.bfloat16):
        a = fused(x, conv)
    b = reference(x, conv)
    assert a.dtype == torch.bfloat16
    assert (a.float() - b).abs().max() < 0.05 * b.abs().max()


@pytest.mark.parametrize("conv", [nn.Conv2d(2, 3, 3, padding=1, stride=2), nn.Conv2d(2, 3, 3, padding=2, dilation=2),
                                  nn.Conv2d(2, 4, 3, padding=1, groups=2), nn.Conv2d(2, 3, 5, padding=2),
                                  nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect")])
@pytest.mark.parametrize("fused,reference", [(up_conv, _reference_up), (conv_pool, _reference_pool)])
def test_convs_the_identities_do_not_cover_run_the_plain_pair(conv, fused, reference):
    x = torch.randn(1, 2, 8, 8)
    assert torch.equal(fused(x, conv), reference(x, conv))


@pytest.mark.parametrize("fused,reference", [(up_conv, _reference_up), (conv_pool, _reference_pool)])
def test_a_hooked_conv_runs_as_itself_so_the_hook_sees_its_full_resolution_output(fused, reference):
    conv = nn.Conv2d(2, 3, 3, padding=1)
    x = torch.randn(1, 2, 8, 8)
    seen = []
    handle = conv.register_forward_hook(lambda _m, _i, out: seen.append(tuple(out.shape)))
    try:
        out = fused(x, conv)
    finally:
        handle.remove()
    side = 16 if fused is up_conv else 8  # the conv's own output: after the upsampling, before the pooling
    assert seen == [(1, 3, side, side)]
    assert torch.equal(out, reference(x, conv))


def test_dissection_lists_the_convs_inside_resnet_blocks():
    from ganforge.explore.dissect import feature_maps
    from ganforge.registries import ARCHITECTURES, G_CONDITIONING, load_all

    load_all()
    g_cond = G_CONDITIONING.build("none", {})
    pair = ARCHITECTURES.build("resnet", {"g_ch": 8, "d_ch": 8, "z_dim": 8}, img_shape=(3, 16, 16), num_classes=0,
                               g_cond=g_cond)
    names = {m.name for m in feature_maps(pair.G)}
    assert {"blocks.0.conv1", "blocks.0.shortcut"} <= names

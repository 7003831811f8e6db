"""SAGAN (Zhang et al. 2019): the self-attention block and its placement in the ResNet pair."""
from __future__ import annotations

import pytest
import torch

from ganforge.errors import GanforgeError
from ganforge.nn.attention import SelfAttention
from ganforge.nn.spectral_norm import has_sn
from ganforge.registries import ARCHITECTURES, G_CONDITIONING, load_all

load_all()


def _pair(shape=(3, 32, 32), **opts):
    g_cond = G_CONDITIONING.build("none", {}, num_classes=0, text_dim=0)
    torch.manual_seed(0)
    return ARCHITECTURES.build("sagan", {"z_dim": 16, "g_ch": 16, "d_ch": 16, **opts}, img_shape=shape,
                               num_classes=0, g_cond=g_cond)


def test_gamma_zero_is_exactly_the_identity_and_the_map_has_hw_by_hw_over_4_rows_summing_to_one():
    att = SelfAttention(64)
    x = torch.randn(2, 64, 8, 8)
    assert att.gamma.item() == 0.0 and torch.equal(att(x), x)
    beta = att.attention(x)
    assert beta.shape == (2, 64, 16)  # [HW, HW/4]: 64 queries, 16 max-pooled keys
    torch.testing.assert_close(beta.sum(-1), torch.ones(2, 64))


def test_attention_is_non_local_once_gamma_moves():
    torch.manual_seed(1)
    att = SelfAttention(16)
    with torch.no_grad():
        att.gamma.fill_(1.0)
    x = torch.randn(1, 16, 8, 8)
    x2 = x.clone()
    x2[..., 7, 7] += 5.0  # change one far corner
    delta = (att(x2) - att(x))[..., 0, 0].abs().max()
    assert delta > 1e-4  # the opposite corner moved: no conv of a small kernel could do that


def test_sagan_at_init_computes_what_the_resnet_without_attention_computes():
    pair = _pair()
    G, D = pair.G.eval(), pair.D.eval()
    z = torch.randn(3, 16)
    x = G(z)
    attn, G.attn = G.attn, torch.nn.ModuleDict()
    torch.testing.assert_close(G(z), x)  # gamma = 0: attention adds nothing at init
    G.attn = attn
    blocks = [b for b in D.blocks if not isinstance(b, SelfAttention)]
    h = x
    for b in blocks:
        h = b(h)
    torch.testing.assert_close(D.features(x), torch.relu(h).sum(dim=(2, 3)))


def test_default_placement_is_after_g_block_2_and_d_block_1_with_spectral_norm_in_both():
    pair = _pair()
    assert list(pair.G.attn) == ["2"] and isinstance(pair.D.blocks[1], SelfAttention)
    assert pair.G.attn["2"].theta.in_channels == 16  # G's width at 16x16 (block 2's output)
    att = pair.G.attn["2"]
    assert all(has_sn(m) for m in (att.theta, att.phi, att.g, att.o, pair.G.linear, pair.D.blocks[1].theta))


def test_attention_after_a_block_that_does_not_exist_is_a_one_line_error():
    with pytest.raises(GanforgeError, match=r"attn_g: G has blocks 1\.\.3 at this resolution; got 4"):
        _pair(attn_g=[4])
    with pytest.raises(GanforgeError, match=r"attn_d: D has blocks 1\.\.4"):
        _pair(attn_d=0)


def test_tiny_widths_keep_one_query_channel_and_odd_maps_are_refused_by_name():
    att = SelfAttention(4)
    assert att.theta.out_channels == 1 and att.g.out_channels == 2
    with pytest.raises(GanforgeError, match="self-attention: needs even feature-map sides"):
        att(torch.randn(1, 4, 5, 6))

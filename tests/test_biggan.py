"""BigGAN and BigGAN-deep (Brock et al. 2019; BigGAN-PyTorch, StudioGAN): the properties that define the families."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ganforge.config import load_config
from ganforge.errors import GanforgeError
from ganforge.models.base import Discriminator
from ganforge.models.biggan_blocks import BigGANDBlock, DeepDBlock, DeepGBlock
from ganforge.nn.attention import SelfAttention
from ganforge.nn.init import raw_weight, weight_layers
from ganforge.nn.spectral_norm import has_sn, top_singular_value
from ganforge.registries import ARCHITECTURES, D_HEADS, G_CONDITIONING, load_all

load_all()
CONFIGS = Path(__file__).resolve().parents[1] / "src" / "ganforge" / "configs"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _pair(arch="biggan", shape=(3, 32, 32), cond="none", cond_opts=None, num_classes=0, **opts):
    torch.manual_seed(0)
    g_cond = G_CONDITIONING.build(cond, cond_opts or {}, num_classes=num_classes, text_dim=0)
    opts = {"z_dim": 16, "g_ch": 4, "d_ch": 4, **opts}
    return ARCHITECTURES.build(arch, opts, img_shape=shape, num_classes=num_classes, g_cond=g_cond)


def _outputs(modules):
    """Record each module's output on the next forward: returns (list to fill, hook handles)."""
    seen, handles = [], []
    for m in modules:
        handles.append(m.register_forward_hook(lambda _m, _i, out: seen.append(out.detach().clone())))
    return seen, handles


def test_hierarchical_z_120_at_128px_gives_6_chunks_of_20_and_block_i_sees_only_chunk_i():
    G, _ = _pair(shape=(3, 128, 128), cond="shared", cond_opts={"sn": True}, num_classes=5, z_dim=120, g_ch=1,
                 d_ch=1)
    G.eval()
    assert len(G.blocks) == 5 and G.linear.in_features == 20  # 5 up blocks + the input: 6 chunks of 20
    assert all(b.norm1.cond_dim == 128 + 20 for b in G.blocks)  # cBN input [e(y), chunk] = 148 (ImageNet 128)
    z, y = torch.randn(2, 120), torch.tensor([1, 3])
    seen, handles = _outputs([G.linear, *G.blocks])
    with torch.no_grad():
        G(z, y)
        base = list(seen)
        for chunk in range(6):  # chunk 0: the linear layer's input; chunk i >= 1: block i's norms
            seen.clear()
            z2 = z.clone()
            z2[:, 20 * chunk:20 * (chunk + 1)] += 1.0
            G(z2, y)
            for k, (a, b) in enumerate(zip(base, seen)):  # k = 0: linear, k >= 1: block k
                assert torch.equal(a, b) == (k < chunk), (chunk, k)
    for h in handles:
        h.remove()


def test_deep_gives_the_whole_z_and_the_embedding_to_the_input_and_every_block():
    G, _ = _pair("biggan-deep", cond="shared", cond_opts={"hier": False}, num_classes=5, z_dim=128)
    assert G.linear.in_features == 128 + 128  # BigGAN-deep: [z, e(y)]
    assert all(n.cond_dim == 256 for b in G.blocks for n in (b.norm1, b.norm2, b.norm3, b.norm4))


@pytest.mark.parametrize("arch,g_at,d_at", [("biggan", "4", 1), ("biggan-deep", "8", 3)])
def test_default_attention_sits_at_64px_at_128px(arch, g_at, d_at):
    G, D = _pair(arch, shape=(3, 128, 128), g_ch=1, d_ch=1)
    assert list(G.attn) == [g_at]  # after the block (deep: the stage's last block) that outputs 64x64
    attn = [i for i, m in enumerate(D.blocks) if isinstance(m, SelfAttention)]
    assert attn == [d_at]  # biggan: after D block 1 (128 -> 64); deep: stem, 2 blocks of stage 1 (-> 64)
    sizes = {}
    hooks = [G.attn[g_at].register_forward_hook(lambda m, i, o: sizes.__setitem__("G", i[0].shape[-1])),
             D.blocks[d_at].register_forward_hook(lambda m, i, o: sizes.__setitem__("D", i[0].shape[-1]))]
    with torch.no_grad():
        D.features(G(torch.randn(2, 16)))
    assert sizes == {"G": 64, "D": 64}
    for h in hooks:
        h.remove()


def test_attention_at_32px_follows_studiogan_cifar_and_is_configurable():
    G, D = _pair()
    assert list(G.attn) == ["2"] and isinstance(D.blocks[1], SelfAttention)  # 16x16: G block 2, D block 1
    G, D = _pair(attn_res=[8, 32])
    assert list(G.attn) == ["1", "3"] and [i for i, m in enumerate(D.blocks) if isinstance(m, SelfAttention)] == [2]
    G, D = _pair(attn_res=0)
    assert not list(G.attn) and not any(isinstance(m, SelfAttention) for m in D.blocks)


@pytest.mark.parametrize("value,match", [(12, r"no G or D block outputs 12 px maps.*\[8, 16, 32\]"),
                                         (7, "self-attention max-pools 2x2, so the side must be even, got 7")])
def test_bad_attention_side_is_a_one_line_error(value, match):
    with pytest.raises(GanforgeError, match=f"architecture 'biggan' option attn_res: {match}"):
        _pair(attn_res=value)


@pytest.mark.parametrize("arch", ["biggan", "biggan-deep"])
def test_orthogonal_init_of_every_weight_before_spectral_norm(arch):
    G, D = _pair(arch, cond="shared", num_classes=3, z_dim=16)
    layers = [*weight_layers(G), *weight_layers(D)]
    assert len(layers) > 10
    for layer in layers:
        w = raw_weight(layer).detach().flatten(1)  # (out, in * k * k)
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        torch.testing.assert_close(gram, torch.eye(gram.shape[0]), atol=1e-5, rtol=0)
    e = G.g_cond.embed.detach()  # the shared class embedding: orthogonal rows (3 <= 128)
    torch.testing.assert_close(e @ e.T, torch.eye(3), atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ["biggan", "biggan-deep"])
def test_spectral_norm_on_every_g_and_d_layer_with_eps_1e_6_and_off_when_asked(arch):
    G, D = _pair(arch, shape=(3, 16, 16))
    layers = [*weight_layers(G), *weight_layers(D)]
    assert layers and all(has_sn(m) for m in layers) and D.spectral_norm
    assert all(m.parametrizations.weight[0].eps == 1e-6 for m in layers)
    G.train(), D.train()
    with torch.no_grad():
        for _ in range(30):  # one power-iteration step per training forward
            D.features(G(torch.randn(4, 16)))
    for m in layers:
        assert top_singular_value(m).item() == pytest.approx(1.0, abs=0.02)
    G, D = _pair(arch, shape=(3, 16, 16), g_sn=False, d_sn=False)
    assert not any(has_sn(m) for m in [*weight_layers(G), *weight_layers(D)]) and not D.spectral_norm


def test_width_tables_at_128px_and_32px():
    G, D = _pair(shape=(3, 128, 128), g_ch=1, d_ch=1)
    assert [b.conv1.in_channels for b in G.blocks] + [G.to_img.in_channels] == [16, 16, 8, 4, 2, 1]
    blocks = [m for m in D.blocks if isinstance(m, BigGANDBlock)]
    assert [b.conv2.out_channels for b in blocks] == [1, 2, 4, 8, 16, 16]  # BigGAN-PyTorch D_arch[128]
    assert [b.down for b in blocks] == [True] * 5 + [False] and D.feature_dim == 16
    G, D = _pair(g_ch=3, d_ch=2)  # 32 px: G 4 ch everywhere, D 4 ch, 32 -> 16 -> 8 -> 8 -> 8
    assert [b.conv2.out_channels for b in G.blocks] == [12, 12, 12]
    blocks = [m for m in D.blocks if isinstance(m, BigGANDBlock)]
    assert [b.conv2.out_channels for b in blocks] == [8] * 4 and [b.down for b in blocks] == [True, True, False, False]


def test_only_d_first_block_skips_the_pre_activation():
    _, D = _pair()
    blocks = [m for m in D.blocks if isinstance(m, BigGANDBlock)]
    assert [b.preact for b in blocks] == [False, True, True, True]
    x = -torch.ones(1, 16, 8, 8)  # ReLU(x) = 0: a pre-activated block (zero biases at init) returns its skip only
    torch.testing.assert_close(blocks[1](x), blocks[1]._skip(x))
    first = BigGANDBlock(3, 8, down=True, preact=False)
    img = -torch.ones(1, 3, 8, 8)
    assert not torch.allclose(first(img), first._skip(img))  # the image itself reaches the first conv


def _cond_none():
    return G_CONDITIONING.build("none", {}, num_classes=0, text_dim=0)


def test_deep_g_skip_drops_channels():
    block = DeepGBlock(8, 4, _cond_none(), up=True)
    assert block.conv1.out_channels == 2  # bottleneck: 8 / channel_ratio 4
    with torch.no_grad():
        block.conv4.weight.zero_()
        block.conv4.bias.zero_()  # residual branch off
    i = torch.arange(3.0).view(1, 1, 3, 1)
    x = (10 * torch.arange(8.0).view(1, 8, 1, 1) + i).expand(2, 8, 3, 3)  # x[:, c, i, j] = 10 c + i
    out = block(x)
    assert out.shape == (2, 4, 6, 6)
    want = (10 * torch.arange(4.0).view(1, 4, 1, 1) + torch.arange(6.0).div(2).floor().view(1, 1, 6, 1))
    torch.testing.assert_close(out, want.expand(2, 4, 6, 6))  # channel c at row r: 10 c + r // 2 (nearest up)


def test_deep_g_skip_in_a_built_model_is_the_residual_plus_upsampled_first_channels():
    G, _ = _pair("biggan-deep", shape=(3, 64, 64), g_sn=False, g_ch=4)
    assert [(b.in_ch, b.out_ch, b.up) for b in G.blocks[:4]] == [(64, 64, False), (64, 64, True),
                                                                  (64, 64, False), (64, 32, True)]
    block = G.blocks[3]  # 16 ch -> 8 ch (x4): the drop
    with torch.no_grad():
        block.conv4.weight.zero_()
        block.conv4.bias.zero_()
        x = torch.randn(2, 64, 8, 8)
        torch.testing.assert_close(block(x), F.interpolate(x[:, :32], scale_factor=2, mode="nearest"))


def test_deep_d_skip_pads_with_new_channels_and_the_first_block_of_a_stage_downsamples():
    block = DeepDBlock(4, 6, down=True)
    assert block.conv1.out_channels == 1 and block.extra.out_channels == 2  # hidden 6 // 4; 6 - 4 new channels
    with torch.no_grad():
        block.conv4.weight.zero_()
        block.conv4.bias.zero_()
        x = torch.arange(4.0).view(1, 4, 1, 1).expand(1, 4, 4, 4).clone()
        x[..., 0, 0] += 4.0  # one pixel of each 2x2 cell: pooled value c + 1
        x[..., 2, 2] += 4.0
        out = block(x)
    assert out.shape == (1, 6, 2, 2)
    assert torch.equal(out[0, :4, 0, 0], torch.arange(4.0) + 1) and torch.equal(out[0, :4, 1, 1], torch.arange(4.0) + 1)
    assert torch.equal(out[0, :4, 0, 1], torch.arange(4.0))  # the x channels kept as they are (avg-pooled)
    _, D = _pair("biggan-deep")  # 32 px: stem, stages 16 -> 8 -> 8 with 2 blocks each, attention after stage 1
    deep = [m for m in D.blocks if isinstance(m, DeepDBlock)]
    assert [b.down for b in deep] == [True, False, True, False, False, False]
    assert isinstance(D.blocks[0], torch.nn.Conv2d) and isinstance(D.blocks[3], SelfAttention)


def _preset_pair(name: str):
    cfg = load_config(str(CONFIGS / name))
    g_cond = G_CONDITIONING.build(cfg.g_cond.name, cfg.g_cond.options, num_classes=10, text_dim=0)
    G, backbone = ARCHITECTURES.build(cfg.model.name, cfg.model.options, img_shape=(3, 32, 32), num_classes=10,
                                      g_cond=g_cond)
    head = D_HEADS.build(cfg.d_head.name, cfg.d_head.options, in_features=backbone.feature_dim, num_classes=10,
                         d_sn=backbone.spectral_norm)
    return G, Discriminator(backbone, head)


def _count(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_cifar10_biggan_preset_has_studiogans_parameter_counts():
    G, D = _preset_pair("cifar10-biggan.yaml")
    # StudioGAN logs/CIFAR10/BigGAN-train-2021_01_15_14_48_48.log, "Number of parameters" of G and D
    assert (_count(G), _count(D)) == (9_416_196, 2_415_170)


def test_biggan_deep_at_studiogans_2020_cifar10_settings_has_its_parameter_counts():
    g_cond = G_CONDITIONING.build("shared", {"hier": False, "sn": True}, num_classes=10, text_dim=0)
    G, backbone = ARCHITECTURES.build("biggan-deep", {"z_dim": 80, "g_ch": 96, "d_ch": 48, "attn_res": 16},
                                      img_shape=(3, 32, 32), num_classes=10, g_cond=g_cond)
    D = Discriminator(backbone, D_HEADS.build("projection", {}, in_features=backbone.feature_dim, num_classes=10))
    # StudioGAN logs/CIFAR10/BigGAN-Deep-train-2020_09_17_13_44_46.log (z 80, shared 128, G 384 / D 192 wide)
    assert (_count(G), _count(D)) == (4_599_876, 415_010)
    G, D = _preset_pair("cifar10-biggan-deep.yaml")
    assert G.linear.in_features == 256 and D.backbone.feature_dim == 512  # z 128 + e 128; 4 x d_ch 128


@pytest.mark.parametrize("arch", ["biggan", "biggan-deep"])
@pytest.mark.parametrize("shape,match", [((3, 1024, 1024), "image size 1024x1024 not supported; BigGAN's width"),
                                         ((3, 30, 30), "image size 30x30 not supported"),
                                         ((2,), r"needs an image shape \(C, H, W\)")])
def test_bad_resolution_is_a_one_line_error(arch, shape, match):
    with pytest.raises(GanforgeError, match=f"architecture '{arch}': {match}") as err:
        _pair(arch, shape=shape)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("arch", ["biggan", "biggan-deep"])
def test_non_square_and_28px_images(arch):
    for shape in [(3, 16, 32), (1, 28, 28)]:
        G, D = _pair(arch, shape=shape)
        with torch.no_grad():
            x = G(torch.randn(2, 16))
        assert x.shape == (2, *shape) and D.features(x).shape == (2, D.feature_dim)

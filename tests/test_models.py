"""Architectures x G conditioning x D heads, at tiny sizes; shape support; spectral norm in built models."""
from __future__ import annotations

import pytest
import torch

from ganforge.errors import GanforgeError
from ganforge.models.base import Discriminator
from ganforge.nn import has_sn, top_singular_value, weight_layers
from ganforge.nn.spectral_norm import manual_power_iteration
from ganforge.registries import ARCHITECTURES, D_HEADS, G_CONDITIONING

SHAPES = [(3, 16, 16), (1, 16, 16), (3, 16, 32), (2,)]
TINY = {"backbone": "digits-classifier", "backbone_weights": "random",
        "g_ch": 8, "d_ch": 8, "hidden": 16, "layers": 2, "z_dim": 24, "w_dim": 8, "mapping_layers": 2,
        "d_hidden": 16, "g_dim": 12, "d_dim": 12}  # applied where an architecture has the option
B = 4


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(arch: str, **extra) -> dict:
    options = ARCHITECTURES.get(arch).options()
    return {**{k: v for k, v in TINY.items() if k in options}, **extra}


def build(arch: str, shape: tuple, cond: str = "none", num_classes: int = 0, **extra):
    g_cond = G_CONDITIONING.build(cond, {}, num_classes=num_classes)
    return ARCHITECTURES.build(arch, tiny(arch, **extra), img_shape=shape, num_classes=num_classes, g_cond=g_cond)


def test_builtin_architectures_registered():
    assert {"mlp", "dcgan", "resnet"} <= set(ARCHITECTURES.names())


TEXT_DIM = 6


def _condition(declares_text: bool, declares_labels: bool, num_classes: int, text_dim: int, n: int):
    """What a component is called with: sentence embeddings if it reads text, labels if the run has classes."""
    if declares_text and text_dim:
        return torch.randn(n, text_dim)
    return torch.arange(n) % num_classes if num_classes else None


@pytest.mark.parametrize("condition", ["none", "classes", "text"])
@pytest.mark.parametrize("head_name", D_HEADS.names())
@pytest.mark.parametrize("cond_name", G_CONDITIONING.names())
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("arch", ARCHITECTURES.names())
def test_architecture_combination(arch, shape, cond_name, head_name, condition):
    torch.manual_seed(0)
    num_classes = 3 if condition == "classes" else 0
    text_dim = TEXT_DIM if condition == "text" else 0
    try:
        g_cond = G_CONDITIONING.build(cond_name, {}, num_classes=num_classes, text_dim=text_dim)
        G, backbone = ARCHITECTURES.build(arch, tiny(arch), img_shape=shape, num_classes=num_classes, g_cond=g_cond)
        head = D_HEADS.build(head_name, {}, in_features=backbone.feature_dim, num_classes=num_classes,
                             text_dim=text_dim)
    except GanforgeError as err:  # unsupported combination: must say why in one line
        msg = str(err)
        labels_in_norms = G_CONDITIONING.get(cond_name).declares("labels_in_norms", False)
        assert (("num_classes" in msg and num_classes == 0) or ("text_dim" in msg and text_dim == 0)
                or ("shape" in msg and len(shape) == 1)
                or ("square" in msg and len(shape) == 3 and shape[1] != shape[2]
                    and ARCHITECTURES.get(arch).declares("square_only", False))
                or ("use conditioning g=" in msg and labels_in_norms and (num_classes > 0 or text_dim > 0))), msg
        return
    D = Discriminator(backbone, head)
    assert G.z_dim == tiny(arch).get("z_dim", G.z_dim) and G.img_shape == shape
    g_text = G.text_dim > 0

    # G output: shape, finite, in [-1, 1] for images
    z = G.sample_z(B)
    y = _condition(g_text, True, num_classes, text_dim, B)
    x = G(z, y if g_text or num_classes else None)
    assert x.shape == (B, *shape) and torch.isfinite(x).all()
    if len(shape) == 3 and getattr(G, "bounded_output", True):  # families with a linear output say so (StyleGAN2)
        assert x.abs().max() <= 1.0

    # D(x, y): one logit per sample; backward (through adv and the head's declared extras, e.g. an auxiliary
    # classifier's logits) reaches every G and D parameter with finite grads
    y_d = _condition(D_HEADS.get(head_name).declares("uses_text", False), True, num_classes, text_dim, B)
    out = D(x, y_d)
    assert out.adv.shape == (B,) and set(head.provides) <= set(out.extras)
    extras = [out.get(k).float().mean() for k in head.provides]
    (out.adv.mean() + sum(extras)).backward()
    for name, p in [*G.named_parameters(), *D.named_parameters()]:
        if not p.requires_grad:  # a frozen part of the family (Projected GAN's feature network)
            assert p.grad is None, f"frozen {name} got a grad"
            continue
        assert p.grad is not None, f"no grad for {name}"
        assert torch.isfinite(p.grad).all(), f"non-finite grad for {name}"

    # conditional G: outputs depend on y (perturb weights so cBN's gamma=1/beta=0 init does not hide it);
    # unconditional G: outputs ignore y
    if num_classes or g_text:
        manual_power_iteration(G)  # as the trainer does: SN's power steps would change G between the two calls
        G.eval()  # training-mode forwards may be random by design (StyleGAN2's noise and style mixing)
        with torch.no_grad():
            for p in G.parameters():
                p.add_(0.1 * torch.randn_like(p))
            if g_text:
                y0, y1 = torch.randn(B, text_dim), torch.randn(B, text_dim)
            else:
                y0, y1 = torch.tensor([0, 1, 2, 0]), torch.tensor([1, 2, 0, 2])
            x0, x1 = G(z, y0), G(z, y1)
        differs = (x0 - x1).flatten(1).abs().amax(dim=1) > 1e-6  # per sample
        assert bool(differs.all()) == (cond_name != "none")
        if cond_name == "none":
            assert torch.allclose(x0, x1)


@pytest.mark.parametrize("arch", ["dcgan", "resnet"])
@pytest.mark.parametrize("shape,base,steps", [((3, 8, 8), (4, 4), 1), ((1, 28, 28), (7, 7), 2),
                                              ((3, 32, 32), (4, 4), 3), ((3, 64, 64), (4, 4), 4),
                                              ((3, 128, 128), (4, 4), 5), ((3, 32, 64), (4, 8), 3)])
def test_conv_sizes(arch, shape, base, steps):
    torch.manual_seed(0)
    G, D = build(arch, shape, g_ch=4, d_ch=4)
    assert G.base == base
    up_layers = G.ups if arch == "dcgan" else G.blocks
    assert len(up_layers) == steps
    x = G(G.sample_z(2))
    assert x.shape == (2, *shape)
    assert D.features(x).shape == (2, D.feature_dim)


@pytest.mark.parametrize("arch", ["dcgan", "resnet"])
@pytest.mark.parametrize("shape", [(3, 30, 30), (3, 4, 4), (3, 16, 18), (3, 17, 16), (2,)])
def test_conv_unsupported_shapes(arch, shape):
    with pytest.raises(GanforgeError, match=arch):
        build(arch, shape)


def test_resnet_32px_is_sngan_layout():
    torch.manual_seed(0)
    G, D = build("resnet", (3, 32, 32), g_ch=16, d_ch=8)
    assert len(G.blocks) == 3 and all(b.conv1.out_channels == 16 for b in G.blocks)  # 4 -> 8 -> 16 -> 32, constant
    assert len(D.blocks) == 4 and D.feature_dim == 8  # optimized + 1 down + 2 plain, global sum pooling
    assert [bool(getattr(b, "down", True)) for b in D.blocks] == [True, True, False, False]


def test_resnet_widths_halve_above_full_width_res():
    G, D = build("resnet", (3, 128, 128), g_ch=32, d_ch=32)
    assert [b.conv2.out_channels for b in G.blocks] == [32, 32, 32, 16, 8]  # 8, 16, 32 | 64, 128
    assert D.blocks[0].conv1.out_channels == 16 and D.feature_dim == 32  # 64x64 after the first block


@pytest.mark.parametrize("arch", ARCHITECTURES.names())
def test_d_sn_option_normalizes_every_d_layer(arch):
    if "d_sn" not in ARCHITECTURES.get(arch).options():
        pytest.skip("no d_sn option")
    torch.manual_seed(0)
    shape = (3, 16, 16)
    G, D = build(arch, shape, d_sn=True)
    frozen = {id(m) for part in D.frozen_modules() for m in part.modules()}  # a pretrained, fixed feature network
    layers = [m for m in weight_layers(D) if id(m) not in frozen]
    assert layers and all(has_sn(m) for m in layers)
    assert not any(has_sn(m) for m in weight_layers(D) if id(m) in frozen)
    for _ in range(20):  # power iteration: one step per training forward pass
        D.features(torch.randn(2, *shape))
    for m in layers:
        assert top_singular_value(m).item() == pytest.approx(1.0, abs=0.02)
    _, D_plain = build(arch, shape, d_sn=False)
    assert not any(has_sn(m) for m in weight_layers(D_plain))


def test_resnet_g_sn_leaves_cbn_alone():
    G, _ = build("resnet", (3, 16, 16), cond="cbn", num_classes=3, g_sn=True)
    assert all(has_sn(m) for m in weight_layers(G))
    assert torch.equal(G.blocks[0].norm1.gamma.weight, torch.ones(3, 8))  # not normalized, not re-initialised


def test_mlp_points_output_and_tanh_option():
    torch.manual_seed(0)
    G, _ = build("mlp", (2,))
    with torch.no_grad():
        G.out.weight.mul_(100.0)
    assert G(G.sample_z(64)).abs().max() > 1.0  # points: linear output by default
    G_tanh, _ = build("mlp", (2,), tanh=True)
    with torch.no_grad():
        G_tanh.out.weight.mul_(100.0)
    assert G_tanh(G_tanh.sample_z(64)).abs().max() <= 1.0


def test_mlp_carries_cbn_labels_without_g_norm():
    G, _ = build("mlp", (2,), cond="cbn", num_classes=3, g_norm=False)
    assert all(hasattr(n, "gamma") for n in G.norms)  # cBN switched on: the only way labels can enter
    G_unc, _ = build("mlp", (2,), cond="none", num_classes=3, g_norm=False)
    assert not any(p.numel() for n in G_unc.norms for p in n.parameters())


@pytest.mark.parametrize("arch", ARCHITECTURES.names())
def test_unknown_init_lists_choices(arch):
    if "init" not in ARCHITECTURES.get(arch).options():
        pytest.skip("no init option")
    with pytest.raises(GanforgeError, match="init.*ortho.*xavier"):
        build(arch, (3, 16, 16), init="he")


def test_options_validated_by_registry():
    with pytest.raises(GanforgeError, match="g_ch"):
        build("dcgan", (3, 16, 16), g_ch="wide")
    with pytest.raises(GanforgeError, match="layers"):
        build("mlp", (2,), layers=0)


@pytest.mark.parametrize("arch", ARCHITECTURES.names())
def test_generator_rebuilds_from_safetensors(arch, tmp_path):
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)
    shape = (2,) if arch == "mlp" else (3, 16, 16)
    extra = {"g_sn": True} if "g_sn" in ARCHITECTURES.get(arch).options() else {}
    try:
        G, _ = build(arch, shape, cond="cbn", num_classes=3, **extra)
        cond = "cbn"
    except GanforgeError:  # families whose labels enter through the mapping input
        cond = "concat"
        G, _ = build(arch, shape, cond=cond, num_classes=3, **extra)
    G(G.sample_z(B), torch.arange(B) % 3)  # one training step's worth of BN / SN state
    save_file({k: v.contiguous() for k, v in G.state_dict().items()}, str(tmp_path / "g.safetensors"))
    torch.manual_seed(1)
    G2, _ = build(arch, shape, cond=cond, num_classes=3, **extra)
    G2.load_state_dict(load_file(str(tmp_path / "g.safetensors")))
    z, y = G.sample_z(B), torch.tensor([2, 1, 0, 2])
    assert torch.allclose(G.eval()(z, y), G2.eval()(z, y), atol=1e-6)


@pytest.mark.parametrize("arch", ARCHITECTURES.names())
def test_d_returns_h_and_on_request_every_tapped_feature_map(arch):
    torch.manual_seed(0)
    shape = (2,) if arch in ("mlp", "style-mlp") else (3, 16, 16)
    _, backbone = build(arch, shape)
    D = Discriminator(backbone, D_HEADS.build("linear", {}, in_features=backbone.feature_dim, num_classes=0))
    D.eval()  # stand-alone spectral norm steps its power iteration at every training-mode forward
    x = torch.randn(B, *shape)
    plain = D(x)
    parts = backbone.parts  # a multi-part D (Projected GAN) judges each part; h is the mean of the parts' features
    assert torch.equal(plain.h, backbone.features(x).reshape(B, parts, -1).mean(1)) and "features" not in plain
    taps = backbone.taps()
    assert taps, f"{arch}: D exposes no intermediate features"
    seen = {}
    hooks = [m.register_forward_hook(lambda _m, _i, out, n=n: seen.__setitem__(n, out)) for n, m in taps.items()]
    out = D(x, features=True)
    for h in hooks:
        h.remove()
    assert list(out.features) == list(taps)  # input side first, each the output of its module
    for name, fmap in out.features.items():
        assert fmap.shape[0] == B and torch.equal(fmap, seen[name])
    assert torch.equal(out.adv, plain.adv)
    assert not any(m._forward_hooks for m in taps.values())  # hooks are removed after the call


class _RecordingNorm(torch.nn.Module):
    def __init__(self, log):
        super().__init__()
        self.log = log

    def forward(self, x, c=None):
        self.log.append(c)
        return x


class _PerBlock(G_CONDITIONING.get("none").obj):
    """Hands block i the value ("c", i) and records what each norm layer receives."""

    def __init__(self):
        super().__init__(num_classes=0)
        self.log: list = []

    def norm1d(self, num_features):
        return _RecordingNorm(self.log)

    def norm2d(self, num_features):
        return _RecordingNorm(self.log)

    def prepare(self, z, y):
        from ganforge.conditioning.base import GInput

        return GInput(z, [("c", i) for i in range(self.num_blocks)])


@pytest.mark.parametrize("arch", ["mlp", "dcgan", "resnet"])
def test_each_block_gets_its_own_conditioning_value(arch):
    cond = _PerBlock()
    shape = (2,) if arch == "mlp" else (3, 16, 16)
    extra = {"g_norm": True} if arch == "mlp" else {}
    G = ARCHITECTURES.build(arch, tiny(arch, **extra), img_shape=shape, num_classes=0, g_cond=cond).G
    G(G.sample_z(B))
    assert cond.num_blocks >= 2 and {c for c in cond.log} == {("c", i) for i in range(cond.num_blocks)}
    assert cond.log == sorted(cond.log, key=lambda c: c[1])  # in block order, input side first

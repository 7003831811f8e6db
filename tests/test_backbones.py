"""Evaluation backbones: official state-dict layouts, weight loading, the FID Inception's pooling, protocols."""
from __future__ import annotations

import hashlib
import math
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ganforge.errors import GanforgeError
from ganforge.metrics.backbones import Backbone
from ganforge.metrics import weights as W
from ganforge.metrics.backbones.inception import InceptionFID
from ganforge.metrics.resize import resize
from ganforge.registries import BACKBONES

# --- official layouts, written out from the architectures' descriptions -------------------------------------------


def _bn(shapes: dict, prefix: str, c: int) -> None:
    for p in ("weight", "bias", "running_mean", "running_var"):
        shapes[f"{prefix}.{p}"] = (c,)
    shapes[f"{prefix}.num_batches_tracked"] = ()


def resnet50_layout(fc: bool = True) -> dict[str, tuple]:
    """torchvision's ResNet-50 state dict: names -> shapes."""
    s: dict[str, tuple] = {"conv1.weight": (64, 3, 7, 7)}
    _bn(s, "bn1", 64)
    in_ch = 64
    for i, (width, blocks) in enumerate([(64, 3), (128, 4), (256, 6), (512, 3)], start=1):
        for j in range(blocks):
            p = f"layer{i}.{j}"
            s[f"{p}.conv1.weight"] = (width, in_ch, 1, 1)
            _bn(s, f"{p}.bn1", width)
            s[f"{p}.conv2.weight"] = (width, width, 3, 3)
            _bn(s, f"{p}.bn2", width)
            s[f"{p}.conv3.weight"] = (4 * width, width, 1, 1)
            _bn(s, f"{p}.bn3", 4 * width)
            if j == 0:
                s[f"{p}.downsample.0.weight"] = (4 * width, in_ch, 1, 1)
                _bn(s, f"{p}.downsample.1", 4 * width)
            in_ch = 4 * width
    if fc:
        s["fc.weight"], s["fc.bias"] = (1000, 2048), (1000,)
    return s


def dinov2_layout(dim: int, depth: int = 12, grid: int = 37) -> dict[str, tuple]:
    """The official DINOv2 ViT state dict (no registers): names -> shapes."""
    s: dict[str, tuple] = {"cls_token": (1, 1, dim), "pos_embed": (1, 1 + grid * grid, dim), "mask_token": (1, dim),
                           "patch_embed.proj.weight": (dim, 3, 14, 14), "patch_embed.proj.bias": (dim,)}
    for i in range(depth):
        p = f"blocks.{i}"
        s.update({f"{p}.norm1.weight": (dim,), f"{p}.norm1.bias": (dim,),
                  f"{p}.attn.qkv.weight": (3 * dim, dim), f"{p}.attn.qkv.bias": (3 * dim,),
                  f"{p}.attn.proj.weight": (dim, dim), f"{p}.attn.proj.bias": (dim,), f"{p}.ls1.gamma": (dim,),
                  f"{p}.norm2.weight": (dim,), f"{p}.norm2.bias": (dim,),
                  f"{p}.mlp.fc1.weight": (4 * dim, dim), f"{p}.mlp.fc1.bias": (4 * dim,),
                  f"{p}.mlp.fc2.weight": (dim, 4 * dim), f"{p}.mlp.fc2.bias": (dim,), f"{p}.ls2.gamma": (dim,)})
    s["norm.weight"], s["norm.bias"] = (dim,), (dim,)
    return s


def random_state(layout: dict[str, tuple], seed: int = 1, cheap: bool = False) -> dict[str, torch.Tensor]:
    """Random tensors with the layout's shapes (BN stats sane). `cheap`: values drawn per leading index and
    broadcast over the other dims (stride-0 views), so files stay tiny and fast to write, hash and load."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, shape in layout.items():
        if k.endswith("num_batches_tracked"):
            out[k] = torch.tensor(0)
            continue
        fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
        draw = shape[:1] + (1,) * (len(shape) - 1) if cheap else shape
        base = torch.randn(draw, generator=g)
        if k.endswith("running_var"):
            t = 1.0 + 0.1 * base.abs()
        elif len(shape) == 1 and k.endswith("weight"):
            t = 1.0 + 0.1 * base
        elif len(shape) > 1 and k.endswith("weight"):
            t = base / math.sqrt(fan_in)
        else:
            t = 0.05 * base
        out[k] = t.expand(shape)
    return out


def _one_line(e: pytest.ExceptionInfo) -> str:
    assert "\n" not in str(e.value)
    return str(e.value)


def _images(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    """A random state dict in the pytorch-fid Inception layout, saved with torch.save."""
    layout = {k: tuple(v.shape) for k, v in InceptionFID(weights="random").state_dict().items()}
    path = tmp_path_factory.mktemp("inception") / "random_inception.pth"
    state = random_state(layout, seed=3)
    torch.save(state, path)
    return path, state


# --- inception-fid -------------------------------------------------------------------------------------------------


def test_inception_state_dict_is_the_standard_layout():
    net = InceptionFID(weights="random")
    sd = net.state_dict()
    assert len(sd) == 566  # 94 conv+BN blocks x (conv.weight + 5 BN entries) + fc.weight + fc.bias
    assert sum(k.endswith(".conv.weight") for k in sd) == 94
    assert not any(k.endswith(".conv.bias") for k in sd)
    expect = {"Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3), "Conv2d_4a_3x3.bn.running_var": (192,),
              "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1), "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
              "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
              "Mixed_7a.branch3x3_2.conv.weight": (320, 192, 3, 3),
              "Mixed_7b.branch1x1.conv.weight": (320, 1280, 1, 1),
              "Mixed_7c.branch3x3dbl_3b.conv.weight": (384, 384, 3, 1), "fc.weight": (1008, 2048), "fc.bias": (1008,)}
    for k, shape in expect.items():
        assert tuple(sd[k].shape) == shape, k
    assert all(m.eps == 1e-3 for m in net.modules() if isinstance(m, nn.BatchNorm2d))


def test_inception_pool_branches_follow_the_tf_graph():
    net = InceptionFID(weights="random")
    g = torch.Generator().manual_seed(0)
    for block, in_ch, pool_ch in [("Mixed_5b", 192, 32), ("Mixed_6c", 768, 192), ("Mixed_7b", 1280, 192)]:
        x = torch.randn(1, in_ch, 5, 5, generator=g)
        mod = getattr(net, block)
        got = mod(x)[:, -pool_ch:]  # the pool branch is concatenated last
        want = mod.branch_pool(F.avg_pool2d(x, 3, 1, 1, count_include_pad=False))
        torch.testing.assert_close(got, want)
        padded_avg = mod.branch_pool(F.avg_pool2d(x, 3, 1, 1, count_include_pad=True))
        assert not torch.allclose(got, padded_avg, atol=1e-4)  # torchvision's default would differ at the borders
    x = torch.randn(1, 2048, 5, 5, generator=g)
    got = net.Mixed_7c(x)[:, -192:]
    torch.testing.assert_close(got, net.Mixed_7c.branch_pool(F.max_pool2d(x, 3, 1, 1)))  # 7c: max pool
    assert not torch.allclose(got, net.Mixed_7c.branch_pool(F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)))


def test_inception_loads_weights_path_outputs_batch_independent(inception_file):
    path, state = inception_file
    net = BACKBONES.build("inception-fid", {}, weights=str(path))
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())
    assert net.weights_id == hashlib.sha256(path.read_bytes()).hexdigest()
    assert net.protocol_id() == f"inception-fid_{net.weights_id}_tf-bilinear"
    x = _images(2)
    out = net(x)
    assert out["pool"].shape == (2, 2048) and out["pool"].dtype == torch.float32
    assert out["logits"].shape == out["logits_unbiased"].shape == (2, 1008)
    torch.testing.assert_close(out["logits"], out["pool"] @ state["fc.weight"].T + state["fc.bias"])
    torch.testing.assert_close(out["logits_unbiased"], out["pool"] @ state["fc.weight"].T)
    # the input protocol, one image alone: TF-bilinear to 299, then (x - 128) / 128; in eval mode an image's
    # features do not depend on its batch
    with torch.no_grad():
        manual = net.pool_features((resize(x[1:], 299, "tf-bilinear") - 128) / 128)
    torch.testing.assert_close(out["pool"][1:], manual, rtol=1e-4, atol=1e-5)


def test_inception_fetches_standard_file_from_url(inception_file, tmp_path, monkeypatch):
    path, _ = inception_file
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path))
    monkeypatch.delenv("GANFORGE_OFFLINE", raising=False)
    info = W.KNOWN_WEIGHTS["inception-fid"]
    monkeypatch.setitem(W.KNOWN_WEIGHTS, "inception-fid", W.WeightsInfo(path.as_uri(), info.filename, sha, "test"))
    net = InceptionFID()  # weights=None: fetch, verify, load
    assert (tmp_path / "weights" / info.filename).is_file() and net.weights_id == sha
    monkeypatch.setitem(W.KNOWN_WEIGHTS, "inception-fid", W.WeightsInfo(path.as_uri(), "other.pth", "ab" * 32, "t"))
    with pytest.raises(GanforgeError) as e:
        InceptionFID()
    assert "ab" * 32 in _one_line(e)
    monkeypatch.setenv("GANFORGE_OFFLINE", "1")
    monkeypatch.setitem(W.KNOWN_WEIGHTS, "inception-fid", info)
    with pytest.raises(GanforgeError) as e:
        InceptionFID()
    assert info.url in _one_line(e) and "--weights" in str(e.value)


def test_inception_autocast_is_ignored_on_cpu():
    with pytest.warns(UserWarning, match="CUDA only"):
        net = InceptionFID(weights="random", autocast=True)
    assert not net.autocast and net.protocol_id() == "inception-fid_random-seed0_tf-bilinear"  # float32 protocol


def test_inception_layout_errors_and_optional_counters(tmp_path):
    layout = {k: tuple(v.shape) for k, v in InceptionFID(weights="random").state_dict().items()}
    state = random_state(layout, cheap=True)
    no_counters = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert len(no_counters) == 472
    torch.save(no_counters, tmp_path / "no_counters.pth")
    InceptionFID(weights=str(tmp_path / "no_counters.pth"))  # files without BN counters load too
    del state["Mixed_7c.branch3x3dbl_3b.conv.weight"]
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(GanforgeError) as e:
        InceptionFID(weights=str(tmp_path / "missing.pth"))
    assert "missing.pth" in _one_line(e) and "'Mixed_7c.branch3x3dbl_3b.conv.weight'" in str(e.value)


# --- resnet50 / dinov2 -----------------------------------------------------------------------------------------------


def test_resnet50_loads_swav_layout(tmp_path):
    state = random_state(resnet50_layout(fc=False), seed=4, cheap=True)
    swav = {f"module.{k}": v for k, v in state.items()}  # SwAV saved DDP names ...
    swav.update({"module.projection_head.0.weight": torch.zeros(2048, 2048),  # ... and its training heads
                 "module.prototypes.weight": torch.zeros(3000, 128)})
    torch.save(swav, tmp_path / "swav.pth.tar")
    net = BACKBONES.build("resnet50", {}, weights=str(tmp_path / "swav.pth.tar"))
    assert net.outputs == ("pool",) and net.feature_dim == 2048
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())
    out = net(_images(2, 40))
    assert set(out) == {"pool"} and out["pool"].shape == (2, 2048)
    assert net.protocol_id().endswith("_torch-bilinear-aa")


def test_resnet50_torchvision_layout_with_fc_and_errors(tmp_path):
    layout = resnet50_layout(fc=True)
    assert len(layout) == 320
    state = random_state(layout, cheap=True)
    torch.save(state, tmp_path / "tv.pth")
    net = BACKBONES.build("resnet50", {"resize": "clean"}, weights=str(tmp_path / "tv.pth"))
    assert net.outputs == ("pool", "logits") and set(net.state_dict()) == set(layout)
    del state["layer3.5.bn2.running_mean"]
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(GanforgeError) as e:
        BACKBONES.build("resnet50", {}, weights=str(tmp_path / "bad.pth"))
    assert "bad.pth" in _one_line(e) and "'layer3.5.bn2.running_mean'" in str(e.value)


@pytest.mark.parametrize("variant,dim", [("vits14", 384), ("vitb14", 768)])
def test_dinov2_layout(variant, dim):
    net = BACKBONES.build("dinov2", {"variant": variant}, weights="random")
    sd = net.state_dict()
    layout = dinov2_layout(dim)
    assert {k: tuple(v.shape) for k, v in sd.items()} == layout and len(layout) == 175
    assert net.feature_dim == dim and variant in net.protocol_id()


def test_dinov2_loads_official_layout(tmp_path):
    state = random_state(dinov2_layout(384), seed=5, cheap=True)
    torch.save(state, tmp_path / "dinov2_vits14_pretrain.pth")
    net = BACKBONES.build("dinov2", {}, weights=str(tmp_path / "dinov2_vits14_pretrain.pth"))
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())
    x = _images(1, 48)
    out = net(x)
    assert out["pool"].shape == (1, 384)
    # the protocol: bicubic+antialias to 224, ImageNet mean/std, CLS token after the final norm
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        manual = net.pool_features((resize(x, 224, "torch-bicubic-aa") / 255 - mean) / std)
    torch.testing.assert_close(out["pool"], manual, rtol=1e-4, atol=1e-5)


def test_dinov2_pos_embed_interpolation():
    net = BACKBONES.build("dinov2", {}, weights="random")
    with torch.no_grad():
        net.pos_embed.fill_(0.7)
        net.pos_embed[:, 0] = -2.0
    pos = net.interpolate_pos_embed(16, 16)
    assert pos.shape == (1, 1 + 16 * 16, 384)
    assert torch.all(pos[:, 0] == -2.0)  # the CLS position is not interpolated
    torch.testing.assert_close(pos[:, 1:], torch.full_like(pos[:, 1:], 0.7))  # bicubic keeps constants
    assert torch.equal(net.interpolate_pos_embed(37, 37), net.pos_embed)  # the training grid is used as it is


def test_dinov2_missing_key_and_unknown_variant(tmp_path):
    state = random_state(dinov2_layout(384), cheap=True)
    del state["blocks.11.ls2.gamma"]
    torch.save(state, tmp_path / "d.pth")
    with pytest.raises(GanforgeError) as e:
        BACKBONES.build("dinov2", {}, weights=str(tmp_path / "d.pth"))
    assert "'blocks.11.ls2.gamma'" in _one_line(e)
    with pytest.raises(GanforgeError, match="vits14"):
        BACKBONES.build("dinov2", {"variant": "vitg14"}, weights="random")


# --- module / digits -------------------------------------------------------------------------------------------------


class _TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.conv(x), 2)  # (B, 4, 2, 2)


def test_module_backbone_torchscript(tmp_path):
    torch.manual_seed(0)
    net = _TinyNet().eval()
    torch.jit.save(torch.jit.script(net), str(tmp_path / "net.pt"))
    bb = BACKBONES.build("module", {"path": str(tmp_path / "net.pt"), "size": 16, "normalize": "unit"})
    x = _images(3, 20)
    out = bb(x)
    with torch.no_grad():
        want = net(resize(x, 16, "clean") / 255.0).flatten(1)
    torch.testing.assert_close(out["pool"], want)
    assert bb.feature_dim == 16 and bb.outputs == ("pool",)
    assert bb.weights_id == hashlib.sha256((tmp_path / "net.pt").read_bytes()).hexdigest()


def test_module_backbone_factory(tmp_path, monkeypatch):
    (tmp_path / "gf_test_factory.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = nn.Linear(3, 5)

            def forward(self, x):
                h = x.mean(dim=(2, 3))
                return {"pool": h, "logits": self.lin(h)}

        def make():
            return Net()
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("gf_test_factory", None)
    torch.save({"lin.weight": torch.ones(5, 3), "lin.bias": torch.arange(5.0)}, tmp_path / "w.pth")
    bb = BACKBONES.build("module", {"factory": "gf_test_factory:make", "normalize": "none"},
                         weights=str(tmp_path / "w.pth"))
    x = _images(2, 6)
    out = bb(x)
    mean = x.float().mean(dim=(2, 3))
    torch.testing.assert_close(out["pool"], mean)
    torch.testing.assert_close(out["logits"], mean.sum(1, keepdim=True) + torch.arange(5.0))
    assert set(bb.outputs) == {"pool", "logits"} and bb.feature_dim == 3 and bb.resize_mode == "none"
    with pytest.raises(GanforgeError, match="exactly one"):
        BACKBONES.build("module", {})
    with pytest.raises(GanforgeError, match="package.module:function"):
        BACKBONES.build("module", {"factory": "no_colon"})


def test_digits_backbone_matches_the_classifier_protocol(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    from ganforge.data import digits_classifier as dc

    torch.manual_seed(0)
    clf = dc.DigitsClassifier().eval()
    save_file({k: v.contiguous() for k, v in clf.state_dict().items()}, str(tmp_path / "clf.safetensors"))
    bb = BACKBONES.build("digits-classifier", {}, weights=str(tmp_path / "clf.safetensors"))
    gray = torch.randint(0, 256, (4, 1, 32, 32), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    out = bb(gray)
    with torch.no_grad():
        x8 = dc.to_classifier_input(gray)  # what the stacked-digits mode metric feeds the classifier
        torch.testing.assert_close(out["logits"], clf(x8), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(out["pool"], clf.features(x8), rtol=1e-4, atol=1e-5)
    assert bb.feature_dim == out["pool"].shape[1]
    monkeypatch.setattr(dc, "load_digits_classifier", lambda cache_dir=None: clf)  # weights=None: the cached one
    assert BACKBONES.build("digits-classifier", {}).weights_id == bb.weights_id


# --- every registered backbone ---------------------------------------------------------------------------------------

_OPTIONS = {"module": {"factory": "tests_gf_backbone_factory:make", "size": 24}}


@pytest.mark.parametrize("name", BACKBONES.names())
def test_every_backbone_protocol(name, tmp_path, monkeypatch):
    (tmp_path / "tests_gf_backbone_factory.py").write_text(
        "from torch import nn\n\ndef make():\n    return nn.Sequential(nn.Conv2d(3, 6, 5, stride=4), nn.ReLU())\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    bb = BACKBONES.build(name, _OPTIONS.get(name, {}), weights="random")
    assert isinstance(bb, Backbone) and not bb.training
    pid = bb.protocol_id()
    assert pid.startswith(f"{name}_{bb.weights_id}_{bb.resize_mode}")
    gray = torch.randint(0, 256, (1, 1, 28, 28), generator=torch.Generator().manual_seed(7), dtype=torch.uint8)
    batch = torch.cat([gray.expand(-1, 3, -1, -1), _images(1, 28)])
    out2, out1 = bb(batch), bb(gray)  # grayscale is repeated to RGB; features do not depend on the batch
    assert tuple(out2) == bb.outputs and out2["pool"].shape == (2, bb.feature_dim)
    for k in bb.outputs:
        assert out2[k].dtype == torch.float32
        torch.testing.assert_close(out1[k], out2[k][:1], rtol=1e-4, atol=1e-4)
    bb.train()
    assert not bb.training  # stays in eval mode
    with pytest.raises(GanforgeError, match="uint8") as e:
        bb(batch.float() / 255)
    _one_line(e)

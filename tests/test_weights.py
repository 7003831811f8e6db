"""Weight files: checksum-verified fetch, user paths, offline errors, safe reading and layout checks."""
from __future__ import annotations

import hashlib

import pytest
import torch
from torch import nn

from ganforge.errors import GanforgeError
from ganforge.metrics import weights as W


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


@pytest.fixture
def fake_entry(tmp_path, monkeypatch):
    """A known-weights entry served from a file:// URL, with the cache in tmp_path/cache."""
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("GANFORGE_OFFLINE", raising=False)
    src = tmp_path / "served" / "net-1234.pth"
    src.parent.mkdir()
    torch.save({"w": torch.arange(6.0)}, src)
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    info = W.WeightsInfo(url=src.as_uri(), filename="net-1234.pth", sha256=sha, description="test net")
    monkeypatch.setitem(W.KNOWN_WEIGHTS, "test-net", info)
    return src, info


def test_fetch_from_file_url_into_cache(fake_entry, tmp_path):
    src, info = fake_entry
    path = W.resolve_weights("test-net")
    assert path == tmp_path / "cache" / "weights" / "net-1234.pth"
    assert path.read_bytes() == src.read_bytes()
    assert W.weights_sha256(path) == info.sha256
    assert torch.equal(W.read_state_dict(path)["w"], torch.arange(6.0))
    src.unlink()  # a second call uses the verified cached copy, no download
    assert W.resolve_weights("test-net") == path


def test_wrong_checksum_is_one_line_error(fake_entry, tmp_path, monkeypatch):
    _, info = fake_entry
    monkeypatch.setitem(W.KNOWN_WEIGHTS, "test-net", W.WeightsInfo(info.url, info.filename, "0" * 64, "test net"))
    with pytest.raises(GanforgeError) as e:
        W.resolve_weights("test-net")
    assert "0" * 64 in _one_line(e) and "sha256" in str(e.value)
    assert not (tmp_path / "cache" / "weights" / "net-1234.pth").exists()  # nothing that looks complete is left


def test_offline_error_names_url_and_weights_option(fake_entry, monkeypatch):
    _, info = fake_entry
    monkeypatch.setenv("GANFORGE_OFFLINE", "1")
    with pytest.raises(GanforgeError) as e:
        W.resolve_weights("test-net")
    assert info.url in _one_line(e) and "--weights" in str(e.value) and "weights=" in str(e.value)


def test_missing_url_error_names_url_and_weights_option(fake_entry, tmp_path, monkeypatch):
    url = (tmp_path / "nowhere" / "net-1234.pth").as_uri()
    monkeypatch.setitem(W.KNOWN_WEIGHTS, "test-net", W.WeightsInfo(url, "net-1234.pth", None, "test net"))
    with pytest.raises(GanforgeError) as e:
        W.resolve_weights("test-net")
    assert url in _one_line(e) and "--weights" in str(e.value)


def test_user_path_policy(fake_entry, tmp_path):
    src, info = fake_entry
    assert W.resolve_weights("test-net", src) == src  # the genuine standard file under its own name
    own = tmp_path / "my-finetuned.pth"
    torch.save({"w": torch.zeros(6)}, own)
    assert W.resolve_weights("test-net", own) == own  # other names: the user's own weights, used as they are
    impostor = tmp_path / "elsewhere" / info.filename
    impostor.parent.mkdir()
    torch.save({"w": torch.ones(6)}, impostor)
    with pytest.raises(GanforgeError) as e:  # claims to be the standard file by its name, but is not
        W.resolve_weights("test-net", impostor)
    assert str(impostor) in _one_line(e)
    with pytest.raises(GanforgeError) as e:
        W.resolve_weights("test-net", tmp_path / "missing.pth")
    assert "missing.pth" in _one_line(e)
    with pytest.raises(GanforgeError, match="unknown weights"):
        W.resolve_weights("no-such-net")


def test_table_has_the_standard_inception_file():
    info = W.KNOWN_WEIGHTS["inception-fid"]
    assert info.filename == "pt_inception-2015-12-05-6726825d.pth"
    assert info.url.endswith("/fid_weights/" + info.filename)
    assert info.sha256 == "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
    assert info.sha256.startswith(info.filename.split("-")[-1].split(".")[0])  # the name carries the hash prefix


class _NotATensor:
    pass


def test_read_state_dict_never_unpickles_objects(tmp_path):
    bad = tmp_path / "pickled.pth"
    torch.save({"w": torch.zeros(1), "obj": _NotATensor()}, bad)
    with pytest.raises(GanforgeError) as e:
        W.read_state_dict(bad)
    assert str(bad) in _one_line(e)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(GanforgeError):
        W.read_state_dict(garbage)


def test_read_state_dict_safetensors_and_wrapped(tmp_path):
    from safetensors.torch import save_file

    save_file({"a": torch.ones(2)}, str(tmp_path / "w.safetensors"))
    assert torch.equal(W.read_state_dict(tmp_path / "w.safetensors")["a"], torch.ones(2))
    torch.save({"state_dict": {"a": torch.ones(3)}, "epoch": 3}, tmp_path / "ckpt.pth")
    assert list(W.read_state_dict(tmp_path / "ckpt.pth")) == ["a"]


def test_load_into_names_first_bad_key():
    net = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    good = {k: torch.randn_like(v.float()).to(v.dtype) for k, v in net.state_dict().items()}
    no_nbt = {k: v for k, v in good.items() if not k.endswith("num_batches_tracked")}
    W.load_into(net, no_nbt, "f.pth")  # BatchNorm's counter is optional
    assert torch.equal(net[0].weight, good["0.weight"])
    missing = {k: v for k, v in good.items() if k != "1.running_var"}
    with pytest.raises(GanforgeError, match=r"f\.pth: missing key '1\.running_var'"):
        W.load_into(net, missing, "f.pth")
    with pytest.raises(GanforgeError, match=r"unexpected key 'head\.w'"):
        W.load_into(net, {**good, "head.w": torch.zeros(1)}, "f.pth")
    W.load_into(net, {**good, "head.w": torch.zeros(1)}, "f.pth", ignore_prefixes=("head.",))
    with pytest.raises(GanforgeError, match=r"'0\.weight' has shape \(2, 3\), expected \(3, 2\)"):
        W.load_into(net, {**good, "0.weight": torch.zeros(2, 3)}, "f.pth")


def test_module_sha256_is_a_content_id():
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    b.load_state_dict(a.state_dict())
    assert W.module_sha256(a) == W.module_sha256(b)
    with torch.no_grad():
        b.bias[0] += 1
    assert W.module_sha256(a) != W.module_sha256(b)

"""CIFAR-10/100 from archives in the official format: download via file:// URL, local archive, checksums, offline
errors, decoded cache, and the restricted unpickler."""
import hashlib
import io
import pickle
import tarfile

import numpy as np
import pytest
import torch

from ganforge.data.cifar import CIFAR10_URL, restricted_loads
from ganforge.errors import GanforgeError
from ganforge.registries import DATASETS

PER_BATCH = 4


def _member(tar, name, obj, protocol):
    data = pickle.dumps(obj, protocol=protocol)
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _batch(rng, n, label_keys):
    out = {b"batch_label": b"testing", b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)}
    for key, k in label_keys.items():
        out[key] = rng.integers(0, k, n).tolist()  # the official files store labels as lists of ints
    return out


def make_cifar10(path):
    """A tiny archive laid out like cifar-10-python.tar.gz; returns {split: (images, labels)}."""
    rng = np.random.default_rng(0)
    batches = {f"data_batch_{i}": _batch(rng, PER_BATCH, {b"labels": 10}) for i in range(1, 6)}
    batches["test_batch"] = _batch(rng, PER_BATCH, {b"labels": 10})
    with tarfile.open(path, "w:gz") as tar:
        for i, (name, b) in enumerate(batches.items()):
            _member(tar, f"cifar-10-batches-py/{name}", b, protocol=2 if i % 2 else pickle.DEFAULT_PROTOCOL)
        meta = {b"label_names": [f"class{i}".encode() for i in range(10)], b"num_cases_per_batch": PER_BATCH}
        _member(tar, "cifar-10-batches-py/batches.meta", meta, 2)
    train = [batches[f"data_batch_{i}"] for i in range(1, 6)]
    return {"train": (np.concatenate([b[b"data"] for b in train]), sum((b[b"labels"] for b in train), [])),
            "test": (batches["test_batch"][b"data"], batches["test_batch"][b"labels"])}


def md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("GANFORGE_OFFLINE", raising=False)
    return tmp_path / "cache"


def build(name, split="train", **opts):
    return DATASETS.build(name, opts, split=split, cache_dir=None)


def test_download_by_url_decodes_and_caches(cache, tmp_path, monkeypatch):
    archive = tmp_path / "mirror" / "c10.tar.gz"
    archive.parent.mkdir()
    expected = make_cifar10(archive)
    url, digest = archive.as_uri(), md5(archive)
    fingerprints = {}
    for split in ("train", "test"):
        ds = build("cifar10", split, url=url, md5=digest)
        fingerprints[split] = ds.fingerprint()
        data, labels = expected[split]
        assert len(ds) == len(labels) and ds.info.shape == (3, 32, 32) and ds.info.num_classes == 10
        x, y = ds.get_batch(torch.arange(len(ds)))
        assert torch.equal(x, torch.from_numpy(data).reshape(-1, 3, 32, 32)) and y.tolist() == labels
        assert x[0, 1, 0, 0] == data[0, 1024]  # channel-major rows: G plane starts at 1024
        assert ds.class_names == [f"class{i}" for i in range(10)]
    assert (cache / "datasets" / "cifar-10-python.tar.gz").is_file()  # verified download in the cache
    # second load: from the decoded cache, without the archive or the network
    (cache / "datasets" / "cifar-10-python.tar.gz").unlink()
    archive.unlink()
    monkeypatch.setenv("GANFORGE_OFFLINE", "1")
    again = build("cifar10", url=url, md5=digest)
    assert torch.equal(again.x, torch.from_numpy(expected["train"][0]).reshape(-1, 3, 32, 32))
    assert again.fingerprint() == fingerprints["train"] != fingerprints["test"]


def test_local_archive_and_checksums(cache, tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    expected = make_cifar10(archive)
    ds = build("cifar10", "test", archive=str(archive), md5=md5(archive))
    assert ds.y.tolist() == expected["test"][1]
    with pytest.raises(GanforgeError, match="data.archive.*md5.*expected c58f30108f718f92721af3b95e74349a") as e:
        build("cifar10", archive=str(archive))  # the official checksum does not match the tiny archive
    assert "\n" not in str(e.value)
    with pytest.raises(GanforgeError, match="md5"):
        build("cifar10", url=archive.as_uri(), md5="0" * 32)  # a mirror serving the wrong file


def test_unreachable_url_and_offline_errors_say_what_to_do(cache, tmp_path, monkeypatch):
    missing = (tmp_path / "nowhere.tar.gz").as_uri()
    with pytest.raises(GanforgeError, match="nowhere.tar.gz.*data.archive=PATH") as e:
        build("cifar10", url=missing)
    assert "\n" not in str(e.value)
    monkeypatch.setenv("GANFORGE_OFFLINE", "1")
    with pytest.raises(GanforgeError) as e:
        build("cifar10")
    assert CIFAR10_URL in str(e.value) and "data.archive=PATH" in str(e.value)


def test_cifar100_fine_and_coarse_labels(cache, tmp_path):
    rng = np.random.default_rng(1)
    archive = tmp_path / "c100.tar.gz"
    parts = {s: _batch(rng, 6, {b"fine_labels": 100, b"coarse_labels": 20}) for s in ("train", "test")}
    with tarfile.open(archive, "w:gz") as tar:
        for s, b in parts.items():
            _member(tar, f"cifar-100-python/{s}", b, 2)
        _member(tar, "cifar-100-python/meta", {b"fine_label_names": [b"f"] * 100,
                                               b"coarse_label_names": [b"c"] * 20}, 2)
    fine = build("cifar100", "test", archive=str(archive), md5=md5(archive))
    coarse = build("cifar100", "test", archive=str(archive), md5=md5(archive), fine_labels=False)
    assert fine.info.num_classes == 100 and fine.y.tolist() == parts["test"][b"fine_labels"]
    assert coarse.info.num_classes == 20 and coarse.y.tolist() == parts["test"][b"coarse_labels"]
    assert fine.fingerprint() != coarse.fingerprint() and len(coarse.class_names) == 20


# What Python 2's cPickle wrote for {"data": uint8 array (2, 3), "labels": [1, 2]} (the official archives' era):
# str opcodes (SHORT_BINSTRING) and numpy 1.x's `numpy.core.multiarray._reconstruct`.
PY2_PICKLE = (b"\x80\x02}q\x00(U\x04dataq\x01cnumpy.core.multiarray\n_reconstruct\nq\x02cnumpy\nndarray\nK\x00\x85"
              b"U\x01b\x87R(K\x01K\x02K\x03\x86cnumpy\ndtype\nU\x02u1K\x00K\x01\x87R(K\x03U\x01|NNNJ\xff\xff\xff\xff"
              b"J\xff\xff\xff\xffK\x00tb\x89U\x06\x00\x01\x02\x03\x04\x05tbU\x06labels]q\x03(K\x01K\x02eu.")


def test_python2_pickles_decode_with_bytes_keys():
    d = restricted_loads(PY2_PICKLE)
    assert d[b"labels"] == [1, 2] and d[b"data"].dtype == np.uint8
    assert d[b"data"].tolist() == [[0, 1, 2], [3, 4, 5]]


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_restricted_unpickler_rejects_other_globals(cache, tmp_path, capsys):
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        assert np.array_equal(restricted_loads(pickle.dumps({b"data": arr}, protocol=protocol))[b"data"], arr)
    with pytest.raises(pickle.UnpicklingError, match="builtins.print"):
        restricted_loads(pickle.dumps({b"data": _Evil()}))
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            _member(tar, f"cifar-10-batches-py/{name}", {b"data": _Evil(), b"labels": [0]}, 2)
    with pytest.raises(GanforgeError, match="not allowed"):
        build("cifar10", "test", archive=str(archive), md5=md5(archive))
    assert "pwned" not in capsys.readouterr().out

"""Image folders (labels, colour modes, resize modes, errors) and packed safetensors files (round trip, validation)."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from ganforge.data.pack import pack, pack_source
from ganforge.errors import GanforgeError
from ganforge.registries import DATASETS


def folder(root, **opts):
    return DATASETS.build("folder", {"root": str(root), **opts}, split="train", cache_dir=None)


def save(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8), mode).save(path)
    return path


def noise(h, w, seed):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def classes(tmp_path):
    """root/cat (2 images) and root/dog (1 image + 1 in a nested folder), 12x12 RGB."""
    root = tmp_path / "imgs"
    save(root / "cat" / "a.png", noise(12, 12, 0))
    save(root / "cat" / "b.jpg", noise(12, 12, 1))
    save(root / "dog" / "c.png", noise(12, 12, 2))
    save(root / "dog" / "more" / "d.bmp", noise(12, 12, 3))
    (root / "empty").mkdir()
    return root


def test_labels_from_sorted_subfolders(classes):
    ds = folder(classes)
    assert ds.class_names == ["cat", "dog"] and ds.info.num_classes == 2 and len(ds) == 4
    x, y = ds.get_batch(torch.arange(4))
    assert y.tolist() == [0, 0, 1, 1] and x.shape == (4, 3, 12, 12) and x.dtype == torch.uint8
    assert torch.equal(x[0], torch.from_numpy(noise(12, 12, 0)).permute(2, 0, 1))  # lossless png read as is


def test_flat_folder_is_unconditional(tmp_path):
    save(tmp_path / "x.png", noise(8, 8, 0))
    save(tmp_path / "y.png", noise(8, 8, 1))
    ds = folder(tmp_path)
    assert ds.info.num_classes == 0 and ds.class_names == [] and ds.get_batch(torch.arange(2))[1].tolist() == [0, 0]


def test_colour_modes(tmp_path):
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    save(tmp_path / "gray.png", gray, "L")
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 128  # half-transparent red
    save(tmp_path / "rgba.png", rgba, "RGBA")
    pal = Image.new("P", (8, 8))
    pal.putpalette([10, 20, 30, 250, 240, 230] + [0] * 762)
    pal.putdata([0, 1] * 32)
    pal.save(tmp_path / "pal.png")
    ds = folder(tmp_path)  # sorted: gray, pal, rgba
    x, _ = ds.get_batch(torch.arange(3))
    assert all(torch.equal(x[0, c], torch.from_numpy(gray)) for c in range(3))  # gray repeated to RGB
    assert x[1, :, 0, 0].tolist() == [10, 20, 30] and x[1, :, 0, 1].tolist() == [250, 240, 230]  # palette expanded
    assert x[2, :, 0, 0].tolist() == [100, 0, 0]  # alpha composited on black: 200 * 128/255
    x1, _ = folder(tmp_path, channels=1).get_batch(torch.arange(3))
    assert x1.shape == (3, 1, 8, 8) and torch.equal(x1[0, 0], torch.from_numpy(gray))


def _halves(h, w, left, right):
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : w // 2], a[:, w // 2:] = left, right
    return a


def test_resize_modes_to_a_non_square_target(tmp_path):
    # a 64x64 square: top and bottom quarters green, middle half white
    sq = np.zeros((64, 64, 3), np.uint8)
    sq[:16], sq[16:48], sq[48:] = (0, 255, 0), 255, (0, 255, 0)
    save(tmp_path / "sq" / "a.png", sq)
    target = [16, 32]  # [H, W]: twice as wide as tall

    x = folder(tmp_path / "sq", resolution=target, resize="center-crop").get_batch(torch.tensor([0]))[0][0]
    assert x.shape == (3, 16, 32) and (x[:, 2:-2].int() - 255).abs().max() <= 3  # middle half kept: all white

    x = folder(tmp_path / "sq", resolution=target, resize="pad").get_batch(torch.tensor([0]))[0][0]
    assert x.shape == (3, 16, 32)
    assert x[:, :, :8].max() == 0 and x[:, :, 24:].max() == 0  # 16x16 image centred, black bars left and right
    assert (x[:, 6:10, 8:24].int() - 255).abs().max() <= 3

    save(tmp_path / "lr" / "a.png", _halves(40, 40, (255, 0, 0), (0, 0, 255)))
    x = folder(tmp_path / "lr", resolution=target, resize="stretch").get_batch(torch.tensor([0]))[0][0]
    assert x.shape == (3, 16, 32)
    assert x[:, :, :14].tolist() == torch.tensor([255, 0, 0])[:, None, None].expand(3, 16, 14).tolist()
    assert x[:, :, 18:].tolist() == torch.tensor([0, 0, 255])[:, None, None].expand(3, 16, 14).tolist()
    assert folder(tmp_path / "lr", resolution=20).info.shape == (3, 20, 20)


def test_native_size_must_match(tmp_path):
    save(tmp_path / "a.png", noise(8, 8, 0))
    save(tmp_path / "b.png", noise(8, 10, 1))
    ds = folder(tmp_path)
    assert ds.info.shape == (3, 8, 8)
    with pytest.raises(GanforgeError, match=r"b\.png.*data\.resolution"):
        ds.get_batch(torch.arange(2))


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(GanforgeError, match="not found"):
        folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GanforgeError, match=r"no images \(\.png/\.jpg.*empty"):
        folder(tmp_path / "empty")
    save(tmp_path / "bad" / "ok.png", noise(8, 8, 0))
    (tmp_path / "bad" / "zz_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not image data")
    good = tmp_path / "bad" / "ok.png"
    (tmp_path / "bad" / "zz_truncated.png").write_bytes(good.read_bytes()[:60])
    with pytest.raises(GanforgeError, match=r"2 of 3 image files .*zz_corrupt\.png .*zz_truncated\.png") as e:
        folder(tmp_path / "bad")  # every bad file named in one error, when the dataset is built (before training)
    assert "\n" not in str(e.value)
    with pytest.raises(GanforgeError, match="data.resize"):
        folder(tmp_path / "bad", resize="zoom")
    with pytest.raises(GanforgeError, match="data.resolution"):
        folder(tmp_path / "bad", resolution=[16, 0])


def test_fingerprint_tracks_content(classes):
    fp = folder(classes).fingerprint()
    assert folder(classes).fingerprint() == fp and folder(classes, resolution=8).fingerprint() != fp
    save(classes / "dog" / "e.png", noise(12, 12, 4))
    assert folder(classes).fingerprint() != fp


# ---- packed files -------------------------------------------------------------------------------------------------

def test_pack_round_trip_equals_the_folder(classes, tmp_path):
    src = folder(classes, resolution=[8, 16], resize="pad")
    out = pack(src, tmp_path / "p.safetensors", progress=False)
    assert [p.name for p in tmp_path.iterdir() if ".part" in p.name] == []  # written atomically
    ds = DATASETS.build("packed", {"path": str(out)}, split="train", cache_dir=None)
    xa, ya = src.get_batch(torch.arange(len(src)))
    xb, yb = ds.get_batch(torch.arange(len(ds)))
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert ds.info.shape == (3, 8, 16) and ds.info.num_classes == 2 and ds.class_names == ["cat", "dog"]
    assert ds.fingerprint() != "" and ds.fingerprint() == DATASETS.build(
        "packed", {"path": str(out)}, split="train", cache_dir=None).fingerprint()
    # the CLI helper gives the same file contents from the folder path
    out2 = tmp_path / "q.safetensors"
    summary = pack_source(str(classes), str(out2), resolution=[8, 16], resize="pad", progress=False)
    assert summary.startswith("4 images of 3x8x16, 2 classes")
    assert torch.equal(DATASETS.build("packed", {"path": str(out2)}, split="train", cache_dir=None).x, xa)


def test_pack_source_registered_dataset(tmp_path):
    out = tmp_path / "d.safetensors"
    pack_source("digits", str(out), resolution=16, progress=False)  # channels=3 (the default): digits keep theirs
    ds = DATASETS.build("packed", {"path": str(out)}, split="train", cache_dir=None)
    ref = DATASETS.build("digits", {"resolution": 16}, split="train", cache_dir=None)
    assert torch.equal(ds.x, ref.x) and torch.equal(ds.y, ref.y) and ds.class_names == ref.class_names
    assert "digits" in ds.source
    pack_source("digits", str(out), channels=1, resize="center-crop", split="test", progress=False)
    assert len(DATASETS.build("packed", {"path": str(out)}, split="train", cache_dir=None)) == 355
    with pytest.raises(GanforgeError, match="has no option resize"):
        pack_source("digits", str(out), resize="pad")
    with pytest.raises(GanforgeError, match="neither a directory nor a registered dataset"):
        pack_source(str(tmp_path / "nope"), str(tmp_path / "n.safetensors"))
    with pytest.raises(GanforgeError, match="only image datasets"):
        pack_source("ring8", str(tmp_path / "r.safetensors"), progress=False)


def test_packed_validation_names_the_file(tmp_path):
    def load(path):
        return DATASETS.build("packed", {"path": str(path)}, split="train", cache_dir=None)

    with pytest.raises(GanforgeError, match="missing.safetensors not found"):
        load(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"definitely not safetensors")
    with pytest.raises(GanforgeError, match="junk.safetensors is not a readable safetensors file"):
        load(junk)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"images": torch.zeros(2, 1, 4, 4, dtype=torch.uint8)}, str(foreign))
    with pytest.raises(GanforgeError, match="foreign.safetensors is not a ganforge packed dataset"):
        load(foreign)
    meta = {"format": "ganforge-packed", "version": "1", "shape": json.dumps([1, 4, 4]), "num_classes": "2",
            "class_names": "[]", "source": "test", "fingerprint": "x"}
    bad = tmp_path / "bad.safetensors"
    save_file({"images": torch.zeros(2, 1, 4, 4, dtype=torch.uint8), "labels": torch.zeros(3, dtype=torch.int64)},
              str(bad), meta)
    with pytest.raises(GanforgeError, match="bad.safetensors labels"):
        load(bad)
    save_file({"images": torch.zeros(2, 1, 4, 4, dtype=torch.uint8), "labels": torch.tensor([0, 5])}, str(bad), meta)
    with pytest.raises(GanforgeError, match="bad.safetensors has labels outside"):
        load(bad)
    save_file({"images": torch.zeros(2, 1, 4, 4, dtype=torch.uint8), "labels": torch.tensor([0, 1])}, str(bad),
              {**meta, "version": "9"})
    with pytest.raises(GanforgeError, match="version 9"):
        load(bad)

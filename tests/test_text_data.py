"""Captioned datasets: the `captions` folder format, the `shapes-captions` procedural set and its attribute judge."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import ganforge.data.shapes_attributes as attr_mod
from ganforge.data.captions import CaptionedDataset
from ganforge.data.shapes_attributes import (HEADS, attribute_fid, caption_attribute_accuracy, classifier_features,
                                             classifier_path, load_shapes_classifier, position_spread)
from ganforge.data.shapes_captioned import (COLOURS, caption_variants, canonical, parse_caption, targets)
from ganforge.errors import GanforgeError
from ganforge.registries import DATASETS


def build(name, split="train", **opts):
    return DATASETS.build(name, opts, where="data", split=split, cache_dir=None)


# ---- the captions folder format -----------------------------------------------------------------------------------

@pytest.fixture
def folder(tmp_path):
    """Three 4x4 single-colour images at the top level (no classes): a red, b green, c blue."""
    root = tmp_path / "imgs"
    root.mkdir()
    for name, rgb in [("a.png", (255, 0, 0)), ("b.png", (0, 255, 0)), ("c.png", (0, 0, 255))]:
        Image.new("RGB", (4, 4), rgb).save(root / name)
    return root


def write_jsonl(root, rows, name="captions.jsonl"):
    (root / name).write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return root / name


def test_jsonl_gives_each_image_its_captions_and_pixels(folder):
    write_jsonl(folder, [{"image": "a.png", "captions": ["red one", "a red square"]},
                         {"image": "./b.png", "captions": ["green"]}, "",
                         {"image": "c.png", "captions": ["blue", "b2", "b3"]}])
    ds = build("captions", root=str(folder))
    assert isinstance(ds, CaptionedDataset) and ds.has_captions and len(ds) == 3
    assert [ds.captions(i) for i in range(3)] == [["red one", "a red square"], ["green"], ["blue", "b2", "b3"]]
    assert ds.caption_offsets.tolist() == [0, 2, 3, 6] and ds.caption_counts().tolist() == [2, 1, 3]
    x, y = ds.get_batch(torch.tensor([2, 0]))
    assert x.shape == (2, 3, 4, 4) and x[0, :, 0, 0].tolist() == [0, 0, 255] and x[1, :, 0, 0].tolist() == [255, 0, 0]


def test_tsv_with_repeated_paths_and_header_equals_jsonl(folder):
    (folder / "captions.tsv").write_text("image\tcaption\na.png\tred one\nb.png\tgreen\na.png\ta red square\n"
                                         "c.png\tblue\r\n")
    ds = build("captions", root=str(folder))
    assert ds.captions_file.name == "captions.tsv"
    assert [ds.captions(i) for i in range(3)] == [["red one", "a red square"], ["green"], ["blue"]]


def test_class_subfolders_keep_labels_and_paths(tmp_path):
    for cls, rgb in [("cats", (9, 9, 9)), ("dogs", (200, 200, 200))]:
        (tmp_path / cls).mkdir()
        Image.new("RGB", (4, 4), rgb).save(tmp_path / cls / "x.png")
    (tmp_path / "caps.tsv").write_text("dogs/x.png\ta light one\ncats/x.png\ta dark one\n")
    ds = build("captions", root=str(tmp_path), captions="caps.tsv")
    image, caps = ds.item(1)
    assert ds.class_names == ["cats", "dogs"] and ds.get_batch(torch.arange(2))[1].tolist() == [0, 1]
    assert caps == ["a light one"] and image[:, 0, 0].tolist() == [200, 200, 200]


@pytest.mark.parametrize("rows, fragment", [
    ([{"image": "a.png", "captions": ["x"]}, {"image": "zz.png", "captions": ["y"]}], ":2: image 'zz.png' not found"),
    ([{"image": "a.png", "captions": ["x", "  "]}], ":1: caption 1 of 'a.png' is empty"),
    ([{"image": "a.png", "captions": ["x"]}, '{"image": "b.png", "captions": ["y"'], ":2: not valid JSON"),
    ([{"image": "a.png", "caption": "x"}], ':1: expected an object {"image"'),
    ([{"image": "../a.png", "captions": ["x"]}], ":1: image path '../a.png' must be relative"),
    ([{"image": "a.png", "captions": []}], ":1: 'a.png' has an empty caption list"),
])
def test_bad_caption_files_give_one_line_naming_file_and_line(folder, rows, fragment):
    path = write_jsonl(folder, rows)
    with pytest.raises(GanforgeError) as e:
        build("captions", root=str(folder))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"data.captions: {path}") and fragment in msg


def test_tsv_line_without_tab_names_its_line(folder):
    (folder / "captions.tsv").write_text("a.png\tred\n\nb.png green\n")
    with pytest.raises(GanforgeError, match=r"captions.tsv:3: expected 'image path<TAB>caption'"):
        build("captions", root=str(folder))


def test_uncaptioned_images_are_dropped_or_refused(folder):
    write_jsonl(folder, [{"image": "a.png", "captions": ["red"]}, {"image": "c.png", "captions": ["blue"]}])
    with pytest.warns(UserWarning, match="leaving out 1 of 3 images"):
        ds = build("captions", root=str(folder))
    assert len(ds) == 2 and ds.captions(1) == ["blue"]
    assert ds.get_batch(torch.tensor([1]))[0][0, :, 0, 0].tolist() == [0, 0, 255]  # c.png, not b.png
    with pytest.raises(GanforgeError, match=r"captions.jsonl: 1 of 3 images .* no caption \(first: b.png\)"):
        build("captions", root=str(folder), require_all=True)


def test_no_captions_file_is_named(folder):
    with pytest.raises(GanforgeError, match="data.captions: no captions.jsonl or captions.tsv in"):
        build("captions", root=str(folder))


def test_sample_caption_ids_are_seeded_and_uniform(folder):
    write_jsonl(folder, [{"image": "a.png", "captions": ["r0", "r1", "r2", "r3"]},
                         {"image": "b.png", "captions": ["g0"]}, {"image": "c.png", "captions": ["b0", "b1"]}])
    ds = build("captions", root=str(folder))
    idx = torch.tensor([0, 1, 2]).repeat(20000)
    ids = ds.sample_caption_ids(idx, torch.Generator().manual_seed(3))
    assert torch.equal(ids, ds.sample_caption_ids(idx, torch.Generator().manual_seed(3)))
    assert ((ids >= ds.caption_offsets[idx]) & (ids < ds.caption_offsets[idx + 1])).all()
    freq = torch.bincount(ids, minlength=7).float() / 20000
    assert torch.allclose(freq[:4], torch.full((4,), 0.25), atol=0.015)  # 4 captions: 1/4 each
    assert freq[4] == 1.0 and torch.allclose(freq[5:], torch.full((2,), 0.5), atol=0.015)
    assert ds.caption_batch(torch.tensor([4, 6])) == ["g0", "b1"]


# ---- shapes-captions ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shapes32():
    return build("shapes-captions", n=400, resolution=32, seed=1)


def test_shapes_are_deterministic_and_splits_differ(shapes32):
    again = build("shapes-captions", n=400, resolution=32, seed=1)
    assert torch.equal(shapes32.x, again.x) and shapes32.caption_texts == again.caption_texts
    assert shapes32.fingerprint() == again.fingerprint()
    test = build("shapes-captions", split="test", n=400, resolution=32, seed=1)
    assert not torch.equal(shapes32.x, test.x) and shapes32.fingerprint() != test.fingerprint()
    assert shapes32.info.shape == (3, 32, 32) and shapes32.x.dtype == torch.uint8 and len(shapes32) == 400


def test_hand_written_layout_gives_both_phrasings_and_parses_back():
    layout = {"shapes": [{"shape": "circle", "colour": "red", "size": "small"},
                         {"shape": "square", "colour": "blue", "size": "large"}], "relation": "above"}
    variants = caption_variants(layout)
    assert "a small red circle above a large blue square" in variants
    assert "a large blue square is below a small red circle" in variants
    parsed = parse_caption("There is a large blue square below a small red circle")
    assert parsed == {"shapes": [layout["shapes"][1], layout["shapes"][0]], "relation": "below"}
    assert canonical(parsed) == canonical(layout) == {"first": layout["shapes"][0], "second": layout["shapes"][1],
                                                      "relation": "above"}
    assert parse_caption("one small green triangle")["relation"] is None
    assert targets(parse_caption("a small red circle to the right of a large blue square")) == \
        [1, 2, 1, 1, 1, 1, 1]  # first = the (left) square: square 1, blue 2, large 1; circle, red, small; "left of"


def test_every_caption_parses_back_to_the_drawn_attributes(shapes32):
    for i in range(len(shapes32)):
        truth = canonical(shapes32.attributes(i))
        caps = shapes32.captions(i)
        assert len(caps) == 5 and len(set(caps)) == 5
        assert all(canonical(parse_caption(c)) == truth for c in caps), (i, caps)


@pytest.mark.parametrize("resolution, small, large", [(16, 4, 7), (32, 8, 14), (64, 16, 29)])
def test_shapes_pixels_sizes_colours_and_fill(resolution, small, large):
    ds = build("shapes-captions", n=150, resolution=resolution, seed=2)
    fill = {"square": (1.0, 1.0), "circle": (0.70, 0.85), "triangle": (0.40, 0.60)}  # pi/4 ~ 0.785, 1/2
    for i in range(len(ds)):
        img = ds.x[i].permute(1, 2, 0).numpy()  # (R, R, 3)
        covered = np.zeros(img.shape[:2], bool)
        for s in ds.attributes(i)["shapes"]:
            x, y, side = s["box"]
            assert side == {"small": small, "large": large}[s["size"]]
            assert 0 <= x and 0 <= y and x + side <= resolution and y + side <= resolution  # inside the canvas
            assert not covered[y:y + side, x:x + side].any()  # boxes do not overlap
            covered[y:y + side, x:x + side] = True
            box = img[y:y + side, x:x + side]
            is_colour = (box == COLOURS[s["colour"]]).all(axis=-1)
            assert is_colour[side // 2, side // 2]  # the named colour at the shape's centre
            lo, hi = fill[s["shape"]]
            assert lo <= is_colour.mean() <= hi and (is_colour | (box == 0).all(axis=-1)).all()
        assert (img[~covered] == 0).all()  # black everywhere else


def test_relation_holds_for_pixel_centroids(shapes32):
    pairs = 0
    for i in range(len(shapes32)):
        attrs = shapes32.attributes(i)
        if attrs["relation"] is None:
            continue
        pairs += 1
        img = shapes32.x[i].permute(1, 2, 0).numpy()
        cents = []
        for s in attrs["shapes"]:
            x, y, side = s["box"]
            ys, xs = np.nonzero((img[y:y + side, x:x + side] == COLOURS[s["colour"]]).all(axis=-1))
            cents.append((x + xs.mean() + 0.5, y + ys.mean() + 0.5))
        dx, dy = cents[1][0] - cents[0][0], cents[1][1] - cents[0][1]  # second minus first; y grows downwards
        along, across = {"left of": (dx, dy), "right of": (-dx, dy), "above": (dy, dx), "below": (-dy, dx)}[
            attrs["relation"]]
        assert along > 0 and abs(across) < along, (i, attrs)
    assert 150 < pairs < 250  # p_two = 0.5 of 400


def test_p_two_extremes_and_bad_options():
    assert all(build("shapes-captions", n=50, p_two=0.0).attributes(i)["relation"] is None for i in range(50))
    assert all(build("shapes-captions", n=50, p_two=1.0).attributes(i)["relation"] for i in range(50))
    for opts, key in [({"resolution": 24}, "data.resolution"), ({"captions_per_image": 6}, "data.captions_per_image"),
                      ({"p_two": 1.5}, "data.p_two"), ({"n": 0}, "data.n")]:
        with pytest.raises(GanforgeError, match=key):
            build("shapes-captions", **opts)


# ---- attribute classifier -----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_attribute_classifier_accuracy_cache_and_judging(tmp_path, monkeypatch):
    clf = load_shapes_classifier(16, str(tmp_path))  # trains (about half a minute), then caches
    assert set(clf.heldout_accuracy) >= set(HEADS) and min(clf.heldout_accuracy[h] for h in HEADS) >= 0.95
    assert classifier_path(16, tmp_path).is_file()
    monkeypatch.setattr(attr_mod, "train_shapes_classifier", lambda *a, **k: pytest.fail("retrained"))
    again = load_shapes_classifier(16, str(tmp_path))
    assert again.heldout_accuracy == clf.heldout_accuracy
    test = build("shapes-captions", split="test", n=300, resolution=16, seed=7)  # an unseen draw
    caps = [test.captions(i)[0] for i in range(len(test))]
    true = caption_attribute_accuracy(again, test.x, caps)
    assert min(true[h] for h in HEADS) >= 0.93 and true["all"] >= 0.9
    as_model_space = test.x.float() / 127.5 - 1  # G's output range reads the same
    assert caption_attribute_accuracy(again, as_model_space, caps) == true
    wrong = caption_attribute_accuracy(again, test.x, caps[1:] + caps[:1])  # each image with another's caption
    assert wrong["all"] < 0.2
    assert torch.equal(again.predict(test.x[:64].float() / 255), clf.predict(test.x[:64].float() / 255))


def test_attribute_fid_is_small_for_real_and_large_for_noise_or_collapsed_images():
    clf = load_shapes_classifier(16)
    a = build("shapes-captions", split="test", n=600, resolution=16, seed=7)
    b = build("shapes-captions", split="test", n=600, resolution=16, seed=8)
    same = attribute_fid(clf, a.x, b.x)
    collapsed = attribute_fid(clf, a.x[:1].repeat(600, 1, 1, 1), b.x)  # one image, repeated
    noise = attribute_fid(clf, torch.randint(0, 256, a.x.shape, dtype=torch.uint8), b.x)
    assert attribute_fid(clf, a.x, a.x) == pytest.approx(0.0, abs=1e-6)
    assert same < collapsed / 10 and same < noise / 10
    assert classifier_features(clf, a.x[:5]).shape == (5, 256)


def test_position_spread_is_the_centroid_standard_deviation():
    imgs = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    imgs[0, 0, 1, 1] = 255  # lit pixel at (x=1, y=1)
    imgs[1, 1, 5, 3] = 255  # at (x=3, y=5)
    # std of x over {1, 3} = sqrt(2), of y over {1, 5} = sqrt(8); the mean of the two
    assert position_spread(imgs) == pytest.approx((2 ** 0.5 + 8 ** 0.5) / 2, rel=1e-6)
    assert position_spread(imgs[[0, 0]]) == 0.0

"""Digits, the digits classifier and stacked digits (Stacked-MNIST protocol with 8x8 digits)."""
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from sklearn.datasets import load_digits

import ganforge.data.digits_classifier as dcmod
from ganforge.data.digits import digits_split_indices
from ganforge.data.digits_classifier import classifier_path, load_digits_classifier, to_classifier_input
from ganforge.data.stacked_digits import stacked_predictions
from ganforge.errors import GanforgeError
from ganforge.registries import DATASETS


def build(name, split="train", **opts):
    return DATASETS.build(name, opts, split=split, cache_dir=None)


@pytest.fixture(scope="module")
def clf_dir(tmp_path_factory):
    """A cache directory holding a freshly trained classifier (trained once for this module)."""
    d = tmp_path_factory.mktemp("clf")
    load_digits_classifier(str(d))
    return d


# ---- digits -------------------------------------------------------------------------------------------------------

def test_splits_are_fixed_disjoint_and_stratified():
    train, test, every = (digits_split_indices(s) for s in ("train", "test", "all"))
    assert len(every) == 1797 and len(train) + len(test) == 1797 and not set(train) & set(test)
    counts = np.bincount(load_digits().target[test], minlength=10)
    assert counts.min() >= 34 and counts.max() <= 37  # every 5th image of each class


@pytest.mark.parametrize("resolution", [8, 16, 32])
@pytest.mark.parametrize("channels", [1, 3])
def test_digits_shapes_labels_values(resolution, channels):
    ds = build("digits", split="all", resolution=resolution, channels=channels)
    x, y = ds.get_batch(torch.arange(len(ds)))
    assert len(ds) == 1797 and x.dtype == torch.uint8 and x.shape == (1797, channels, resolution, resolution)
    assert ds.info.shape == (channels, resolution, resolution) and ds.info.num_classes == 10
    assert torch.equal(y, torch.from_numpy(load_digits().target).long())
    assert x.min() == 0 and x.max() == 255
    if channels == 3:
        assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])  # gray repeated


def test_digits_value_mapping_and_bilinear_upsampling():
    raw = torch.from_numpy(load_digits().images).float()
    x8 = build("digits", split="all").x[:, 0]
    assert torch.equal(x8, (raw * 255 / 16).round().to(torch.uint8))  # 0..16 -> 0..255, rounded
    x16 = build("digits", split="all", resolution=16).x[:, 0].float()
    f = raw * 255 / 16
    # align_corners=False 2x bilinear: output pixel 2i+1 sits 1/4 of the way from input i to i+1 (rows and columns)
    expect = (0.75 * (0.75 * f[:, 3, 3] + 0.25 * f[:, 3, 4]) + 0.25 * (0.75 * f[:, 4, 3] + 0.25 * f[:, 4, 4]))
    assert torch.equal(x16[:, 7, 7], expect.round())
    assert torch.equal(x16[:, 0, 0], x8[:, 0, 0].float())  # corners are copied (no antialias blur)


def test_digits_bad_options():
    with pytest.raises(GanforgeError, match="data.resolution"):
        build("digits", resolution=12)
    with pytest.raises(GanforgeError, match="data.channels"):
        build("digits", channels=2)


# ---- classifier ---------------------------------------------------------------------------------------------------

def test_classifier_accuracy_and_interface(clf_dir):
    clf = load_digits_classifier(str(clf_dir))
    assert clf.heldout_accuracy >= 0.97
    test = build("digits", split="test")
    x = to_classifier_input(test.x)
    assert x.shape == (len(test), 1, 8, 8) and 0 <= x.min() and x.max() <= 1
    logits = clf(x)
    assert logits.shape == (len(test), 10) and clf.features(x).shape == (len(test), clf.feature_dim)
    assert (logits.argmax(1) == test.y).float().mean() >= 0.97  # independent re-check on the held-out digits
    # uint8 and model-space inputs give the same classifier input; larger images are area-averaged to 8x8
    assert torch.allclose(to_classifier_input(test.x.float() / 127.5 - 1), x, atol=1e-6)
    up = test.x.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)  # 32x32 nearest upsampling
    assert torch.allclose(to_classifier_input(up), x, atol=1e-6)


def test_classifier_cache_is_used_and_training_is_deterministic(clf_dir, tmp_path, monkeypatch):
    path = classifier_path(str(clf_dir))
    assert path.name == f"digits-classifier-v{dcmod.CLASSIFIER_VERSION}.safetensors"
    first = load_file(str(path))
    # a corrupt cache file is rebuilt: the rebuilt weights equal the first training bit for bit
    other = classifier_path(str(tmp_path))
    other.write_bytes(b"\x00garbage, not safetensors")
    rebuilt = load_digits_classifier(str(tmp_path))
    second = load_file(str(other))
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    assert rebuilt.heldout_accuracy >= 0.97
    # a valid cache is loaded, not retrained
    monkeypatch.setattr(dcmod, "train_digits_classifier", lambda: pytest.fail("retrained despite a valid cache"))
    cached = load_digits_classifier(str(clf_dir))
    assert cached.heldout_accuracy == rebuilt.heldout_accuracy and not cached.training


# ---- stacked digits -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("resolution", [8, 16])
def test_stacked_labels_and_channels_are_digits(resolution):
    ds = build("stacked-digits", n=500, resolution=resolution)
    x, y = ds.get_batch(torch.arange(500))
    assert x.shape == (500, 3, resolution, resolution) and x.dtype == torch.uint8 and ds.info.num_classes == 1000
    digits = build("digits", resolution=resolution)
    lookup = {bytes(img.numpy()): int(lab) for img, lab in zip(digits.x[:, 0], digits.y)}
    for img, label in zip(x, y):
        a, b, c = (lookup[bytes(ch.numpy())] for ch in img)  # every channel is a training digit image
        assert label == 100 * a + 10 * b + c


def test_stacked_is_deterministic_and_split_aware():
    a, b = build("stacked-digits", n=100, seed=1), build("stacked-digits", n=100, seed=1)
    assert torch.equal(a.triples, b.triples) and a.fingerprint() == b.fingerprint()
    assert build("stacked-digits", n=100, seed=2).fingerprint() != a.fingerprint()
    assert build("stacked-digits", split="test", n=100, seed=1).fingerprint() != a.fingerprint()
    assert build("stacked-digits", n=10, mode_samples=100).mode_samples == 100
    assert a.mode_samples == 26000


def test_stacked_mode_metrics(clf_dir):
    ds = DATASETS.build("stacked-digits", {"n": 4000}, split="train", cache_dir=str(clf_dir))
    x, _ = ds.get_batch(torch.arange(4000))
    m = ds.mode_metrics(ds.info.modality.to_model(x))  # real stacked digits: nearly all modes, small KL
    expected_modes = 1000 * (1 - math.exp(-4))  # distinct classes among 4000 uniform draws: ~982
    assert m["modes"] >= expected_modes - 40
    assert m["kl"] < 0.3 and m["hq_frac"] > 0.9
    one = ds.info.modality.to_model(x[:1]).repeat(300, 1, 1, 1)  # total collapse
    m = ds.mode_metrics(one)
    assert m["modes"] == 1 and m["kl"] == pytest.approx(math.log(1000))


def test_stacked_mode_counts_are_samples_per_predicted_class(clf_dir):
    ds = DATASETS.build("stacked-digits", {"n": 300}, split="train", cache_dir=str(clf_dir))
    x, y = ds.get_batch(torch.arange(300))
    x = ds.info.modality.to_model(x)
    code, _ = stacked_predictions(x, ds.classifier())
    right = [i for i in range(300) if code[i] == y[i]]  # samples the classifier reads correctly
    i, j = right[0], next(j for j in right if y[j] != y[right[0]])
    fake = torch.cat([x[i:i + 1].repeat(3, 1, 1, 1), x[j:j + 1]])  # 3 of class y[i], 1 of class y[j]
    counts = ds.mode_counts(fake)
    assert counts.shape == (1000,) and int(counts.sum()) == 4  # every sample counts
    assert counts[y[i]] == 3 and counts[y[j]] == 1
    m = ds.mode_metrics(fake)  # from the counts: 2 classes hit, KL of q = (3/4, 1/4) to uniform over 1000
    assert m["modes"] == 2 and m["kl"] == pytest.approx(0.75 * math.log(750) + 0.25 * math.log(250))
    metrics, again = ds.mode_results(fake)
    assert metrics == m and torch.equal(again, counts)


def test_classifier_trains_even_when_called_under_no_grad(tmp_path):
    """Mode metrics run under no_grad; the first call on a fresh machine trains the classifier there."""
    import torch

    from ganforge.data.digits_classifier import load_digits_classifier

    with torch.no_grad():
        clf = load_digits_classifier(cache_dir=str(tmp_path))
    assert clf.heldout_accuracy >= 0.97


def test_subset_n_is_class_balanced_fixed_and_drawn_from_the_split():
    from ganforge.data.digits import Digits

    full = Digits(split="train")
    sub = Digits(split="train", n=105)
    assert len(sub) == 105
    assert sub.y.bincount(minlength=10).tolist() == [11] * 5 + [10] * 5  # 105 // 10 each, one more for 5 classes
    again = Digits(split="train", n=105)
    assert torch.equal(sub.x, again.x) and sub.fingerprint() == again.fingerprint() != full.fingerprint()
    # each kept image is the first of its class in the split, in file order
    for c in range(10):
        members = torch.nonzero(full.y == c).flatten()
        assert torch.equal(sub.x[sub.y == c], full.x[members[: int((sub.y == c).sum())]])
    for bad in (0, 1443, 2.5):
        with pytest.raises(GanforgeError, match="data.n: expected a number of images in \\[1, 1442\\]"):
            Digits(split="train", n=bad)

"""scikit-learn's bundled 8x8 handwritten digits as an image dataset.

The images are the test part of UCI "Optical Recognition of Handwritten Digits" ("Methods of Combining Multiple
Classifiers and Their Applications to Handwritten Digit Recognition", Alpaydin & Kaynak, 1998): 1,797 images of
8x8 pixels with values 0..16, 10 classes. They ship with scikit-learn, so they work offline; ganforge uses them
where GAN papers use MNIST (e.g. the stacked-digits mode-coverage benchmark).

Splits are fixed and stratified: within each class, every 5th image (in file order) is held out as "test"
(355 images); "train" is the rest (1,442); "all" is every image.

`n` keeps a fixed, class-balanced subset of the split for low-data experiments: the first images of each class in
file order, n // 10 per class and one more for the first n % 10 classes (n = 100: ten of each digit).
"""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import GanforgeError
from ..registries import DATASETS
from .base import DataInfo, ImageModality, TensorDataset
from .common import check_split, fingerprint

DIGITS_SPLITS = ("train", "test", "all")
DIGITS_RESOLUTIONS = (8, 16, 32)


@functools.lru_cache(maxsize=1)
def _raw_digits() -> tuple[np.ndarray, np.ndarray]:
    """(images float32 (1797, 8, 8) in 0..16, labels int64 (1797,)), read-only."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images, labels = d.images.astype(np.float32), d.target.astype(np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def digits_split_indices(split: str) -> np.ndarray:
    """Indices of a fixed stratified split: per class, images at within-class position 4, 9, 14, ... are 'test'."""
    check_split(split, "data (digits)", DIGITS_SPLITS)
    _, labels = _raw_digits()
    if split == "all":
        return np.arange(len(labels))
    rank = np.zeros(len(labels), np.int64)  # position of each image within its class
    for c in range(10):
        members = np.flatnonzero(labels == c)
        rank[members] = np.arange(len(members))
    is_test = rank % 5 == 4
    return np.flatnonzero(is_test if split == "test" else ~is_test)


def digit_bank(split: str = "train", resolution: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """The digits of `split` as uint8 (M, resolution, resolution) images in 0..255 and int64 (M,) labels.

    Values map 0..16 -> 0..255 (x * 255 / 16, rounded); larger resolutions are upsampled bilinearly without
    antialiasing from the float image, then rounded.
    """
    if resolution not in DIGITS_RESOLUTIONS:
        raise GanforgeError(f"data.resolution: expected one of {', '.join(map(str, DIGITS_RESOLUTIONS))} for the "
                            f"digits, got {resolution}")
    images, labels = _raw_digits()
    idx = digits_split_indices(split)
    x = torch.from_numpy(images[idx].copy()).mul_(255.0 / 16.0)[:, None]  # (M, 1, 8, 8) floats in 0..255
    if resolution != 8:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=False)
    x = x.round_().clamp_(0, 255).to(torch.uint8)[:, 0]
    return x, torch.from_numpy(labels[idx].copy())


def balanced_subset(labels: torch.Tensor, n: int, num_classes: int) -> torch.Tensor:
    """Indices of the first n // K images of each class (one more for the first n % K classes), in file order."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(labels):
        raise GanforgeError(f"data.n: expected a number of images in [1, {len(labels)}], got {n!r}")
    keep = []
    for c in range(num_classes):
        want = n // num_classes + (1 if c < n % num_classes else 0)
        members = torch.nonzero(labels == c).flatten()
        if len(members) < want:
            raise GanforgeError(f"data.n: {n} images need {want} of class {c}, but the split has {len(members)}")
        keep.append(members[:want])
    return torch.cat(keep).sort().values


@DATASETS.register("digits")
class Digits(TensorDataset):
    """scikit-learn 8x8 handwritten digits (1,797 images, 10 classes), optionally upsampled; offline."""

    def __init__(self, *, split: str = "train", cache_dir: str | None = None, resolution: int = 8,
                 channels: int = 1, n: int | None = None):
        """
        Args:
            resolution: 8 (native), 16 or 32 (bilinear upsampling).
            channels: 1 (gray) or 3 (gray repeated).
            n: keep a class-balanced subset of this many images of the split (None: all of it).
        """
        if channels not in (1, 3):
            raise GanforgeError(f"data.channels: expected 1 or 3, got {channels}")
        bank, labels = digit_bank(split, resolution)
        if n is not None:
            keep = balanced_subset(labels, n, 10)
            bank, labels = bank[keep], labels[keep]
        x = bank[:, None].repeat(1, channels, 1, 1).contiguous()  # (M, C, H, W), gray repeated for RGB
        info = DataInfo((channels, resolution, resolution), 10, ImageModality())
        fp = fingerprint("digits", {"split": split, "resolution": resolution, "channels": channels, "n": n}, x,
                         labels)
        super().__init__(x, labels, info, fp)
        self.class_names = [str(i) for i in range(10)]

"""A small CNN that labels 8x8 digits: the "pretrained MNIST classifier" of the stacked-digits mode benchmark.

The Stacked MNIST protocol ("Unrolled Generative Adversarial Networks", Metz et al., 2017; "PacGAN", Lin et al.,
2018) classifies each channel of generated samples with a pretrained digit classifier. MNIST is not available
offline, so ganforge trains this network on scikit-learn's bundled 8x8 digits instead: deterministically (fixed
seed, fixed schedule, one thread, deterministic algorithms), in a few seconds, and caches the weights as
`<cache>/digits-classifier-v<VERSION>.safetensors` with the held-out accuracy in the metadata.

Training sees each digit three ways: the 8x8 original and the 16x16 and 32x32 upsampled versions area-averaged back
to 8x8 (exactly how `to_classifier_input` presents stacked digits of those resolutions), each randomly shifted by up
to one pixel.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .. import download
from .bundled_nets import load_cached, train_deterministic

CLASSIFIER_VERSION = 1
_SEED = 0
_EPOCHS = 8
_BATCH = 64
_LR = 2e-3
MIN_ACCURACY = 0.97


class DigitsClassifier(nn.Module):
    """Small CNN: float (B, 1, 8, 8) digits in [0, 1] -> logits (B, 10); `features` gives the 128-d penultimate."""

    feature_dim = 128

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 32, 4, 4)
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 64, 2, 2)
            nn.Flatten(), nn.Linear(256, self.feature_dim), nn.ReLU(),
        )
        self.head = nn.Linear(self.feature_dim, 10)
        self.heldout_accuracy: float = float("nan")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 8, 8) in [0, 1] -> (B, 128) penultimate activations."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
        """Classifier inputs (B, 1, 8, 8) -> (digit (B,) int64, confidence = max softmax (B,))."""
        p = torch.cat([self(x[i: i + batch_size]).softmax(dim=1) for i in range(0, len(x), batch_size)])
        conf, digit = p.max(dim=1)
        return digit, conf


def to_classifier_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 images in 0..255 or model-space floats in [-1, 1], (B, 1, H, W) at any resolution -> (B, 1, 8, 8)
    floats in [0, 1], area-averaged down to 8x8."""
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"expected single-channel images (B, 1, H, W), got shape {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        x = images.float() / 255.0
    else:
        x = ((images.float() + 1.0) / 2.0).clamp(0.0, 1.0)  # model space [-1, 1] -> [0, 1]
    if x.shape[-2:] != (8, 8):
        x = F.adaptive_avg_pool2d(x, 8)  # area average (exact box filter when H, W are multiples of 8)
    return x


def _shift(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Shift each image by a random offset in {-1, 0, 1}^2, filling with black."""
    b, _, h, w = x.shape
    padded = F.pad(x, (1, 1, 1, 1))
    off = torch.randint(0, 3, (b, 2), generator=g)
    out = torch.empty_like(x)
    for dy in range(3):
        for dx in range(3):
            sel = (off[:, 0] == dy) & (off[:, 1] == dx)
            out[sel] = padded[sel, :, dy: dy + h, dx: dx + w]
    return out


def _training_views(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Each digit of `split` as the classifier will see it at resolutions 8, 16 and 32: (3M, 1, 8, 8), (3M,)."""
    from .digits import digit_bank

    xs, ys = [], []
    for res in (8, 16, 32):
        bank, labels = digit_bank(split, res)
        xs.append(to_classifier_input(bank[:, None]))
        ys.append(labels)
    return torch.cat(xs), torch.cat(ys)


def train_digits_classifier() -> DigitsClassifier:
    """Train the classifier from scratch, deterministically; sets `heldout_accuracy` on the 'test' digits."""
    x_train, y_train = _training_views("train")
    x_test, y_test = _training_views("test")
    def batch_loss(model, idx, g):
        return F.cross_entropy(model(_shift(x_train[idx], g)), y_train[idx])

    model = train_deterministic(DigitsClassifier, len(x_train), batch_loss, epochs=_EPOCHS, batch_size=_BATCH,
                                lr=_LR, seed=_SEED)
    digit, _ = model.predict(x_test)
    model.heldout_accuracy = float((digit == y_test).float().mean())
    return model


def classifier_path(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the cached weights live: `<cache_dir or ganforge cache>/digits-classifier-v<VERSION>.safetensors`."""
    root = Path(cache_dir) if cache_dir is not None else download.cache_dir()
    return root / f"digits-classifier-v{CLASSIFIER_VERSION}.safetensors"


def _load_cached(path: Path) -> DigitsClassifier | None:
    """The cached classifier, or None when the file is missing, corrupt or from another version."""
    def restore(model, meta):
        model.heldout_accuracy = float(meta["heldout_accuracy"])

    return load_cached(path, DigitsClassifier, {"version": CLASSIFIER_VERSION}, restore)


def load_digits_classifier(cache_dir: str | None = None) -> DigitsClassifier:
    """The digits classifier in eval mode: loaded from the cache, else trained (seconds) and cached.

    Args:
        cache_dir: directory for the weights file; None uses the ganforge cache ($GANFORGE_CACHE).
    """
    from ..fileio import save_safetensors

    path = classifier_path(cache_dir)
    model = _load_cached(path)
    if model is None:
        model = train_digits_classifier()
        if not model.heldout_accuracy >= MIN_ACCURACY:
            raise RuntimeError(f"digits classifier reached only {model.heldout_accuracy:.4f} held-out accuracy "
                               f"(< {MIN_ACCURACY}); this is a bug")
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_safetensors(state, path, metadata={"version": str(CLASSIFIER_VERSION),  # atomic, umask permissions
                                                "heldout_accuracy": repr(model.heldout_accuracy)})
    model.eval().requires_grad_(False)
    return model

"""An attribute classifier for `shapes-captions` images: the judge of text-conditional samples.

Text-to-image evaluation asks whether an image shows what its caption says. For the procedural shapes set that can
be measured exactly, in the manner of the Classification Accuracy Score of "Classification Accuracy Score for
Conditional Generative Models" (Ravuri & Vinyals, NeurIPS 2019) and of attribute classifiers used to score
attribute-conditioned faces (Text2FaceGAN, Nasir et al., 2019): a small CNN, trained on rendered images, predicts
for each image the canonical description (`data/shapes_captioned.py: canonical`): the first shape's shape, colour
and size, the second shape's (or "none") and the relation ("none", "left of", "above"). A sample is judged by
parsing its caption the same way (`caption_attribute_accuracy`).

One classifier per resolution (16, 32, 64), trained deterministically (fixed seeds and schedule, one thread,
deterministic algorithms) on the CPU in about half a minute (each head >= 0.98 held-out accuracy) from a fixed
draw of the set, with Gaussian pixel noise (std up to 0.1) so that imperfect samples are still read. The weights are
cached as `<cache>/shapes-attributes-v<VERSION>-r<R>.safetensors` with the held-out accuracy of each head (on an
independent test draw) in the metadata, following `data/digits_classifier.py`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .. import download
from .bundled_nets import load_cached, train_deterministic
from .shapes_captioned import HEADS, RESOLUTIONS, ShapesCaptions, parse_caption, targets

CLASSIFIER_VERSION = 1
_SEED = 0
_DATA_SEED = 12345  # the training / held-out draws (independent of a run's own data seed)
_N_TRAIN, _N_TEST = 6000, 2000
_EPOCHS = 6
_BATCH = 64
_LR = 3e-3
_MAX_NOISE = 0.1
MIN_ACCURACY = 0.95  # per head, on the held-out draw; below this the training is broken


def _conv(c_in: int, c_out: int, k: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, k, stride, k // 2), nn.BatchNorm2d(c_out), nn.ReLU()]


class ShapesAttributeClassifier(nn.Module):
    """Small CNN: float (B, 3, R, R) images in [0, 1] -> {head: logits (B, classes)} for every head of HEADS.

    Every resolution is brought to 32 px first (16: nearest-neighbour upsampling, which keeps the pixels exact; 64:
    2x2 average pooling), then four conv + BatchNorm + ReLU layers reach 4x4 and one hidden layer feeds the heads.
    """

    def __init__(self, resolution: int = 32):
        super().__init__()
        if resolution not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of {RESOLUTIONS}, got {resolution}")
        self.resolution = resolution
        to32 = {16: [nn.Upsample(scale_factor=2, mode="nearest")], 32: [], 64: [nn.AvgPool2d(2)]}[resolution]
        self.body = nn.Sequential(
            *to32,  # (B, 3, 32, 32)
            *_conv(3, 32, 5, 2), *_conv(32, 64, 3, 2), *_conv(64, 64, 3, 1), *_conv(64, 128, 3, 2),  # (B, 128, 4, 4)
            nn.Flatten(), nn.Linear(128 * 16, 256), nn.ReLU(),
        )
        self.head = nn.Linear(256, sum(len(v) for v in HEADS.values()))
        self.heldout_accuracy: dict[str, float] = {}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.head(self.body(x))
        return dict(zip(HEADS, logits.split([len(v) for v in HEADS.values()], dim=1)))

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
        """Classifier inputs (B, 3, R, R) -> predicted class per head, (B, len(HEADS)) int64 in HEADS order."""
        out = []
        for i in range(0, len(x), batch_size):
            logits = self(x[i:i + batch_size])
            out.append(torch.stack([logits[h].argmax(dim=1) for h in HEADS], dim=1))
        return torch.cat(out) if out else torch.zeros(0, len(HEADS), dtype=torch.int64)


def to_classifier_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (0..255) or model-space floats ([-1, 1]), (B, 3, R, R) -> floats in [0, 1]."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected RGB images (B, 3, H, W), got shape {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images.float() / 255.0
    return ((images.float() + 1.0) / 2.0).clamp(0.0, 1.0)


def head_accuracy(pred: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Per-head accuracy of (B, H) predictions against (B, H) targets, plus "all" (every head right) and "mean"."""
    right = pred == target
    acc = {h: float(right[:, k].float().mean()) for k, h in enumerate(HEADS)}
    acc["all"] = float(right.all(dim=1).float().mean())
    acc["mean"] = float(right.float().mean())
    return acc


def _noisy(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """x + N(0, s^2) per pixel with s ~ U(0, _MAX_NOISE) per image, clamped to [0, 1]."""
    s = torch.rand(len(x), 1, 1, 1, generator=g) * _MAX_NOISE
    return (x + s * torch.randn(x.shape, generator=g)).clamp_(0.0, 1.0)


def train_shapes_classifier(resolution: int = 32, *, n_train: int = _N_TRAIN, epochs: int = _EPOCHS
                            ) -> ShapesAttributeClassifier:
    """Train the classifier from scratch, deterministically; sets `heldout_accuracy` on an independent test draw."""
    train = ShapesCaptions(split="train", n=n_train, resolution=resolution, seed=_DATA_SEED)
    test = ShapesCaptions(split="test", n=_N_TEST, resolution=resolution, seed=_DATA_SEED)
    x_train, y_train = to_classifier_input(train.x), train.targets
    def batch_loss(model, idx, g):
        logits = model(_noisy(x_train[idx], g))
        return sum(F.cross_entropy(logits[h], y_train[idx, k]) for k, h in enumerate(HEADS))

    model = train_deterministic(lambda: ShapesAttributeClassifier(resolution), len(x_train), batch_loss,
                                epochs=epochs, batch_size=_BATCH, lr=_LR, seed=_SEED)
    model.heldout_accuracy = head_accuracy(model.predict(to_classifier_input(test.x)), test.targets)
    return model


def classifier_path(resolution: int, cache_dir: str | os.PathLike | None = None) -> Path:
    """`<cache_dir or ganforge cache>/shapes-attributes-v<VERSION>-r<resolution>.safetensors`."""
    root = Path(cache_dir) if cache_dir is not None else download.cache_dir()
    return root / f"shapes-attributes-v{CLASSIFIER_VERSION}-r{resolution}.safetensors"


def _load_cached(path: Path, resolution: int) -> ShapesAttributeClassifier | None:
    """The cached classifier, or None when the file is missing, corrupt or from another version."""
    def restore(model, meta):
        model.heldout_accuracy = {k: float(v) for k, v in json.loads(meta["heldout_accuracy"]).items()}

    return load_cached(path, lambda: ShapesAttributeClassifier(resolution),
                       {"version": CLASSIFIER_VERSION, "resolution": resolution}, restore)


def load_shapes_classifier(resolution: int = 32, cache_dir: str | None = None) -> ShapesAttributeClassifier:
    """The attribute classifier for `resolution` in eval mode: from the cache, else trained and cached.

    Args:
        resolution: 16, 32 or 64 (that of the images it will judge).
        cache_dir: directory for the weights file; None uses the ganforge cache ($GANFORGE_CACHE).
    """
    from ..fileio import save_safetensors

    path = classifier_path(resolution, cache_dir)
    model = _load_cached(path, resolution)
    if model is None:
        model = train_shapes_classifier(resolution)
        worst = min(model.heldout_accuracy[h] for h in HEADS)
        if not worst >= MIN_ACCURACY:
            raise RuntimeError(f"shapes attribute classifier (r{resolution}) reached only {worst:.4f} held-out "
                               f"accuracy on a head (< {MIN_ACCURACY}); this is a bug")
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_safetensors(state, path, metadata={"version": str(CLASSIFIER_VERSION), "resolution": str(resolution),
                                                "heldout_accuracy": json.dumps(model.heldout_accuracy)})
    model.eval().requires_grad_(False)
    return model


def caption_attribute_accuracy(classifier: ShapesAttributeClassifier, images: torch.Tensor,
                               captions: Sequence[str]) -> dict[str, float]:
    """How often images show what their captions say: per-head accuracy of the classifier's predictions against
    the parsed captions, plus "all" (every attribute right) and "mean" (over heads).

    Args:
        classifier: from `load_shapes_classifier` at the images' resolution.
        images: (B, 3, R, R) uint8 or model-space floats (e.g. G's samples for `captions`).
        captions: one caption per image, in the set's phrasing (`parse_caption`).
    """
    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    want = torch.tensor([targets(parse_caption(c)) for c in captions], dtype=torch.int64).reshape(-1, len(HEADS))
    x = to_classifier_input(images.detach()).to(next(classifier.parameters()).device)
    return head_accuracy(classifier.predict(x).cpu(), want)


def describe(predictions: torch.Tensor) -> list[str]:
    """Captions (in the set's phrasing) of predicted attributes (B, len(HEADS)): what the classifier reads in each
    image, e.g. "a small red circle above a large blue square" (one shape when the second or the relation is
    predicted absent)."""
    from .shapes_captioned import RELATION_TEXT

    names = list(HEADS.values())
    out = []
    for row in predictions.tolist():
        v = [names[h][c] for h, c in enumerate(row)]
        first = f"{v[2]} {v[1]} {v[0]}"
        if "none" in v[3:]:
            out.append(f"a {first}")
        else:
            out.append(f"a {first} {RELATION_TEXT[v[6]]} a {v[5]} {v[4]} {v[3]}")
    return out


@torch.no_grad()
def classifier_features(classifier: ShapesAttributeClassifier, images: torch.Tensor,
                        batch_size: int = 1000) -> torch.Tensor:
    """The classifier's hidden features (B, 256) float64 of images (uint8 or model-space floats): the space of
    `attribute_fid`."""
    device = next(classifier.parameters()).device
    x = to_classifier_input(images.detach())
    parts = [classifier.body(x[i:i + batch_size].to(device)).double().cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(parts) if parts else torch.zeros(0, 256, dtype=torch.float64)


def attribute_fid(classifier: ShapesAttributeClassifier, fake: torch.Tensor, real: torch.Tensor) -> float:
    """Frechet distance between fake and real images in the attribute classifier's hidden features: realism and
    diversity of text-conditional samples in a space that knows the set's attributes (the role Inception plays in
    FID; small sets make it biased upwards, so compare values at the same sizes)."""
    from ..metrics.fid import frechet_distance

    a, b = classifier_features(classifier, fake), classifier_features(classifier, real)
    return frechet_distance(a.mean(0), torch.cov(a.t()), b.mean(0), torch.cov(b.t()))


def position_spread(images: torch.Tensor, threshold: float = 0.5) -> float:
    """Mean over x and y of the standard deviation of the centroid of the lit pixels (max channel > threshold):
    how much the placement varies across images (for one-shape images, the shape's position). A generator that
    puts every shape in one place scores near 0 where the data's placements spread."""
    lit = (to_classifier_input(images).amax(dim=1) > threshold).float()  # (B, H, W)
    total = lit.sum(dim=(1, 2)).clamp(min=1)
    ys = torch.arange(lit.shape[1], dtype=torch.float32)
    xs = torch.arange(lit.shape[2], dtype=torch.float32)
    cy = (lit.sum(dim=2) * ys).sum(dim=1) / total
    cx = (lit.sum(dim=1) * xs).sum(dim=1) / total
    return float(torch.stack([cx, cy], dim=1).std(dim=0).mean())

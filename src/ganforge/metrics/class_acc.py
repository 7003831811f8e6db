"""Class consistency: how often a classifier of the dataset's classes recognises the class an image was generated for.

For a class-conditional generator, each image x_i = G(z_i, y_i) is classified by the evaluation backbone, which must
be a classifier of the same K classes (e.g. `digits-classifier` for digits): top-1 accuracy is
(1/N) sum_i 1[argmax_k logits_ik = y_i], top-5 accuracy counts y_i among the 5 largest logits. This is the accuracy
of a pretrained classifier on generated samples that "Conditional Image Synthesis with Auxiliary Classifier GANs"
(Odena et al., 2017) reports as discriminability (with an Inception network), used by many cGAN papers since. It
measures whether G obeys its label, not image quality or diversity: one perfect image per class scores 1.0.

The logits are those extraction keeps (the backbone's `logits`); their width must equal the number of
classes of the generated labels, so an unrelated classifier (Inception's 1008 ImageNet logits on CIFAR-10 labels) is
refused rather than reported.
"""
from __future__ import annotations

import torch

from ..errors import GanforgeError
from ..registries import METRICS
from .base import Features, Metric, require

TOP5 = 5
# fewest images per class before an accuracy (or a probe's fit) means much: class-acc and cas warn below it
PER_CLASS_FLOOR = 10


def require_labels(features: Features | None, metric: str, which: str) -> torch.Tensor:
    """The set's class labels (N,), or a one-line error saying the images carry none (an unconditional source)."""
    if features is None:
        raise GanforgeError(f"metric {metric}: needs a reference ({which}) set with class labels (--ref), got none")
    labels = features.labels
    if labels is None:
        hint = ("is the generator class-conditional? (unconditional runs have no labels; use fid/prdc instead)"
                if which == "generated" else "use a labelled dataset as the reference")
        raise GanforgeError(f"metric {metric}: the {which} images carry no class labels; {hint}")
    return labels.long()


def num_classes_of(*label_sets: torch.Tensor) -> int:
    """K = the largest label + 1 over the given sets (labels index classes 0..K-1)."""
    return int(max(int(y.max()) for y in label_sets if y.numel())) + 1


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int = 1) -> float:
    """(1/N) sum_i 1[labels_i is among the k largest logits_i]; ties broken by torch.topk's order."""
    top = logits.topk(k, dim=1).indices  # (N, k)
    return float((top == labels[:, None].to(top.device)).any(dim=1).double().mean())


def _check_width(logits: torch.Tensor, labels: torch.Tensor, which: str) -> int:
    """The classifier's class count K; a one-line error when it does not match the labels' classes."""
    if logits.ndim != 2 or logits.shape[0] != labels.shape[0]:
        raise GanforgeError(f"metric class-acc: {which} logits of shape {tuple(logits.shape)} do not match "
                            f"{labels.shape[0]} labels")
    width, k = int(logits.shape[1]), num_classes_of(labels)
    if width != k:
        raise GanforgeError(f"metric class-acc: the backbone gives {width} logits but the {which} labels span {k} "
                            f"classes (0..{k - 1}); choose a backbone that classifies this dataset's classes (e.g. "
                            f"--backbone digits-classifier for digits), or evaluate more images if classes are "
                            f"missing")
    return width


@METRICS.register("class-acc")
class ClassAccuracy(Metric):
    """Class consistency: a classifier backbone's accuracy on generated images vs the labels they were made with."""

    name = "class-acc"
    needs = frozenset({"logits", "labels"})
    needs_reference = False
    keys = ("class_acc", "class_acc_top5")
    # `sample_floor` asks PER_CLASS_FLOOR images per class of the labels (10 x K); 2 classes at least
    min_samples = 2 * PER_CLASS_FLOOR
    min_samples_reason = "an accuracy over fewer than 10 images per class is noisy"

    def __init__(self, *, real: bool = False) -> None:
        """
        Args:
            real: also report `class_acc_real`, the same classifier's top-1 accuracy on the labelled reference set
                (the ceiling class_acc is read against); it then needs a reference (--ref).
        """
        if not isinstance(real, bool):
            raise GanforgeError(f"class-acc.real: expected true or false, got {real!r}")
        self.real = real
        if real:  # instance attributes: the Evaluator then extracts and passes the reference
            self.needs_reference = True
            self.keys = (*type(self).keys, "class_acc_real")

    def sample_floor(self, features: Features) -> tuple[int, str]:
        k = num_classes_of(features.labels) if features.labels is not None and features.labels.numel() else 2
        return PER_CLASS_FLOOR * k, (f"an accuracy over fewer than {PER_CLASS_FLOOR} images per class ({k} classes) "
                                     f"is noisy")

    def check_samples(self, fake: Features, real: Features | None) -> None:
        """Missing labels or a classifier of the wrong classes fail before any metric is computed."""
        super().check_samples(fake, real)
        sets = [(fake, "generated")] + ([(real, "reference")] if self.real else [])
        for features, which in sets:
            _check_width(require(features, "logits", self.name, which), require_labels(features, self.name, which),
                         which)

    def compute(self, fake: Features, real: Features | None) -> dict[str, float]:
        logits = require(fake, "logits", self.name, "generated")
        labels = require_labels(fake, self.name, "generated")
        assert isinstance(logits, torch.Tensor)
        k = _check_width(logits, labels, "generated")
        out = {"class_acc": topk_accuracy(logits, labels, 1)}
        if k > TOP5:  # with K <= 5 every label is in the top 5: the value would always be 1
            out["class_acc_top5"] = topk_accuracy(logits, labels, TOP5)
        if self.real:
            logits_r = require(real, "logits", self.name, "reference")
            labels_r = require_labels(real, self.name, "reference")
            assert isinstance(logits_r, torch.Tensor)
            _check_width(logits_r, labels_r, "reference")
            out["class_acc_real"] = topk_accuracy(logits_r, labels_r, 1)
        return out

    def __repr__(self) -> str:
        return f"ClassAccuracy(real={self.real})"

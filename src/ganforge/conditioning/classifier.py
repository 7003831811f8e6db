"""Shared pieces of the auxiliary-classifier D heads (`ac`, `ac-mod`, `tac`, `adc`).

"Conditional Image Synthesis with Auxiliary Classifier GANs" (Odena et al., 2017) put a classifier C on D's features
next to the adversarial output; TAC-GAN (Gong et al., 2019) and ADC-GAN (Hou et al., 2022) change what C predicts and
how G uses it. What they share lives here: the classifier layer (spectral norm following D's unless the head's `sn`
option says otherwise), softmax cross-entropy in float32, the option and label checks, and `ClassifierHead`, the
base head adv = psi(h) plus classifier outputs. Nothing is registered in this module.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GanforgeError
from ..nn.spectral_norm import maybe_sn
from .base import DOutput
from .d_linear import LinearHead


def classifier_layer(in_features: int, out_features: int, *, sn: bool) -> nn.Linear:
    """A linear classifier on D's features (B, F) -> (B, out_features): Xavier init, spectral norm when `sn`.

    No bias, as StudioGAN's `linear2`: a per-class offset would only learn the (uniform) class prior.
    """
    layer = nn.Linear(in_features, out_features, bias=False)
    nn.init.xavier_uniform_(layer.weight)
    return maybe_sn(layer, sn)


def class_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy, batch mean, computed in float32 (logits may be bf16/fp16 under autocast)."""
    return F.cross_entropy(logits.float(), target)


def check_weight(head: str, key: str, value: float) -> float:
    """A loss weight: a finite number >= 0, else a one-line error naming the head and the option."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise GanforgeError(f"conditioning.d {head!r}: {key} must be a finite number >= 0, got {value!r}")
    return float(value)


class ClassifierHead(LinearHead):
    """Base of the auxiliary-classifier heads: adv = psi(h), plus the extras `classify(h)` returns.

    Subclasses set `head_name` (used in messages), build their classifier layers after `super().__init__` and
    implement `classify` and `terms`.

    Args:
        sn: spectral norm on psi and the classifier layers; None (default) follows the architecture's D (`d_sn`).
        weight: weight of the classification loss in D's step (StudioGAN's `cond_lambda`).
        g_weight: weight of the classification loss in G's step; None (default) means `weight`.
    """

    head_name: str = "classifier"
    uses_labels = True

    def __init__(self, *, in_features: int, num_classes: int, d_sn: bool = True, sn: bool | None = None,
                 weight: float = 1.0, g_weight: float | None = None):
        if num_classes < 2:
            raise GanforgeError(f"conditioning.d {self.head_name!r}: needs a labelled dataset with num_classes >= 2, "
                                f"got num_classes={num_classes}; use 'linear' for unlabelled data")
        super().__init__(in_features=in_features, num_classes=num_classes, d_sn=d_sn, sn=sn)
        self.num_classes = num_classes
        self.sn = d_sn if sn is None else sn  # what the head's own layers use
        self.weight = check_weight(self.head_name, "weight", weight)
        self.g_weight = self.weight if g_weight is None else check_weight(self.head_name, "g_weight", g_weight)

    def classify(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        """The head's classifier outputs on features h (B, F), keyed by the names in `provides`."""
        raise NotImplementedError

    def forward(self, h: torch.Tensor, y: torch.Tensor | None = None) -> DOutput:
        if y is None:
            raise GanforgeError(f"conditioning.d {self.head_name!r}: needs class labels y, got None")
        out = super().forward(h, y)  # adv = psi(h), (B,)
        out.extras.update(self.classify(h))
        return out

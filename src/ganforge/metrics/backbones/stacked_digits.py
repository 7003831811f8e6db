"""The digits classifier applied per channel: a backbone for stacked-digits images (1,000 classes).

Stacked digits put one digit in each of R, G, B (Metz et al., 2017, with scikit-learn's digits in place of MNIST;
`ganforge.data.stacked_digits`). The gray-mean protocol of `digits-classifier` would blend the three digits, so this
backbone classifies each channel on its own: `pool` is the three channels' penultimate features concatenated
(B, 3 F), and `logits` are the 1,000-way log-probabilities of the triple under independent per-channel predictions,
logit[100 a + 10 b + c] = log p_R(a) + log p_G(b) + log p_B(c) (the dataset's label convention), so a class-aware
metric (class consistency, CAS, intra-FID) reads them as a 1,000-class classifier.
"""
from __future__ import annotations

import torch

from ...registries import BACKBONES
from .digits import DigitsClassifierBackbone


@BACKBONES.register("stacked-digits-classifier")
class StackedDigitsBackbone(DigitsClassifierBackbone):
    """Per-channel digits classifier: (B, 3 F) features and 1,000-way triple log-probabilities."""

    name = "stacked-digits-classifier"
    outputs = ("pool", "logits")

    def __init__(self, *, weights: str | None = None, device: str = "cpu"):
        super().__init__(weights=weights, device=device)
        self.feature_dim = 3 * int(self.classifier.feature_dim)

    def extract(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        b, c, h, w = x.shape  # (B, 3, 8, 8) in [0, 1]; gray input has three equal channels
        channels = x.reshape(b * c, 1, h, w)
        feats = self.classifier.features(channels).reshape(b, -1)  # (B, 3 F): R, G, B features in order
        logp = torch.log_softmax(self.classifier(channels).float(), dim=1).reshape(b, c, 10)
        triple = logp[:, 0, :, None, None] + logp[:, 1, None, :, None] + logp[:, 2, None, None, :]  # (B, 10, 10, 10)
        return {"pool": feats, "logits": triple.reshape(b, 1000)}

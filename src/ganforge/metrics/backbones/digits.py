"""The project's 8x8 digits classifier as an evaluation backbone (features for FID-style metrics, logits for IS).

The classifier (`ganforge.data.digits_classifier`) stands in for the pretrained MNIST classifier of the Stacked MNIST
protocol (Metz et al., "Unrolled Generative Adversarial Networks", 2017), trained on scikit-learn's bundled digits.
Protocol: uint8 images -> area-average to 8x8 -> [0, 1] -> gray (mean over channels) -> classifier. Outputs: `pool`
(penultimate features) and `logits` (B, 10).
"""
from __future__ import annotations

import torch

from ...registries import BACKBONES
from ..weights import load_into, module_sha256, read_state_dict
from .base import RANDOM_WEIGHTS, Backbone, seeded_init


@BACKBONES.register("digits-classifier")
class DigitsClassifierBackbone(Backbone):
    """The bundled 8x8 digits classifier: penultimate features and 10-way logits."""

    name = "digits-classifier"
    outputs = ("pool", "logits")
    pyramid_layers = ("classifier.body.1", "classifier.body.4")  # 32 ch at the input side, 64 ch at half of it

    def __init__(self, *, weights: str | None = None, device: str = "cpu"):
        """
        Args:
            weights: a state dict of `DigitsClassifier` (.safetensors or torch.save); None loads the cached classifier
                (trained deterministically on first use, in seconds); "random": seeded init.
            device: where the network runs.
        """
        from ...data.digits_classifier import DigitsClassifier, load_digits_classifier

        super().__init__()
        self._init_protocol(device=device, resize_mode="area", input_size=8, normalization="unit")
        if weights is None:
            self.classifier = load_digits_classifier()
        else:
            with seeded_init(0):
                self.classifier = DigitsClassifier()
            if weights != RANDOM_WEIGHTS:
                load_into(self.classifier, read_state_dict(weights), weights, optional_suffixes=(),
                          layout="DigitsClassifier")
        self.feature_dim = int(self.classifier.feature_dim)
        self.weights_id = "random-seed0" if weights == RANDOM_WEIGHTS else module_sha256(self.classifier)
        self._finish()

    def extract(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        gray = x.mean(dim=1, keepdim=True)  # (B, 1, 8, 8) in [0, 1]
        # the stated classifier API only: features(x) and forward(x) (the network is tiny; running it twice is cheap)
        return {"pool": self.classifier.features(gray), "logits": self.classifier(gray)}  # (B, F), (B, 10)

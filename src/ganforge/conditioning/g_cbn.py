"""Conditional BatchNorm in G: labels enter every norm layer as a per-class gain and bias.

"A Learned Representation for Artistic Style" (Dumoulin et al., 2017); "Modulating early visual processing by
language" (de Vries et al., 2017); used for class-conditional GANs by "cGANs with Projection Discriminator"
(Miyato & Koyama, 2018). Each norm layer: affine-free BatchNorm, then gamma_y * x_hat + beta_y, with gamma_y, beta_y
rows of learned embeddings initialised to 1 and 0 (so at init it equals plain BatchNorm).
"""
from __future__ import annotations

from torch import nn

from ..errors import GanforgeError
from ..nn.norms import ConditionalBatchNorm1d, ConditionalBatchNorm2d
from ..registries import G_CONDITIONING
from .base import GConditioning


@G_CONDITIONING.register("cbn")
class ConditionalBN(GConditioning):
    """Conditional BatchNorm: per-class gamma/beta after affine-free BatchNorm (Miyato & Koyama 2018)."""

    uses_labels = True
    labels_in_norms = True  # labels enter only through the norm layers (each block's conditioning value is y)

    def __init__(self, *, num_classes: int, eps: float = 1e-5, momentum: float = 0.1):
        if num_classes < 1:
            raise GanforgeError("G conditioning 'cbn': needs a labelled dataset (num_classes >= 1), "
                                f"got num_classes={num_classes}; use 'none' for unlabelled data")
        super().__init__(num_classes=num_classes)
        self.eps = eps
        self.momentum = momentum

    def norm1d(self, num_features: int) -> nn.Module:
        return ConditionalBatchNorm1d(num_features, self.num_classes, eps=self.eps, momentum=self.momentum)

    def norm2d(self, num_features: int) -> nn.Module:
        return ConditionalBatchNorm2d(num_features, self.num_classes, eps=self.eps, momentum=self.momentum)

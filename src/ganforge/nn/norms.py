"""Norm layers called as `norm(x, y)`, the form G conditioning hands to architectures.

Conditional BatchNorm: "A Learned Representation for Artistic Style" (Dumoulin et al., 2017), "Modulating early
visual processing by language" (de Vries et al., 2017), as used by "cGANs with Projection Discriminator" (Miyato &
Koyama, 2018): an affine-free BatchNorm followed by a per-class gain gamma_y and bias beta_y.
Plain layers accept `y` and ignore it, so an architecture calls every norm the same way.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import GanforgeError


class LabelNorm(nn.Module):
    """Base of norm layers called as `norm(x, y)`; `init_weights` and `maybe_sn` leave their insides alone."""

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError


class IdentityNorm(LabelNorm):
    """No normalization: returns x (for architectures whose norm layers are switched off)."""

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return x


class UncondBatchNorm1d(nn.BatchNorm1d, LabelNorm):
    """BatchNorm over (B, F) that accepts labels and ignores them."""

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return nn.BatchNorm1d.forward(self, x)


class UncondBatchNorm2d(nn.BatchNorm2d, LabelNorm):
    """BatchNorm over (B, C, H, W) that accepts labels and ignores them."""

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return nn.BatchNorm2d.forward(self, x)


class ConditionalBatchNorm(LabelNorm):
    """Affine-free BatchNorm, then per-class gamma_y, beta_y from embeddings (gamma starts at 1, beta at 0)."""

    _bn_class: type[nn.modules.batchnorm._BatchNorm] = nn.BatchNorm1d

    def __init__(self, num_features: int, num_classes: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        if num_classes < 1:
            raise GanforgeError(f"conditional BatchNorm: needs num_classes >= 1, got {num_classes}")
        self.num_features = num_features
        self.num_classes = num_classes
        self.bn = self._bn_class(num_features, eps=eps, momentum=momentum, affine=False)
        self.gamma = nn.Embedding(num_classes, num_features)
        self.beta = nn.Embedding(num_classes, num_features)
        nn.init.ones_(self.gamma.weight)
        nn.init.zeros_(self.beta.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is None:
            raise GanforgeError("conditional BatchNorm: needs class labels y, got None "
                                "(pass y to G, or use G conditioning 'none')")
        shape = (x.shape[0], self.num_features) + (1,) * (x.dim() - 2)  # broadcast over spatial dims
        # Conditional BN: gamma_y * (x - mu) / sqrt(var + eps) + beta_y (Dumoulin et al. 2017, Eq. 1).
        return self.gamma(y).view(shape) * self.bn(x) + self.beta(y).view(shape)

    def extra_repr(self) -> str:
        return f"{self.num_features}, num_classes={self.num_classes}"


class ConditionalBatchNorm1d(ConditionalBatchNorm):
    """Conditional BatchNorm over (B, F) features."""

    _bn_class = nn.BatchNorm1d


class ConditionalBatchNorm2d(ConditionalBatchNorm):
    """Conditional BatchNorm over (B, C, H, W) feature maps."""

    _bn_class = nn.BatchNorm2d

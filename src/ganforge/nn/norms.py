"""Norm layers called as `norm(x, y)`, the form G conditioning hands to architectures.

Conditional BatchNorm: "A Learned Representation for Artistic Style" (Dumoulin et al., 2017), "Modulating early
visual processing by language" (de Vries et al., 2017), as used by "cGANs with Projection Discriminator" (Miyato &
Koyama, 2018): an affine-free BatchNorm followed by a per-class gain gamma_y and bias beta_y.
Vector-conditional BatchNorm: "Large Scale GAN Training for High Fidelity Natural Image Synthesis" (Brock et al.,
2019, Sec. 3 and App. B): the gain and bias are linear maps of a conditioning vector c (a shared class embedding,
joined with a chunk of z), x_hat * (1 + W_g c) + W_b c.
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


class VectorConditionalBatchNorm(LabelNorm):
    """Affine-free BatchNorm, then x_hat * (1 + W_g c) + W_b c from a conditioning vector c (B, cond_dim).

    BigGAN's conditional BatchNorm (Brock et al. 2019; eps 1e-4 as in StudioGAN). W_g, W_b are bias-free linear maps
    initialised to zero, so the layer starts as plain BatchNorm (as `ConditionalBatchNorm` does) and learns how c
    moves it. With `sn` they are spectrally normalized instead (BigGAN's SN in G), which fixes their spectral norm
    at 1: they then keep PyTorch's default initialization (a zero matrix has no direction to normalize).
    """

    _bn_class: type[nn.modules.batchnorm._BatchNorm] = nn.BatchNorm1d

    def __init__(self, num_features: int, cond_dim: int, eps: float = 1e-4, momentum: float = 0.1,
                 sn: bool = False):
        super().__init__()
        if cond_dim < 1:
            raise GanforgeError(f"vector-conditional BatchNorm: needs cond_dim >= 1, got {cond_dim}")
        from .spectral_norm import maybe_sn  # spectral_norm imports init, which imports this module

        self.num_features, self.cond_dim = num_features, cond_dim
        self.bn = self._bn_class(num_features, eps=eps, momentum=momentum, affine=False)
        self.gain_proj = nn.Linear(cond_dim, num_features, bias=False)  # W_g
        self.bias_proj = nn.Linear(cond_dim, num_features, bias=False)  # W_b
        if sn:
            maybe_sn(self.gain_proj)
            maybe_sn(self.bias_proj)
        else:
            nn.init.zeros_(self.gain_proj.weight)
            nn.init.zeros_(self.bias_proj.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        c = y
        if c is None:
            raise GanforgeError(f"vector-conditional BatchNorm: needs a conditioning vector c of shape "
                                f"({x.shape[0]}, {self.cond_dim}), got None")
        if c.dim() != 2 or c.shape[1] != self.cond_dim or c.shape[0] != x.shape[0]:
            raise GanforgeError(f"vector-conditional BatchNorm: expected a conditioning vector of shape "
                                f"({x.shape[0]}, {self.cond_dim}), got {tuple(c.shape)}")
        shape = (x.shape[0], self.num_features) + (1,) * (x.dim() - 2)  # broadcast over spatial dims
        c = c.to(x.dtype)
        # BigGAN cBN: x_hat * (1 + W_g c) + W_b c (Brock et al. 2019, App. B)
        return self.bn(x) * (1 + self.gain_proj(c)).view(shape) + self.bias_proj(c).view(shape)

    def extra_repr(self) -> str:
        return f"{self.num_features}, cond_dim={self.cond_dim}"


class VectorConditionalBatchNorm1d(VectorConditionalBatchNorm):
    """Vector-conditional BatchNorm over (B, F) features."""

    _bn_class = nn.BatchNorm1d


class VectorConditionalBatchNorm2d(VectorConditionalBatchNorm):
    """Vector-conditional BatchNorm over (B, C, H, W) feature maps."""

    _bn_class = nn.BatchNorm2d

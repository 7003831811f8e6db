"""StyleGAN2's conditional D head: the class-map projection ("SPD" in StudioGAN).

Karras et al., "Training Generative Adversarial Networks with Limited Data" (StyleGAN2-ADA, 2020), conditional D
(`training/networks.py`, `DiscriminatorEpilogue` with `cmap_dim > 0`): the class is mapped to a vector
cmap = M(y) by a mapping network (an equalized FC embedding of the one-hot label, 2nd-moment normalized, then
`mapping_layers` equalized FC + lrelu layers at lr multiplier 0.01, StyleGAN2's default of 8), D's features h go
through an equalized output layer to `cmap_dim` values, and

    adv = <out(h), cmap(y)> / sqrt(cmap_dim)

(no separate unconditional term, unlike the projection head). cmap_dim defaults to the features' width (the
reference's channels at 4x4, 512 on CIFAR-10). With StyleGAN2's 512-wide D on CIFAR-10's 10 classes the head holds
2,106,880 mapping + 262,656 output parameters, as StudioGAN's CIFAR10/StyleGAN2 model logs (tested).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import GanforgeError
from ..models.stylegan2_layers import MappingNetwork
from ..nn.equalized import EqualizedLinear
from ..registries import D_HEADS
from .base import DHead, DOutput


@D_HEADS.register("spd")
class ClassMapProjectionHead(DHead):
    """StyleGAN2-ADA conditional D: adv = <out(h), M(y)> / sqrt(cmap_dim) ("SPD", Karras et al. 2020).

    Args:
        cmap_dim: width of the class map (None: the features' width).
        mapping_layers: FC layers of the class mapping network (StyleGAN2: 8).
        lr_mul: learning-rate multiplier of the mapping's FC layers (StyleGAN2: 0.01).
    """

    uses_labels = True

    def __init__(self, *, in_features: int, num_classes: int, cmap_dim: int | None = None, mapping_layers: int = 8,
                 lr_mul: float = 0.01):
        super().__init__()
        if num_classes < 1:
            raise GanforgeError("D head 'spd': needs a labelled dataset (num_classes >= 1), got "
                                f"num_classes={num_classes}; use 'linear' for unlabelled data")
        cmap_dim = in_features if cmap_dim is None else cmap_dim
        for key, value in (("cmap_dim", cmap_dim), ("mapping_layers", mapping_layers)):
            if value < 1:
                raise GanforgeError(f"D head 'spd': {key} must be >= 1, got {value}")
        if not lr_mul > 0:
            raise GanforgeError(f"D head 'spd': lr_mul must be > 0, got {lr_mul}")
        self.num_classes, self.cmap_dim = num_classes, cmap_dim
        self.out = EqualizedLinear(in_features, cmap_dim)
        self.mapping = MappingNetwork(0, num_classes, cmap_dim, mapping_layers, lr_mul)  # z_dim 0: labels only

    def class_map(self, y: torch.Tensor) -> torch.Tensor:
        """cmap = M(one_hot(y)), (B, cmap_dim)."""
        onehot = F.one_hot(y, self.num_classes).to(self.out.weight.dtype)
        return self.mapping(onehot.new_zeros(len(y), 0), onehot)

    def forward(self, h: torch.Tensor, y: torch.Tensor | None = None) -> DOutput:
        if y is None:
            raise GanforgeError("D head 'spd': needs class labels y, got None")
        adv = (self.out(h) * self.class_map(y)).sum(dim=1) / math.sqrt(self.cmap_dim)  # (B,)
        return DOutput(adv=adv)

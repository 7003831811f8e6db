"""Unconditional G: plain BatchNorm layers, labels ignored.

The BatchNorm of "Batch Normalization: Accelerating Deep Network Training by Reducing Internal Covariate Shift"
(Ioffe & Szegedy, 2015), as DCGAN and SNGAN generators use it.
"""
from __future__ import annotations

from torch import nn

from ..nn.norms import UncondBatchNorm1d, UncondBatchNorm2d
from ..registries import G_CONDITIONING
from .base import GConditioning


@G_CONDITIONING.register("none")
class Unconditional(GConditioning):
    """Unconditional G: plain BatchNorm, labels ignored."""

    labels_in_norms = False  # labels do not enter through the norm layers

    def __init__(self, *, num_classes: int = 0):
        super().__init__(num_classes=num_classes)

    def norm1d(self, num_features: int) -> nn.Module:
        return UncondBatchNorm1d(num_features)

    def norm2d(self, num_features: int) -> nn.Module:
        return UncondBatchNorm2d(num_features)

"""Adversarial losses and regularizers: each an `ObjectiveTerm` contributing named loss terms.

Importing this package registers every loss in `LOSSES` and every regularizer in `REGULARIZERS`.
"""
from __future__ import annotations

from . import gradient_penalty, hinge, lecam, lsgan, nonsaturating, r1, relativistic, wasserstein  # noqa: F401
from .adversarial import AdversarialLoss
from .base import Context, ObjectiveTerm
from .gradient_penalty import GradientPenalty
from .hinge import HingeLoss
from .lecam import LeCamRegularizer
from .lsgan import LeastSquaresLoss
from .nonsaturating import NonSaturatingLoss
from .r1 import R1Penalty, R2Penalty
from .relativistic import RelativisticLoss
from .wasserstein import WassersteinLoss

__all__ = [
    "AdversarialLoss", "Context", "ObjectiveTerm", "GradientPenalty", "HingeLoss", "LeCamRegularizer",
    "LeastSquaresLoss", "NonSaturatingLoss", "R1Penalty", "R2Penalty", "RelativisticLoss", "WassersteinLoss",
]

"""Evaluation feature backbones; importing this package registers them in `ganforge.registries.BACKBONES`."""
from . import digits, dinov2, inception, module, resnet  # noqa: F401  (registration)
from .base import NORMALIZATIONS, RANDOM_WEIGHTS, Backbone

__all__ = ["Backbone", "NORMALIZATIONS", "RANDOM_WEIGHTS"]

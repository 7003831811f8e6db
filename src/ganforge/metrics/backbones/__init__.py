"""Evaluation feature backbones, one module each; `ganforge.registries.load_all()` registers them in `BACKBONES`."""
from .base import NORMALIZATIONS, RANDOM_WEIGHTS, Backbone

__all__ = ["Backbone", "NORMALIZATIONS", "RANDOM_WEIGHTS"]

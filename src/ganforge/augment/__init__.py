"""Differentiable augmentations applied to reals and fakes before D.

Each augmentation is one module here; `ganforge.registries.load_all()` finds and imports them.
"""
from __future__ import annotations

from .base import Augment

__all__ = ["Augment"]

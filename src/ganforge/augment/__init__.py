"""Differentiable augmentations applied to reals and fakes before D.

Importing this package registers every augmentation in `AUGMENTATIONS`.
"""
from __future__ import annotations

from . import diffaugment, identity  # noqa: F401
from .base import Augment
from .diffaugment import OPS, DiffAugment
from .identity import NoAugment

__all__ = ["Augment", "DiffAugment", "NoAugment", "OPS"]

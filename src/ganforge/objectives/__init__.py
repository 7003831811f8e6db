"""Adversarial losses and regularizers: each an `ObjectiveTerm` contributing named loss terms.

Each term is one module here; `ganforge.registries.load_all()` finds and imports them (registering every loss in
`LOSSES` and every regularizer in `REGULARIZERS`).
"""
from __future__ import annotations

from .adversarial import AdversarialLoss
from .base import Context, ObjectiveTerm

__all__ = ["AdversarialLoss", "Context", "ObjectiveTerm"]

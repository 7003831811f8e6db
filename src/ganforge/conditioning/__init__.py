"""Conditioning: how labels enter G (`G_CONDITIONING`) and heads on D's features (`D_HEADS`).

Each method is one module here; `ganforge.registries.load_all()` finds and imports them (no import list to keep).
"""
from .base import DHead, DOutput, GConditioning, GInput

__all__ = ["DHead", "DOutput", "GConditioning", "GInput"]

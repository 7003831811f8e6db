"""Conditioning: how labels enter G (`G_CONDITIONING`) and heads on D's features (`D_HEADS`).

Importing this package registers every method.
"""
from . import d_linear, d_projection, g_cbn, g_concat, g_none  # noqa: F401  (registration)
from .base import DHead, DOutput, GConditioning

__all__ = ["DHead", "DOutput", "GConditioning"]

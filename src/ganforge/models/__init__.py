"""Model families: each registers an architecture `fn(*, img_shape, num_classes, g_cond, **opts) -> ArchPair`.

Each family is one module here; `ganforge.registries.load_all()` finds and imports them.
"""
from .base import ArchPair, DBackbone, Discriminator, Generator

__all__ = ["ArchPair", "DBackbone", "Discriminator", "Generator"]

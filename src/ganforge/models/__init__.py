"""Model families: each registers an architecture `fn(*, img_shape, num_classes, g_cond, **opts) -> ArchPair`.

Importing this package registers every family.
"""
from . import dcgan, mlp, resnet  # noqa: F401  (registration)
from .base import ArchPair, DBackbone, Discriminator, Generator

__all__ = ["ArchPair", "DBackbone", "Discriminator", "Generator"]

"""The project's registries, one per kind of component.

Context names are what the framework injects when it builds a component; users set only the remaining keyword
parameters from YAML. Modules register themselves on import; `load_all()` imports every component module.
"""
from __future__ import annotations

import importlib

from .registry import Registry

# (G, D backbone) families: `fn(*, img_shape, num_classes, g_cond, **opts) -> ArchPair`
ARCHITECTURES = Registry("architecture", context=("img_shape", "num_classes", "g_cond"))
# how labels enter G: `cls(*, num_classes, **opts) -> GConditioning`
G_CONDITIONING = Registry("G conditioning", context=("num_classes",))
# heads on D features: `cls(*, in_features, num_classes, **opts) -> DHead`
D_HEADS = Registry("D head", context=("in_features", "num_classes"))
# adversarial losses: `cls(**opts) -> ObjectiveTerm`
LOSSES = Registry("loss")
# regularizers: `cls(**opts) -> ObjectiveTerm` (with `every` for lazy ones)
REGULARIZERS = Registry("regularizer")
# differentiable augmentations: `cls(*, num_classes, **opts) -> Augment`
AUGMENTATIONS = Registry("augmentation", context=("num_classes",))
# datasets: `cls(*, split, cache_dir, **opts) -> Dataset`
DATASETS = Registry("dataset", context=("split", "cache_dir"))
# feature backbones for evaluation: `cls(*, weights, device, **opts) -> Backbone`
BACKBONES = Registry("backbone", context=("weights", "device"))
# evaluation metrics: `cls(**opts) -> Metric`
METRICS = Registry("metric")

ALL = {
    "architectures": ARCHITECTURES,
    "g-conditioning": G_CONDITIONING,
    "d-heads": D_HEADS,
    "losses": LOSSES,
    "regularizers": REGULARIZERS,
    "augmentations": AUGMENTATIONS,
    "datasets": DATASETS,
    "backbones": BACKBONES,
    "metrics": METRICS,
}

_COMPONENT_PACKAGES = (
    "ganforge.data",
    "ganforge.models",
    "ganforge.conditioning",
    "ganforge.objectives",
    "ganforge.augment",
    "ganforge.metrics",
)


def load_all() -> None:
    """Import every component package so that all registrations have happened."""
    for pkg in _COMPONENT_PACKAGES:
        importlib.import_module(pkg)

"""The project's registries, one per kind of component, and how components are found.

Context names are what the framework injects when it builds a component; users set only the remaining keyword
parameters from YAML. A component takes only the context parameters it names in its signature.

Components register themselves on import. `load_all()` imports every module of the component packages (found on
disk, so there is no hand-kept import list) and every plugin: modules advertised by installed distributions under the
`ganforge.plugins` entry-point group, and modules named by a run's `plugins:` config key (`load_plugins`).
"""
from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
import warnings
from typing import Iterable

from .errors import GanforgeError
from .registry import Registry

# What objective terms and augmentations may ask for when they are built (see `training/build.py`):
# num_classes (0 unconditional), img_shape (C, H, W) or (D,), feature_dim (width of D's penultimate features h),
# tap_shapes (name -> shape of each intermediate D feature map, without batch), total_steps (train.steps, G steps),
# batch_size (global), d_steps (D steps per G step), dataset_size (training images: one epoch), text_dim (width of
# the sentence embeddings of a text-conditional run, 0 otherwise).
BUILD_CONTEXT = ("num_classes", "img_shape", "feature_dim", "tap_shapes", "total_steps", "batch_size", "d_steps",
                 "dataset_size", "text_dim", "text_encoder")

# (G, D backbone) families: `fn(*, img_shape, num_classes, g_cond, **opts) -> ArchPair`
ARCHITECTURES = Registry("architecture", context=("img_shape", "num_classes", "g_cond"))
# how labels (or, with text_dim > 0, sentence embeddings) enter G: `cls(*, num_classes, text_dim, **opts)`
G_CONDITIONING = Registry("G conditioning", context=("num_classes", "text_dim"))
# heads on D features: `cls(*, in_features, num_classes, d_sn, **opts) -> DHead` (d_sn: whether D's backbone is
# spectrally normalized, the default for the head's own layers)
D_HEADS = Registry("D head", context=("in_features", "num_classes", "d_sn", "text_dim"))
# adversarial losses: `cls(**opts) -> ObjectiveTerm`
LOSSES = Registry("loss", context=BUILD_CONTEXT)
# regularizers: `cls(**opts) -> ObjectiveTerm` (with `every` for lazy ones)
REGULARIZERS = Registry("regularizer", context=BUILD_CONTEXT)
# differentiable augmentations: `cls(**opts) -> Augment`
AUGMENTATIONS = Registry("augmentation", context=BUILD_CONTEXT)
# datasets: `cls(*, split, cache_dir, **opts) -> Dataset`
DATASETS = Registry("dataset", context=("split", "cache_dir"))
# feature backbones for evaluation: `cls(*, weights, device, **opts) -> Backbone`
BACKBONES = Registry("backbone", context=("weights", "device"))
# evaluation metrics: `cls(**opts) -> Metric`
METRICS = Registry("metric")
# sampling-time methods that use D (DDLS, DRS): `cls(**opts) -> Sampler` (samplers/base.py)
SAMPLERS = Registry("sampler")
# caption encoders: `cls(*, captions, vocab, dataset, **opts) -> TextEncoder` (text/base.py; captions: the training
# captions, vocab: a saved vocabulary JSON, given back on resume; dataset: the captioned training set, None when an
# export is rebuilt)
TEXT_ENCODERS = Registry("text encoder", context=("captions", "vocab", "dataset"))
# methods that look inside a trained generator (`ganforge explore`): `cls(**opts) -> Explorer` (explore/base.py)
EXPLORERS = Registry("explorer")

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
    "samplers": SAMPLERS,
    "text-encoders": TEXT_ENCODERS,
    "explorers": EXPLORERS,
}

COMPONENT_PACKAGES = (
    "ganforge.data",
    "ganforge.models",
    "ganforge.conditioning",
    "ganforge.objectives",
    "ganforge.augment",
    "ganforge.metrics",
    "ganforge.samplers",
    "ganforge.text",
    "ganforge.explore",
)
ENTRY_POINT_GROUP = "ganforge.plugins"

_loaded = False


def component_modules() -> list[str]:
    """Every module of the component packages, found on disk (sub-packages included)."""
    names = []
    for pkg_name in COMPONENT_PACKAGES:
        pkg = importlib.import_module(pkg_name)
        for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{pkg_name}."):
            if not info.name.rsplit(".", 1)[-1].startswith("_"):
                names.append(info.name)
    return names


def load_all() -> None:
    """Import every component module and every installed plugin, so that all registrations have happened."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for name in component_modules():
        importlib.import_module(name)
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as e:  # an installed third-party plugin must not break every command
            warnings.warn(f"plugin {ep.name!r} ({ENTRY_POINT_GROUP} entry point {ep.value}) failed to load: "
                          f"{type(e).__name__}: {e}")


def load_plugins(modules: Iterable[str], where: str = "plugins") -> None:
    """Import the user's component modules (a run's `plugins:` list), each a dotted module name on sys.path."""
    for i, name in enumerate(modules):
        if not isinstance(name, str) or not name:
            raise GanforgeError(f"{where}.{i}: expected a dotted module name, got {name!r}")
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise GanforgeError(f"{where}.{i}: cannot import plugin module {name!r} ({type(e).__name__}: {e}); "
                                f"is it installed or on PYTHONPATH?") from e
        except Exception as e:  # a bug in the plugin itself (e.g. a name registered twice)
            raise GanforgeError(f"{where}.{i}: plugin module {name!r} failed on import "
                                f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e

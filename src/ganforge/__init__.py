"""ganforge: train, evaluate and inspect GANs built from interchangeable, named components."""
from __future__ import annotations

from .errors import GanforgeError

__version__ = "0.1.0"

__all__ = ["GanforgeError", "load_generator", "evaluate", "__version__"]


def load_generator(path, device="cpu"):
    """Load an exported generator (`export/` dir, its `generator.safetensors`, or a run dir) for inference."""
    from .training.export import load_generator as _load

    return _load(path, device=device)


def evaluate(*args, **kwargs):
    """Evaluate a generator or image set against a reference; see `ganforge.metrics.evaluate.evaluate`."""
    from .metrics.evaluate import evaluate as _evaluate

    return _evaluate(*args, **kwargs)

"""ganforge: train, evaluate and inspect GANs built from interchangeable, named components."""
from __future__ import annotations

from .errors import GanforgeError

__version__ = "0.1.0"

__all__ = ["GanforgeError", "load_generator", "evaluate", "__version__"]


def load_generator(path, device="cpu"):
    """Load an exported generator (`export/` dir, its `generator.safetensors`, or a run dir) for inference.

    `path` and `device` are checked first (one-line errors naming them) rather than failing inside pathlib / torch.
    """
    import os

    from .checks import check_device, describe
    from .training.export import load_generator as _load

    if not isinstance(path, (str, os.PathLike)):
        raise GanforgeError(f"path: expected a run directory, export directory or generator.safetensors path, "
                            f"got {describe(path)}")
    check_device(device, "device")
    return _load(path, device=device)


def evaluate(*args, **kwargs):
    """Evaluate a generator or image set against a reference; see `ganforge.metrics.evaluate.evaluate`."""
    from .metrics.evaluate import evaluate as _evaluate

    return _evaluate(*args, **kwargs)

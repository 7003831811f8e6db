"""Argument checks where user input enters the Python API, each failing with a one-line `GanforgeError`.

Without them a wrong argument fails far from where it was given and names neither it nor the fix: `range("100")`'s
TypeError, a matmul shape error inside a model, an embedding's IndexError, torch's device-string parser. Each message
names the argument and what is allowed, and shows what was given as `TYPE VALUE` (e.g. "got str '100'").
"""
from __future__ import annotations

import numbers
from typing import Any

import torch

from .errors import GanforgeError


def describe(value: Any) -> str:
    """`int 123`, `str '100'`, `Tensor of shape (4, 3) int64`: what was given, short and on one line."""
    if isinstance(value, torch.Tensor):
        return f"Tensor of shape {tuple(value.shape)} {str(value.dtype).replace('torch.', '')}"
    text = repr(value).replace("\n", " ")
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def is_int(value: Any) -> bool:
    """A Python or numpy integer (bool excluded: `n=True` is a mistake, not 1)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(value: Any, name: str, minimum: int | None = None, allow_none: bool = False) -> int | None:
    """`value` as an int when it is an integer >= `minimum` (or None when allowed), else a one-line error."""
    if value is None and allow_none:
        return None
    if not is_int(value) or (minimum is not None and value < minimum):
        what = "an integer" if minimum is None else f"an integer >= {minimum}"
        raise GanforgeError(f"{name}: expected {what}{' (or None)' if allow_none else ''}, got {describe(value)}")
    return int(value)


def check_positive_float(value: Any, name: str, allow_none: bool = False) -> float | None:
    """`value` as a float when it is a real number > 0 (or None when allowed), else a one-line error."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise GanforgeError(f"{name}: expected a number > 0{' (or None)' if allow_none else ''}, "
                            f"got {describe(value)}")
    return float(value)


def check_device(device: Any, name: str = "device") -> torch.device:
    """A torch device (or string naming one) that exists on this machine, else a one-line error naming `name`."""
    if isinstance(device, torch.device):
        dev = device
    else:
        try:
            if not isinstance(device, str):
                raise TypeError
            dev = torch.device(device)
        except (RuntimeError, TypeError, ValueError):
            raise GanforgeError(f"{name}: expected a torch device such as cpu, cuda or cuda:0, "
                                f"got {describe(device)}") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (dev.index or 0) >= count:
            raise GanforgeError(f"{name}: {str(dev)!r} is not available here ({count} CUDA devices); use cpu")
    return dev

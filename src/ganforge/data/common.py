"""Small helpers shared by the dataset modules: split checks, per-split seeds and content fingerprints."""
from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import torch

from ..errors import GanforgeError

SPLITS = ("train", "test")


def check_split(split: str, where: str, allowed: tuple[str, ...] = SPLITS) -> str:
    """Return `split` if it is one of `allowed`, else raise a one-line error naming `where`."""
    if split not in allowed:
        raise GanforgeError(f"{where}: unknown split {split!r}; expected one of {', '.join(allowed)}")
    return split


def split_seed(seed: int, split: str) -> int:
    """A distinct, deterministic generator seed per (seed, split): the test split is an independent draw."""
    return int(seed) * len(SPLITS) + SPLITS.index(split)


def fingerprint(name: str, options: dict[str, Any], *contents: torch.Tensor | np.ndarray | bytes | str) -> str:
    """Short sha256 over the dataset name, its options and its content (tensors hashed byte for byte)."""
    h = hashlib.sha256()
    h.update(name.encode())
    h.update(json.dumps(options, sort_keys=True, default=str).encode())
    for c in contents:
        if isinstance(c, torch.Tensor):
            c = c.detach().cpu().contiguous().numpy()
        if isinstance(c, np.ndarray):
            h.update(f"{c.dtype}{c.shape}".encode())
            c = np.ascontiguousarray(c).tobytes()
        if isinstance(c, str):
            c = c.encode()
        h.update(c)
    return h.hexdigest()[:16]

"""Deterministic randomness derived from (seed, purpose, step, rank).

Every step reseeds the global RNGs from (seed, rank, step), and latents/labels come from generators seeded by
(seed, step) for the *global* batch (each rank takes its slice). So a resumed run replays exactly what an
uninterrupted one does, and N ranks see the same latents as one process with the same global batch.
"""
from __future__ import annotations

import hashlib
import random

import numpy as np
import torch


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any tuple of values (stable across processes and Python versions)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generator(*parts: object) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(*parts))


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy and python's global RNGs."""
    torch.manual_seed(seed)
    np.random.seed(seed % (1 << 32))
    random.seed(seed)

"""Deterministic randomness derived from (seed, purpose, step, rank).

Every step reseeds the global RNGs from (seed, rank, step), and latents/labels come from generators seeded by
(seed, phase, step) for the *global* batch (each rank takes its slice); per-sample randomness inside a phase
(augmentations, interpolation weights) comes from `SampleRNG`, keyed the same way. So a resumed run replays exactly
what an uninterrupted one does, and N ranks see the same numbers as one process with the same global batch.
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


class SampleRNG:
    """Per-sample randomness that depends on a sample's row in the *global* batch, not on rank or micro-batch.

    Augmentations and terms draw their random numbers here (`rand`, `randn`, `randint`, `bernoulli`, each with the
    local batch size first). Numbers are drawn for all `global_batch` rows from a generator seeded by `key`, and this
    caller's `rows` are taken, so a sample gets the same transform whether it is processed by one process, by rank 1
    of 2, or in the second accumulation round. A request for k * len(rows) samples (a concatenation of k local
    batches) draws k global blocks. Without a key, it falls back to torch's global RNG (stand-alone use).
    """

    def __init__(self, key: tuple | None = None, rows: slice | None = None, global_batch: int | None = None):
        self.key, self.rows, self.global_batch = key, rows, global_batch
        self._calls = 0

    def _draw(self, n: int, fn, device) -> torch.Tensor:
        """Run fn(generator, size_of_global_draw) and return this caller's n rows."""
        if self.key is None:
            return fn(None, n).to(device)
        gen = generator(*self.key, self._calls)
        self._calls += 1
        local = self.rows.stop - self.rows.start
        if n % local:
            raise ValueError(f"SampleRNG: asked for {n} samples, not a multiple of this batch's {local} rows")
        blocks = fn(gen, (n // local) * self.global_batch)
        blocks = blocks.view(n // local, self.global_batch, *blocks.shape[1:])[:, self.rows]
        return blocks.reshape(n, *blocks.shape[2:]).to(device)

    def rand(self, n: int, *shape: int, device=None, dtype=None) -> torch.Tensor:
        """U[0, 1) of shape (n, *shape)."""
        return self._draw(n, lambda g, m: torch.rand(m, *shape, generator=g), device).to(dtype or torch.float32)

    def randn(self, n: int, *shape: int, device=None, dtype=None) -> torch.Tensor:
        """N(0, 1) of shape (n, *shape)."""
        return self._draw(n, lambda g, m: torch.randn(m, *shape, generator=g), device).to(dtype or torch.float32)

    def randint(self, low: int, high: int, n: int, *shape: int, device=None) -> torch.Tensor:
        """Integers in [low, high) of shape (n, *shape)."""
        return self._draw(n, lambda g, m: torch.randint(low, high, (m, *shape), generator=g), device)

    def bernoulli(self, p: float, n: int, *shape: int, device=None) -> torch.Tensor:
        """Booleans that are True with probability p, shape (n, *shape)."""
        return self.rand(n, *shape, device=device) < p

"""Shared checks of the text-conditional components (`text-cbn`, `dfgan`, `text-projection`, `ma-gp`).

In a text-conditional run the condition handed to G (`G(z, y)`) and to D (`D(x, y)`) is a float tensor (B, text_dim)
of sentence embeddings (one caption's vector per image), not class labels; `text_dim` (0 when the run has no text
encoder) is build context. These helpers give every component the same one-line errors. Nothing is registered in
this module.
"""
from __future__ import annotations

import torch

from ..checks import describe
from ..errors import GanforgeError


def check_text_dim(text_dim: int, where: str) -> int:
    """`text_dim` when it is >= 1, else the one-line error saying the run needs a text encoder."""
    if isinstance(text_dim, bool) or not isinstance(text_dim, int) or text_dim < 1:
        raise GanforgeError(f"{where}: needs conditioning.text (a text encoder), got text_dim={text_dim!r}")
    return text_dim


def sentence_vectors(y: torch.Tensor | None, text_dim: int, batch: int, where: str) -> torch.Tensor:
    """`y` when it is a float (batch, text_dim) tensor of sentence embeddings, else a one-line error naming `where`."""
    want = f"a float tensor of sentence embeddings of shape ({batch}, text_dim={text_dim})"
    if y is None:
        raise GanforgeError(f"{where}: needs {want}, got None")
    if not isinstance(y, torch.Tensor) or not y.is_floating_point():
        raise GanforgeError(f"{where}: needs {want}, got {describe(y)} (class labels are not text)")
    if tuple(y.shape) != (batch, text_dim):
        raise GanforgeError(f"{where}: needs {want}, got shape {tuple(y.shape)}")
    return y

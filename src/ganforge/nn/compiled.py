"""Running modules compiled with `nn.Module.compile()` (train.compile) eagerly for a while.

torch.compile's training graphs (AOTAutograd) do not support double backward: a gradient penalty (R1, R2, GP, MA-GP)
or LOGAN's latent step differentiates D's input gradient again, which raises inside the compiled backward. Those
terms build their graph with `eager(...)`: inside, every module of the given nets that was compiled in place runs its
ordinary forward (the same parameters and buffers), and autograd can differentiate it twice. Outside, the compiled
forward is back.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

from torch import nn


@contextlib.contextmanager
def eager(*nets: nn.Module | None) -> Iterator[None]:
    """Within the block, modules inside `nets` compiled with `Module.compile()` run uncompiled (DDP wrappers too)."""
    saved = [(m, m._compiled_call_impl) for net in nets if net is not None for m in net.modules()
             if getattr(m, "_compiled_call_impl", None) is not None]
    for m, _ in saved:
        m._compiled_call_impl = None
    try:
        yield
    finally:
        for m, impl in saved:
            m._compiled_call_impl = impl

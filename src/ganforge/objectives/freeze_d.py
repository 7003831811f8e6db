"""FreezeD: fine-tuning with the input-side blocks of D frozen.

Mo, Cho & Shin, "Freeze the Discriminator: a Simple Baseline for Fine-Tuning GANs" (2020). A run starts from a
source run's weights (`train.init_from`); D's backbone is split into its blocks (`DBackbone.block_list()`, input side
first) and the first N keep the source's values for the whole run, theta_D[0..N-1](t) = theta_D[0..N-1](0) for every
step t, while the later blocks, the D head and G are fine-tuned by the usual losses. It adds no loss.

How the freeze is kept exact: the term declares what it freezes (`frozen_modules(D)`); the trainer leaves those
parameters out of D's optimizer (Adam's moments and step never see them), keeps their `requires_grad` off in every
phase (their gradients stay None, also in the DDP all-reduce) and skips their spectral-norm power iteration (a moving
u would change the effective weight W / sigma(W) although W stays put). After each D step `after_step` checks that
the frozen parameters and SN vectors still equal their values at the start of training in this process, and stops
with a one-line error when another component changed them (e.g. `clip` clamping source weights beyond its bound).

Default: `blocks: 1` (the first block). Neither the paper nor the reference code has a default (StudioGAN's
`--freezeD -1` means off, stylegan2-ada's `--freezed 0`); choose N per architecture (`len(D.backbone.block_list())`
blocks exist).

Departures from the reference code (METHODS.md §2 "FreezeD"):
- StudioGAN (`misc.py::toggle_grad`) freezes every D parameter whose *name contains* `blocks.0` ... `blocks.{N-1}`,
  so with 11 or more blocks `blocks.1` also freezes `blocks.10`-`blocks.19`. Here blocks are taken by index from the
  architecture's block list: exactly blocks 0..N-1 freeze. StudioGAN also counts attention modules as blocks; where a
  ganforge D had one, its family decides whether it is a block of its own.
- StudioGAN only turns `requires_grad` off; PyTorch's spectral norm it uses still power-iterates in the frozen layers
  at every training forward, so their normalized weights drift. Here their u, v vectors stay fixed too.
- Norm layers' running statistics (none of ganforge's Ds has any) are not frozen: they do not enter the training-mode
  forward and are not checked.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import GanforgeError
from ..nn.spectral_norm import SpectralNorm
from ..registries import REGULARIZERS
from .base import Context, ObjectiveTerm


@REGULARIZERS.register("freeze-d")
class FreezeD(ObjectiveTerm):
    """FreezeD (Mo 2020): D's first `blocks` backbone blocks keep their (source run's) weights exactly; no loss.

    Args:
        blocks: N, the number of input-side D blocks frozen (1 to the number of blocks of the chosen D).
    """

    def __init__(self, blocks: int = 1):
        if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 1:
            raise GanforgeError(f"freeze-d.blocks: expected an integer >= 1, got {blocks!r}")
        self.blocks = blocks
        self.where = "freeze-d"
        self._chosen: list[nn.Module] = []  # the frozen blocks
        self._start: list[torch.Tensor] | None = None  # their tensors' values when training started in this process

    def frozen_modules(self, D: nn.Module, where: str = "freeze-d") -> list[nn.Module]:
        """D's backbone blocks 0..N-1, which training must leave exactly as they are (read by the trainer)."""
        self.where = where
        blocks = D.backbone.block_list()
        if self.blocks > len(blocks):
            raise GanforgeError(f"{where}.blocks: expected at most the {len(blocks)} blocks of this D "
                                f"({type(D.backbone).__name__}), got {self.blocks}")
        self._chosen, self._start = blocks[: self.blocks], None
        return self._chosen

    def _tensors(self) -> list[torch.Tensor]:
        """The frozen blocks' parameters and spectral-norm vectors (gathered afresh: `.to()` replaces buffers)."""
        params = [p for block in self._chosen for p in block.parameters()]
        return params + [b for block in self._chosen for m in block.modules() if isinstance(m, SpectralNorm)
                         for b in m.buffers()]

    def d_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        return {}  # no loss: it belongs to the D phase for `prepare` / `after_step`

    @torch.no_grad()
    def prepare(self, ctx: Context) -> None:
        """Remember the frozen values before this process's first D step (after any resume or init_from load)."""
        if self._start is None and ctx.phase == "D":
            self._start = [t.detach().clone() for t in self._tensors()]

    @torch.no_grad()
    def after_step(self, net: nn.Module) -> None:
        """Stop when anything changed a frozen tensor during the D step (one device sync per D step)."""
        if not self._start:
            return
        changed = torch.stack([(a != b).any() for a, b in zip(self._tensors(), self._start)]).any()
        if bool(changed):
            raise GanforgeError(f"{self.where}: a parameter of the {self.blocks} frozen D block(s) changed during "
                                f"a D step; another component edits D's weights (e.g. clip beyond the source "
                                f"weights' range): drop it or freeze fewer blocks")

    def __repr__(self) -> str:
        return f"FreezeD(blocks={self.blocks})"

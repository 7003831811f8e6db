"""Differentiable augmentation interface: `aug(x, rng) -> x` on real and fake before D.

Randomness comes from `rng`, a `SampleRNG` the trainer hands in for each call (per-sample numbers keyed by the
sample's row in the global batch, so one process, N ranks and gradient accumulation augment a sample identically);
without one, torch's global RNG is used.

Stateful augmentations (ADA, APA, Diffusion-GAN) implement `update(stats)`: every `update_every` D main phases the
trainer hands them that window's statistics reduced over ranks — `d_real_sign` (mean of sign(D(real)), ADA's r_t),
`d_real` / `d_fake` (mean logits), `window_nimg` (real images in the window), `nimg` (real images so far), `step`,
`d_step`, `progress`, `batch_size` — see `training/stats.py`. Their state lives in buffers (e.g. `p`), so the module's
`state_dict()` is what the checkpoint saves; `log_values()` adds numbers (e.g. {"aug_p": p}) to the training log.
Build context (num_classes, img_shape, total_steps, batch_size, ...) comes as constructor keywords, as for terms.
An augmentation may also implement `prepare(ctx)`, called with every phase's micro-batch Context after the terms'
own `prepare` hooks and before any term computes (APA replaces some reals with fakes there, in D phases).
"""
from __future__ import annotations

import torch
from torch import nn

from ..training.rng import SampleRNG


class Augment(nn.Module):
    """Base class; the default is the identity."""

    update_every: int = 4  # D main phases per `update` call (ADA's interval); only used if `update` is overridden

    def forward(self, x: torch.Tensor, rng: SampleRNG | None = None) -> torch.Tensor:
        return x

    def update(self, stats: dict[str, float]) -> None:
        """Adapt to training statistics (see the module docstring); stateless augmentations ignore this."""

    def log_values(self) -> dict[str, float]:
        """Numbers to log with the training losses (e.g. the augmentation probability)."""
        return {}


"""WGAN weight clipping (Arjovsky et al. 2017, "Wasserstein GAN", Algorithm 1 line 7).

After every D optimizer step every parameter of D is clamped to [-c, c] (c = 0.01), which keeps the critic in a
compact set of functions and so (crudely) K-Lipschitz. It adds no loss: it acts through the `after_step` hook that
the phase runner calls after each optimizer step of the phases a term belongs to. Pair it with `loss: wasserstein`
and several D steps per G step (`optim.d_steps: 5`, as StudioGAN's WGAN-WC config). Clamping is elementwise and the
same on every rank, so DDP and resumed runs stay identical.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import GanforgeError
from ..registries import REGULARIZERS
from .base import Context, ObjectiveTerm


@REGULARIZERS.register("clip")
class WeightClipping(ObjectiveTerm):
    """WGAN weight clipping (Arjovsky 2017): every D parameter clamped to [-clip, clip] after each D step.

    Args:
        clip: c in the paper (0.01).
    """

    def __init__(self, clip: float = 0.01):
        if isinstance(clip, bool) or not isinstance(clip, (int, float)) or not clip > 0:
            raise GanforgeError(f"clip.clip: expected a number > 0, got {clip!r}")
        self.clip = float(clip)

    def d_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        return {}  # no loss: belongs to the D phase only to be called after its optimizer step

    @torch.no_grad()
    def after_step(self, net: nn.Module) -> None:
        for p in net.parameters():
            p.clamp_(-self.clip, self.clip)

    def __repr__(self) -> str:
        return f"WeightClipping(clip={self.clip})"

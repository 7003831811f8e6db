"""Unconditional D head: adv = psi(h), a linear map of the backbone features.

The last layer of the discriminators in "Spectral Normalization for Generative Adversarial Networks"
(Miyato et al., 2018); labels, if given, are ignored. Spectral norm on psi follows the D backbone's (`d_sn`) unless
the `sn` option says otherwise.
"""
from __future__ import annotations

import torch
from torch import nn

from ..nn.spectral_norm import maybe_sn
from ..registries import D_HEADS
from .base import DHead, DOutput


@D_HEADS.register("linear")
class LinearHead(DHead):
    """Unconditional head: adv = psi(h), labels ignored.

    Args:
        sn: spectral norm on psi; None (default) follows the architecture's D (`d_sn`).
    """

    def __init__(self, *, in_features: int, num_classes: int = 0, d_sn: bool = True, sn: bool | None = None):
        super().__init__()
        self.psi = nn.Linear(in_features, 1)
        nn.init.xavier_uniform_(self.psi.weight)
        nn.init.zeros_(self.psi.bias)
        maybe_sn(self.psi, d_sn if sn is None else sn)

    def forward(self, h: torch.Tensor, y: torch.Tensor | None = None) -> DOutput:
        return DOutput(adv=self.psi(h).squeeze(1))  # (B,)

"""Projection D head: adv = psi(h) + <embed(y), h>.

"cGANs with Projection Discriminator" (Miyato & Koyama, 2018), Eq. 3: the class enters D as the inner product of a
learned class embedding with the features; psi is the unconditional linear term. Spectral norm on psi and on the
embedding (the paper's ResNet experiments) follows the D backbone's (`d_sn`) unless the `sn` option says otherwise.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import GanforgeError
from ..nn.spectral_norm import maybe_sn
from ..registries import D_HEADS
from .base import DHead, DOutput


@D_HEADS.register("projection")
class ProjectionHead(DHead):
    """Projection discriminator: adv = psi(h) + <embed(y), h> (Miyato & Koyama 2018).

    Args:
        sn: spectral norm on psi and the class embedding; None (default) follows the architecture's D (`d_sn`).
    """

    uses_labels = True

    def __init__(self, *, in_features: int, num_classes: int, d_sn: bool = True, sn: bool | None = None):
        super().__init__()
        if num_classes < 1:
            raise GanforgeError("D head 'projection': needs a labelled dataset (num_classes >= 1), "
                                f"got num_classes={num_classes}; use 'linear' for unlabelled data")
        self.psi = nn.Linear(in_features, 1)
        self.embed = nn.Embedding(num_classes, in_features)
        nn.init.xavier_uniform_(self.psi.weight)
        nn.init.zeros_(self.psi.bias)
        nn.init.xavier_uniform_(self.embed.weight)
        sn = d_sn if sn is None else sn
        maybe_sn(self.psi, sn)
        maybe_sn(self.embed, sn)

    def forward(self, h: torch.Tensor, y: torch.Tensor | None = None) -> DOutput:
        if y is None:
            raise GanforgeError("D head 'projection': needs class labels y, got None")
        # f(x, y) = psi(phi(x)) + y^T V phi(x)  (Miyato & Koyama 2018, Eq. 3)
        adv = self.psi(h).squeeze(1) + (self.embed(y) * h).sum(dim=1)  # (B,)
        return DOutput(adv=adv)

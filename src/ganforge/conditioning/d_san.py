"""SAN D head: the "discriminative normalized linear layer" of "SAN: Inducing Metrizability of GAN with
Discriminative Normalized Linear Layer" (Takida et al., ICLR 2024).

D(x) = s * omega^T h(x) with omega on the unit sphere (omega = w / ||w||) and a learnable scale s (the reference
`SANLinear`; the class-indexed row omega_y for class-conditional D, its `SANEmbedding`). D's output is split in two:
- function part: fun(x) = s * h(x)^T sg(omega), trained with the run's adversarial loss (`adv`; G's loss uses it too,
  where it equals the unsplit output for every gradient G sees);
- direction part: dir(x) = sg(s) * sg(h(x))^T omega, trained by D with the linear (Wasserstein-like) objective
  L_dir = -E_real dir + E_fake dir, the term this head brings (weight `weight`, 1 in the paper).
So the loss trains h given the direction, and the direction is the one that best separates real and fake features
(the max sliced Wasserstein direction). The reference code pairs it with hinge (sony/san simple-san); the paper's
recipe applies to the other losses in the same way (UNCONFIRMED in the reference code). No spectral norm on the
head: the normalisation takes its place.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import GanforgeError
from ..objectives.base import Context, ObjectiveTerm
from ..registries import D_HEADS
from .base import DHead, DOutput


class SANDirection(ObjectiveTerm):
    """L_dir = weight * (-E_real dir + E_fake dir), D's step only (G's loss uses the function part)."""

    requires = frozenset({"san_dir"})
    may_be_negative = True

    def __init__(self, weight: float):
        self.weight = weight

    def d_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        return {"san_dir": self.weight * (ctx.d_fake.san_dir.mean() - ctx.d_real.san_dir.mean())}


@D_HEADS.register("san")
class SANHead(DHead):
    """SAN (Takida et al. 2024): adv = s h^T sg(omega) for the loss, plus dir = sg(s) sg(h)^T omega for L_dir.

    Args:
        weight: weight of the direction objective L_dir in D's step.
    """

    provides = frozenset({"san_dir"})  # labels: used when the run is class-conditional (omega_y), else ignored
    normalized = True  # a unit-norm weight takes the place of spectral norm: no `sn` option

    def __init__(self, *, in_features: int, num_classes: int = 0, d_sn: bool = True, weight: float = 1.0):
        super().__init__()
        if not weight >= 0:
            raise GanforgeError(f"conditioning.d 'san': weight must be >= 0, got {weight}")
        self.num_classes, self.weight = num_classes, float(weight)
        self.w = nn.Parameter(torch.randn(max(num_classes, 1), in_features) / in_features ** 0.5)
        self.scale = nn.Parameter(torch.ones(max(num_classes, 1)))

    def direction(self, y: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B or 1, F) unit directions omega (omega_y per label) and their scales."""
        omega = self.w / self.w.norm(dim=1, keepdim=True).clamp_min(1e-12)
        if self.num_classes == 0:
            return omega[:1], self.scale[:1]
        if y is None:
            raise GanforgeError("conditioning.d 'san': a class-conditional SAN head needs labels")
        return omega[y], self.scale[y]

    def forward(self, h: torch.Tensor, y: torch.Tensor | None = None) -> DOutput:
        omega, s = self.direction(y)
        fun = (h * omega.detach()).sum(dim=1) * s  # the loss trains h (and s), not the direction
        direction = (h.detach() * omega).sum(dim=1) * s.detach()  # L_dir trains the direction only
        return DOutput(adv=fun, san_dir=direction)

    def terms(self) -> list[ObjectiveTerm]:
        return [SANDirection(self.weight)] if self.weight > 0 else []

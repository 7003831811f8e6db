"""Text projection D head: adv = psi(h) + <W e, h>, with DF-GAN's mismatched-pair term.

"cGANs with Projection Discriminator" (Miyato & Koyama, ICLR 2018), Eq. 3, f(x, y) = psi(phi(x)) + y^T V phi(x),
with the one-hot class y replaced by a caption's sentence embedding e (B, text_dim) and the class embedding V by a
learned linear map W: adv = psi(h) + <W e, h>. Spectral norm on psi and W follows the D backbone's (`d_sn`) unless
the `sn` option says otherwise, as the class projection head's does.

The head brings the matching-aware term of "DF-GAN: A Simple and Effective Baseline for Text-to-Image Synthesis"
(Tao et al., CVPR 2022): a real image shown with another image's caption counts as fake,
    L_D += mismatch_weight * E[relu(1 + D(x_r, e_mis))],    e_mis = the real batch's embeddings rolled by one,
so image i is paired with caption i-1. Checked against the authors' code (tobran/DF-GAN, `code/lib/modules.py`,
`train`): it rolls the real *features* by one (the same set of pairs), scores them with the sentence vectors, takes
the hinge "fake" side, and sums errD_real + (errD_fake + errD_mis) / 2 + MA-GP: DF-GAN also halves its fake term,
which here stays the run's `loss` at full weight (the default `mismatch_weight` 0.5 is DF-GAN's mismatch half; a
run wanting DF-GAN's exact balance halves the fake side through its loss). The pairing is within each micro-batch and
makes no check that two images share a caption (DF-GAN makes none either), so with B = 1, or a batch whose captions
coincide, the "mismatched" pair is a matching one. DF-GAN's own D head joins the sentence vector to the image
features and convolves them ("one-way output"); this is the projection form of the same one-way, text-aware logit.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import GanforgeError
from ..nn.spectral_norm import maybe_sn
from ..objectives.base import Context, ObjectiveTerm
from ..registries import D_HEADS
from .base import DHead, DOutput
from .text_inputs import check_text_dim, sentence_vectors

NAME = "conditioning.d 'text-projection'"


def check_mismatch_weight(value: float, where: str) -> float:
    """The mismatched-pair weight as a float, or a one-line error naming `where` (a finite number >= 0)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        raise GanforgeError(f"{where}: mismatch_weight must be a finite number >= 0, got {value!r}")
    return float(value)


class MismatchLoss(ObjectiveTerm):
    """DF-GAN's mismatched pairs: weight * mean(relu(1 + D(x_r, roll(e_r, 1)))) in D's step (Tao et al. 2022)."""

    uses_text = True
    uses_labels = False

    def __init__(self, weight: float, text_dim: int):
        self.weight, self.text_dim = weight, text_dim

    def d_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        e = sentence_vectors(ctx.y_real, self.text_dim, ctx.real.shape[0], f"{NAME} mismatch term: y_real")
        e_mis = torch.roll(e, 1, 0)  # row i gets caption i-1: a real image with another image's text
        adv = ctx.D_of(ctx.real, e_mis).adv.float()  # (B,)
        return {"mismatch": self.weight * torch.relu(1 + adv).mean()}  # hinge: mismatched pairs count as fake

    def __repr__(self) -> str:
        return f"MismatchLoss(weight={self.weight})"


@D_HEADS.register("text-projection")
class TextProjectionHead(DHead):
    """Projection D for text: adv = psi(h) + <W e, h> (Miyato & Koyama 2018), plus DF-GAN's mismatched pairs.

    Args:
        sn: spectral norm on psi and W; None (default) follows the architecture's D (`d_sn`).
        mismatch_weight: weight of the mismatched-pair hinge term in D's step (DF-GAN: 0.5); 0 disables it.
    """

    uses_text = True  # the condition is a sentence embedding (B, text_dim)
    uses_labels = False

    def __init__(self, *, in_features: int, num_classes: int = 0, text_dim: int = 0, d_sn: bool = True,
                 sn: bool | None = None, mismatch_weight: float = 0.5):
        super().__init__()
        self.text_dim = check_text_dim(text_dim, NAME)
        self.mismatch_weight = check_mismatch_weight(mismatch_weight, NAME)
        self.psi = nn.Linear(in_features, 1)
        self.text_proj = nn.Linear(text_dim, in_features, bias=False)  # W: the class embedding V's place
        nn.init.xavier_uniform_(self.psi.weight)
        nn.init.zeros_(self.psi.bias)
        nn.init.xavier_uniform_(self.text_proj.weight)
        sn = d_sn if sn is None else sn
        maybe_sn(self.psi, sn)
        maybe_sn(self.text_proj, sn)

    def forward(self, h: torch.Tensor, y: torch.Tensor | None = None) -> DOutput:
        e = sentence_vectors(y, self.text_dim, h.shape[0], NAME).to(h.dtype)  # (B, text_dim)
        # f(x, e) = psi(phi(x)) + (W e)^T phi(x)  (Miyato & Koyama 2018, Eq. 3, with W e for V y)
        adv = self.psi(h).squeeze(1) + (self.text_proj(e) * h).sum(dim=1)  # (B,)
        return DOutput(adv=adv)

    def terms(self) -> list[ObjectiveTerm]:
        return [MismatchLoss(self.mismatch_weight, self.text_dim)] if self.mismatch_weight > 0 else []

    def extra_repr(self) -> str:
        return f"text_dim={self.text_dim}, mismatch_weight={self.mismatch_weight}"

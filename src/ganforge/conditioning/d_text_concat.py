"""DF-GAN's one-way text-conditional D output: the sentence vector joins the image features before the last layers.

"DF-GAN: A Simple and Effective Baseline for Text-to-Image Synthesis" (Tao et al., CVPR 2022), Sec. 3.2 (target-aware
discriminator, one-way output): D's image features are concatenated with the (spatially replicated) sentence vector
and two more layers give the logit, so adversarial loss and text-image matching share one output that is a
*non-linear* function of image and text jointly, unlike the projection form psi(h) + <W e, h>, which is linear in the
text. Checked against the authors' code (tobran/DF-GAN, `code/models/GAN.py`, `D_GET_LOGITS`): cat(h 4x4, e
repeated 4x4) -> conv 3x3 (to 2 ndf) -> LeakyReLU(0.2) -> conv 4x4 (to 1).

Here the head reads the backbone's flattened features h (B, F) (a DCGAN D's 4x4 map flattened), so the two layers
are dense: adv = w2 . LReLU_0.2(W1 [h; e] + b1) + b2 (a 4x4 conv on a 4x4 map is a dense layer; the 3x3 conv is
widened to a dense one). It brings the same mismatched-pair term as `text-projection` (a real image with another
image's caption counts as fake, `mismatch_weight`, DF-GAN: 0.5).
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import GanforgeError
from ..nn.spectral_norm import maybe_sn
from ..objectives.base import ObjectiveTerm
from ..registries import D_HEADS
from .base import DHead, DOutput
from .d_text_projection import MismatchLoss, check_mismatch_weight
from .text_inputs import check_text_dim, sentence_vectors

NAME = "conditioning.d 'text-concat'"
SLOPE = 0.2  # DF-GAN's LeakyReLU slope


@D_HEADS.register("text-concat")
class TextConcatHead(DHead):
    """DF-GAN's one-way output: adv = w2 . LReLU(W1 [h; e]) on features joined with the sentence vector.

    Args:
        hidden: width of the joint layer (DF-GAN: 2 ndf channels at each of 16 positions).
        sn: spectral norm on both layers; None (default) follows the architecture's D (`d_sn`).
        mismatch_weight: weight of the mismatched-pair hinge term in D's step (DF-GAN: 0.5); 0 disables it.
    """

    uses_text = True
    uses_labels = False

    def __init__(self, *, in_features: int, num_classes: int = 0, text_dim: int = 0, d_sn: bool = True,
                 hidden: int = 256, sn: bool | None = None, mismatch_weight: float = 0.5):
        super().__init__()
        self.text_dim = check_text_dim(text_dim, NAME)
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
            raise GanforgeError(f"{NAME}: hidden must be a positive integer, got {hidden!r}")
        self.mismatch_weight = check_mismatch_weight(mismatch_weight, NAME)
        self.joint = nn.Linear(in_features + text_dim, hidden)
        self.out = nn.Linear(hidden, 1)
        sn = d_sn if sn is None else sn
        maybe_sn(self.joint, sn)
        maybe_sn(self.out, sn)

    def forward(self, h: torch.Tensor, y: torch.Tensor | None = None) -> DOutput:
        e = sentence_vectors(y, self.text_dim, h.shape[0], NAME).to(h.dtype)  # (B, text_dim)
        joint = nn.functional.leaky_relu(self.joint(torch.cat([h, e], dim=1)), SLOPE)  # (B, hidden)
        return DOutput(adv=self.out(joint).squeeze(1))

    def terms(self) -> list[ObjectiveTerm]:
        return [MismatchLoss(self.mismatch_weight, self.text_dim)] if self.mismatch_weight > 0 else []

    def extra_repr(self) -> str:
        return f"text_dim={self.text_dim}, mismatch_weight={self.mismatch_weight}"

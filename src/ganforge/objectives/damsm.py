"""AttnGAN's DAMSM loss on G: generated images must match their captions under the pretrained DAMSM encoders.

"AttnGAN: Fine-Grained Text to Image Generation with Attentional Generative Adversarial Networks" (Xu et al., CVPR
2018), Eq. 7: G's objective is its adversarial loss plus lambda * L_DAMSM, where L_DAMSM scores the generated images
against the sentences they were generated from with the frozen, pretrained DAMSM image and text encoders. This is the
sentence-level half (Eqs. 10-11, 13; the word-level attention half is not implemented):
    L = -mean_i log P(e_i | G(z_i, e_i)) - mean_i log P(G(z_i, e_i) | e_i),  P(. | .) = softmax_j gamma3 cos(v, e_j)
with image vectors v from the DAMSM image encoder and the batch's other sentences as negatives (pairs with identical
sentence vectors, the same caption, are not negatives). AttnGAN uses lambda = 5 (CUB) and 50 (COCO), gamma3 = 10.

It needs `conditioning.text: {name: damsm}` (text/damsm.py), whose image encoder it uses; that encoder is frozen, so
the gradient reaches only G. The sentence vectors are the G phase's condition (`ctx.y_fake`). Under DDP the image and
sentence vectors are all-gathered, so the negatives are the global batch, as in one process (non-decomposable: no
gradient accumulation).
"""
from __future__ import annotations

from typing import Any

import torch

from ..conditioning.text_inputs import check_text_dim, sentence_vectors
from ..errors import GanforgeError
from ..registries import REGULARIZERS
from ..text.damsm import GAMMA3, matching_loss, same_rows
from .base import Context, ObjectiveTerm
from .gradients import check_nonnegative

NAME = "regularizer 'damsm'"


@REGULARIZERS.register("damsm")
class DAMSMLoss(ObjectiveTerm):
    """lambda * DAMSM sentence matching loss of G's images and their captions (AttnGAN, Xu et al. 2018), G step.

    Args:
        weight: lambda (AttnGAN: 5 on CUB, 50 on COCO).
        gamma: gamma3 of the matching softmax (AttnGAN: 10).
    """

    uses_text = True  # reads the sentence embeddings G is conditioned on (ctx.y_fake)
    uses_labels = False
    decomposable = False  # softmax over the whole batch

    def __init__(self, *, weight: float = 5.0, gamma: float = GAMMA3, text_dim: int = 0, text_encoder: Any = None):
        self.text_dim = check_text_dim(text_dim, NAME)
        self.weight = check_nonnegative(weight, "damsm.weight")
        self.gamma = check_nonnegative(gamma, "damsm.gamma")
        if not hasattr(text_encoder, "encode_images"):
            got = type(text_encoder).__name__ if text_encoder is not None else "none"
            raise GanforgeError(f"{NAME}: needs conditioning.text: {{name: damsm}} (a text encoder pretrained with "
                                f"an image encoder), got {got}")
        self._encoder = [text_encoder]  # not an attribute the trainer would treat as this term's parameters
        self._on: dict[str, Any] = {}

    def image_encoder(self, device: torch.device) -> Any:
        """The frozen DAMSM encoder on `device` (one copy per device)."""
        key = str(device)
        if key not in self._on:
            enc = self._encoder[0]
            self._on[key] = enc if next(enc.parameters()).device == device else _copy_to(enc, device)
        return self._on[key]

    def g_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        fake = ctx.fake
        e = sentence_vectors(ctx.y_fake, self.text_dim, fake.shape[0], f"{NAME}: y_fake").float()
        v = self.image_encoder(fake.device).encode_images(fake).float()  # (B, dim); the encoder is frozen
        v, e = ctx.all_gather(v), ctx.all_gather(e.detach())
        return {"damsm": self.weight * matching_loss(v, e, self.gamma, same_rows(e))}

    def __repr__(self) -> str:
        return f"DAMSMLoss(weight={self.weight}, gamma={self.gamma})"


def _copy_to(module: Any, device: torch.device) -> Any:
    import copy

    return copy.deepcopy(module).to(device).requires_grad_(False)

"""MA-GP: DF-GAN's matching-aware zero-centred gradient penalty, on real images with their matching text.

"DF-GAN: A Simple and Effective Baseline for Text-to-Image Synthesis" (Tao et al., CVPR 2022), the matching-aware
gradient penalty of its target-aware discriminator: D's surface is made smooth around the real data *and* its
matching captions, by penalising the gradient of D(x, e) with respect to both the image and the sentence vector,
    MA-GP = k * E_{(x, e) ~ real, matching}[ ||(grad_x D(x, e), grad_e D(x, e))||_2 ^ p ],    k = 2, p = 6,
in D's step only. Checked against the authors' code (tobran/DF-GAN, `code/lib/modules.py`, `MA_GP` and `train`):
the two gradients (of the real logits, at the real images and the sentence vectors of their own captions) are
flattened and concatenated, the L2 norm is taken per sample, and the penalty is 2.0 * mean(norm ** 6), computed with
create_graph=True. That joint norm is what is implemented: (||grad_x||^2 + ||grad_e||^2)^(p/2). (The paper's printed
equation, quoted from memory and not re-checked, writes it with the two norms added, (||grad_x|| + ||grad_e||)^p;
the code's joint norm is the one DF-GAN's results come from.)

As the other gradient penalties here (`objectives/gradients.py`), the image gradient is taken w.r.t. the
*pre-augmentation* input, through the differentiable augmentation (D∘augment is the function penalised; DF-GAN has
no augmentation), and returned in float32. The sentence vectors are detached and made leaves, as DF-GAN's are (its
text encoder is frozen): a text encoder that trains with D gets no gradient from this term. A D head that ignores the
text gives grad_e = 0, and the term is then a zero-centred image-gradient penalty of power p.
"""
from __future__ import annotations

import torch

from ..conditioning.text_inputs import check_text_dim, sentence_vectors
from ..errors import GanforgeError
from ..registries import REGULARIZERS
from .base import Context, ObjectiveTerm
from .gradients import check_every, check_nonnegative, norms

NAME = "regularizer 'ma-gp'"


@REGULARIZERS.register("ma-gp")
class MatchingAwareGP(ObjectiveTerm):
    """MA-GP (DF-GAN, Tao et al. 2022): k * E[||(grad_x D, grad_e D)||^p] at real images and their matching text.

    Args:
        weight: k in the paper (2).
        power: p in the paper (6); at least 1, so the penalty is differentiable at a zero gradient.
        every: apply every `every` steps (lazy regularization; the trainer scales the term by `every`).
    """

    uses_text = True  # reads the sentence embeddings of the real images' captions (ctx.y_real)
    uses_labels = False

    def __init__(self, *, weight: float = 2.0, power: float = 6.0, every: int = 1, text_dim: int = 0):
        self.text_dim = check_text_dim(text_dim, NAME)
        self.weight = check_nonnegative(weight, "ma-gp.weight")
        if isinstance(power, bool) or not isinstance(power, (int, float)) or not 1 <= power < float("inf"):
            raise GanforgeError(f"ma-gp.power: expected a finite number >= 1, got {power!r}")
        self.power = float(power)
        self.every = check_every(every, "ma-gp")

    def gradients(self, ctx: Context) -> torch.Tensor:
        """(grad_x D(x, e), grad_e D(x, e)) at the reals and their matching embeddings, flattened: (B, N + text_dim)."""
        x = ctx.real.detach().requires_grad_(True)
        e = sentence_vectors(ctx.y_real, self.text_dim, x.shape[0], f"{NAME}: y_real")
        e = e.detach().requires_grad_(True)
        with ctx.eager():  # differentiated twice: not through train.compile's graphs (nn/compiled.py)
            adv = ctx.D_of(x, e).adv  # (B,), through the augmentation
        # Each D(x_i, e_i) depends only on (x_i, e_i), so the gradient of the sum gives every per-sample gradient.
        gx, ge = torch.autograd.grad(adv.float().sum(), (x, e), create_graph=True, allow_unused=True)
        gx = torch.zeros_like(x) if gx is None else gx
        ge = torch.zeros_like(e) if ge is None else ge  # a head that ignores the text
        return torch.cat([gx.float().flatten(1), ge.float().flatten(1)], dim=1)

    def d_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        # k * E[||(grad_x D(x, e), grad_e D(x, e))||_2 ^ p] on real, matching pairs (DF-GAN's MA_GP).
        penalty = norms(self.gradients(ctx)).pow(self.power)  # (B,)
        return {"ma_gp": self.weight * penalty.mean()}

    def __repr__(self) -> str:
        return f"MatchingAwareGP(weight={self.weight}, power={self.power}, every={self.every})"

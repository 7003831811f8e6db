"""Multi-hinge GAN loss (MH-GAN): the Crammer-Singer multi-class hinge loss over K real classes and one fake class.

Kavalerov, Czaja & Chellappa, "A Multi-Class Hinge Loss for Conditional GANs" (WACV 2021), with the multi-class
hinge of Crammer & Singer, "On the Algorithmic Implementation of Multiclass Kernel-based Vector Machines" (JMLR
2001). D outputs K + 1 scores o (`mh_logits`, from the `mh` D head), class K meaning "fake":

    CS(o, y) = mean_batch relu(1 + max_{k != y} o_k - o_y)
    L_D = CS(D(x_r), y_r) + CS(D(x_f), K)          (reals scored as their class, fakes as "fake")
    L_G = g_weight * CS(D(G(z, y)), y)             (fakes scored as the class they were drawn for)

g_weight = 0.05 is StudioGAN's `mh_lambda` (`MHGAN.yaml`), whose MH-GAN recipe also adds feature matching to G's
loss (regularizer `feature-matching`, weight 1). The loss reads class scores, not one logit per sample, so it is not
an `AdversarialLoss` and cannot be wrapped by `topk` (StudioGAN also disallows top-k training with MH).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import GanforgeError
from ..registries import LOSSES
from .base import Context, ObjectiveTerm


def crammer_singer(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CS(o, y) = mean relu(1 + max_{k != y} o_k - o_y) from scores (B, C) and target classes (B,)."""
    own = logits.gather(1, target[:, None]).squeeze(1)  # (B,): o_y
    others = logits.scatter(1, target[:, None], float("-inf")).amax(dim=1)  # (B,): max over k != y
    return F.relu(1.0 + others - own).mean()


@LOSSES.register("multi-hinge")
class MultiHingeLoss(ObjectiveTerm):
    """Multi-hinge loss (Kavalerov et al. 2021): Crammer-Singer hinge over K classes + "fake"; needs the `mh` head.

    Args:
        g_weight: weight of G's multi-hinge term (StudioGAN's `mh_lambda`), >= 0.
    """

    uses_labels = True
    requires = frozenset({"mh_logits"})

    def __init__(self, g_weight: float = 0.05):
        if not g_weight >= 0:
            raise GanforgeError(f"loss.g_weight: must be >= 0, got {g_weight!r}")
        self.g_weight = g_weight

    def d_loss(self, real: torch.Tensor, y_real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """L_D from real scores (B, K+1) with their labels and fake scores (B, K+1), whose target is class K."""
        fake_class = torch.full((fake.shape[0],), fake.shape[1] - 1, dtype=torch.long, device=fake.device)
        return crammer_singer(real, y_real) + crammer_singer(fake, fake_class)

    def g_loss(self, fake: torch.Tensor, y_fake: torch.Tensor) -> torch.Tensor:
        """L_G from fake scores (B, K+1) and the labels the fakes were drawn for."""
        return self.g_weight * crammer_singer(fake, y_fake)

    def d_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        # Computed in float32 even when D ran under autocast.
        return {"d_loss": self.d_loss(ctx.d_real.mh_logits.float(), ctx.y_real, ctx.d_fake.mh_logits.float())}

    def g_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        return {"g_loss": self.g_loss(ctx.d_fake.mh_logits.float(), ctx.y_fake)}

    def __repr__(self) -> str:
        return f"MultiHingeLoss(g_weight={self.g_weight})"

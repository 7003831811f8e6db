"""Auxiliary-classifier D heads: `ac` (AC-GAN as published) and `ac-mod` (StudioGAN's ACGAN-Mod).

"Conditional Image Synthesis with Auxiliary Classifier GANs" (Odena et al., ICML 2017), its L_S / L_C objective:
D outputs the adversarial logit and a class distribution C(y|x) from shared features; with
L_C = E[log C(y|x_real)] + E[log C(y|x_fake)], D maximises L_S + L_C and G maximises L_C - L_S. So C learns
from real *and* generated images:
    L_D += w * [CE(C(x_r), y_r) + CE(C(x_f), y_f)],    L_G += w_g * CE(C(G(z, y)), y).
`ac-mod` is StudioGAN's ACGAN-Mod (also the ADC-GAN repository's AC baseline): C learns from real images only,
    L_D += w * CE(C(x_r), y_r),                         L_G += w_g * CE(C(G(z, y)), y).
adv = psi(h) as in the unconditional head; C is a bias-free linear layer on h (StudioGAN's `linear2`). Default
weight 1.0 (StudioGAN's `cond_lambda`).
"""
from __future__ import annotations

import torch

from ..objectives.base import Context, ObjectiveTerm
from ..registries import D_HEADS
from .classifier import ClassifierHead, class_ce, classifier_layer


class ACLoss(ObjectiveTerm):
    """AC-GAN classification loss on `cls_logits`; `fakes_in_d` says whether C also learns from fakes in D's step."""

    uses_labels = True
    requires = frozenset({"cls_logits"})

    def __init__(self, weight: float, g_weight: float, fakes_in_d: bool):
        self.weight, self.g_weight, self.fakes_in_d = weight, g_weight, fakes_in_d

    def d_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        out = {"ac_real": self.weight * class_ce(ctx.d_real.cls_logits, ctx.y_real)}  # -E[log C(y|x_real)]
        if self.fakes_in_d:  # Odena et al.: C is trained on generated images as well
            out["ac_fake"] = self.weight * class_ce(ctx.d_fake.cls_logits, ctx.y_fake)  # -E[log C(y|x_fake)]
        return out

    def g_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        return {"ac_g": self.g_weight * class_ce(ctx.d_fake.cls_logits, ctx.y_fake)}  # G maximises L_C on fakes


@D_HEADS.register("ac")
class ACHead(ClassifierHead):
    """AC-GAN (Odena et al. 2017): adv = psi(h) and a K-way classifier on h, trained on real and fake images.

    Args:
        sn: spectral norm on psi and the classifier; None (default) follows the architecture's D (`d_sn`).
        weight: weight of the classification loss in D's step (StudioGAN's `cond_lambda`).
        g_weight: weight of the classification loss in G's step; None (default) means `weight`.
    """

    head_name = "ac"
    provides = frozenset({"cls_logits"})
    fakes_in_d = True  # the classifier learns from fakes in D's step (the paper)

    def __init__(self, *, in_features: int, num_classes: int, d_sn: bool = True, sn: bool | None = None,
                 weight: float = 1.0, g_weight: float | None = None):
        super().__init__(in_features=in_features, num_classes=num_classes, d_sn=d_sn, sn=sn, weight=weight,
                         g_weight=g_weight)
        self.classifier = classifier_layer(in_features, num_classes, sn=self.sn)

    def classify(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"cls_logits": self.classifier(h)}  # (B, K)

    def terms(self) -> list[ObjectiveTerm]:
        return [ACLoss(self.weight, self.g_weight, self.fakes_in_d)]


@D_HEADS.register("ac-mod")
class ACModHead(ACHead):
    """ACGAN-Mod (StudioGAN): the AC-GAN head with its classifier trained on real images only in D's step.

    Args:
        sn: spectral norm on psi and the classifier; None (default) follows the architecture's D (`d_sn`).
        weight: weight of the classification loss in D's step (StudioGAN's `cond_lambda`).
        g_weight: weight of the classification loss in G's step; None (default) means `weight`.
    """

    head_name = "ac-mod"
    fakes_in_d = False  # StudioGAN's worker.py: CE on reals only in the D step

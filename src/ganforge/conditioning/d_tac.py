"""Twin auxiliary classifier D head: `tac` (TAC-GAN).

"Twin Auxiliary Classifiers GAN" (Gong et al., NeurIPS 2019): AC-GAN's objective drives G toward samples
that are easy to classify (it minimises the conditional entropy H(y|x) of fakes). A twin classifier C_mi, trained
on *generated* images, estimates that entropy term for G's distribution, and G subtracts it, which removes the bias.
As in the ADC-GAN authors' implementation (liang-hou/adcgan, `train_fns.py`, loss 'tacgan'):
    L_D += w * [CE(C(x_r), y_r) + CE(C_mi(x_f), y_f)],    L_G += w_g * [CE(C(x_f), y) - CE(C_mi(x_f), y)].
C and C_mi are two bias-free linear layers on the same features h; adv = psi(h). StudioGAN's HEAD never reads its twin
(its fake-side loss reads the main classifier, so G's two terms cancel); here the twin is a real, separate layer.
Default weights 1.0 (StudioGAN's `tac_dis_lambda` / `tac_gen_lambda`; the adcgan repo's CIFAR scripts).
"""
from __future__ import annotations

import torch

from ..objectives.base import Context, ObjectiveTerm
from ..registries import D_HEADS
from .classifier import ClassifierHead, class_ce, classifier_layer


class TACLoss(ObjectiveTerm):
    """TAC-GAN losses: C on reals and the twin C_mi on fakes in D's step; CE(C) - CE(C_mi) on fakes in G's."""

    uses_labels = True
    requires = frozenset({"cls_logits", "cls_twin_logits"})

    def __init__(self, weight: float, g_weight: float):
        self.weight, self.g_weight = weight, g_weight

    def d_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        return {"tac_real": self.weight * class_ce(ctx.d_real.cls_logits, ctx.y_real),  # C learns the data
                "tac_fake": self.weight * class_ce(ctx.d_fake.cls_twin_logits, ctx.y_fake)}  # C_mi learns G's

    def g_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        fake = ctx.d_fake
        # AC term minus the twin's: G is pushed toward classifiable samples only beyond what G's own mix explains
        return {"tac_g": self.g_weight * (class_ce(fake.cls_logits, ctx.y_fake)
                                          - class_ce(fake.cls_twin_logits, ctx.y_fake))}


@D_HEADS.register("tac")
class TACHead(ClassifierHead):
    """TAC-GAN (Gong et al. 2019): adv = psi(h), a classifier C trained on reals and a twin C_mi trained on fakes.

    Args:
        sn: spectral norm on psi and both classifiers; None (default) follows the architecture's D (`d_sn`).
        weight: weight of the two classification losses in D's step (StudioGAN's `tac_dis_lambda`).
        g_weight: weight of G's classification terms; None (default) means `weight` (`tac_gen_lambda`).
    """

    head_name = "tac"
    provides = frozenset({"cls_logits", "cls_twin_logits"})

    def __init__(self, *, in_features: int, num_classes: int, d_sn: bool = True, sn: bool | None = None,
                 weight: float = 1.0, g_weight: float | None = None):
        super().__init__(in_features=in_features, num_classes=num_classes, d_sn=d_sn, sn=sn, weight=weight,
                         g_weight=g_weight)
        self.classifier = classifier_layer(in_features, num_classes, sn=self.sn)  # C
        self.twin = classifier_layer(in_features, num_classes, sn=self.sn)  # C_mi

    def classify(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"cls_logits": self.classifier(h), "cls_twin_logits": self.twin(h)}  # (B, K) each

    def terms(self) -> list[ObjectiveTerm]:
        return [TACLoss(self.weight, self.g_weight)]

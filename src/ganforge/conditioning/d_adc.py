"""Auxiliary discriminative classifier D head: `adc` (ADC-GAN).

"Conditional GANs with Auxiliary Discriminative Classifier" (Hou et al., ICML 2022): a 2K-way classifier C_d on D's
features h tells "real, class y" (label y+ = 2y) from "fake, class y" (label y- = 2y + 1). D and C_d maximise
V(G, D) + w (E_p[log C_d(y+|x)] + E_q[log C_d(y-|x)]); G minimises V(G, D) - w_g (E_q[log C_d(y+|x)] -
E_q[log C_d(y-|x)]) (the objective in the liang-hou/adcgan README). As losses (batch means):
    L_D += w * [CE(C_d(x_r), 2y_r) + CE(C_d(x_f), 2y_f + 1)],    L_G += w_g * [CE(C_d(x_f), 2y) - CE(C_d(x_f), 2y + 1)].
adv = psi(h); with `projection: true` the projection term <embed(y), h> (Miyato & Koyama 2018, Eq. 3) is added. The
authors' D has projection off and no script turns it on, hence the default. Default weights 1.0 (adcgan CIFAR
scripts; StudioGAN's `cond_lambda`).
"""
from __future__ import annotations

import torch
from torch import nn

from ..nn.spectral_norm import maybe_sn
from ..objectives.base import Context, ObjectiveTerm
from ..registries import D_HEADS
from .base import DOutput
from .classifier import ClassifierHead, class_ce, classifier_layer


def real_target(y: torch.Tensor) -> torch.Tensor:
    """C_d's label for "real image of class y": 2y."""
    return 2 * y


def fake_target(y: torch.Tensor) -> torch.Tensor:
    """C_d's label for "generated image of class y": 2y + 1."""
    return 2 * y + 1


class ADCLoss(ObjectiveTerm):
    """ADC-GAN losses on the 2K-way `adc_logits`: real/fake x class in D's step; G moves fakes toward "real y"."""

    uses_labels = True
    requires = frozenset({"adc_logits"})

    def __init__(self, weight: float, g_weight: float):
        self.weight, self.g_weight = weight, g_weight

    def d_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        return {"adc_real": self.weight * class_ce(ctx.d_real.adc_logits, real_target(ctx.y_real)),
                "adc_fake": self.weight * class_ce(ctx.d_fake.adc_logits, fake_target(ctx.y_fake))}

    def g_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        logits, y = ctx.d_fake.adc_logits, ctx.y_fake
        # -(E_q[log C_d(y+|x)] - E_q[log C_d(y-|x)]) = CE(., y+) - CE(., y-)
        return {"adc_g": self.g_weight * (class_ce(logits, real_target(y)) - class_ce(logits, fake_target(y)))}


@D_HEADS.register("adc")
class ADCHead(ClassifierHead):
    """ADC-GAN (Hou et al. 2022): adv = psi(h) and a 2K-way real/fake x class classifier on h.

    Args:
        sn: spectral norm on psi, the classifier (and the class embedding); None (default) follows D (`d_sn`).
        weight: weight of the classification losses in D's step.
        g_weight: weight of G's classification terms; None (default) means `weight`.
        projection: also add the projection term <embed(y), h> to adv (off in the authors' runs).
    """

    head_name = "adc"
    provides = frozenset({"adc_logits"})

    def __init__(self, *, in_features: int, num_classes: int, d_sn: bool = True, sn: bool | None = None,
                 weight: float = 1.0, g_weight: float | None = None, projection: bool = False):
        super().__init__(in_features=in_features, num_classes=num_classes, d_sn=d_sn, sn=sn, weight=weight,
                         g_weight=g_weight)
        self.classifier = classifier_layer(in_features, 2 * num_classes, sn=self.sn)  # C_d: column 2y real, 2y+1 fake
        self.embed = None
        if projection:
            self.embed = nn.Embedding(num_classes, in_features)
            nn.init.xavier_uniform_(self.embed.weight)
            maybe_sn(self.embed, self.sn)

    def classify(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"adc_logits": self.classifier(h)}  # (B, 2K)

    def forward(self, h: torch.Tensor, y: torch.Tensor | None = None) -> DOutput:
        out = super().forward(h, y)
        if self.embed is not None:
            out.adv = out.adv + (self.embed(y) * h).sum(dim=1)  # + <embed(y), h>
        return out

    def terms(self) -> list[ObjectiveTerm]:
        return [ADCLoss(self.weight, self.g_weight)]

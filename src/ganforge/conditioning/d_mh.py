"""MH-GAN D head `mh`: K + 1 class scores on D's features, class K meaning "fake".

Kavalerov, Czaja & Chellappa, "A Multi-Class Hinge Loss for Conditional GANs" (WACV 2021; not the
Metropolis-Hastings GAN of the same acronym). D is a (K+1)-way classifier o = W h + b: classes 0..K-1 are the real
classes and class K is "fake". It is trained with the Crammer-Singer multi-class hinge loss of
`objectives/multi_hinge.py` (loss `multi-hinge`), which reads the scores as `mh_logits`; the head brings no loss of
its own.

`adv` (what samplers, evaluation and any other adversarial loss read as D's logit) is o_y - o_K, how much more D
scores the sample as class y than as fake: > 0 where D takes it for a real sample of class y. Among its margins the
multi-hinge loss asks for o_y - o_K >= 1 on reals and o_K - o_y >= 1 on fakes. Spectral norm on W follows the D
backbone's (`d_sn`) unless `sn` says otherwise.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import GanforgeError
from ..nn.spectral_norm import maybe_sn
from ..registries import D_HEADS
from .base import DHead, DOutput


@D_HEADS.register("mh")
class MultiHingeHead(DHead):
    """MH-GAN's D head (Kavalerov et al. 2021): K+1 class scores (class K = fake); adv = o_y - o_K.

    Args:
        sn: spectral norm on the scoring layer; None (default) follows the architecture's D (`d_sn`).
    """

    uses_labels = True
    provides = frozenset({"mh_logits"})

    def __init__(self, *, in_features: int, num_classes: int, d_sn: bool = True, sn: bool | None = None):
        super().__init__()
        if num_classes < 2:
            raise GanforgeError(f"conditioning.d 'mh': needs a labelled dataset with num_classes >= 2, got "
                                f"num_classes={num_classes}; use 'linear' for unlabelled data")
        self.num_classes = num_classes
        self.scores = nn.Linear(in_features, num_classes + 1)
        nn.init.xavier_uniform_(self.scores.weight)
        nn.init.zeros_(self.scores.bias)
        maybe_sn(self.scores, d_sn if sn is None else sn)

    def forward(self, h: torch.Tensor, y: torch.Tensor | None = None) -> DOutput:
        if y is None:
            raise GanforgeError("conditioning.d 'mh': needs class labels y, got None")
        logits = self.scores(h)  # (B, K + 1); column K is "fake"
        adv = logits.gather(1, y[:, None]).squeeze(1) - logits[:, self.num_classes]  # (B,): o_y - o_K
        return DOutput(adv=adv, mh_logits=logits)

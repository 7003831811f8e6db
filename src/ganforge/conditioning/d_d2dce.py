"""ReACGAN D head `d2d-ce`: adv = psi(h) plus the Data-to-Data Cross-Entropy (D2D-CE) loss.

"Rebooting ACGAN: Auxiliary Classifier GANs with Stable Training" (Kang et al., NeurIPS 2021), the D2D-CE loss
(the paper's formula; its equation number is not checked here). With unit embeddings f_i, unit class proxies
v_{y_i}, [a]_- = min(a, 0) and [a]_+ = max(a, 0):

    L = -mean_i log [ exp([f_i.v_yi - m_p]_- / tau)
                      / (exp([f_i.v_yi - m_p]_- / tau) + sum_{j: y_j != y_i} exp([f_i.f_j - m_n]_+ / tau)) ]

Same-class samples (false negatives) are left out of the negative sum, and so is i itself. The margins stop pulling
a positive that is already close (f.v >= m_p) and pushing a negative that is already far (f.f <= m_n). Defaults
(StudioGAN's `ReACGAN.yaml`, CIFAR10): m_p = 0.98, m_n = 1 - m_p, tau = 0.5, weight = 0.5.

Unlike StudioGAN, no detached row maximum is subtracted from the negative logits alone (that changes the value: it
is not a shift of the whole row); the row is evaluated with one logsumexp, which is the paper's value exactly and
stays finite for small tau. Computed over the global batch (all-gathered under DDP), see `embedding_head.py`.
"""
from __future__ import annotations

import torch

from ..errors import GanforgeError
from ..registries import D_HEADS
from .embedding_head import EmbeddingHead, EmbeddingLossTerm


def d2d_ce_per_sample(embed: torch.Tensor, proxy: torch.Tensor, labels: torch.Tensor, m_p: float = 0.98,
                      m_n: float | None = None, temperature: float = 0.5) -> torch.Tensor:
    """D2D-CE of each sample (N,) from unit embeddings (N, E), unit proxies v_{y_i} (N, E) and labels (N,).

    `m_n` None means 1 - m_p. Per row: logsumexp([positive, negatives]) - positive = -log(softmax's positive).
    """
    m_n = 1.0 - m_p if m_n is None else m_n
    positive = ((embed * proxy).sum(dim=1, keepdim=True) - m_p).clamp(max=0.0) / temperature  # (N, 1)
    negative = ((embed @ embed.T) - m_n).clamp(min=0.0) / temperature  # (N, N)
    other_class = labels[:, None] != labels[None, :]  # (N, N): drops j = i and same-class false negatives
    negative = negative.masked_fill(~other_class, float("-inf"))
    logits = torch.cat([positive, negative], dim=1)  # (N, 1 + N)
    return logits.logsumexp(dim=1) - positive.squeeze(1)


def d2d_ce_loss(embed: torch.Tensor, proxy: torch.Tensor, labels: torch.Tensor, m_p: float = 0.98,
                m_n: float | None = None, temperature: float = 0.5) -> torch.Tensor:
    """D2D-CE (Kang et al. 2021): the batch mean of `d2d_ce_per_sample`."""
    return d2d_ce_per_sample(embed, proxy, labels, m_p, m_n, temperature).mean()


class D2DCELoss(EmbeddingLossTerm):
    """weight * D2D-CE (Kang et al. 2021) over the global batch: D on reals, G on fakes."""

    name = "d2d_ce"

    def __init__(self, weight: float = 0.5, temperature: float = 0.5, m_p: float = 0.98, m_n: float | None = None):
        super().__init__(weight)
        self.temperature, self.m_p, self.m_n = temperature, m_p, m_n

    def loss(self, embed: torch.Tensor, proxy: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return d2d_ce_loss(embed, proxy, labels, self.m_p, self.m_n, self.temperature)


@D_HEADS.register("d2d-ce")
class D2DCEHead(EmbeddingHead):
    """ReACGAN's D head (Kang et al. 2021): adv = psi(h), plus the D2D-CE loss on embeddings and class proxies.

    Args:
        embed_dim: width of the embedding and the class proxies.
        temperature: tau of D2D-CE (> 0).
        weight: weight of D2D-CE in D's and G's objectives (>= 0; StudioGAN's `cond_lambda`).
        m_p: positive margin, in [-1, 1].
        m_n: negative margin, in [-1, 1]; None (default) means 1 - m_p.
        sn: spectral norm on psi, the embedding layer and the proxies; None (default) follows the D backbone.
    """

    method = "d2d-ce"

    def __init__(self, *, in_features: int, num_classes: int, d_sn: bool = True, sn: bool | None = None,
                 embed_dim: int = 512, temperature: float = 0.5, weight: float = 0.5, m_p: float = 0.98,
                 m_n: float | None = None):
        super().__init__(in_features=in_features, num_classes=num_classes, d_sn=d_sn, sn=sn, embed_dim=embed_dim,
                         temperature=temperature, weight=weight)
        for key, value in (("m_p", m_p), ("m_n", m_n)):
            if value is not None and not -1.0 <= value <= 1.0:
                raise GanforgeError(f"conditioning.d '{self.method}': {key} must be in [-1, 1] (a cosine margin), "
                                    f"got {value!r}")
        self.m_p, self.m_n = m_p, m_n

    def terms(self) -> list[EmbeddingLossTerm]:
        return [D2DCELoss(self.weight, self.temperature, self.m_p, self.m_n)]

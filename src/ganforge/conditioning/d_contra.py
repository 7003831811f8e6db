"""ContraGAN D head `2c`: adv = psi(h) plus the conditional contrastive (2C) loss on embeddings and class proxies.

"ContraGAN: Contrastive Learning for Conditional Image Generation" (Kang & Park, NeurIPS 2020), the 2C loss
(Sec. 3 of the paper; its equation number is not checked here). With unit embeddings e_i = normalize(W_e h_i),
unit class proxies p_{y_i} and s(a, b) = a.b (cosine similarity):

    L_2C = -mean_i log [ (exp(s(e_i, p_yi)/tau) + sum_{j != i, y_j = y_i} exp(s(e_i, e_j)/tau))
                         / (exp(s(e_i, p_yi)/tau) + sum_{j != i} exp(s(e_i, e_j)/tau)) ]

The diagonal (j = i) is removed from both sums; same-label samples are positives (numerator). D minimises
weight * L_2C on reals, G on fakes with their sampled labels; defaults tau = 1.0, weight = 1.0 and embed_dim = 512
(StudioGAN's `configs/CIFAR10/ContraGAN.yaml`). The loss is computed over the global batch (embeddings, proxies and
labels all-gathered under DDP), see `embedding_head.py`.
"""
from __future__ import annotations

import torch

from ..registries import D_HEADS
from .embedding_head import EmbeddingHead, EmbeddingLossTerm


def contrastive_2c_per_sample(embed: torch.Tensor, proxy: torch.Tensor, labels: torch.Tensor,
                              temperature: float = 1.0) -> torch.Tensor:
    """The 2C loss of each sample (N,) from unit embeddings (N, E), unit proxies p_{y_i} (N, E) and labels (N,).

    Written as logsumexp(all logits) - logsumexp(positive logits) per row: the ratio above, without overflow for
    small temperatures.
    """
    n = embed.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=embed.device)
    to_proxy = (embed * proxy).sum(dim=1, keepdim=True) / temperature  # (N, 1): s(e_i, p_yi)/tau
    to_data = (embed @ embed.T / temperature).masked_fill(eye, float("-inf"))  # (N, N): s(e_i, e_j)/tau, j != i
    logits = torch.cat([to_proxy, to_data], dim=1)  # (N, 1 + N)
    same = (labels[:, None] == labels[None, :]) & ~eye  # (N, N): positives among the other samples
    positive = torch.cat([torch.ones_like(same[:, :1]), same], dim=1)  # the proxy is always a positive
    numerator = logits.masked_fill(~positive, float("-inf")).logsumexp(dim=1)  # (N,)
    denominator = logits.logsumexp(dim=1)  # (N,)
    return denominator - numerator


def contrastive_2c_loss(embed: torch.Tensor, proxy: torch.Tensor, labels: torch.Tensor,
                        temperature: float = 1.0) -> torch.Tensor:
    """L_2C (Kang & Park 2020): the batch mean of `contrastive_2c_per_sample`."""
    return contrastive_2c_per_sample(embed, proxy, labels, temperature).mean()


class Contrastive2CLoss(EmbeddingLossTerm):
    """weight * L_2C (Kang & Park 2020) over the global batch: D on reals, G on fakes."""

    name = "2c"

    def __init__(self, weight: float = 1.0, temperature: float = 1.0):
        super().__init__(weight)
        self.temperature = temperature

    def loss(self, embed: torch.Tensor, proxy: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return contrastive_2c_loss(embed, proxy, labels, self.temperature)


@D_HEADS.register("2c")
class ContrastiveHead(EmbeddingHead):
    """ContraGAN's D head (Kang & Park 2020): adv = psi(h), plus the 2C loss on embeddings and class proxies.

    Args:
        embed_dim: width of the embedding and the class proxies.
        temperature: tau of L_2C (> 0).
        weight: weight of L_2C in D's and G's objectives (>= 0; StudioGAN's `cond_lambda`).
        sn: spectral norm on psi, the embedding layer and the proxies; None (default) follows the D backbone.
    """

    method = "2c"

    def __init__(self, *, in_features: int, num_classes: int, d_sn: bool = True, sn: bool | None = None,
                 embed_dim: int = 512, temperature: float = 1.0, weight: float = 1.0):
        super().__init__(in_features=in_features, num_classes=num_classes, d_sn=d_sn, sn=sn, embed_dim=embed_dim,
                         temperature=temperature, weight=weight)

    def terms(self) -> list[EmbeddingLossTerm]:
        return [Contrastive2CLoss(self.weight, self.temperature)]

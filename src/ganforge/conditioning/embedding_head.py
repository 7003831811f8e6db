"""Shared parts of the metric-learning D heads (ContraGAN's 2C, ReACGAN's D2D-CE).

Both heads keep the unconditional adversarial logit adv = psi(h) and add, on the same backbone features h,
- a data embedding e = normalize(W_e h + b_e) of width `embed_dim`, and
- a learned class proxy v_y = normalize(P[y]), P an Embedding(num_classes, embed_dim),
as in "ContraGAN: Contrastive Learning for Conditional Image Generation" (Kang & Park, NeurIPS 2020) and "Rebooting
ACGAN: Auxiliary Classifier GANs with Stable Training" (Kang et al., NeurIPS 2021). What differs is the loss on
(e, v_y, y), an `EmbeddingLossTerm` the head brings (`terms()`): D minimises it on reals with their labels, G on
fakes with the labels they were sampled for.

The losses compare every sample with every other one, so the term works on the *global* batch: under DDP the
embeddings, proxies and labels are all-gathered (`Context.all_gather`, gradients flowing back to this rank's rows)
and the term is not decomposable (`train.accumulate > 1` is refused at config time; the heads declare it too).
Spectral norm on psi, the embedding layer and the proxies follows the D backbone's (`d_sn`) unless `sn` says
otherwise.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GanforgeError
from ..nn.spectral_norm import maybe_sn
from ..objectives.base import Context, ObjectiveTerm
from .base import DHead, DOutput


def check_positive(value: float, where: str, key: str) -> float:
    """`value` if it is > 0, else a one-line error naming the key."""
    if not value > 0:
        raise GanforgeError(f"{where}: {key} must be > 0, got {value!r}")
    return value


class EmbeddingLossTerm(ObjectiveTerm):
    """weight * loss(e, v_y, y) over the global batch: D's on reals (y_real), G's on fakes (y_fake).

    Subclasses set `name` (the key of D's logged value; G's is `<name>_g`) and implement `loss` on unit embeddings,
    unit proxies and labels of the global batch.
    """

    uses_labels = True
    requires = frozenset({"embed", "proxy"})
    decomposable = False  # every sample is compared with every other one of the global batch
    may_be_negative = False  # a cross-entropy: >= 0
    name = ""

    def __init__(self, weight: float):
        self.weight = weight

    def loss(self, embed: torch.Tensor, proxy: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The batch loss from embed (N, E), proxy (N, E) (unit rows) and labels (N,)."""
        raise NotImplementedError

    def _value(self, ctx: Context, out: DOutput, y: torch.Tensor, key: str) -> dict[str, torch.Tensor]:
        if self.weight == 0:
            return {}
        embed = ctx.all_gather(out.embed.float())  # (N, E), N = global batch
        proxy = ctx.all_gather(out.proxy.float())  # (N, E)
        labels = ctx.all_gather(y)  # (N,)
        return {key: self.weight * self.loss(embed, proxy, labels)}

    def d_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        return self._value(ctx, ctx.d_real, ctx.y_real, self.name)  # D: reals with their labels

    def g_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        return self._value(ctx, ctx.d_fake, ctx.y_fake, f"{self.name}_g")  # G: fakes with their sampled labels

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({opts})"


class EmbeddingHead(DHead):
    """adv = psi(h); embed = normalize(W_e h + b_e); proxy = normalize(P[y]). Subclasses set `method` and `terms`.

    Args:
        embed_dim: width of the embedding and the class proxies.
        temperature: tau of the loss (> 0).
        weight: weight of the loss in both D's and G's objectives (>= 0).
        sn: spectral norm on psi, the embedding layer and the proxies; None (default) follows the D backbone.
    """

    uses_labels = True
    provides = frozenset({"embed", "proxy"})
    decomposable = False  # its loss term is batch-level (read by the config check for train.accumulate)
    method = ""  # the registered name, used in error messages

    def __init__(self, *, in_features: int, num_classes: int, d_sn: bool = True, sn: bool | None = None,
                 embed_dim: int = 512, temperature: float = 1.0, weight: float = 1.0):
        super().__init__()
        where = f"conditioning.d '{self.method}'"
        if num_classes < 2:
            raise GanforgeError(f"{where}: needs a labelled dataset with num_classes >= 2, got "
                                f"num_classes={num_classes}; use 'linear' for unlabelled data")
        if embed_dim < 1:
            raise GanforgeError(f"{where}: embed_dim must be >= 1, got {embed_dim!r}")
        if not weight >= 0:
            raise GanforgeError(f"{where}: weight must be >= 0, got {weight!r}")
        self.temperature = check_positive(temperature, where, "temperature")
        self.weight = weight
        self.psi = nn.Linear(in_features, 1)
        self.embed_layer = nn.Linear(in_features, embed_dim)
        self.proxies = nn.Embedding(num_classes, embed_dim)
        for layer in (self.psi, self.embed_layer):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
        nn.init.xavier_uniform_(self.proxies.weight)
        sn = d_sn if sn is None else sn
        for layer in (self.psi, self.embed_layer, self.proxies):
            maybe_sn(layer, sn)

    def forward(self, h: torch.Tensor, y: torch.Tensor | None = None) -> DOutput:
        if y is None:
            raise GanforgeError(f"conditioning.d '{self.method}': needs class labels y, got None")
        adv = self.psi(h).squeeze(1)  # (B,)
        embed = F.normalize(self.embed_layer(h), dim=1)  # (B, E) unit rows
        proxy = F.normalize(self.proxies(y), dim=1)  # (B, E) unit rows: v_{y_i}
        return DOutput(adv=adv, embed=embed, proxy=proxy)

    def terms(self) -> list[ObjectiveTerm]:
        raise NotImplementedError

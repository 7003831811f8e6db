"""Top-k training: G learns only from the fakes D rates most real.

Sinha et al., "Top-k Training of GANs: Improving GAN Performance by Throwing Away Bad Samples", NeurIPS 2020. In the
G step only the k largest D(G(z)) logits of the batch enter G's loss (StudioGAN applies `torch.topk` to the fake
logits before the loss function); the D step is unchanged. k starts at the batch size B and decays once per epoch,

    k <- max(gamma * k, floor(nu * B)),   k kept as a float and cast to int when used,

i.e. after e completed epochs k = int(max(B gamma^e, floor(nu B))) (and at least 1). No StudioGAN config sets
gamma or nu; gamma = 0.99 and nu = 0.5 follow a public reimplementation (the paper's values are unconfirmed).

Why a loss wrapper and not a regularizer: top-k changes *which samples* the adversarial G loss averages over, and a
regularizer can only add terms — it cannot reach the loss's reduction. So `topk` is registered as a loss that wraps
any other (`base`), delegating D's loss and the per-sample G loss to it and choosing the samples itself:

    loss: {name: topk, base: hinge, gamma: 0.99, nu: 0.5}

It selects by the fake *logits*, not through `AdversarialLoss.reduce(values, "g")`: `reduce` sees per-sample
losses, and "lowest G loss" equals "highest logit" only for losses decreasing in D(G(z)) (vanilla, hinge,
Wasserstein) — not for least squares (0.5 (D - 1)^2) or the relativistic loss (which depends on the paired real).
For relativistic bases each kept fake keeps its paired real. `reduce` is still applied to the kept losses.

Epochs are counted from the real images D has seen (`ctx.nimg`) and the training-set size, which the framework
hands in (`dataset_size` in `registries.BUILD_CONTEXT`). k is a pure function of the images seen: nothing to
checkpoint.
The top k are taken over the *global* batch (logits gathered over ranks), so the G loss is batch-level: the term is
declared non-decomposable (`train.accumulate > 1` is refused).
"""
from __future__ import annotations

import math

import torch

from ..errors import GanforgeError
from ..registries import LOSSES
from .adversarial import AdversarialLoss
from .base import Context


def topk_k(batch: int, epochs: int, gamma: float, nu: float) -> int:
    """k after `epochs` completed epochs for a batch of `batch`: int(max(batch * gamma^epochs, floor(nu * batch)))."""
    return max(1, int(max(batch * gamma ** epochs, math.floor(nu * batch))))


@LOSSES.register("topk")
class TopKLoss(AdversarialLoss):
    """Top-k training (Sinha 2020): wraps a loss; G's loss uses only the k fakes with the largest D logits.

    Args:
        base: the wrapped adversarial loss (a registered `AdversarialLoss` other than topk: not multi-hinge).
        base_options: that loss's options.
        gamma: per-epoch decay of k (k starts at the batch size).
        nu: floor of k as a fraction of the batch size.
    """

    decomposable = False  # the top k of the whole batch

    def __init__(self, base: str = "vanilla", base_options: dict | None = None, gamma: float = 0.99,
                 nu: float = 0.5, *, dataset_size: int = 0, **context):
        if base == "topk":
            raise GanforgeError("loss.base: topk cannot wrap itself; choose another loss")
        context = {**context, "dataset_size": dataset_size}  # the build context, handed on to the base loss
        LOSSES.get(base, "loss.base")  # unknown name -> one line listing the losses
        try:
            self.base = LOSSES.build(base, base_options or {}, where="loss.base_options", **context)
        except GanforgeError as e:  # a loss names its own keys "loss.<key>"; here they sit under loss.base_options
            text = str(e)
            if text.startswith("loss.") and not text.startswith("loss.base_options"):
                raise GanforgeError(f"loss.base_options.{text[len('loss.'):]}") from None
            raise
        if not isinstance(self.base, AdversarialLoss):  # e.g. multi-hinge: class scores, not one logit per sample
            raise GanforgeError(f"loss.base: topk ranks fakes by one D logit each and wraps per-sample losses of it; "
                                f"{base!r} is not such a loss (StudioGAN also disallows top-k with MH)")
        if not 0.0 < gamma <= 1.0:
            raise GanforgeError(f"loss.gamma: expected a number in (0, 1], got {gamma!r}")
        if not 0.0 < nu <= 1.0:
            raise GanforgeError(f"loss.nu: expected a fraction in (0, 1], got {nu!r}")
        self.gamma, self.nu, self.dataset_size = gamma, nu, dataset_size
        self.uses_real_in_g = getattr(self.base, "uses_real_in_g", False)
        self.requires = getattr(self.base, "requires", frozenset())
        self.k: int | None = None  # k of the last G step (None: all samples)

    # ---------------------------------------------------------------------------------- delegated to the base loss
    def d_per_sample(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.base.d_per_sample(real, fake)

    def g_per_sample(self, fake: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        return self.base.g_per_sample(fake, real)

    def d_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        return self.base.d_terms(ctx)  # the D step is plain

    # ------------------------------------------------------------------------------------------------- the G step
    def epochs(self, nimg: int) -> int:
        """Epochs completed before the batch that ended at real image `nimg` (the last one D saw)."""
        if self.dataset_size == 0 or nimg <= 0:
            return 0
        return (nimg - 1) // self.dataset_size

    def g_loss(self, fake: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        """The reduced G loss of the k fakes (k = self.k, all when unset) with the largest logits."""
        k = len(fake) if self.k is None else min(self.k, len(fake))
        top = fake.topk(k).indices  # (k,)
        return self.reduce(self.g_per_sample(fake[top], None if real is None else real[top]), "g")

    def g_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        fake = ctx.all_gather(ctx.d_fake.adv.float())  # (B_global,): gradients flow to this rank's rows
        real = ctx.all_gather(ctx.d_real.adv.detach().float()) if self.uses_real_in_g else None
        self.k = topk_k(len(fake), self.epochs(ctx.nimg), self.gamma, self.nu)
        return {"g_loss": self.g_loss(fake, real)}

    def log_values(self) -> dict[str, float]:
        return {} if self.k is None else {"topk_k": float(self.k)}

    def __repr__(self) -> str:
        return (f"TopKLoss(base={self.base!r}, gamma={self.gamma}, nu={self.nu}, "
                f"dataset_size={self.dataset_size})")

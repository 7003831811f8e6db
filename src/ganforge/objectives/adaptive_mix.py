"""AdaptiveMix: shrinking the regions of D's feature space that training images occupy.

Liu et al., "Improving GAN Training via Feature Space Shrinkage" (CVPR 2023). In every D call of the D and G phases
(reals and fakes separately, after the run's augmentation) the batch x_a is mixed with partner rows x_b:
    lambda ~ Beta(alpha, alpha)                      (alpha = 1: uniform)
    x~ = lambda x_a + (1 - lambda) x_b
    m  = lambda f(x_a) + (1 - lambda) f(x_b) + N(0, noise_std^2)       (noise_std = 0.05)
    L_AM = -cos(f(x~), sg(m))                        per sample; sg = stop-gradient
with f = D's trunk (`D.backbone.features`, the penultimate features h) and f(x_b) the partner rows of f(x_a). D's
adversarial logit becomes head(lambda f(x_a) + (1 - lambda) f(x_b)) + head(f(x~)) (the reference's), which every term
then reads: the adversarial loss, R1, ADA's sign (a class-conditional head gets x_a's labels for both passes, as in
the reference). The term adds weight * (mean L_AM on reals + mean L_AM on fakes) to D's loss (logged as
`adaptive_mix`) and weight * mean L_AM on fakes to G's (`adaptive_mix_g`); weight 1, as the reference. In the G phase
D's parameters are kept out of the graph of the wrapped call, so the G-side term trains G only.

How it is wired: the term's `prepare(ctx)` hook replaces `ctx.D` by `AdaptiveMixD`, a wrapper that does the above for
whatever batch D is asked to judge and returns the usual `DOutput` with the mixed logit as `adv`, L_AM (B,) as
`extras["adaptive_mix"]` and lambda (B,) as `extras["adaptive_mix_lambda"]`. Everything else it reports (`h`, the
tapped feature maps, a head's extras such as class logits) is D's verdict on x_a itself.

Departures from the reference code (`generation/training/networks.py::adaptive_mix`, `training/loss.py`):
- per-sample lambda and noise from the Context's `SampleRNG`, where the reference draws one lambda per call (and a
  `randperm` partner) from torch's RNG: so runs on N ranks and with gradient accumulation equal one process, and a
  resumed run replays the uninterrupted one;
- partners are fixed: global row i is mixed with row i xor 1 (0<->1, 2<->3, ...; the data stream is already shuffled),
  a pairing that no sharding changes as long as every micro-batch starts and ends on an even global row; a split pair
  (an odd per-rank or per-round micro-batch size) is refused with an error. With an odd global batch the last row has
  no partner and is mixed with itself (x~ = x_a, m = f(x_a) + noise);
- f is D's penultimate feature vector h (any architecture has one), not StyleGAN2's 4x4 map before the epilogue;
- the cosine is computed in float32 under autocast;
- lazy phases (e.g. R1 with `every: 16`) run only their own terms, so they see the plain D; eager R1 sees the mixed
  logit as in the reference.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from scipy.special import betaincinv
from torch import nn

from ..checks import check_positive_float
from ..conditioning.base import DOutput
from ..errors import GanforgeError
from ..registries import REGULARIZERS
from ..training.rng import SampleRNG
from .base import Context, ObjectiveTerm
from .feature_matching import frozen
from .gradients import check_nonnegative

NAME = "adaptive-mix"


def mix_weights(rng: SampleRNG, n: int, alpha: float) -> torch.Tensor:
    """lambda ~ Beta(alpha, alpha) per sample, (n,) float32 on the CPU: the inverse CDF of one uniform per sample."""
    u = rng.rand(n)  # (n,) U[0, 1)
    if alpha == 1.0:
        return u  # Beta(1, 1) is U(0, 1)
    return torch.from_numpy(betaincinv(alpha, alpha, u.double().numpy())).float()


def partners(rows: slice, n: int, total: int) -> torch.Tensor:
    """Local index of each of n rows' partner (global row i xor 1; itself past the end of an odd global batch).

    `rows` are this micro-batch's rows of the global batch of `total`; n may be k * len(rows) (k stacked batches of
    the same rows), each block paired within itself.
    """
    local = rows.stop - rows.start
    if n % local:
        raise GanforgeError(f"{NAME}: D was given {n} rows, not a multiple of this micro-batch's {local}")
    own = torch.arange(rows.start, rows.stop)  # global rows
    mate = own ^ 1
    mate = torch.where(mate < total, mate, own)
    inside = (mate >= rows.start) & (mate < rows.stop)
    if not bool(inside.all()):
        raise GanforgeError(
            f"{NAME}: this micro-batch holds global rows {rows.start}..{rows.stop - 1}, which splits a pair of "
            f"adjacent rows; make train.batch_size / (ranks * train.accumulate) even")
    local_mate = mate - rows.start  # (local,)
    return torch.cat([local_mate + k * local for k in range(n // local)])


class AdaptiveMixD(nn.Module):
    """D with AdaptiveMix applied to every batch it judges (see the module docstring); made by the term's prepare."""

    def __init__(self, D: nn.Module, term: "AdaptiveMix", ctx: Context):
        super().__init__()
        self.D, self.term, self.ctx = D, term, ctx

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, features: bool = False) -> DOutput:
        with frozen(self.D) if self.ctx.phase == "G" else contextlib.nullcontext():
            return self._mix(x, y, features)

    def _mix(self, x: torch.Tensor, y: torch.Tensor | None, features: bool) -> DOutput:
        ctx, term, n = self.ctx, self.term, x.shape[0]
        local = ctx.real.shape[0]
        rows = ctx.rows if ctx.rows is not None else slice(0, local)
        pair = partners(rows, n, ctx.info.batch_size or local).to(x.device)  # (n,)
        out = self.D(x, y, features=features)  # D on x_a: its h, taps and head extras
        f_a = out.h  # (n, F)
        rng = ctx.sample_rng()
        lam = mix_weights(rng, n, term.alpha).to(x.device)  # (n,)
        lam_x = lam.to(x.dtype).view(n, *([1] * (x.dim() - 1)))
        x_mix = lam_x * x + (1 - lam_x) * x[pair]  # x~
        f_mix = self.D.backbone.features(x_mix)  # f(x~), (n, F)
        lam_f = lam.view(n, *([1] * (f_a.dim() - 1)))
        target = lam_f * f_a + (1 - lam_f) * f_a[pair]  # lambda f(x_a) + (1 - lambda) f(x_b)
        noise = rng.randn(n, *f_a.shape[1:], device=x.device)  # (n, F)
        m = (target.float() + term.noise_std * noise).detach()  # sg(m)
        shrink = -F.cosine_similarity(f_mix.float().flatten(1), m.flatten(1), dim=1)  # L_AM, (n,) float32
        out.adv = self.D.head(target, y).adv + self.D.head(f_mix, y).adv  # (n,)
        out.extras["adaptive_mix"] = shrink
        out.extras["adaptive_mix_lambda"] = lam
        return out


@REGULARIZERS.register(NAME)
class AdaptiveMix(ObjectiveTerm):
    """AdaptiveMix (Liu 2023): mixed inputs' D features pulled toward the mixed features, -cos(f(x~), sg(m)).

    Args:
        weight: weight of the shrinkage loss in D's and G's losses (1, as the reference).
        alpha: lambda ~ Beta(alpha, alpha) per sample (1: uniform, as the reference).
        noise_std: std of the Gaussian noise added to the target features m (0.05, the reference's default).
    """

    may_be_negative = True  # -cos in [-1, 1], as the reference (1 - cos would differ by a constant only)

    def __init__(self, weight: float = 1.0, alpha: float = 1.0, noise_std: float = 0.05):
        self.weight = check_nonnegative(weight, f"{NAME}.weight")
        self.alpha = check_positive_float(alpha, f"{NAME}.alpha")
        self.noise_std = check_nonnegative(noise_std, f"{NAME}.noise_std")

    def prepare(self, ctx: Context) -> None:
        """Replace ctx.D by the AdaptiveMix wrapper for this micro-batch (once)."""
        if isinstance(ctx.D, AdaptiveMixD):
            return
        if not (hasattr(ctx.D, "backbone") and hasattr(ctx.D, "head")):
            raise GanforgeError(f"{NAME}: needs a Discriminator made of a backbone (the trunk f) and a head, got "
                                f"{type(ctx.D).__name__}")
        ctx.D = AdaptiveMixD(ctx.D, self, ctx)
        ctx.reset()

    def shrinkage(self, out: DOutput) -> torch.Tensor:
        """Mean L_AM of one wrapped D call."""
        if "adaptive_mix" not in out:
            raise GanforgeError(f"{NAME}: D's output carries no shrinkage loss; the term's prepare(ctx) must wrap "
                                f"ctx.D before any term computes (the phase runner does)")
        return out.adaptive_mix.mean()

    def d_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        return {"adaptive_mix": self.weight * (self.shrinkage(ctx.d_real) + self.shrinkage(ctx.d_fake))}

    def g_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        return {"adaptive_mix_g": self.weight * self.shrinkage(ctx.d_fake)}

    def __repr__(self) -> str:
        return f"AdaptiveMix(weight={self.weight}, alpha={self.alpha}, noise_std={self.noise_std})"

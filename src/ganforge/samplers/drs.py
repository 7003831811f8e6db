"""Discriminator Rejection Sampling (DRS).

Azadi et al., "Discriminator Rejection Sampling", ICLR 2019. With d(x) = log p_data(x) / p_g(x) (D's logit), rejection
sampling with proposal p_g accepts x with probability p_data / (M p_g) = exp(d(x) - D*_M), M = exp(D*_M) the largest
density ratio. The practical scheme (Sec. 3.2, Algorithm 1):

- burn-in: D*_M = the largest logit over `burn_in` proposals; afterwards raised whenever a proposal exceeds it;
- F(x) = d(x) - D*_M - log(1 - exp(d(x) - D*_M - eps)) - gamma    (eps for numerical stability)
- accept x when u <= sigmoid(F(x)), u ~ U[0, 1].

With gamma = 0, sigmoid(F) = exp(d - D*_M) up to eps: exact rejection sampling, whose accepted samples follow p_data
and whose acceptance rate is 1/M. gamma > 0 lowers acceptance, most for the samples D likes least; the paper sets it
dynamically, per batch of proposals, to a percentile of F (`percentile`: default 95, the value of Uber's MH-GAN
re-implementation of DRS, which also uses eps = 1e-6); `gamma=<number>` fixes it instead. `burn_in` = 10000 is
ganforge's choice (enough to find the maximum of a smooth logit; too few only start D*_M low, since it is raised).
With gamma != 0 the accepted distribution is no longer exactly p_data: the paper gives that up for control over
how many samples are kept.

How samples are filled: sample i of the n requested keeps its plain latent's label (`sampling.latents`), and its
first proposal is its plain latent; every round proposes `batch_size` candidates spread over the still-empty slots of
the current batch (fresh latents from generator(seed, "drs")), and a slot takes its first accepted candidate. So the
requested labels are honoured exactly, class by class, and with everything accepted the samples are G's own.
(Departure: Algorithm 1 keeps whatever is accepted, so its class mix may shift; here each class is corrected within
itself and the mix is the one asked for.) D*_M is updated in proposal order (a running maximum), as in Algorithm 1.

D's logit is the log density ratio only for a D trained with the logistic (vanilla / ns) loss and well calibrated;
otherwise set `calibrate=True` (a logistic regression a d + b on real training images vs fakes, see base.py), as the
paper does (it recalibrates D on held-out data). `stats`: proposals, accepted, acceptance_rate (accepted / proposed,
also in `report()`, so evaluation prints it), max_logit (final D*_M).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..checks import check_int
from ..errors import GanforgeError
from ..registries import SAMPLERS
from ..training.rng import generator
from .base import Batches, Sampler

MAX_ROUNDS = 1000  # rounds of batch_size proposals one batch of samples may take before giving up


@SAMPLERS.register("drs")
class DRS(Sampler):
    """DRS (Azadi 2019): accept G's samples with prob sigmoid(F(x)) from D's logit and its max D*_M; acceptance rate.

    Args:
        burn_in: proposals whose largest logit starts D*_M.
        percentile: gamma is this percentile of F over each batch of proposals (when `gamma` is None).
        gamma: a fixed gamma instead (0: exact rejection sampling).
        eps: the stability constant in log(1 - exp(d - D*_M - eps)).
        calibrate: use a logistic recalibration a d + b of D's logit (see `ganforge.samplers.base`).
        calibration_samples: real images (and as many fakes) the recalibration fits on.
    """

    name = "drs"

    def __init__(self, burn_in: int = 10000, percentile: float = 95.0, gamma: float | None = None, eps: float = 1e-6,
                 calibrate: bool = False, calibration_samples: int = 5000):
        super().__init__(calibrate, calibration_samples)
        self.burn_in = check_int(burn_in, "drs.burn_in", minimum=1)
        if not 0.0 <= percentile <= 100.0:
            raise GanforgeError(f"drs.percentile: expected a number in [0, 100], got {percentile!r}")
        if gamma is not None and not math.isfinite(gamma):
            raise GanforgeError(f"drs.gamma: expected a finite number (or None for the percentile), got {gamma!r}")
        if not (eps > 0 and math.isfinite(eps)):
            raise GanforgeError(f"drs.eps: expected a number > 0, got {eps!r}")
        self.percentile, self.gamma, self.eps = float(percentile), gamma, float(eps)

    def report(self) -> dict[str, float]:
        return {"acceptance_rate": self.stats["acceptance_rate"]} if "acceptance_rate" in self.stats else {}

    def summary(self) -> str:
        if "proposals" not in self.stats:
            return ""
        st = self.stats
        return f"drs: accepted {st['accepted']} of {st['proposals']} proposals ({100 * st['acceptance_rate']:.1f}%)"

    def accept_prob(self, d: torch.Tensor, d_max: torch.Tensor) -> torch.Tensor:
        """sigmoid(F) for logits d (B,) against the running maxima d_max (B,) >= d."""
        delta = d - d_max  # <= 0
        F = delta - torch.log1p(-torch.exp(delta - self.eps))
        gamma = torch.quantile(F, self.percentile / 100) if self.gamma is None else self.gamma
        return torch.sigmoid(F - gamma)

    def _propose(self, G: nn.Module, D: nn.Module, z: torch.Tensor, y: torch.Tensor | None, device
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        yd = None if y is None else y.to(device)
        x = G(z.to(device), yd)
        return x, self.logit(D, x, yd).cpu()

    def _draw(self, G, D, z, y, batch_size, device, seed, truncation) -> Batches:
        gen = generator(seed, "drs")
        with torch.no_grad():
            d_max = torch.tensor(-math.inf)
            for i in range(0, self.burn_in, batch_size):  # burn-in: D*_M from proposals like the ones to come
                m = min(batch_size, self.burn_in - i)
                yb = None if y is None else y[torch.randint(len(y), (m,), generator=gen)]
                _, d = self._propose(G, D, G.sample_z(m, generator=gen, truncation=truncation), yb, device)
                d_max = torch.maximum(d_max, d.max())
        proposals = accepted = 0
        for i in range(0, len(z), batch_size):
            slots_z, slots_y = z[i: i + batch_size], None if y is None else y[i: i + batch_size]
            k = len(slots_z)
            out: torch.Tensor | None = None
            filled = torch.zeros(k, dtype=torch.bool)
            for round_ in range(MAX_ROUNDS):
                pending = (~filled).nonzero().squeeze(1)
                slot = pending[torch.arange(batch_size) % len(pending)]  # (batch_size,) slot of each candidate
                fresh = G.sample_z(batch_size - (k if round_ == 0 else 0), generator=gen, truncation=truncation)
                # round 0: each slot's plain latent first, through G on its own (bit-identical to plain sampling)
                parts = ([slots_z] if round_ == 0 else []) + ([fresh] if len(fresh) else [])
                yc, start, xs, ds = None if slots_y is None else slots_y[slot], 0, [], []
                with torch.no_grad():
                    for zp in parts:
                        xp, dp = self._propose(G, D, zp, None if yc is None else yc[start: start + len(zp)], device)
                        xs, ds, start = xs + [xp], ds + [dp], start + len(zp)
                    x, d = torch.cat(xs), torch.cat(ds)
                    running = torch.maximum(torch.cummax(d, 0).values, d_max)  # D*_M raised in proposal order
                    d_max = running[-1]
                    u = torch.rand(batch_size, generator=gen)
                    ok = u <= self.accept_prob(d, running)
                proposals, accepted = proposals + batch_size, accepted + int(ok.sum())
                self.stats.update(proposals=proposals, accepted=accepted, acceptance_rate=accepted / proposals,
                                  max_logit=float(d_max))
                # each empty slot takes its first accepted candidate
                first = torch.full((k,), batch_size, dtype=torch.long)
                hits = ok.nonzero().squeeze(1)
                first.scatter_reduce_(0, slot[hits], hits, reduce="amin")
                new = (first < batch_size) & ~filled
                if out is None:
                    out = torch.empty(k, *x.shape[1:], dtype=torch.float32)
                out[new] = x[first[new].to(x.device)].float().cpu()
                filled |= new
                if filled.all():
                    break
            else:
                raise GanforgeError(f"drs: {int((~filled).sum())} sample(s) still rejected after {MAX_ROUNDS} rounds "
                                    f"of {batch_size} proposals (acceptance rate {accepted / proposals:.2g}); lower "
                                    f"drs.percentile or set drs.gamma lower")
            yield out, slots_y

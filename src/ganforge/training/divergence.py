"""Divergence that stays finite: what a NaN/Inf check misses.

A run whose learning rate is far too high can go on for hours with losses of 1e33 and generated points at 1e17, all
finite, and end with "modes=0". The guard looks at what each phase already computed (no extra forward passes):

- losses and D's logits beyond `train.guard_value` in absolute value;
- generated samples reaching more than `train.guard_output` times the largest absolute value of the real batch (for
  images in [-1, 1] with a tanh output this cannot fire; for points and unbounded outputs it catches the blow-up);
- collapse to one point: the spread of the generated batch (per-dimension standard deviation over the batch,
  averaged) below `train.guard_collapse` times that of the real batch for `train.guard_patience` G steps in a row.

Each bound is disabled by setting it to 0. Losses are checked in every phase (they are on the host anyway); the
sample and logit measurements are taken in the G phase of every `EVERY`-th step (they cost a few reductions and one
transfer, ~8% of a small MLP's step when taken in every phase) and moved to the host in one transfer. Under DDP the
verdict is agreed across ranks (by the phase runner) so that every rank stops at the same step.
"""
from __future__ import annotations

import torch

from ..objectives.base import Context


class DivergenceGuard:
    EVERY = 4  # G steps between sample/logit measurements

    def __init__(self, value: float, output: float, collapse: float, patience: int):
        self.value, self.output, self.collapse, self.patience = value, output, collapse, patience
        self.collapsed_for = 0  # consecutive G steps with a collapsed generated batch (checkpointed)

    @classmethod
    def from_config(cls, train) -> "DivergenceGuard":
        return cls(train.guard_value, train.guard_output, train.guard_collapse, train.guard_patience)

    # --------------------------------------------------------------------------------------------- measurements
    def due(self, net: str, step: int) -> bool:
        """Whether this phase's samples and logits are measured."""
        return net == "G" and step % self.EVERY == 0 and (self.value > 0 or self.output > 0 or self.collapse > 0)

    def measure(self, ctx: Context) -> torch.Tensor | None:
        """(max |D logit|, max |fake| / max |real|, spread(fake) / spread(real)) of a micro-batch; NaN where absent."""
        nan = float("nan")
        logits = [o.adv.detach().float().abs().amax() for o in (ctx.cached("d_real"), ctx.cached("d_fake"))
                  if o is not None and o.adv.numel()]
        fake = ctx.cached("fake")
        ratio = spread = None
        if fake is not None and fake.numel():
            fake, real = fake.detach().float(), ctx.real.detach().float()
            ratio = fake.abs().amax() / real.abs().amax().clamp_min(1e-12)
            if len(fake) > 1 and len(real) > 1:
                spread = fake.flatten(1).std(0).mean() / real.flatten(1).std(0).mean().clamp_min(1e-12)
        if not logits and ratio is None:
            return None
        parts = [torch.stack(logits).amax() if logits else None, ratio, spread]
        device = ctx.real.device
        return torch.stack([p if p is not None else torch.tensor(nan, device=device) for p in parts])

    @staticmethod
    def combine(measured: list[torch.Tensor]) -> list[float] | None:
        """One host transfer for a phase's micro-batches: the largest logit and output ratio, the mean spread."""
        if not measured:
            return None
        m = torch.stack(measured)
        spread = m[:, 2]
        spread = spread[~spread.isnan()]
        out = [m[:, 0].nan_to_num(nan=0.0).amax(), m[:, 1].nan_to_num(nan=0.0).amax(),
               spread.mean() if len(spread) else torch.tensor(float("nan"), device=m.device)]
        return torch.stack(out).tolist()

    # ------------------------------------------------------------------------------------------------- verdict
    def verdict(self, phase_net: str, losses: dict[str, float], measured: list[float] | None) -> str | None:
        """Why this phase's numbers mean the run diverged, or None. G phases advance the collapse counter."""
        if self.value > 0:
            big = {k: v for k, v in losses.items() if abs(v) > self.value}
            if big:
                k, v = max(big.items(), key=lambda kv: abs(kv[1]))
                return f"loss {k}={v:.4g} is beyond the bound train.guard_value={self.value:g}"
        if measured is None:
            return None
        logit, ratio, spread = measured
        if self.value > 0 and logit > self.value:
            return f"D logits reach {logit:.4g}, beyond the bound train.guard_value={self.value:g}"
        if self.output > 0 and ratio > self.output:
            return (f"generated samples reach {ratio:.4g}x the largest real value (bound "
                    f"train.guard_output={self.output:g})")
        if phase_net == "G" and self.collapse > 0 and spread == spread:  # spread is NaN when not measured
            self.collapsed_for = self.collapsed_for + self.EVERY if spread < self.collapse else 0
            if self.collapsed_for >= max(self.patience, 1):
                return (f"G collapsed to one point: the spread of its samples has stayed below "
                        f"train.guard_collapse={self.collapse:g} of the data's for {self.collapsed_for} G steps "
                        f"(now {spread:.3g})")
        return None

    def state_dict(self) -> dict[str, int]:
        return {"collapsed_for": self.collapsed_for}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.collapsed_for = int(state.get("collapsed_for", 0))

"""LeCam regularization.

Tseng et al., "Regularizing Generative Adversarial Networks under Limited Data", 2021 (Eq. 3):
R_LC = E_x[||D(x) - alpha_F||^2] + E_z[||D(G(z)) - alpha_R||^2], where alpha_R / alpha_F are exponential moving
averages of D's mean output on reals / fakes (the "anchors"). It keeps D's predictions on reals and fakes from drifting
apart, which matters most when data is scarce. The authors' released code applies the square only on the side that
moves away from the anchor (relu before the square); `one_sided` selects that form (default) or the paper's Eq. 3.

Anchors: updated once per D step from the mean logits of the *global* batch (the trainer's `d_real` / `d_fake`
statistics, reduced over ranks and accumulation rounds), so DDP, gradient accumulation and resume all see the same
anchors. The penalty of a step uses the anchors of the steps before it (the authors update first and then penalise
with the current batch included; a one-step lag is what makes the term exact under data parallelism). The first D
step sets the anchors and has no penalty. Before `start` D steps the anchors simply follow the last batch (decay 0),
as StudioGAN's CIFAR configs do with 1000.

State (checkpointed): {"ema_real", "ema_fake", "steps"}.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import GanforgeError
from ..registries import REGULARIZERS
from .base import Context, ObjectiveTerm
from .gradients import check_nonnegative


@REGULARIZERS.register("lecam")
class LeCamRegularizer(ObjectiveTerm):
    """LeCam (Tseng 2021): weight * (|D(x_r) - ema(D(x_f))|^2 + |ema(D(x_r)) - D(x_f)|^2), EMA anchors in state_dict.

    Args:
        weight: lambda in the paper.
        decay: EMA decay of the anchors (per D step).
        one_sided: penalise only D(x_r) above the fake anchor and D(x_f) below the real anchor (authors' code);
            False gives the two-sided squares of Eq. 3.
        start: D steps during which the anchors follow the last batch's means (decay 0) before averaging.
    """

    update_every = 1  # the anchors move after every D step

    def __init__(self, weight: float = 0.3, decay: float = 0.99, one_sided: bool = True, start: int = 0):
        self.weight = check_nonnegative(weight, "lecam.weight")
        if not 0.0 <= decay < 1.0:
            raise GanforgeError(f"lecam.decay: expected a number in [0, 1), got {decay!r}")
        if start < 0:
            raise GanforgeError(f"lecam.start: expected a number of D steps >= 0, got {start!r}")
        self.decay, self.one_sided, self.start = decay, one_sided, start
        self.ema_real = 0.0  # alpha_R
        self.ema_fake = 0.0  # alpha_F
        self.steps = 0  # anchor updates so far

    def update(self, stats: dict[str, float]) -> None:
        """Move the anchors toward this D step's global mean logits (the first update sets them)."""
        real_mean, fake_mean = stats["d_real"], stats["d_fake"]
        d = self.decay if self.steps >= max(self.start, 1) else 0.0
        self.ema_real = d * self.ema_real + (1 - d) * real_mean
        self.ema_fake = d * self.ema_fake + (1 - d) * fake_mean
        self.steps += 1

    def d_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        real, fake = ctx.d_real.adv.float(), ctx.d_fake.adv.float()  # (B,), (B,): also feed the anchors' statistics
        if self.steps == 0:
            return {}  # no anchors yet
        # Eq. 3: reals are pulled toward the fake anchor, fakes toward the real anchor.
        gap_real, gap_fake = real - self.ema_fake, self.ema_real - fake
        if self.one_sided:
            gap_real, gap_fake = F.relu(gap_real), F.relu(gap_fake)
        return {"lecam": self.weight * (gap_real.pow(2).mean() + gap_fake.pow(2).mean())}

    def log_values(self) -> dict[str, float]:
        return {"lecam_anchor_real": self.ema_real, "lecam_anchor_fake": self.ema_fake}

    def state_dict(self) -> dict[str, float | int]:
        """The anchors and the number of updates, for checkpoints."""
        return {"ema_real": self.ema_real, "ema_fake": self.ema_fake, "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict()` returned."""
        missing = {"ema_real", "ema_fake", "steps"} - set(state)
        if missing:
            raise GanforgeError(f"lecam state: missing key(s) {', '.join(sorted(missing))}")
        self.ema_real, self.ema_fake = float(state["ema_real"]), float(state["ema_fake"])
        self.steps = int(state["steps"])

    def __repr__(self) -> str:
        return f"LeCamRegularizer(weight={self.weight}, decay={self.decay}, one_sided={self.one_sided})"

"""LeCam regularization.

Tseng et al., "Regularizing Generative Adversarial Networks under Limited Data", 2021 (Eq. 3):
R_LC = E_x[||D(x) - alpha_F||^2] + E_z[||D(G(z)) - alpha_R||^2], where alpha_R / alpha_F are exponential moving
averages of D's mean output on reals / fakes (the "anchors"). It keeps D's predictions on reals and fakes from drifting
apart, which matters most when data is scarce. The authors' released code applies the square only on the side that
moves away from the anchor (relu before the square); `one_sided` selects that form (default) or the paper's Eq. 3.

State: the anchors are training state. `state_dict()` returns {"ema_real", "ema_fake", "steps"} (tensors) and
`load_state_dict()` restores them, so a checkpoint that saves the term resumes with the same anchors. The anchors
update once per `d_terms` call (i.e. per D step), before the penalty is computed, and start from the first batch's
means.
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
    """

    def __init__(self, weight: float = 0.3, decay: float = 0.99, one_sided: bool = True):
        self.weight = check_nonnegative(weight, "lecam.weight")
        if not 0.0 <= decay < 1.0:
            raise GanforgeError(f"lecam.decay: expected a number in [0, 1), got {decay!r}")
        self.decay = decay
        self.one_sided = one_sided
        self.ema_real = torch.zeros(())  # alpha_R
        self.ema_fake = torch.zeros(())  # alpha_F
        self.steps = 0

    def _update(self, real_mean: torch.Tensor, fake_mean: torch.Tensor) -> None:
        """Move the anchors toward this batch's mean logits (the first batch sets them)."""
        if self.steps == 0:
            self.ema_real, self.ema_fake = real_mean, fake_mean
        else:
            d = self.decay
            self.ema_real = d * self.ema_real.to(real_mean) + (1 - d) * real_mean
            self.ema_fake = d * self.ema_fake.to(fake_mean) + (1 - d) * fake_mean
        self.steps += 1

    def d_terms(self, ctx: Context) -> dict[str, torch.Tensor]:
        real, fake = ctx.d_real.adv.float(), ctx.d_fake.adv.float()  # (B,), (B,)
        self._update(real.detach().mean(), fake.detach().mean())
        # Eq. 3: reals are pulled toward the fake anchor, fakes toward the real anchor.
        gap_real, gap_fake = real - self.ema_fake, self.ema_real - fake
        if self.one_sided:
            gap_real, gap_fake = F.relu(gap_real), F.relu(gap_fake)
        return {"lecam": self.weight * (gap_real.pow(2).mean() + gap_fake.pow(2).mean())}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The anchors and the number of updates, for checkpoints."""
        return {"ema_real": self.ema_real.detach().clone(), "ema_fake": self.ema_fake.detach().clone(),
                "steps": torch.tensor(self.steps)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what `state_dict()` returned."""
        missing = {"ema_real", "ema_fake", "steps"} - set(state)
        if missing:
            raise GanforgeError(f"lecam state: missing key(s) {', '.join(sorted(missing))}")
        self.ema_real = torch.as_tensor(state["ema_real"]).detach().clone().float()
        self.ema_fake = torch.as_tensor(state["ema_fake"]).detach().clone().float()
        self.steps = int(state["steps"])

    def __repr__(self) -> str:
        return f"LeCamRegularizer(weight={self.weight}, decay={self.decay}, one_sided={self.one_sided})"

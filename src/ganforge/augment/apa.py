"""APA: adaptive pseudo augmentation (Jiang et al., "Deceive D: Adaptive Pseudo Augmentation for GAN Training with
Limited Data", NeurIPS 2021).

In D phases, before any term computes (`prepare(ctx)`), each real of the micro-batch is replaced with probability p
by the detached fake of the same row, and D is then trained with the *real* label on the mixed batch:

    x~_r = flag * x_f + (1 - flag) * x_r,   flag ~ Bernoulli(p) per sample (one `ctx.sample_rng()` draw),

so the row's flag is the same under one process, N ranks or any accumulation round. Class-conditional runs give the
replaced rows the fake's label (y~_r = y_f there). Everything that reads `ctx.real` afterwards sees x~_r: the
adversarial loss, R1 (as in DeceiveD) and the `d_real_sign` statistic. G phases are left alone.
The fakes are those of the same D step (`ctx.fake`, cached, so D(fake) sees the very same fakes), as in StudioGAN
(`utils/apa_aug.py`); DeceiveD instead reuses the fakes of the latest G-main forward, which this trainer does not
keep across phases. Only the cached D(real) is dropped after the substitution; the cached fake and D(fake) are kept.

p follows `schedule`, as ADA's (`ada.py`, shared rule in `adaptive.py`):
- "adaptive": every `interval` D steps, lambda_r = E[sign D(x~_r)] over the window (measured after the
  substitution, the trainer's `d_real_sign`) and p <- clip(p + sign(lambda_r - target) * N_window /
  (apa_kimg * 1000), 0, 1), N_window = batch_size * interval. With B = 64, interval 4, apa_kimg 500:
  |dp| = 5.12e-4 per adjustment. Defaults: p starts at 0, target 0.6, apa_kimg 500 (the paper uses 100 on resume).
- "fixed": p stays at `p`.
- "linear": p = p + (p_end - p) * progress, set every `interval` D steps.
DeceiveD only clamps p at 0; like StudioGAN (and ADA here) it is clamped to [0, 1], which is where a probability
lives. p is a float64 buffer (checkpointed) logged as `apa_p`; the last lambda_r is logged as `apa_rt` in every
schedule.

`augment` (default none) names an image augmentation applied on top (DeceiveD's --with-dataaug), built from
AUGMENTATIONS with the run's build context: `forward` applies it to every batch D sees, `update` forwards the
statistics to it when it is stateful (e.g. ADA, whose window must then be APA's `interval`), and its state is part of
this module's state_dict (`inner.*`). APA cannot wrap APA.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

import torch

from ..errors import GanforgeError
from ..registries import AUGMENTATIONS
from ..training.rng import SampleRNG
from ..training.stats import is_stateful
from .adaptive import ScheduledP
from .base import Augment

if TYPE_CHECKING:
    from ..objectives.base import Context


def _build_inner(spec: str | dict | None, context: dict[str, Any]) -> Augment:
    """The augmentation named by the `augment` option ({name: ..., **options} or a name), with the build context."""
    where = "augment.augment"
    if spec is None:
        spec = {"name": "none"}
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec.get("name"), str):
        raise GanforgeError(f"{where}.name: expected the name of an augmentation (one of: "
                            f"{', '.join(n for n in AUGMENTATIONS.names() if n != 'apa')}), got {spec.get('name')!r}")
    if spec["name"] == "apa":
        raise GanforgeError(f"{where}: APA cannot wrap APA; choose an image augmentation (e.g. diffaugment or ada)")
    options = {k: v for k, v in spec.items() if k != "name"}
    try:
        inner = AUGMENTATIONS.build(spec["name"], options, where=where, **context)
    except GanforgeError as e:  # constructors name their keys "augment.<key>"; here they live under augment.augment
        msg = str(e)
        if msg.startswith("augment.") and not msg.startswith(where):
            raise GanforgeError(where + msg[len("augment"):]) from None
        raise
    if isinstance(inner, APA):  # e.g. a plugin registering a subclass under another name
        raise GanforgeError(f"{where}: APA cannot wrap APA ({spec['name']!r} is one)")
    return inner


@AUGMENTATIONS.register("apa")
class APA(ScheduledP):
    """APA (Jiang 2021): D phases see each real replaced by the same row's fake with probability p (adapted as ADA).

    Args:
        p: initial (adaptive), constant (fixed) or starting (linear) probability of replacing a real; 0 in the paper.
        target: lambda_r = E[sign D(x~_r)] the adaptive rule steers toward (0.6 in the paper), in [0, 1].
        apa_kimg: thousands of real images over which p can move by 1 (500; 100 when resuming in the paper).
        interval: D steps per adjustment (the statistics window; 4 in the paper).
        schedule: "adaptive", "fixed" or "linear" (from p to p_end over training).
        p_end: final probability of the linear schedule (only with schedule "linear").
        augment: image augmentation applied on top, {name: ..., **options} (DeceiveD's --with-dataaug); none.
    """

    def __init__(self, p: float = 0.0, target: float = 0.6, apa_kimg: float = 500.0, interval: int = 4,
                 schedule: Literal["adaptive", "fixed", "linear"] = "adaptive", p_end: float | None = None,
                 augment: str | dict | None = None, **context):
        super().__init__()
        self.init_schedule(p, target, apa_kimg, "apa_kimg", interval, schedule, p_end, target_low=0.0)
        self.inner = _build_inner(augment, context)  # the run's build context, handed on
        if is_stateful(self.inner) and self.inner.update_every != interval:  # one statistics window feeds both
            raise GanforgeError(f"augment.augment.interval: the inner augmentation adapts every "
                                f"{self.inner.update_every} D steps, APA every {interval}; set both intervals equal")

    # -------------------------------------------------------------------------------------- the pseudo-real swap
    def prepare(self, ctx: "Context") -> None:
        """D phases: x~_r = flag * x_f + (1 - flag) * x_r per row, flag ~ Bernoulli(p); labels follow the fakes."""
        hook = getattr(self.inner, "prepare", None)
        if hook is not None:
            hook(ctx)
        if ctx.phase != "D" or self._p == 0.0:  # p is the same on every rank, so every rank skips alike
            return
        real = ctx.real
        flag = ctx.sample_rng().bernoulli(self._p, real.shape[0], device=real.device)  # (B,) bool
        fake = ctx.fake  # this D step's detached fakes, cached: D(fake) will use the same ones
        ctx.real = torch.where(flag.view(-1, *[1] * (real.dim() - 1)), fake.to(real.dtype), real)
        if ctx.y_real is not None and ctx.y_fake is not None:
            ctx.y_real = torch.where(flag, ctx.y_fake, ctx.y_real)
        ctx.reset("d_real")  # D(real) of the old batch (if a term's prepare made it) is stale

    def forward(self, x: torch.Tensor, rng: SampleRNG | None = None) -> torch.Tensor:
        return self.inner(x, rng=rng)

    # -------------------------------------------------------------------------------------------------- the p rule
    def update(self, stats: dict[str, float]) -> None:
        """Hand the window to a stateful inner augmentation, then move p by the schedule (module docstring);
        lambda_r is kept in every schedule (it shows how far D separates the substituted reals)."""
        if is_stateful(self.inner):
            self.inner.update(stats)
        rt = float(stats.get("d_real_sign", float("nan")))
        if math.isfinite(rt):
            self.rt.fill_(rt)
        super().update(stats)

    @property
    def apa_kimg(self) -> float:
        """The `apa_kimg` option: thousands of real images over which p can move by 1."""
        return self.kimg

    def log_values(self) -> dict[str, float]:
        return {**self.p_values("apa"), **self.inner.log_values()}

    def extra_repr(self) -> str:
        return (f"p={self._p:.6g}, schedule={self.schedule!r}, target={self.target}, apa_kimg={self.kimg}, "
                f"interval={self.update_every}")

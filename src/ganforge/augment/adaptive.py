"""The overfitting heuristic shared by adaptive augmentations (ADA's p, Diffusion-GAN's T).

Karras et al. 2020 (ADA), Sec. 3: r_t = E[sign D(x_real)] over a window of D steps measures how far D separates the
reals; every window p <- clip(p + sign(r_t - target) * N_window / (ada_kimg * 1000), 0, 1), with N_window the real
images of the window, so p can cross [0, 1] in ada_kimg thousand images. Diffusion-GAN maps the same p to its T.
"""
from __future__ import annotations

import math

import torch

from ..errors import GanforgeError
from .base import Augment


def overfitting_step(p: float, stats: dict[str, float], target: float, ada_kimg: float, who: str
                     ) -> tuple[float, float] | None:
    """(new p, r_t) from one statistics window, or None when r_t is not finite (the window saw no reals)."""
    if "d_real_sign" not in stats:
        raise GanforgeError(f"augment: {who} needs E[sign D(real)], but the D phase did not run D on reals; use "
                            f"schedule 'fixed'")
    rt = float(stats["d_real_sign"])
    if not math.isfinite(rt):
        return None
    step = math.copysign(1.0, rt - target) if rt != target else 0.0
    return min(max(p + step * float(stats["window_nimg"]) / (ada_kimg * 1000), 0.0), 1.0), rt


SCHEDULES = ("adaptive", "fixed", "linear")


def check_schedule(kimg_key: str, kimg: object, interval: object, schedule: object, p_end: object) -> None:
    """One-line errors (naming augment.<key>) for the options every p-adapting augmentation shares."""
    if isinstance(kimg, bool) or not isinstance(kimg, (int, float)) or not kimg > 0:
        raise GanforgeError(f"augment.{kimg_key}: expected a positive number of kimg, got {kimg!r}")
    if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
        raise GanforgeError(f"augment.interval: expected a whole number of D steps >= 1, got {interval!r}")
    if schedule not in SCHEDULES:
        raise GanforgeError(f"augment.schedule: expected one of 'adaptive', 'fixed', 'linear', got {schedule!r}")
    if schedule == "linear" and p_end is None:
        raise GanforgeError("augment.p_end: schedule 'linear' needs p_end, the probability at the end of training")
    if schedule != "linear" and p_end is not None:
        raise GanforgeError(f"augment.p_end: only used with schedule 'linear', but schedule is {schedule!r}")


def _number(key: str, value: object, low: float, high: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise GanforgeError(f"augment.{key}: expected {what}, got {value!r}")
    return float(value)


class ScheduledP(Augment):
    """An augmentation whose probability p follows `schedule` (ADA, APA): "adaptive" (`overfitting_step`), "fixed",
    or "linear" from p to p_end over training; p is a float64 buffer (checkpointed) with a python copy (no device
    sync when it is read), and the last r_t = E[sign D(real)] of a window is kept in `rt` (NaN before the first)."""

    def init_schedule(self, p: object, target: object, kimg: object, kimg_key: str, interval: object,
                      schedule: object, p_end: object, target_low: float = -1.0) -> None:
        """Check and store the schedule options (one-line errors naming augment.<key>)."""
        self.p_start = _number("p", p, 0.0, 1.0, "a probability in [0, 1]")
        self.target = _number("target", target, target_low, 1.0,
                              f"a value of E[sign D(real)] in [{target_low:g}, 1]")
        check_schedule(kimg_key, kimg, interval, schedule, p_end)
        self.p_end = None if p_end is None else _number("p_end", p_end, 0.0, 1.0, "a probability in [0, 1]")
        self.kimg, self.schedule, self.update_every = float(kimg), schedule, interval
        self.register_buffer("p", torch.tensor(self.p_start, dtype=torch.float64))
        self.register_buffer("rt", torch.tensor(float("nan"), dtype=torch.float64))
        self._p = self.p_start

    def update(self, stats: dict[str, float]) -> None:
        """Move p by the schedule from one statistics window (the adaptive rule also keeps the window's r_t)."""
        if self.schedule == "linear":
            progress = min(max(float(stats["progress"]), 0.0), 1.0)
            self._set_p(self.p_start + (self.p_end - self.p_start) * progress)
        elif self.schedule == "adaptive":
            moved = overfitting_step(self._p, stats, self.target, self.kimg, f"{type(self).__name__}'s adaptive p")
            if moved is not None:
                self._set_p(moved[0])
                self.rt.fill_(moved[1])

    def set_hyperparameter(self, option: str, value: float) -> None:
        """A value from the config's `schedules` (training/schedules.py): only p, and only with schedule 'fixed'."""
        if option != "p":
            raise GanforgeError(f"schedules: augment {type(self).__name__} takes only p from a schedule, not {option!r}")
        if self.schedule != "fixed":
            raise GanforgeError(f"schedules: a scheduled augment.p needs augment.schedule 'fixed' (the "
                                f"{self.schedule!r} schedule moves p itself)")
        self._set_p(min(max(value, 0.0), 1.0))

    def _set_p(self, value: float) -> None:
        self.p.fill_(value)
        self._p = float(value)

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._p = float(self.p)

    def p_values(self, prefix: str) -> dict[str, float]:
        """{PREFIX_p, PREFIX_rt (once measured)} for the training log."""
        rt = float(self.rt)
        return {f"{prefix}_p": self._p, **({f"{prefix}_rt": rt} if math.isfinite(rt) else {})}

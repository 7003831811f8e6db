"""The overfitting heuristic shared by adaptive augmentations (ADA's p, Diffusion-GAN's T).

Karras et al. 2020 (ADA), Sec. 3: r_t = E[sign D(x_real)] over a window of D steps measures how far D separates the
reals; every window p <- clip(p + sign(r_t - target) * N_window / (ada_kimg * 1000), 0, 1), with N_window the real
images of the window, so p can cross [0, 1] in ada_kimg thousand images. Diffusion-GAN maps the same p to its T.
"""
from __future__ import annotations

import math

from ..errors import GanforgeError


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

"""Applies the config's `schedules` (schedules.py) to a live Trainer at the start of every step.

Learning rates and betas go into both Adams' parameter groups with the lazy-regularization rescaling that
`Trainer._optim_hyperparameters` uses (lr x ratio, beta ** ratio); the lr decay multiplier (`optim.lr_decay`) still
applies on top. EMA keys are read by `Trainer.update_ema`. Component keys go to the live loss / regularizer / augment.
"""
from __future__ import annotations

from typing import Any

from ..config import schedule_components
from .phases import lazy_ratio
from .schedules import component_target, set_component_value

_BETA = {"optim.betas.0": 0, "optim.betas.1": 1}


class ScheduleRunner:
    def __init__(self, trainer: Any):
        self.t = trainer
        cfg = trainer.cfg
        components = schedule_components(cfg)
        fixed = {"optim.g_lr": cfg.optim.g_lr, "optim.d_lr": cfg.optim.d_lr, "optim.betas.0": cfg.optim.betas[0],
                 "optim.betas.1": cfg.optim.betas[1], "train.ema_decay": cfg.train.ema_decay,
                 "train.ema_kimg": cfg.train.ema_kimg}
        self.schedules = cfg.schedules
        self.base: dict[str, float] = {}
        self.targets: dict[str, tuple[Any, str, str]] = {}  # key -> (live object, option, label)
        for i, sch in enumerate(self.schedules):
            if sch.key in fixed:
                self.base[sch.key] = float(fixed[sch.key])
                continue
            comp, option, base = component_target(sch.key, components, f"schedules.{i}")
            self.base[sch.key] = base
            self.targets[sch.key] = (self._live(comp), option, f"{comp} {components[comp][0]!r}")
            set_component_value(*self.targets[sch.key][:2], base, self.targets[sch.key][2])  # refused now, not later

    def _live(self, comp: str) -> Any:
        if comp == "augment":
            return self.t.augment
        return next(term for key, term in self.t.terms.items() if key.split(":")[0] == comp)

    def values(self, nimg: int) -> dict[str, float]:
        """key -> scheduled value after `nimg` real images."""
        return {s.key: s.value(self.base[s.key], nimg) for s in self.schedules}

    def apply(self, values: dict[str, float]) -> None:
        if not values:
            return
        o = self.t.cfg.optim
        for net in ("G", "D"):
            ratio = lazy_ratio(self.t.phases, net)
            lr = values.get("optim.g_lr" if net == "G" else "optim.d_lr")
            betas = [values.get(key, o.betas[i]) for key, i in _BETA.items()]
            for group in self.t.opt[net].param_groups:
                if lr is not None:
                    group["base_lr"] = lr * ratio
                if any(key in values for key in _BETA):
                    group["betas"] = (betas[0] ** ratio, betas[1] ** ratio)
        for key, (obj, option, label) in self.targets.items():
            set_component_value(obj, option, values[key], label)

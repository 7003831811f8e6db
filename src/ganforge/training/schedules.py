"""Hyperparameter schedules: values that move with the number of real images shown, as in R3GAN's recipe.

Huang et al., "The GAN is dead; long live the GAN! A Modern Baseline GAN", 2024 (Sec. 4 and its `train.py`) anneal the
learning rate, Adam's beta2, the R1/R2 gamma, the EMA half-life and the augmentation probability over the first
N images with the same curve:

    v(n) = base + (1 - (1 + cos(pi t)) / 2) (to - base),  t = clip((n - start) / N, 0, 1)

(`shape: cosine`, the default; `shape: linear` is base + t (to - base)), constant at `to` afterwards. `base` is the
value the config sets at `key`. A schedule is a pure function of the images shown, so a resumed run gets exactly the
values the uninterrupted one had.

    schedules:
      - {key: optim.g_lr, to: 5.0e-5, kimg: 20000}
      - {key: optim.betas.1, to: 0.99, kimg: 20000}
      - {key: regularizers.0.gamma, to: 0.005, kimg: 20000}
      - {key: train.ema_kimg, to: 5000, kimg: 20000}
      - {key: augment.p, to: 0.55, kimg: 20000}

Keys: optim.g_lr, optim.d_lr, optim.betas.0, optim.betas.1, train.ema_decay, train.ema_kimg, and any numeric option
of a component: `loss.<option>`, `regularizers.<i>.<option>`, `augment.<option>`. A component takes a scheduled
value through `set_hyperparameter(option, value)` when it defines one (ADA's p), otherwise through the attribute of
the option's name, which it must read at every step (R1's gamma).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import GanforgeError

SHAPES: dict[str, Callable[[float], float]] = {
    "cosine": lambda t: 1.0 - 0.5 * (1.0 + math.cos(math.pi * t)),
    "linear": lambda t: t,
}
FIXED_KEYS = ("optim.g_lr", "optim.d_lr", "optim.betas.0", "optim.betas.1", "train.ema_decay", "train.ema_kimg")
COMPONENT_PREFIXES = ("loss", "regularizers", "augment")


@dataclass(frozen=True)
class Schedule:
    key: str
    to: float
    kimg: float
    shape: str = "cosine"
    start_kimg: float = 0.0

    def value(self, base: float, nimg: int) -> float:
        """The scheduled value after `nimg` real images."""
        t = min(max((nimg - self.start_kimg * 1000) / (self.kimg * 1000), 0.0), 1.0)
        return base + SHAPES[self.shape](t) * (self.to - base)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _number(where: str, value: Any, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise GanforgeError(f"{where}: expected a number, got {value!r}")
    if positive and not value > 0:
        raise GanforgeError(f"{where}: expected a number > 0, got {value!r}")
    return float(value)


def parse_schedules(raw: Any) -> list[Schedule]:
    """Validate the `schedules` section (a list of {key, to, kimg, shape, start_kimg}) with one-line errors."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise GanforgeError(f"schedules: expected a list of mappings {{key, to, kimg}}, got {raw!r}")
    out, seen = [], set()
    fields = [f.name for f in dataclasses.fields(Schedule)]
    for i, entry in enumerate(raw):
        where = f"schedules.{i}"
        if not isinstance(entry, dict) or not {"key", "to", "kimg"} <= set(entry):
            raise GanforgeError(f"{where}: expected a mapping with key, to and kimg, got {entry!r}")
        unknown = set(entry) - set(fields)
        if unknown:
            raise GanforgeError(f"{where}.{sorted(unknown)[0]}: unknown key; valid keys: {', '.join(fields)}")
        key = entry["key"]
        if not isinstance(key, str) or not (key in FIXED_KEYS or key.split(".")[0] in COMPONENT_PREFIXES):
            raise GanforgeError(f"{where}.key: expected one of {', '.join(FIXED_KEYS)} or loss.<option>, "
                                f"regularizers.<i>.<option>, augment.<option>; got {key!r}")
        if key in seen:
            raise GanforgeError(f"{where}.key: {key!r} is scheduled twice")
        seen.add(key)
        shape = entry.get("shape", "cosine")
        if shape not in SHAPES:
            raise GanforgeError(f"{where}.shape: expected one of {', '.join(SHAPES)}, got {shape!r}")
        out.append(Schedule(key, _number(f"{where}.to", entry["to"]), _number(f"{where}.kimg", entry["kimg"], True),
                            shape, _number(f"{where}.start_kimg", entry.get("start_kimg", 0.0))))
    return out


def component_target(key: str, components: dict[str, tuple[str, dict[str, Any], dict[str, Any]]], where: str
                     ) -> tuple[str, str, float]:
    """(component config key, option, base value) of a component schedule; `components` maps a config key
    ('loss', 'regularizers.0', 'augment') to (name, options given, defaults)."""
    parts = key.split(".")
    comp = ".".join(parts[:2]) if parts[0] == "regularizers" else parts[0]
    option = ".".join(parts[2:] if parts[0] == "regularizers" else parts[1:])
    if comp not in components:
        raise GanforgeError(f"{where}.key: {key!r} names {comp}, which this config does not have")
    name, given, defaults = components[comp]
    if option not in defaults and option not in given:
        raise GanforgeError(f"{where}.key: {comp} {name!r} has no option {option!r} (options: "
                            f"{', '.join(sorted(defaults)) or 'none'})")
    base = given.get(option, defaults.get(option))
    return comp, option, _number(f"{where}.key: {comp} {name!r} option {option} (the schedule's start)", base)


def set_component_value(obj: Any, option: str, value: float, label: str) -> None:
    """Hand a scheduled value to a live component (`set_hyperparameter`, else the attribute of that name)."""
    setter = getattr(obj, "set_hyperparameter", None)
    if setter is not None:
        setter(option, value)
        return
    if not isinstance(getattr(obj, option, None), (int, float)) or isinstance(getattr(obj, option), bool):
        raise GanforgeError(f"schedules: {label} does not expose option {option!r} as a number it reads every step, "
                            f"so it cannot be scheduled")
    setattr(obj, option, value)

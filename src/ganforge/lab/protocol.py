"""The lab's websocket messages: validation by hand, and the choices offered to the page (GET /api/components).

Every message from the page is one JSON object with a "type" (`MESSAGE_TYPES`). Everything in it is checked here,
where it enters: JSON syntax, field types and ranges (widths, depths, learning rates, batch size), the number of
drawn points (at most `MAX_POINTS`), and component names and options against the registries. A bad message raises
`ProtocolError` with a one-line message naming the field; the server sends it to the page as {"type": "error"} and
keeps the connection. The settings become a ganforge `RunConfig` through `ganforge.config.from_dict`, so the lab
trains exactly what `ganforge train` would with the saved config.
"""
from __future__ import annotations

import functools
import inspect
import json
import math
import re
from typing import Any

import torch

from ..data.points2d import MAX_POINTS, parse_points_csv
from ..errors import GanforgeError
from ..registries import ARCHITECTURES, AUGMENTATIONS, D_HEADS, DATASETS, G_CONDITIONING, LOSSES, REGULARIZERS, load_all

MESSAGE_TYPES = ("config", "points", "play", "pause", "step", "d-step", "g-step", "reset", "save", "frame")
# the built-in 2-D sets the page offers (checked against DATASETS), plus the user's own points ("drawn")
POINT_SETS = ("ring8", "grid25", "line", "two-gaussians", "three-blobs")
DRAWN = "drawn"
MAX_MESSAGE_CHARS = 8_000_000  # a CSV of 10^5 points is about 2.5 MB
MAX_PARAMS = 2_000_000  # G + D parameters a lab session may train
INT_OPTION_RANGE = (1, 1024)  # every integer architecture option (widths, depths, z_dim)
SAVE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

DEFAULTS: dict[str, Any] = {
    "data": {"name": "ring8", "noise": 0.03, "n": 10000},
    "model": {"name": "mlp", "z_dim": 2, "hidden": 64, "layers": 3},
    "loss": {"name": "vanilla"},
    "regularizers": [],
    "augment": {"name": "none"},
    "optim": {"g_lr": 1e-3, "d_lr": 1e-3, "beta1": 0.5, "beta2": 0.99, "d_steps": 1},
    "batch_size": 128,
    "seed": 0,
    "steps": 10000,
    "steps_per_frame": 5,
}
# (low, high, low inclusive, high inclusive) of the float settings
RANGES = {
    "optim.g_lr": (0.0, 0.1, False, True), "optim.d_lr": (0.0, 0.1, False, True),
    "optim.beta1": (0.0, 1.0, True, False), "optim.beta2": (0.0, 1.0, True, False),
    "data.noise": (0.0, 10.0, True, True),
}
INT_RANGES = {"optim.d_steps": (1, 10), "batch_size": (1, 4096), "seed": (0, 2 ** 31 - 1),
              "steps": (1, 10_000_000), "steps_per_frame": (1, 200), "data.n": (0, MAX_POINTS)}


class ProtocolError(GanforgeError):
    """A message the lab cannot act on; its one-line text is shown in the page."""


# ---------------------------------------------------------------------------------------------------- messages
def parse_message(text: str | bytes) -> dict[str, Any]:
    """One message from the page -> a dict with a known "type", or ProtocolError."""
    if isinstance(text, bytes):
        try:
            text = text.decode()
        except UnicodeDecodeError:
            raise ProtocolError("message: not UTF-8 text") from None
    if len(text) > MAX_MESSAGE_CHARS:
        raise ProtocolError(f"message: {len(text)} characters; at most {MAX_MESSAGE_CHARS} (send at most "
                            f"{MAX_POINTS} points)")
    try:
        msg = json.loads(text)
    except json.JSONDecodeError as e:
        raise ProtocolError(f"message: not valid JSON ({e.msg} at character {e.pos})") from None
    if not isinstance(msg, dict):
        raise ProtocolError(f"message: expected a JSON object with a 'type', got {type(msg).__name__}")
    kind = msg.get("type")
    if kind not in MESSAGE_TYPES:
        raise ProtocolError(f"message.type: expected one of {', '.join(MESSAGE_TYPES)}, got {kind!r}")
    if kind == "config":
        msg["config"] = check_settings(msg.get("config", {}))
    elif kind == "points":
        msg["points"] = check_points(msg)
    elif kind == "save":
        msg["name"] = check_save_name(msg.get("name"))
    return msg


def check_points(msg: dict[str, Any]) -> torch.Tensor:
    """{"points": [[x, y], ...]} or {"csv": "x,y\\n..."} -> (M, 2) float32, 1 <= M <= MAX_POINTS."""
    if "csv" in msg:
        if not isinstance(msg["csv"], str):
            raise ProtocolError("points.csv: expected the text of a CSV file")
        try:
            return parse_points_csv(msg["csv"], where="points.csv")
        except GanforgeError as e:
            raise ProtocolError(str(e)) from None
    pts = msg.get("points")
    if not isinstance(pts, list) or not pts:
        raise ProtocolError("points: expected a non-empty list of [x, y] pairs (or 'csv': the text of a CSV file)")
    if len(pts) > MAX_POINTS:
        raise ProtocolError(f"points: {len(pts)} points; at most {MAX_POINTS}")
    for i, p in enumerate(pts):
        if not (isinstance(p, list) and len(p) == 2 and all(_finite_number(v) for v in p)):
            raise ProtocolError(f"points[{i}]: expected [x, y] with two finite numbers, got {str(p)[:40]}")
    return torch.tensor(pts, dtype=torch.float32)


def check_save_name(name: Any) -> str:
    """A run-directory name (letters, digits, . _ -; no path): saves stay inside the server's runs folder."""
    if not isinstance(name, str) or not SAVE_NAME.match(name) or name in (".", ".."):
        raise ProtocolError(f"save.name: expected 1-64 letters, digits, '.', '_' or '-' (no path), got {name!r}")
    return name


def _finite_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# ---------------------------------------------------------------------------------------------------- settings
def check_settings(raw: Any) -> dict[str, Any]:
    """The page's settings merged over DEFAULTS, every field checked; component options checked by the registries."""
    load_all()
    if not isinstance(raw, dict):
        raise ProtocolError(f"config: expected an object, got {type(raw).__name__}")
    unknown = set(raw) - set(DEFAULTS)
    if unknown:
        raise ProtocolError(f"config.{sorted(unknown)[0]}: unknown setting; valid: {', '.join(DEFAULTS)}")
    s = {k: (dict(v) if isinstance(v, dict) else v) for k, v in DEFAULTS.items()}
    for key in ("data", "model", "loss", "augment", "optim"):
        if key in raw:
            if not isinstance(raw[key], dict):
                raise ProtocolError(f"config.{key}: expected an object, got {raw[key]!r}")
            s[key] = {**(s[key] if key in ("optim", "data") else {}), **raw[key]}
    for key in ("batch_size", "seed", "steps", "steps_per_frame"):
        s[key] = raw.get(key, s[key])
    s["regularizers"] = raw.get("regularizers", [])
    _check_numbers(s)
    s["data"] = _check_data(s["data"])
    s["model"] = _check_component(s["model"], ARCHITECTURES, "config.model", architectures())
    _check_architecture_ints(s["model"])
    s["loss"] = _check_component(s["loss"], LOSSES, "config.loss", [c["name"] for c in terms(LOSSES)])
    if not isinstance(s["regularizers"], list) or len(s["regularizers"]) > 8:
        raise ProtocolError("config.regularizers: expected a list of at most 8 {name, ...options} objects")
    allowed = [c["name"] for c in terms(REGULARIZERS)]
    s["regularizers"] = [_check_component(r, REGULARIZERS, f"config.regularizers.{i}", allowed)
                         for i, r in enumerate(s["regularizers"])]
    s["augment"] = _check_component(s["augment"], AUGMENTATIONS, "config.augment", AUGMENTATIONS.names())
    return s


def _check_numbers(s: dict[str, Any]) -> None:
    optim = s["optim"]
    unknown = set(optim) - set(DEFAULTS["optim"])
    if unknown:
        raise ProtocolError(f"config.optim.{sorted(unknown)[0]}: unknown setting; valid: "
                            f"{', '.join(DEFAULTS['optim'])}")
    for key, (lo, hi, lo_in, hi_in) in RANGES.items():
        section, name = key.split(".")
        value = s[section].get(name)
        ok = _finite_number(value) and (lo <= value if lo_in else lo < value) and (value <= hi if hi_in else value < hi)
        if not ok:
            shown = f"{'[' if lo_in else '('}{lo}, {hi}{']' if hi_in else ')'}"
            raise ProtocolError(f"config.{key}: expected a number in {shown}, got {value!r}")
    for key, (lo, hi) in INT_RANGES.items():
        section, _, name = key.rpartition(".")
        value = (s[section] if section else s).get(name)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ProtocolError(f"config.{key}: expected an integer in [{lo}, {hi}], got {value!r}")


def _check_data(data: dict[str, Any]) -> dict[str, Any]:
    name = data.get("name")
    choices = [*point_sets(), DRAWN]
    if name not in choices:
        raise ProtocolError(f"config.data.name: unknown data set {name!r}; choose one of: {', '.join(choices)}")
    extra = set(data) - {"name", "noise", "n"}
    if extra:
        raise ProtocolError(f"config.data.{sorted(extra)[0]}: unknown setting; valid: name, noise, n")
    return data


def _check_component(raw: Any, registry, where: str, allowed: list[str]) -> dict[str, Any]:
    """{name, **options}: the name among `allowed` (those of the registry the lab can train), the options checked
    against the component's signature (`Registry.validate`)."""
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict) or "name" not in raw:
        raise ProtocolError(f"{where}: expected an object with 'name' (one of: {', '.join(allowed)})")
    name = raw["name"]
    if name not in allowed:
        raise ProtocolError(f"{where}.name: unknown {registry.kind} {name!r} for the lab; choose one of: "
                            f"{', '.join(allowed)}")
    opts = {k: v for k, v in raw.items() if k != "name"}
    for key, value in opts.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ProtocolError(f"{where}.{key}: expected a finite number, got {value}")
    try:
        return {"name": name, **registry.validate(name, opts, where)}
    except GanforgeError as e:
        raise ProtocolError(str(e)) from None


def _check_architecture_ints(model: dict[str, Any]) -> None:
    lo, hi = INT_OPTION_RANGE
    for key, value in model.items():
        if isinstance(value, int) and not isinstance(value, bool) and not lo <= value <= hi:
            raise ProtocolError(f"config.model.{key}: expected an integer in [{lo}, {hi}], got {value}")


def run_config_dict(s: dict[str, Any], points_path: str | None, extent: float = 1.5) -> dict[str, Any]:
    """Checked settings -> a raw ganforge config (what `ganforge train` reads), unconditional (conditioning none /
    linear); drawn points come from the CSV file at `points_path`, plotted over [-extent, extent]^2."""
    d = s["data"]
    if d["name"] == DRAWN:
        if points_path is None:
            raise ProtocolError("config.data.name: 'drawn' needs points first (click on the plot or upload a CSV)")
        data = {"name": "points", "path": points_path, "n": d["n"], "noise": d["noise"], "extent": extent}
    else:
        data = {"name": d["name"]}
    o = s["optim"]
    return {
        "seed": s["seed"], "data": data, "model": s["model"],
        "conditioning": {"g": {"name": "none"}, "d": {"name": "linear"}},
        "loss": s["loss"], "regularizers": s["regularizers"], "augment": s["augment"],
        "optim": {"g_lr": o["g_lr"], "d_lr": o["d_lr"], "betas": [o["beta1"], o["beta2"]], "d_steps": o["d_steps"]},
        "train": {"steps": s["steps"], "batch_size": s["batch_size"], "device": "cpu", "ema_decay": 0.99},
    }


# ---------------------------------------------------------------------------------------------- what is offered
def point_sets() -> list[str]:
    """The built-in 2-D sets that are registered."""
    load_all()
    return [n for n in POINT_SETS if n in DATASETS]


@functools.lru_cache(maxsize=1)
def architectures() -> list[str]:
    """Architectures that build for 2-D points (probed: built once with img_shape (2,), unconditional)."""
    load_all()
    out = []
    for name in ARCHITECTURES.names():
        try:
            g_cond = G_CONDITIONING.build("none", {}, num_classes=0, text_dim=0)
            ARCHITECTURES.build(name, {}, img_shape=(2,), num_classes=0, g_cond=g_cond)
        except (GanforgeError, RuntimeError, ValueError, TypeError):
            continue  # e.g. convolutional families: "use 'mlp' for points"
        out.append(name)
    return out


def terms(registry) -> list[dict[str, Any]]:
    """The losses / regularizers an unconditional lab run can use: no labels, no captions, no D outputs beyond the
    adversarial logit (the lab's D head is `linear`), described with their options."""
    load_all()
    provided = set(D_HEADS.get("linear").declares("provides", frozenset()))
    out = []
    for name in registry.names():
        e = registry.get(name)
        if e.declares("uses_labels", False) or e.declares("uses_text", False):
            continue
        if set(e.declares("requires", frozenset())) - provided:
            continue
        out.append(describe(registry, name))
    return out


def describe(registry, name: str) -> dict[str, Any]:
    """{name, description, options: [{name, type, default}], needs_style_generator} for the page's forms; options
    of simple types only (int, float, bool, str) with JSON-able defaults."""
    e = registry.get(name)
    options = []
    for key, p in e.options().items():
        kind = _simple_type(p.annotation)
        if kind is None or p.default is inspect.Parameter.empty:
            continue
        default = p.default
        if default is not None and not isinstance(default, (int, float, bool, str)):
            continue
        options.append({"name": key, "type": kind, "default": default})
    return {"name": name, "description": e.description, "options": options,
            "needs_style_generator": bool(e.declares("needs_style_generator", False))}


def _simple_type(annotation: Any) -> str | None:
    names = {int: "int", float: "float", bool: "bool", str: "str"}
    if annotation in names:
        return names[annotation]
    args = [a for a in getattr(annotation, "__args__", ()) if a is not type(None)]
    if len(args) == 1 and args[0] in names:  # Optional[float] and the like
        return names[args[0]]
    return None


def components() -> dict[str, Any]:
    """What GET /api/components returns: every choice the page offers, from the registries."""
    return {
        "data": [{"name": n, "description": DATASETS.get(n).description} for n in point_sets()]
        + [{"name": DRAWN, "description": "your own points: click on the plot or upload a CSV of x,y rows"}],
        "architectures": [describe(ARCHITECTURES, n) for n in architectures()],
        "losses": terms(LOSSES),
        "regularizers": terms(REGULARIZERS),
        "augmentations": [describe(AUGMENTATIONS, n) for n in AUGMENTATIONS.names()],
        "optimizer": {"name": "adam",
                      "description": "Adam (the trainer's optimizer); betas, lrs and D steps per G step"},
        "defaults": DEFAULTS,
        "limits": {"max_points": MAX_POINTS, "lr": [0.0, 0.1], "int_option": list(INT_OPTION_RANGE),
                   **{k: list(v) for k, v in INT_RANGES.items()}},
    }

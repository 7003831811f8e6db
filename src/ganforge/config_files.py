"""Config files and command-line overrides: reading YAML (a preset name finds the bundled file), `a.b.c=value`.

The schema and validation live in `config.py`; this module only turns text into the raw mapping it validates.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

from .errors import GanforgeError


_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def parse_value(text: str) -> Any:
    """A command-line value: YAML scalar/list syntax, with '4e-4'-style floats that YAML 1.1 leaves as strings."""
    if _NUMBER.match(text.strip()) and not re.match(r"^[+-]?\d+$", text.strip()):
        return float(text)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise GanforgeError(f"override value {text!r}: not valid YAML ({e.problem})") from e


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides to a raw config mapping (list items by index: `regularizers.0.gamma=5`)."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise GanforgeError(f"override {item!r}: expected KEY=VALUE, e.g. train.steps=2000")
        key, text = item.split("=", 1)
        value = parse_value(text)
        parts = key.strip().split(".")
        node: Any = raw
        for depth, part in enumerate(parts[:-1]):
            where = ".".join(parts[: depth + 1])
            if isinstance(node, list):
                node = _list_item(node, part, where)
                continue
            if node.get(part) is None:
                node[part] = copy.deepcopy(_section_defaults().get(part, {})) if depth == 0 else {}
            if isinstance(node[part], str):  # shorthand `g: cbn` -> mapping
                node[part] = {"name": node[part]}
            node = node[part]
            if not isinstance(node, (dict, list)):
                raise GanforgeError(f"override {key}: {where} is a value, not a section")
        last = parts[-1]
        if isinstance(node, list):
            idx = int(last) if last.isdigit() else None
            if idx is None or idx > len(node):
                raise GanforgeError(f"override {key}: {last!r} is not a valid index (list has {len(node)} items)")
            if idx == len(node):
                node.append(value)
            else:
                node[idx] = value
        else:
            node[last] = value
    return raw


def _list_item(node: list, part: str, where: str) -> Any:
    if not part.isdigit():
        raise GanforgeError(f"override {where}: expected a list index, got {part!r}")
    idx = int(part)
    if idx == len(node):
        node.append({})
    if idx >= len(node):
        raise GanforgeError(f"override {where}: index {idx} out of range (list has {len(node)} items)")
    return node[idx]


def load_raw(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file (a preset name like `ring8` finds configs/ring8.yaml)."""
    p = resolve_preset(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise GanforgeError(f"{p}: not a UTF-8 text file (byte {e.start}: {e.reason}); save the config as UTF-8") from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark else ""
        raise GanforgeError(f"{p}:{at} not valid YAML ({getattr(e, 'problem', e)})") from e
    except OSError as e:
        raise GanforgeError(f"{p}: cannot read config ({e.strerror})") from e
    if not isinstance(raw, dict):
        raise GanforgeError(f"{p}: expected a YAML mapping at the top level")
    return raw


def presets_dir() -> Path:
    """Bundled presets (inside the package) — the repo's configs/ mirrors them."""
    return Path(__file__).parent / "configs"


def resolve_preset(path: str | Path) -> Path:
    p = Path(path)
    if p.exists():
        return p
    for candidate in (presets_dir() / f"{path}.yaml", presets_dir() / str(path), presets_dir() / p.name):
        if candidate.exists():
            return candidate
    names = sorted(q.stem for q in presets_dir().glob("*.yaml"))
    raise GanforgeError(f"{path}: no such config file or preset; presets: {', '.join(names)}")



def _section_defaults() -> dict[str, Any]:
    from .config import _DEFAULTS

    return _DEFAULTS

"""Read one run directory into a plain `RunData`: what `ganforge report` shows, with no plotting in sight.

A run directory (written by `ganforge train`) holds `config.yaml` (the resolved config), `metrics.jsonl` (one JSON
object per line: `{"step": S, "event": "info" | "train" | "eval" | "modes", ...numbers}`), `history.jsonl` (one line
per start / resume: time, environment, config changes), `samples/fakes-NNNNNNNN.png` (the sample grid at step N),
`summary.json`, `modes.jsonl` on sets with mode metrics (one line `{"step": S, "counts": [...]}` per mode
evaluation: samples per mode, behind the "modes" rows) and, once the explore tools exist, `explore/*/result.json`
with the PNGs next to it.

A log cut short by a kill or a full disk still reads: every line that is not a JSON object with a step (a partial last
line, garbage, a bare number) is skipped and counted in `RunData.skipped_lines`, so the page can say how many; so is
every modes.jsonl line that is not `{"step": number, "counts": [K non-negative numbers]}` with the K of most of the
file's lines (`RunData.skipped_modes`).
"""
from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import GanforgeError

METRICS_FILE, CONFIG_FILE, HISTORY_FILE, SUMMARY_FILE = "metrics.jsonl", "config.yaml", "history.jsonl", "summary.json"
MODES_FILE = "modes.jsonl"  # as ganforge.training.run_dir.MODES
# train-row keys that are bookkeeping, not a loss or a schedule: shown under throughput
META_KEYS = ("img_per_s", "kimg")
# metric events of metrics.jsonl: evaluation (FID, KID, ...) and mode coverage
METRIC_EVENTS = ("eval", "modes")
# result keys that are sample counts, not values (as ganforge.metrics.evaluate.COUNT_KEYS)
COUNT_KEYS = ("n", "n_ref")
# processor / accelerator time, where a run records it (in summary.json or the train rows)
TIME_KEYS = ("cpu_s", "gpu_s", "cpu_time_s", "gpu_time_s")
_GRID = re.compile(r"^(?P<name>.+)-(?P<step>\d+)\.png$")


@dataclass
class Grid:
    """One saved sample grid: the PNG written at `step`."""
    step: int
    path: Path


@dataclass
class ExploreResult:
    """explore/NAME/: the numbers of result.json (or why they could not be read) and the PNG / GIF figures beside
    it."""
    name: str
    values: dict[str, Any]
    images: list[Path]
    error: str | None = None


@dataclass
class ModeCounts:
    """One line of modes.jsonl: the samples per mode of the mode evaluation at `step`."""
    step: int
    counts: list[int]


@dataclass
class RunData:
    """Everything a report shows about one run, read once from its directory."""
    path: Path
    name: str
    config: dict[str, Any]
    config_text: str
    rows: dict[str, list[dict[str, Any]]]  # event -> rows of metrics.jsonl, in file order
    history: list[dict[str, Any]]
    grids: list[Grid]
    explore: list[ExploreResult]
    summary: dict[str, Any]
    skipped_lines: int = 0  # unreadable lines of metrics.jsonl
    skipped_history: int = 0  # unreadable lines of history.jsonl
    notes: list[str] = field(default_factory=list)  # other problems worth a line on the page
    modes: list[ModeCounts] = field(default_factory=list)  # modes.jsonl, by step
    skipped_modes: int = 0  # unreadable lines of modes.jsonl
    mode_centers: list[list[float]] | None = None  # (K, 2) mode centres of a 2-D set, when the config names one

    # ------------------------------------------------------------------------------------------------- series
    def events(self, event: str) -> list[dict[str, Any]]:
        return self.rows.get(event, [])

    def train_keys(self) -> list[str]:
        """Every numeric key of the train rows (first-seen order), bookkeeping keys excluded."""
        return _numeric_keys(self.events("train"), skip=("step", "event", *META_KEYS))

    def metric_keys(self) -> list[str]:
        """Every numeric key of the eval and modes rows, sample counts excluded."""
        rows = [r for e in METRIC_EVENTS for r in self.events(e)]
        return _numeric_keys(rows, skip=("step", "event", *COUNT_KEYS))

    def series(self, key: str, events: tuple[str, ...] = ("train",)) -> tuple[list[int], list[float]]:
        """(steps, values) of `key` over the rows of `events` that hold a finite number for it."""
        steps, values = [], []
        for e in events:
            for r in self.events(e):
                v = r.get(key)
                if _is_number(v) and math.isfinite(v):
                    steps.append(int(r["step"]))
                    values.append(float(v))
        order = sorted(range(len(steps)), key=steps.__getitem__)
        return [steps[i] for i in order], [values[i] for i in order]

    def metric_series(self, key: str) -> tuple[list[int], list[float]]:
        return self.series(key, METRIC_EVENTS)

    def kimg_per_step(self) -> float | None:
        """Thousands of real images per step: from the train rows' kimg, else from the config, else None."""
        for r in reversed(self.events("train")):
            if _is_number(r.get("kimg")) and r["step"] > 0:
                return float(r["kimg"]) / r["step"]
        try:
            return self.config["optim"].get("d_steps", 1) * self.config["train"]["batch_size"] / 1000
        except (KeyError, TypeError, AttributeError):
            return None

    # --------------------------------------------------------------------------------------------- throughput
    def throughput(self) -> dict[str, float]:
        """img/s (mean over the logged intervals), training seconds (each interval's images / its img/s), kimg."""
        rows = [r for r in self.events("train") if _is_number(r.get("img_per_s")) and r["img_per_s"] > 0]
        out: dict[str, float] = {}
        if rows:
            out["img_per_s"] = sum(r["img_per_s"] for r in rows) / len(rows)
            per_step = self.kimg_per_step()
            if per_step is not None:
                seconds, last = 0.0, 0
                for r in sorted(rows, key=lambda r: r["step"]):
                    seconds += (r["step"] - last) * per_step * 1000 / r["img_per_s"]
                    last = r["step"]
                out["train_s"] = seconds
        kimg = [r["kimg"] for r in self.events("train") if _is_number(r.get("kimg"))]
        if kimg:
            out["kimg"] = max(kimg)
        last_train = self.events("train")[-1] if self.events("train") else {}
        for key in TIME_KEYS:
            for source in (self.summary, last_train):
                if _is_number(source.get(key)):
                    out[key] = float(source[key])
        return out

    def info(self) -> dict[str, Any]:
        """The info row(s) merged (G_params, D_params)."""
        out: dict[str, Any] = {}
        for r in self.events("info"):
            out.update({k: v for k, v in r.items() if k not in ("step", "event")})
        return out

    def last_step(self) -> int:
        """The last step logged in metrics.jsonl (else summary.json's, else 0)."""
        steps = [int(r["step"]) for rows in self.rows.values() for r in rows]
        fallback = self.summary.get("step", 0)
        return max(steps, default=int(fallback) if _is_number(fallback) else 0)


# ------------------------------------------------------------------------------------------------------ reading
def collect_run(path: str | Path) -> RunData:
    """Read the run directory `path`; a path that is not one is a one-line GanforgeError naming it."""
    path = Path(path)
    if not path.is_dir() or not ((path / CONFIG_FILE).is_file() or (path / METRICS_FILE).is_file()):
        what = "does not exist" if not path.exists() else "is not a run directory (no config.yaml or metrics.jsonl)"
        raise GanforgeError(f"report: {path} {what}")
    notes: list[str] = []
    config, config_text = _read_config(path, notes)
    objects, skipped = read_jsonl(path / METRICS_FILE, need_step=True)
    rows: dict[str, list[dict[str, Any]]] = {}
    for r in objects:
        rows.setdefault(str(r.get("event", "train")), []).append(r)
    history, skipped_history = read_jsonl(path / HISTORY_FILE, need_step=False)
    modes, skipped_modes = read_mode_counts(path / MODES_FILE)
    centers = mode_centers(config, len(modes[-1].counts)) if modes else None
    return RunData(path=path, name=path.resolve().name, config=config, config_text=config_text, rows=rows,
                   history=history, grids=_grids(path), explore=_explore(path), summary=_read_summary(path, notes),
                   skipped_lines=skipped, skipped_history=skipped_history, notes=notes, modes=modes,
                   skipped_modes=skipped_modes, mode_centers=centers)


def read_jsonl(path: Path, need_step: bool) -> tuple[list[dict[str, Any]], int]:
    """(objects, unreadable lines) of a JSON-lines file; a missing file is ([], 0); blank lines do not count."""
    if not path.is_file():
        return [], 0
    out, bad = [], 0
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if not isinstance(obj, dict) or (need_step and not _is_number(obj.get("step"))):
            bad += 1  # a bare number or list, or a row that cannot be placed on the step axis
            continue
        out.append(obj)
    return out, bad


def read_mode_counts(path: Path) -> tuple[list[ModeCounts], int]:
    """(rows by step, unreadable lines) of modes.jsonl. A line counts as unreadable when it is torn or not an object,
    has no numeric step, or its counts are not a list of non-negative numbers of the file's usual length K (one set of
    modes per run: the most common length, the latest on a tie); a later line for a step replaces an earlier one."""
    objects, bad = read_jsonl(path, need_step=True)
    good = [o for o in objects if _is_counts(o.get("counts"))]
    bad += len(objects) - len(good)
    if not good:
        return [], bad
    lengths = [len(o["counts"]) for o in good]
    seen = Counter(lengths)
    k = max(reversed(lengths), key=seen.__getitem__)  # the most common K; on a tie the latest (max keeps the first)
    by_step = {}
    for o in good:
        if len(o["counts"]) != k:
            bad += 1
            continue
        by_step[int(o["step"])] = ModeCounts(int(o["step"]), [int(c) for c in o["counts"]])
    return [by_step[s] for s in sorted(by_step)], bad


def mode_centers(config: dict[str, Any], k: int) -> list[list[float]] | None:
    """The (k, 2) mode centres of the run's dataset when it is a 2-D Gaussian mixture (ring8, grid25, ...), else
    None. The set is rebuilt from the config's data section with one sample (the centres do not depend on n or
    seed); a set that fails to build just means no centres plot. Only the mixtures' module is imported (the report
    does not pay for importing every component)."""
    from ..data.mixture2d import GaussianMixture2D  # registers the built-in mixtures
    from ..registries import DATASETS

    data = config.get("data") if isinstance(config, dict) else None
    name = data.get("name") if isinstance(data, dict) else None
    if not isinstance(name, str) or name not in DATASETS:
        return None
    cls = DATASETS.get(name).obj
    if not (isinstance(cls, type) and issubclass(cls, GaussianMixture2D)):
        return None
    options = {key: v for key, v in data.items() if key != "name"}
    try:
        centers = DATASETS.build(name, {**options, "n": 1}, where="data", split="train", cache_dir=None).centers
    except Exception:  # the report must render whatever the config says
        return None
    if tuple(centers.shape) != (k, 2):
        return None
    return [[float(a), float(b)] for a, b in centers.tolist()]


def _is_counts(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(_is_number(c) and math.isfinite(c) and c >= 0 for c in v)


def _read_config(path: Path, notes: list[str]) -> tuple[dict[str, Any], str]:
    file = path / CONFIG_FILE
    if not file.is_file():
        notes.append("no config.yaml: the configuration is unknown")
        return {}, ""
    text = file.read_text(errors="replace")
    try:
        cfg = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise GanforgeError(f"report: {file}: not valid YAML ({str(e).splitlines()[0]})") from None
    if cfg is None:
        cfg = {}
    if not isinstance(cfg, dict):
        raise GanforgeError(f"report: {file}: expected a mapping of config sections, got {type(cfg).__name__}")
    return cfg, text


def _read_summary(path: Path, notes: list[str]) -> dict[str, Any]:
    file = path / SUMMARY_FILE
    if not file.is_file():
        return {}
    try:
        obj = json.loads(file.read_text(errors="replace"))
    except json.JSONDecodeError:
        notes.append("summary.json is unreadable (skipped)")
        return {}
    return obj if isinstance(obj, dict) else {}


def _grids(path: Path) -> list[Grid]:
    """The sample grids samples/fakes-NNNNNNNN.png, by step."""
    out = []
    for png in (path / "samples").glob("*.png"):
        m = _GRID.match(png.name)
        if m and m["name"] == "fakes":
            out.append(Grid(int(m["step"]), png))
    return sorted(out, key=lambda g: g.step)


def _explore(path: Path) -> list[ExploreResult]:
    """explore/*/result.json with the PNGs of the same folder."""
    out = []
    for result in sorted((path / "explore").glob("*/result.json")):
        images = sorted(p for p in result.parent.iterdir() if p.suffix.lower() in (".png", ".gif"))
        try:
            values = json.loads(result.read_text(errors="replace"))
            error = None if isinstance(values, dict) else "result.json is not a JSON object"
        except json.JSONDecodeError:
            values, error = {}, "result.json is unreadable"
        out.append(ExploreResult(result.parent.name, values if isinstance(values, dict) else {}, images, error))
    return out


def _numeric_keys(rows: list[dict[str, Any]], skip: tuple[str, ...]) -> list[str]:
    seen: dict[str, None] = {}
    for r in rows:
        for k, v in r.items():
            if k not in skip and _is_number(v):
                seen.setdefault(k, None)
    return list(seen)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)

"""What a report computes from the numbers of one or several runs: curve groups, best values, config differences,
and the mean ± std of runs that differ only by seed (sample standard deviation, ddof = 1)."""
from __future__ import annotations

import math
from typing import Any

from ..metric_keys import HIGHER_IS_BETTER
from ..training.run_dir import flatten
from .collect import RunData

MISSING = object()  # a config key one run has and another lacks


def higher_is_better(key: str) -> bool:
    """Direction of a metric: larger is better for IS, precision, recall, ...; smaller for FID, KID, KL, ..."""
    return key in HIGHER_IS_BETTER


def curve_group(key: str) -> str:
    """Where a train scalar is drawn: "lr" (learning rates), "p" (augmentation probabilities) or "loss" (losses and
    every other loss term or logged value)."""
    tokens = key.lower().split("_")
    if "lr" in tokens or key.lower().endswith("lr"):
        return "lr"
    if tokens[-1] == "p":
        return "p"
    return "loss"


def best(key: str, steps: list[int], values: list[float]) -> tuple[float, int] | None:
    """(best value, its step) of a metric by its direction; the first step reaching it on ties; None if empty."""
    if not values:
        return None
    sign = 1.0 if higher_is_better(key) else -1.0
    i = max(range(len(values)), key=lambda j: (sign * values[j], -steps[j]))
    return values[i], steps[i]


def final(values: list[float]) -> float | None:
    return values[-1] if values else None


def config_diff(runs: list[RunData]) -> dict[str, list[Any]]:
    """Dotted config key -> each run's value (MISSING where a run lacks it), for the keys whose values differ."""
    flat = [flatten(r.config) for r in runs]
    keys = sorted(set().union(*flat)) if flat else []
    out = {}
    for k in keys:
        values = [f.get(k, MISSING) for f in flat]
        if any(v != values[0] for v in values[1:]):
            out[k] = values
    return out


def differ_only_by_seed(runs: list[RunData]) -> bool:
    """Whether two or more runs, all with a config, have configs equal but for the top-level `seed`."""
    return len(runs) >= 2 and all(r.config for r in runs) and set(config_diff(runs)) <= {"seed"}


def mean_std(values: list[float]) -> tuple[float, float] | None:
    """(mean, sample std with ddof = 1) of two or more values; None with fewer."""
    if len(values) < 2:
        return None
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var)


def comparison(runs: list[RunData]) -> tuple[list[str], list[dict[str, float | None]]]:
    """Columns and one row per run of the comparison table: for each metric `M/final`, `M/best`, `M/best_step`; then
    the final train losses `KEY/final` when no run has an evaluation metric; then `img_per_s`."""
    metrics = union(r.metric_keys() for r in runs)
    columns = [f"{m}/{stat}" for m in metrics for stat in ("final", "best", "best_step")]
    if not metrics:
        columns = [f"{k}/final" for k in union([k for k in r.train_keys() if curve_group(k) == "loss"]
                                                 for r in runs)]
    columns.append("img_per_s")
    rows = []
    for r in runs:
        row: dict[str, float | None] = {}
        for m in metrics:
            steps, values = r.metric_series(m)
            b = best(m, steps, values)
            row.update({f"{m}/final": final(values), f"{m}/best": b and b[0], f"{m}/best_step": b and b[1]})
        for c in columns:
            if c.endswith("/final") and c not in row:
                row[c] = final(r.series(c[: -len("/final")])[1])
        row["img_per_s"] = r.throughput().get("img_per_s")
        rows.append(row)
    return columns, rows


def union(lists) -> list[str]:
    """The keys of several lists, each once, in first-seen order."""
    seen: dict[str, None] = {}
    for keys in lists:
        for k in keys:
            seen.setdefault(k, None)
    return list(seen)

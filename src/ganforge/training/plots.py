"""Trajectory plots of the values stateful components log (ADA's p, Diffusion-GAN's T, an annealed noise sigma, LeCam
anchors, ...): one PNG per value under RUN/plots/, drawn from metrics.jsonl so a resumed run plots its whole history.

Drawn with Pillow (no plotting library needed): a white canvas, the axes with the step and value ranges written at
their ends, and the trajectory as a polyline.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

WIDTH, HEIGHT, MARGIN = 480, 240, 40
LINE = (31, 119, 180)


def read_series(metrics_file: Path, keys: list[str]) -> dict[str, tuple[list[int], list[float]]]:
    """(steps, values) of each key from the `train` events of a metrics.jsonl."""
    out: dict[str, tuple[list[int], list[float]]] = {k: ([], []) for k in keys}
    if not Path(metrics_file).exists():
        return out
    for line in Path(metrics_file).read_text().splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if event.get("event") != "train":
            continue
        for k in keys:
            v = event.get(k)
            if isinstance(v, (int, float)) and np.isfinite(v):
                out[k][0].append(int(event["step"]))
                out[k][1].append(float(v))
    return out


def line_plot(steps: list[int], values: list[float], title: str) -> np.ndarray:
    """An (H, W, 3) uint8 picture of values over steps."""
    img = Image.new("RGB", (WIDTH, HEIGHT), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    x0, y0, x1, y1 = MARGIN, MARGIN // 2, WIDTH - MARGIN // 2, HEIGHT - MARGIN
    draw.rectangle((x0, y0, x1, y1), outline=(0, 0, 0))
    draw.text((x0, 2), title, fill=(0, 0, 0))
    if steps:
        lo, hi = min(values), max(values)
        span = hi - lo or 1.0
        s_lo, s_hi = min(steps), max(steps)
        s_span = (s_hi - s_lo) or 1

        def xy(s: int, v: float) -> tuple[float, float]:
            return x0 + (s - s_lo) / s_span * (x1 - x0), y1 - (v - lo) / span * (y1 - y0)

        points = [xy(s, v) for s, v in zip(steps, values)]
        if len(points) == 1:
            draw.ellipse((points[0][0] - 2, points[0][1] - 2, points[0][0] + 2, points[0][1] + 2), fill=LINE)
        else:
            draw.line(points, fill=LINE, width=2)
        draw.text((2, y0), f"{hi:.3g}", fill=(0, 0, 0))
        draw.text((2, y1 - 10), f"{lo:.3g}", fill=(0, 0, 0))
        draw.text((x0, y1 + 4), str(s_lo), fill=(0, 0, 0))
        draw.text((x1 - 8 * len(str(s_hi)), y1 + 4), str(s_hi), fill=(0, 0, 0))
    return np.asarray(img)


def write_trajectories(run_dir: Path, keys: list[str]) -> dict[str, np.ndarray]:
    """RUN/plots/KEY.png for each logged key with at least one value; returns the pictures by key."""
    from .logging import save_png

    series = read_series(Path(run_dir) / "metrics.jsonl", keys)
    pictures = {}
    for key, (steps, values) in series.items():
        if not steps:
            continue
        pictures[key] = line_plot(steps, values, f"{key} over training steps")
        out = Path(run_dir) / "plots" / f"{key}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        save_png(pictures[key], out)
    return pictures

"""Tiny PIL renderers for explorer figures (matplotlib is not a dependency): heat maps and line plots."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

# A perceptually ordered dark-to-bright ramp (control points in the spirit of "magma"), interpolated linearly.
_RAMP = np.array([[0, 0, 4], [59, 15, 112], [140, 41, 129], [222, 73, 104], [254, 159, 109], [252, 253, 191]],
                 np.float64)


def colorize(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Float (H, W) -> uint8 (H, W, 3) through the ramp, `lo` dark and `hi` bright."""
    t = np.clip((values - lo) / max(hi - lo, 1e-12), 0, 1) * (len(_RAMP) - 1)
    i = np.minimum(t.astype(int), len(_RAMP) - 2)
    f = (t - i)[..., None]
    return ((1 - f) * _RAMP[i] + f * _RAMP[i + 1]).round().astype(np.uint8)


def heatmaps(maps: list[np.ndarray], titles: list[str], scale: int = 8, shared: list[bool] | None = None
             ) -> np.ndarray:
    """Maps side by side, each enlarged `scale` times, titled; maps flagged in `shared` use one common range."""
    shared = shared or [True] * len(maps)
    common = [m for m, s in zip(maps, shared) if s]
    lo, hi = (min(float(m.min()) for m in common), max(float(m.max()) for m in common)) if common else (0.0, 1.0)
    tiles = []
    for m, s in zip(maps, shared):
        a, b = (lo, hi) if s else (float(m.min()), float(m.max()))
        tile = colorize(m, a, b).repeat(scale, 0).repeat(scale, 1)
        tiles.append(tile)
    h = max(t.shape[0] for t in tiles)
    pad, top = 8, 18
    width = sum(t.shape[1] for t in tiles) + pad * (len(tiles) + 1)
    canvas = Image.new("RGB", (width, h + top + pad), "white")
    draw = ImageDraw.Draw(canvas)
    x = pad
    for tile, title in zip(tiles, titles):
        canvas.paste(Image.fromarray(tile), (x, top))
        draw.text((x, 3), title, fill="black")
        x += tile.shape[1] + pad
    return np.asarray(canvas)


def line_plot(series: dict[str, np.ndarray], colors: dict[str, str], xlabel: str, ylabel: str,
              size: tuple[int, int] = (480, 320), xticks: list[str] | None = None) -> np.ndarray:
    """Curves y[i] over x = i on shared axes, with a legend and the axis ranges written at the ends.

    `xticks`: a label per index i written under the axis (default: only the first and last index).
    """
    w, h = size
    left, right, top, bottom = 56, 12, 14, 34
    canvas = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(canvas)
    ys = np.concatenate([np.asarray(v, np.float64) for v in series.values()])
    lo, hi = float(ys.min()), float(ys.max())
    hi = hi if hi > lo else lo + 1
    n = max(len(v) for v in series.values())
    draw.rectangle([left, top, w - right, h - bottom], outline="black")

    def px(i: float, v: float) -> tuple[float, float]:
        return (left + (w - left - right) * i / max(n - 1, 1), h - bottom - (h - top - bottom) * (v - lo) / (hi - lo))

    for k, (name, v) in enumerate(series.items()):
        pts = [px(i, float(y)) for i, y in enumerate(v)]
        draw.line(pts, fill=colors.get(name, "black"), width=2)
        draw.text((left + 8, top + 4 + 12 * k), name, fill=colors.get(name, "black"))
    draw.text((4, top), f"{hi:.3g}", fill="black")
    draw.text((4, h - bottom - 10), f"{lo:.3g}", fill="black")
    if xticks is None:
        draw.text((left, h - bottom + 4), "0", fill="black")
        draw.text((w - right - 24, h - bottom + 4), f"{n - 1}", fill="black")
    else:
        for i, label in enumerate(xticks):
            x, _ = px(i, lo)
            draw.line([(x, h - bottom), (x, h - bottom + 3)], fill="black")
            draw.text((max(x - 3 * len(label), 0), h - bottom + 5), label, fill="black")
    draw.text((left + (w - left - right) // 2 - 40, h - 16), xlabel, fill="black")
    draw.text((4, top + 14), ylabel, fill="black")
    return np.asarray(canvas)


# Ten distinguishable colours (one per class of a 10-class set; repeated beyond).
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf"]


def scatter_plot(points: np.ndarray, colors: list[str], shapes: list[str] | None = None,
                 legend: dict[str, str] | None = None, size: int = 480, radius: int = 3) -> np.ndarray:
    """2-D points scaled to fit a square canvas; per point a colour and a shape ("o" disc, "x" cross, "s" square).

    `legend`: label -> colour, written top-left. Points are drawn in the given order (later ones on top).
    """
    p = np.asarray(points, np.float64)[:, :2]
    lo, hi = p.min(0), p.max(0)
    span = np.where(hi > lo, hi - lo, 1.0)
    margin = 12
    xy = margin + (p - lo) / span * (size - 2 * margin)
    xy[:, 1] = size - xy[:, 1]  # y axis up
    canvas = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(canvas)
    shapes = shapes or ["o"] * len(p)
    for (x, y), color, shape in zip(xy, colors, shapes):
        box = [x - radius, y - radius, x + radius, y + radius]
        if shape == "x":
            draw.line([(box[0], box[1]), (box[2], box[3])], fill=color, width=2)
            draw.line([(box[0], box[3]), (box[2], box[1])], fill=color, width=2)
        elif shape == "s":
            draw.rectangle(box, outline=color, width=1)
        else:
            draw.ellipse(box, fill=color)
    for k, (label, color) in enumerate((legend or {}).items()):
        draw.text((6, 4 + 12 * k), label, fill=color)
    return np.asarray(canvas)

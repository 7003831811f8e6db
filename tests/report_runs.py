"""Tiny run directories in the trainer's format, with hand-picked numbers, for the report tests (test_report.py reads
the page's HTML, test_report_browser.py opens it in headless Chromium).

config.yaml as `ganforge train` resolves it, metrics.jsonl rows `{"step", "event", ...}` (an info row, a train row and
optionally an eval row per 100 steps), samples/fakes-NNNNNNNN.png (one single-colour grid per step), and optionally
modes.jsonl lines `{"step", "counts"}` (samples per mode, as the trainer writes them at each mode evaluation).
`Page` reads a rendered report back (elements, texts, each chart's Plotly data).
"""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from ganforge.report import collect_run, render_html
from ganforge.report.figures import plotly_js

BATCH = 64  # kimg per step = BATCH / 1000 (d_steps 1)
LOSS_KEYS = ("d_loss", "r1", "g_loss")  # the adversarial losses and one regularizer term


def config(seed: int = 0, d_lr: float = 2e-4, gamma: float = 10.0) -> dict:
    """A resolved config in the shape of a real run's config.yaml (sections and key names as `ganforge train`)."""
    return {"seed": seed, "data": {"name": "digits", "resolution": 16},
            "model": {"name": "dcgan", "z_dim": 64, "g_ch": 32, "d_ch": 32, "d_sn": True},
            "conditioning": {"g": {"name": "none"}, "d": {"name": "none"}}, "loss": {"name": "hinge"},
            "regularizers": [{"name": "r1", "gamma": gamma}], "augment": {"name": "ada", "target": 0.6},
            "optim": {"g_lr": 2e-4, "d_lr": d_lr, "betas": [0.0, 0.9], "d_steps": 1, "lr_decay": "none"},
            "train": {"steps": 400, "batch_size": BATCH, "log_every": 100, "sample_every": 100, "device": "auto"},
            "eval": {"every": 100, "metrics": ["fid", "is"], "n": 1000, "seed": 0}}


def make_run(root: Path, name: str, cfg: dict, losses: dict[str, list[float]], evals: dict[str, list[float]] | None
             = None, grids: list[tuple[int, tuple[int, int, int]]] = (), extra_lines: tuple[str, ...] = (),
             mode_counts: list[tuple[int, list[int]]] = (), mode_lines: tuple[str, ...] = ()) -> Path:
    """A run dir: config.yaml, metrics.jsonl (info row, a train row per 100 steps, an eval row per 100 steps), one
    single-colour grid PNG per (step, rgb), modes.jsonl with one line per (step, counts) then `mode_lines` verbatim."""
    run = root / name
    (run / "samples").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    rows = [{"step": 0, "event": "info", "G_params": 1000.0, "D_params": 500.0}]
    n = len(next(iter(losses.values())))
    for i in range(n):
        step = 100 * (i + 1)
        rows.append({"step": step, "event": "train", **{k: v[i] for k, v in losses.items()}, "aug_p": 0.01 * i,
                     "img_per_s": 200.0 + i, "kimg": step * BATCH / 1000})
        if evals:
            rows.append({"step": step, "event": "eval", **{k: v[i] for k, v in evals.items()}, "n": 1000.0})
    text = "".join(json.dumps(r) + "\n" for r in rows) + "".join(extra_lines)
    (run / "metrics.jsonl").write_text(text)
    for step, rgb in grids:
        Image.fromarray(np.full((8, 12, 3), rgb, np.uint8)).save(run / "samples" / f"fakes-{step:08d}.png")
    if mode_counts or mode_lines:
        lines = [json.dumps({"step": step, "counts": counts}) + "\n" for step, counts in mode_counts]
        (run / "modes.jsonl").write_text("".join(lines) + "".join(mode_lines))
    return run


LOSSES = {"d_loss": [1.0, 0.8, 0.7, 0.6], "r1": [0.1, 0.2, 0.3, 0.4], "g_loss": [2.0, 1.5, 1.2, 1.1]}


# ------------------------------------------------------------------------------------------------- page reading
class Page(HTMLParser):
    """Every element's (tag, attrs) and the text inside each <td>/<p>, from the page minus the plotly.js bundle."""

    def __init__(self, text: str):
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.texts: list[str] = []
        js = plotly_js()
        assert text.count(js) == 1  # plotly.js embedded exactly once
        self.source = text.replace(js, "")
        self.feed(self.source)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data):
        self.texts.append(data)

    def find(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        want = {k.rstrip("_").replace("_", "-"): v for k, v in attrs.items()}  # class_ -> class
        return [a for t, a in self.elements  # None: the attribute is present, with any value
                if t == tag and all((k in a) if v is None else a.get(k) == v for k, v in want.items())]

    def figures(self) -> dict[str, int]:
        return {a["data-key"]: int(a["data-traces"]) for a in self.find("div", class_="gf-figure")}

    def plot_data(self, div_id: str) -> list[dict]:
        """The trace list Plotly.newPlot draws in `div_id`."""
        start = re.search(rf'Plotly\.newPlot\(\s*"{div_id}",', self.source).start()
        rest = self.source[self.source.index("[", start):]
        return json.JSONDecoder().raw_decode(rest)[0]

    def figure_ids(self, run: str | None = None) -> dict[str, str]:
        """data-key -> the plot div id inside its gf-figure (the div that follows it); with `run`, only the figures
        marked data-run=RUN (the per-run mode figures)."""
        out, key = {}, None
        for tag, a in self.elements:
            if tag == "div" and "gf-figure" in a.get("class", "").split():
                key = a["data-key"] if run is None or a.get("data-run") == run else None
            elif tag == "div" and "plotly-graph-div" in a.get("class", "") and key is not None:
                out[key], key = a["id"], None
        return out


def page_of(*runs: Path) -> Page:
    return Page(render_html([collect_run(r) for r in runs]))

"""Tiny run directories in the trainer's format, with hand-picked numbers, for the report tests (test_report.py reads
the page's HTML, test_report_browser.py opens it in headless Chromium).

config.yaml as `ganforge train` resolves it, metrics.jsonl rows `{"step", "event", ...}` (an info row, a train row and
optionally an eval row per 100 steps), samples/fakes-NNNNNNNN.png (one single-colour grid per step).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

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
             = None, grids: list[tuple[int, tuple[int, int, int]]] = (), extra_lines: tuple[str, ...] = ()) -> Path:
    """A run dir: config.yaml, metrics.jsonl (info row, a train row per 100 steps, an eval row per 100 steps), one
    single-colour grid PNG per (step, rgb)."""
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
    return run


LOSSES = {"d_loss": [1.0, 0.8, 0.7, 0.6], "r1": [0.1, 0.2, 0.3, 0.4], "g_loss": [2.0, 1.5, 1.2, 1.1]}

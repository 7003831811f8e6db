"""Run logs: metrics.jsonl (one JSON object per event with `step`), TensorBoard scalars/images, sample PNGs.

Only rank 0 writes. On resume, events after the resumed step are dropped from metrics.jsonl and TensorBoard
(purge_step), so the logs of a resumed run read like those of an uninterrupted one.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def truncate_jsonl(path: Path, step: int) -> None:
    """Keep the lines of a JSON-lines log whose `step` is <= `step` (a resumed run redoes what came after); lines a
    kill cut short are dropped. A missing file stays missing."""
    path = Path(path)
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and isinstance(obj.get("step", 0), (int, float)) and obj.get("step", 0) <= step:
            kept.append(line)
    path.write_text("".join(k + "\n" for k in kept))


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line (flushed: a reader sees whole lines as soon as an evaluation is done)."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()


class RunLog:
    def __init__(self, run_dir: Path, start_step: int, tensorboard: bool = True):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / "metrics.jsonl"
        self._truncate_after(start_step)
        self._file = open(self.path, "a")
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.run_dir / "tb"), purge_step=start_step if start_step > 0 else None)

    def _truncate_after(self, step: int) -> None:
        truncate_jsonl(self.path, step)

    def scalars(self, step: int, values: dict[str, Any], event: str = "train") -> None:
        clean = {k: (float(v) if isinstance(v, (int, float, np.floating, np.integer)) else v) for k, v in values.items()}
        self._file.write(json.dumps({"step": step, "event": event, **clean}) + "\n")
        self._file.flush()
        if self.tb is not None:
            for k, v in clean.items():
                if isinstance(v, float) and math.isfinite(v):
                    self.tb.add_scalar(f"{event}/{k}", v, step)

    def image(self, step: int, name: str, img: np.ndarray) -> Path:
        """Save an (H, W, 3) uint8 picture as PNG under samples/ and to TensorBoard."""
        out = self.run_dir / "samples" / f"{name}-{step:08d}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        save_png(img, out)
        if self.tb is not None:
            self.tb.add_image(name, img, step, dataformats="HWC")
        return out

    def flush(self) -> None:
        self._file.flush()

    def tb_image(self, step: int, name: str, img: np.ndarray) -> None:
        """An (H, W, 3) uint8 picture to TensorBoard only (figures whose PNG lives elsewhere in the run dir)."""
        if self.tb is not None:
            self.tb.add_image(name, img, step, dataformats="HWC")

    def close(self) -> None:
        self._file.close()
        if self.tb is not None:
            self.tb.close()


def save_png(img: np.ndarray, path: Path) -> None:
    """Write a PNG atomically."""
    import os

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(img).save(tmp, format="PNG")
    os.replace(tmp, path)

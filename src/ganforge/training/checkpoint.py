"""Complete, atomic training checkpoints.

A checkpoint holds everything with a `state_dict` (G, D, G_ema, optimizers, grad scalers, augmentation, stateful
objective terms), the step, the RNG states and the resolved config. It is written to a temporary file, fsynced and
renamed, so a crash or kill at any moment leaves the previous checkpoint intact; the last `keep` are kept. Loading
uses `torch.load(weights_only=True)`: nothing is unpickled.
"""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from ..errors import GanforgeError
from ..fileio import crash_point, fsync_dir

_NAME = re.compile(r"^ckpt-(\d{8})\.pt$")


def checkpoint_path(directory: Path, step: int) -> Path:
    return Path(directory) / f"ckpt-{step:08d}.pt"


def list_checkpoints(directory: Path) -> list[Path]:
    """Checkpoints in `directory`, oldest first."""
    d = Path(directory)
    if not d.is_dir():
        return []
    return sorted((p for p in d.iterdir() if _NAME.match(p.name)), key=lambda p: p.name)


def atomic_save(obj: Any, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        crash_point("checkpoint-write")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_dir(path.parent)  # make the rename itself durable


STALE_TEMPS = ".ckpt-*.pt.tmp*"  # what an atomic_save killed mid-write leaves behind in the checkpoint directory


def save_checkpoint(state: dict[str, Any], directory: Path, step: int, keep: int) -> Path:
    path = checkpoint_path(directory, step)
    atomic_save(state, path)
    for old in list_checkpoints(directory)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # corrupt/truncated/foreign file
        raise GanforgeError(f"{path}: not a readable ganforge checkpoint ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e
    if not isinstance(state, dict) or "step" not in state or "G" not in state:
        raise GanforgeError(f"{path}: not a ganforge checkpoint (missing 'step'/'G')")
    return state


def load_latest(directory: Path, map_location: str | torch.device = "cpu") -> tuple[dict[str, Any], Path] | None:
    """The newest readable checkpoint (a corrupt newest one is skipped with a warning), or None."""
    for path in reversed(list_checkpoints(directory)):
        try:
            return load_checkpoint(path, map_location), path
        except GanforgeError as e:
            warnings.warn(f"skipping unreadable checkpoint: {e}")
    return None

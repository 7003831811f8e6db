"""`train.init_from`: a new run's G, D and G_ema weights from a source run's checkpoint (fine-tuning, e.g. FreezeD).

Only weights are taken (optimizers, augmentation and term state start afresh, at step 0); the source must match the
config's architecture key for key and shape for shape. Ignored once the run has a checkpoint of its own.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import GanforgeError
from .checkpoint import load_checkpoint, load_latest

INIT_FROM = "train.init_from"  # a source run's weights for step 0 (fine-tuning); ignored when the run resumes


def load_source(source: str, map_location: torch.device | str = "cpu") -> tuple[dict[str, Any], Path]:
    """The checkpoint `train.init_from` names: a checkpoint file, or the latest one of a run directory."""
    path = Path(source).expanduser()
    if path.is_file():
        try:
            return load_checkpoint(path, map_location), path
        except GanforgeError as e:
            raise GanforgeError(f"{INIT_FROM}: {e}") from None
    if path.is_dir():
        for directory in (path / "checkpoints", path):
            found = load_latest(directory, map_location)
            if found is not None:
                return found
        raise GanforgeError(f"{INIT_FROM}: {path}: no readable checkpoint in it or in its checkpoints/; give a "
                            f"source run directory or a checkpoint file")
    raise GanforgeError(f"{INIT_FROM}: {path}: no such run directory or checkpoint file")


def mismatch(mine: dict[str, torch.Tensor], theirs: Any) -> str | None:
    """Why a checkpoint's state dict cannot be loaded into a module with state dict `mine` (None: it can)."""
    if not isinstance(theirs, dict):
        return "not in the checkpoint"
    missing, extra = [k for k in mine if k not in theirs], [k for k in theirs if k not in mine]
    if missing or extra:
        key, where = (missing[0], "missing from the checkpoint") if missing else (extra[0], "not in this model")
        more = len(missing) + len(extra) - 1
        return f"{key} {where}" + (f", and {more} more key(s) differ" if more else "")
    for key, value in mine.items():
        if tuple(value.shape) != tuple(theirs[key].shape):
            return f"{key}: shape {tuple(theirs[key].shape)} in the checkpoint, {tuple(value.shape)} here"
    return None


def init_weights(source: str, nets: dict[str, torch.nn.Module], device: torch.device | str) -> str:
    """Load the source checkpoint's weights into `nets` (name -> module: G, D, G_ema); return a note for people."""
    state, path = load_source(source, device)
    for name, net in nets.items():
        why = mismatch(net.state_dict(), state.get(name))
        if why is not None:
            raise GanforgeError(f"{INIT_FROM}: {path}: its {name} does not fit this config's model / conditioning "
                                f"({why}); fine-tune with the source run's architecture options")
        net.load_state_dict(state[name])
    return (f"initialized {', '.join(nets)} from {path} (step {state['step']} of the source run); training starts "
            f"at step 0 with fresh optimizers")

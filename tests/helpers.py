"""Shared test utilities: tiny run configs and a CLI runner."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

TINY_POINTS = {
    "seed": 0,
    "data": {"name": "ring8", "n": 2000},
    "model": {"name": "mlp", "z_dim": 4, "hidden": 32, "layers": 2},
    "loss": {"name": "vanilla"},
    "optim": {"g_lr": 1e-3, "d_lr": 1e-3},
    "train": {"steps": 30, "batch_size": 32, "log_every": 5, "sample_every": 1000, "ckpt_every": 10,
              "mode_every": 0, "tensorboard": False, "threads": 1},
}

# A class-conditional image run small enough to train in a second: 8x8 digits, MLP G/D, cBN in G, projection D.
TINY_DIGITS = {
    "seed": 0,
    "data": {"name": "digits", "resolution": 8},
    "model": {"name": "mlp", "z_dim": 8, "hidden": 32, "layers": 2},
    "conditioning": {"g": {"name": "cbn"}, "d": {"name": "projection"}},
    "loss": {"name": "hinge"},
    "train": {"steps": 3, "batch_size": 16, "log_every": 1, "sample_every": 1000, "ckpt_every": 3,
              "tensorboard": False, "threads": 1, "grid_size": 16},
}


def write_config(tmp_path: Path, cfg: dict, name: str = "run.yaml") -> Path:
    path = Path(tmp_path) / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `python -m ganforge ARGS` in a subprocess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "ganforge", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def shared_cache_dir(tmp_path_factory) -> str:
    """The session's private ganforge cache (nothing leaks into ~/.cache; the digits classifier trains once)."""
    return str(tmp_path_factory.getbasetemp() / "ganforge-cache")


@contextlib.contextmanager
def shared_cache(tmp_path_factory):
    """Use the session cache inside module-scoped fixtures, which run before conftest's per-test setting."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GANFORGE_CACHE", shared_cache_dir(tmp_path_factory))
        yield

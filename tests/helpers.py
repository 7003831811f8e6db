"""Shared test utilities: tiny run configs and a CLI runner."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
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


TESTS_DIR = Path(__file__).parent
PLUGIN_ENV = {"PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")])}


def train_killed_then_resumed(raw: dict, run: Path, kill_after: int, env: dict | None = None) -> None:
    """Start `ganforge train` in a subprocess, SIGKILL it once checkpoint `kill_after` exists, then resume in-process."""
    from ganforge.config import from_dict
    from ganforge.training.checkpoint import list_checkpoints
    from ganforge.training.trainer import train

    cfg_path = write_config(run.parent, raw, name=f"{run.name}.yaml")
    proc = subprocess.Popen([sys.executable, "-m", "ganforge", "train", str(cfg_path), "--out", str(run),
                             "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, **(env or {})})
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        done = list_checkpoints(run / "checkpoints")
        if done and int(done[-1].name[5:13]) >= kill_after:
            break
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = list_checkpoints(run / "checkpoints")
    assert kept and int(kept[-1].name[5:13]) < raw["train"]["steps"]
    train(from_dict(raw), run, progress=False)  # resumes from the latest checkpoint automatically


def torchrun(cfg_path: Path, out: Path, *overrides: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`ganforge train` on 2 gloo ranks through torchrun."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "ganforge",
           "train", str(cfg_path), "--out", str(out), "--no-progress", *overrides]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def last_state(run: Path) -> dict:
    """The newest checkpoint of a run."""
    from ganforge.training.checkpoint import list_checkpoints, load_checkpoint

    return load_checkpoint(list_checkpoints(run / "checkpoints")[-1])

"""What a run directory records about how its checkpoints were made, and the guards that keep that record true.

- `RunLock`: one training process per run directory (an exclusive `flock` on `RUN/.lock`, released when the process
  ends, however it ends).
- `clean_interrupted(run_dir)`: leftovers of writes a kill interrupted: checkpoint temp files and staged `export/` /
  `best/` directories (a directory caught between its two renames is restored first).
- `RUN/history.jsonl`: one line per start or resume: step, time, intra-op threads, world size, device, torch and
  ganforge versions, CPU, data fingerprint, and any config change that was accepted.
- `config_changes(saved, new)` and `check_resume(...)`: resuming with a config that changes how training computes
  is refused unless the user allows it; changes to output-only keys (intervals, kept checkpoints) and extending
  `train.steps` are accepted and recorded.
- `RUN/modes.jsonl`: one line `{"step": S, "counts": [...]}` per mode evaluation (the per-mode counts behind the
  "modes" rows of metrics.jsonl); like metrics.jsonl, lines after the step a run resumes from are dropped
  (`logging.truncate_jsonl`), so a resumed run's file reads like an uninterrupted run's.
"""
from __future__ import annotations

import json
import os
import platform
import time
import warnings
from pathlib import Path
from typing import Any

from ..errors import GanforgeError
from ..fileio import recover_dir, remove_stale_temps

HISTORY = "history.jsonl"
MODES = "modes.jsonl"

# keys whose change leaves the trained weights bit for bit the same: accepted and recorded
OUTPUT_ONLY = frozenset({"train.log_every", "train.sample_every", "train.ckpt_every", "train.keep_ckpts",
                         "train.mode_every", "train.grid_size", "train.tensorboard", "train.report", "eval.every",
                         "eval.batch_size"})
# keys that describe the machine rather than the method: accepted with a warning (bits may differ) and recorded
ENVIRONMENT = frozenset({"train.threads", "train.device"})
# keys that act only when a run starts (step 0): once it has a checkpoint of its own, a change is recorded, not refused
START_ONLY = frozenset({"train.init_from"})
_ABSENT = "<absent>"


# ------------------------------------------------------------------------------------------------------- lock
class RunLock:
    """An exclusive lock on RUN/.lock: a second `ganforge train` into the same directory is refused."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        try:
            import fcntl
        except ImportError:  # no flock on this platform: no protection, as before
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise GanforgeError(f"{self.path.parent}: another ganforge process (pid {holder}) is training in this "
                                f"run directory; wait for it to finish or use another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


# ------------------------------------------------------------------------------------------- what may be a run
_RUN_MARKS = (HISTORY, "checkpoints", "metrics.jsonl")  # what a ganforge run directory holds from its first start


def check_run_dir(run_dir: Path) -> None:
    """A run directory is new, empty, or one ganforge made: training into a folder of other files would overwrite
    them (config.yaml, summary.json, export/) and mix its outputs with the user's."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or any((run_dir / m).exists() for m in _RUN_MARKS):
        return
    others = sorted(p.name for p in run_dir.iterdir() if p.name not in (".lock", ".ganforge-write-test"))
    if others:
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        raise GanforgeError(f"{run_dir}: not a ganforge run directory and not empty ({shown}); train into a new or "
                            f"empty --out so nothing in it is overwritten")


# ---------------------------------------------------------------------------------------------------- cleanup
def clean_interrupted(run_dir: Path) -> list[Path]:
    """Remove (or, for a directory caught between renames, restore) what killed writes left; return what went."""
    from .checkpoint import STALE_TEMPS

    run_dir = Path(run_dir)
    removed = remove_stale_temps(run_dir / "checkpoints", STALE_TEMPS)
    for name in ("export", "best"):
        removed += recover_dir(run_dir / name)
    return removed


# ---------------------------------------------------------------------------------------------------- history
def environment(threads: int, world: int, device: str) -> dict[str, Any]:
    import torch

    from .. import __version__

    return {"threads": threads, "world": world, "device": device, "torch": torch.__version__,
            "ganforge": __version__, "cpu": _cpu_model(), "python": platform.python_version()}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / HISTORY
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a torn last line from a kill mid-append
            continue
    return out


def append_history(run_dir: Path, record: dict[str, Any]) -> None:
    path = Path(run_dir) / HISTORY
    with open(path, "a") as f:
        f.write(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **record}) + "\n")
        f.flush()
        os.fsync(f.fileno())


def environment_warnings(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What changed in the machine since the run's last start that can change the bits of the continued run."""
    out = []
    if before.get("threads") is not None and before["threads"] != now["threads"]:
        out.append(f"this run was last trained with {before['threads']} intra-op threads and now runs with "
                   f"{now['threads']}: the continued run will not match an uninterrupted one bit for bit (pin "
                   f"train.threads to the same value to keep it)")
    for key, what in (("world", "ranks"), ("device", "device"), ("torch", "torch version"), ("cpu", "CPU")):
        if before.get(key) is not None and before[key] != now[key]:
            out.append(f"this run was last trained with {what} {before[key]} and now runs with {now[key]}: the "
                       f"continued run may differ bit for bit from an uninterrupted one")
    return out


def record_start(run_dir: Path, cfg, dataset, step: int, resumed: bool, changes: dict[str, tuple[Any, Any]],
                 allowed: list[str], env: dict[str, Any]) -> None:
    """config.yaml, history.jsonl and warnings about what changed since the run's last start (rank 0 only)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    history = read_history(run_dir)
    config_file = run_dir / "config.yaml"
    if changes and config_file.exists():  # the config the earlier checkpoints were made with stays readable
        config_file.replace(run_dir / f"config-until-step-{step:08d}.yaml")
    config_file.write_text(cfg.to_yaml())
    data = _data_fingerprint(dataset)
    warned: list[str] = []
    if resumed and history:
        warned = environment_warnings(history[-1].get("env", {}), env)
        before = history[-1].get("data")
        if before is not None and data is not None and before != data:
            warned.append(f"data: the dataset changed since this run last trained (fingerprint {before} -> {data}: "
                          f"files added, removed or modified); the resumed run sees other images than the "
                          f"uninterrupted run would have")
    bad = getattr(dataset, "bad_files", None)
    if bad:
        dataset.write_bad_files(run_dir / "bad_images.txt")
        warned.append(f"data: skipped {len(bad)} unreadable image(s), listed in {run_dir / 'bad_images.txt'}")
    n, batch = len(dataset), cfg.train.batch_size
    if batch > n:
        warned.append(f"train.batch_size {batch} is larger than the dataset ({n} samples): every batch repeats "
                      f"samples")
    record = {"event": "resume" if resumed else "start", "step": step, "env": env, "data": data, "samples": n}
    if changes:
        record["config_changes"] = {k: [a, b] for k, (a, b) in changes.items()}
        record["allowed_by_flag"] = allowed  # changes to how training computes, accepted by --allow-config-change
    append_history(run_dir, record)
    for message in warned:
        warnings.warn(message)


def _data_fingerprint(dataset) -> str | None:
    try:
        return dataset.fingerprint()
    except NotImplementedError:
        return None


# ------------------------------------------------------------------------------------------------ config changes
def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """{'optim': {'g_lr': 1}} -> {'optim.g_lr': 1}; lists of mappings index their items (regularizers.0.gamma)."""
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(d, list) and any(isinstance(v, dict) for v in d):
        out = {}
        for i, v in enumerate(d):
            out.update(flatten(v, f"{prefix}{i}."))
        return out
    return {prefix[:-1]: list(d) if isinstance(d, tuple) else d}


def section_defaults() -> dict[str, Any]:
    """Dotted key -> default of every key of the config's train / optim / eval sections."""
    from dataclasses import asdict

    from ..config import EvalConfig, OptimConfig, TrainConfig

    return flatten({"train": asdict(TrainConfig()), "optim": asdict(OptimConfig()), "eval": asdict(EvalConfig())})


def config_changes(saved: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Dotted key -> (saved value, new value) for every key that differs. A key the saved config lacks (it was written
    before the key existed) counts as its default, so adding a key to ganforge does not change old runs' configs."""
    a, b = flatten(saved), flatten(new)
    defaults = section_defaults()
    a.update({k: defaults[k] for k in b if k not in a and k in defaults})
    return {k: (a.get(k, _ABSENT), b.get(k, _ABSENT)) for k in sorted(set(a) | set(b)) if a.get(k, _ABSENT) !=
            b.get(k, _ABSENT)}


def needs_permission(changes: dict[str, tuple[Any, Any]], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The changes that alter how training computes (everything but output-only, machine and start-only keys, and
    `train.steps` unless a learning-rate decay schedule depends on it)."""
    decays = new.get("optim", {}).get("lr_decay", "none") != "none"
    free = OUTPUT_ONLY | ENVIRONMENT | START_ONLY
    return {k: v for k, v in changes.items() if k not in free and not (k == "train.steps" and not decays)}


def describe(changes: dict[str, tuple[Any, Any]], limit: int = 8) -> str:
    items = [f"{k} {a!r} -> {b!r}" for k, (a, b) in changes.items()]
    more = f"; and {len(items) - limit} more" if len(items) > limit else ""
    return "; ".join(items[:limit]) + more


def check_resume(run_dir: Path, checkpoint: Path, changes: dict[str, tuple[Any, Any]], new: dict[str, Any],
                 allow: bool) -> dict[str, tuple[Any, Any]]:
    """Refuse config changes that alter training unless `allow`; return those that were accepted with permission."""
    blocked = needs_permission(changes, new)
    if blocked and not allow:
        steps = " (train.steps sets the optim.lr_decay schedule)" if "train.steps" in blocked else ""
        raise GanforgeError(f"{run_dir}: the config differs from the one {checkpoint.name} was trained with: "
                            f"{describe(blocked)}{steps}; resume with the original config, train into a new --out, "
                            f"or pass --allow-config-change to continue with the new one (recorded in "
                            f"{Path(run_dir) / HISTORY})")
    return blocked

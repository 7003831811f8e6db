"""One lab training session per websocket connection: a ganforge Trainer driven by the page's messages.

All torch work of a session runs, in order, on the session's single worker thread (`ThreadPoolExecutor` with one
worker), so the asyncio loop keeps reading messages while a step runs, and two pieces of work never touch the
Trainer at once. "play" starts a background task that runs `steps_per_frame` Trainer steps, sends a frame, and
repeats until "pause", an error, or the socket closes; `stop()` / `close()` end it and wait for the worker.

The Trainer trains in a scratch run directory of the session (removed on close); "save" writes a real run
directory under the server's runs folder: config.yaml, history.jsonl and a checkpoint of the Trainer's full state
(`Trainer.state_dict()` through `training.checkpoint.save_checkpoint`, as `Trainer.save` writes it), plus points.csv for
drawn data, so `ganforge train RUN/config.yaml --out RUN` resumes it.
"""
from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Awaitable, Callable

import torch

from ..config import from_dict
from ..data.points2d import points_csv
from ..errors import GanforgeError
from ..training import run_dir as rundir
from ..training.build import count_params
from ..training.checkpoint import save_checkpoint
from ..training.trainer import Trainer
from . import views
from .protocol import DRAWN, MAX_PARAMS, ProtocolError, check_settings, run_config_dict
from .stepping import PhaseStepper

Send = Callable[[dict[str, Any]], Awaitable[None]]


class LabSession:
    """A Trainer, its phase stepper, the drawn points and the play loop of one connection."""

    def __init__(self, send: Send, runs_dir: Path):
        self.send, self.runs_dir = send, Path(runs_dir)
        self.workdir = Path(tempfile.mkdtemp(prefix="ganforge-lab-"))
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ganforge-lab")
        self.settings: dict[str, Any] = check_settings({})
        self.trainer: Trainer | None = None
        self.stepper: PhaseStepper | None = None
        self.points_file: Path | None = None  # the latest drawn / uploaded points
        self._trained_points: Path | None = None  # the points file the current Trainer reads
        self._z = self._real = None
        self._builds = 0
        self._extent = 1.5  # half-width of the plot square for drawn points
        self.losses: dict[str, float] = {}
        self.task: asyncio.Task | None = None
        self.playing = False
        self.closed = False
        self._finisher: threading.Thread | None = None

    # ------------------------------------------------------------------------------------------------ plumbing
    async def _work(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run `fn(*args)` on the session's worker thread (in order with all its other work)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def error(self, message: str) -> None:
        await self.send({"type": "error", "message": message})

    async def handle(self, msg: dict[str, Any]) -> None:
        """Act on one checked message (protocol.parse_message); user errors go to the page as error messages."""
        handler = getattr(self, "_on_" + msg["type"].replace("-", "_"))
        try:
            await handler(msg)
        except GanforgeError as e:  # ProtocolError, config errors, divergence: the page shows them
            await self.error(str(e).splitlines()[0])

    # ------------------------------------------------------------------------------------------------ handlers
    async def _on_config(self, msg: dict[str, Any]) -> None:
        await self.pause()
        await self._work(self._build, msg["config"])
        self.settings = msg["config"]
        await self.send(await self._work(self._frame, "config"))

    async def _on_reset(self, msg: dict[str, Any]) -> None:
        await self.pause()
        await self._work(self._build, self.settings)
        await self.send(await self._work(self._frame, "reset"))

    async def _on_points(self, msg: dict[str, Any]) -> None:
        points: torch.Tensor = msg["points"]
        path = self.workdir / f"points-{self._builds}-{len(points)}.csv"
        path.write_text(points_csv(points))
        self.points_file = path
        # drawn points keep the page's square (1.5) unless they reach beyond it
        self._extent = round(max(1.5, 1.2 * float(points.abs().max())), 4)
        await self.send({"type": "points", "count": len(points)})
        if self.settings["data"]["name"] == DRAWN:  # training on drawn points: start again on the new ones
            await self._on_reset(msg)

    async def _on_play(self, msg: dict[str, Any]) -> None:
        await self._ensure_trainer()
        if self.task is None or self.task.done():
            self.playing = True
            self.task = asyncio.create_task(self._play())

    async def _on_pause(self, msg: dict[str, Any]) -> None:
        await self.pause()
        await self.send({"type": "paused", "step": self.trainer.step if self.trainer else 0})

    async def _on_step(self, msg: dict[str, Any]) -> None:
        await self._one("step")

    async def _on_d_step(self, msg: dict[str, Any]) -> None:
        await self._one("d_step")

    async def _on_g_step(self, msg: dict[str, Any]) -> None:
        await self._one("g_step")

    async def _on_frame(self, msg: dict[str, Any]) -> None:
        await self._ensure_trainer()
        await self.send(await self._work(self._frame, "frame"))

    async def _on_save(self, msg: dict[str, Any]) -> None:
        await self._ensure_trainer()
        path = await self._work(self._save, msg["name"])
        await self.send({"type": "saved", "path": str(path), "step": self.trainer.step,
                         "resume": f"ganforge train {path / 'config.yaml'} --out {path}"})

    # ------------------------------------------------------------------------------------------------ playing
    async def _ensure_trainer(self) -> None:
        if self.trainer is None:
            await self._work(self._build, self.settings)

    async def _one(self, action: str) -> None:
        await self.pause()
        await self._ensure_trainer()
        await self.send(await self._work(self._advance, action, 1))

    async def _play(self) -> None:
        """The background loop: steps_per_frame steps, one frame, until paused or closed."""
        try:
            while self.playing and not self.closed:
                frame = await self._work(self._advance, "step", self.settings["steps_per_frame"])
                if not self.playing:
                    frame["playing"] = False
                await self.send(frame)
                await asyncio.sleep(0)  # let the page's messages in between frames
        except GanforgeError as e:
            self.playing = False
            await self._send_quietly({"type": "error", "message": f"training paused: {str(e).splitlines()[0]}"})
        except Exception:  # the socket went away mid-send: nothing to tell anyone
            self.playing = False

    async def _send_quietly(self, msg: dict[str, Any]) -> None:
        try:
            await self.send(msg)
        except Exception:
            pass

    async def pause(self) -> None:
        """Stop the play loop after its current chunk of steps."""
        self.playing = False
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None

    def stop(self) -> threading.Thread:
        """Stop background training now (synchronous, so it happens even if the connection's task is cancelled):
        no new chunk starts, the running one ends after its current step; a thread then waits for the worker and
        removes the scratch directory."""
        if self._finisher is None:
            self.closed, self.playing = True, False
            if self.task is not None:
                self.task.cancel()
                self.task = None
            self._finisher = threading.Thread(target=self._finish, name="ganforge-lab-close", daemon=True)
            self._finisher.start()
        return self._finisher

    def _finish(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(self.workdir, ignore_errors=True)

    async def close(self) -> None:
        """`stop()`, then wait until the worker has finished and the scratch directory is gone."""
        await asyncio.to_thread(self.stop().join)

    # ------------------------------------------------------------------------------------- worker-thread side
    def _build(self, settings: dict[str, Any]) -> None:
        """A fresh Trainer (step 0) for `settings` in a new scratch run directory."""
        points = self.points_file if settings["data"]["name"] == DRAWN else None
        cfg = from_dict(run_config_dict(settings, None if points is None else str(points), self._extent))
        self._builds += 1
        trainer = Trainer(cfg, self.workdir / f"run-{self._builds}", progress=False)
        n = count_params(trainer.G) + count_params(trainer.D)
        if n > MAX_PARAMS:
            raise ProtocolError(f"config.model: G and D have {n} parameters together; the lab trains at most "
                                f"{MAX_PARAMS} (lower the widths or depth)")
        self.trainer, self.stepper, self._trained_points = trainer, PhaseStepper(trainer), points
        self._z, self._real = views.fixed_latents(trainer), views.real_sample(trainer)
        self.losses = {}

    def _advance(self, action: str, n: int) -> dict[str, Any]:
        """`n` times stepper.<action>() (step, d_step or g_step), then a frame. Failures become GanforgeErrors."""
        for _ in range(n):
            if self.closed:
                break
            try:
                self.losses = getattr(self.stepper, action)() or self.losses
            except GanforgeError:
                raise
            except Exception as e:  # e.g. an augmentation made for images given 2-D points
                raise GanforgeError(f"{action.replace('_', '-')} failed: {type(e).__name__}: "
                                    f"{str(e).splitlines()[0] if str(e) else ''}") from e
        return self._frame(action.replace("_", "-"))

    def _frame(self, action: str) -> dict[str, Any]:
        s = self.stepper
        return views.frame(self.trainer, self._z, self._real, {
            "action": action, "playing": self.playing, "d_updates": s.d_updates, "g_updates": s.g_updates,
            "d_pending": s.d_taken, "losses": views.finite_or_none(self.losses), "data": self.settings["data"]["name"],
            "z_dim": self.trainer.G.z_dim,
        })

    def _save(self, name: str) -> Path:
        """RUNS/name: config.yaml + history.jsonl + checkpoints/ (+ points.csv) that `ganforge train` resumes."""
        t = self.trainer
        target = (self.runs_dir / name).resolve()
        if target.exists() and any(target.iterdir()):
            raise ProtocolError(f"save.name: {target} already exists and is not empty; choose another name")
        target.mkdir(parents=True, exist_ok=True)
        points = None
        if self._trained_points is not None:  # drawn data travels with the run
            points = target / "points.csv"
            shutil.copyfile(self._trained_points, points)
        cfg = from_dict(run_config_dict(self.settings, None if points is None else str(points), self._extent))
        state = t.state_dict()
        state["config"] = cfg.to_dict()  # the saved config (points.csv next to it), so resuming finds no change
        env = rundir.environment(torch.get_num_threads(), 1, str(t.device))
        rundir.record_start(target, cfg, t.dataset, t.step, False, {}, [], env)
        save_checkpoint(state, target / "checkpoints", t.step, cfg.train.keep_ckpts)
        return target


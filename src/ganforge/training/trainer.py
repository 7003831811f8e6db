"""The training loop: phases, EMA, logging, checkpoints, export. It never branches on a component's name.

Reading order: `Trainer.__init__` builds everything from the config and resumes from the latest checkpoint in the run
directory; `Trainer.run` is a flat loop whose body is one step (D phases, G phases, EMA, then the periodic work).
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..config import RunConfig
from ..errors import DivergenceError, GanforgeError
from ..objectives.base import Context
from ..sampling import generate
from . import distributed as dist_utils
from .build import build_run, count_params, export_meta
from .checkpoint import atomic_save, load_latest, save_checkpoint
from .ema import update_ema
from .export import export_generator
from .loader import BatchStream
from .logging import RunLog
from .phases import Phase, build_phases, lazy_ratio, lr_multiplier, make_optimizer, set_lr
from .rng import derive_seed, generator, seed_everything

_AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class Trainer:
    def __init__(self, cfg: RunConfig, run_dir: str | Path, progress: bool = True,
                 dist: dist_utils.DistInfo | None = None, device: torch.device | None = None):
        self.cfg, self.run_dir, self.progress = cfg, Path(run_dir), progress
        if dist is None or device is None:
            dist, device = dist_utils.init_from_env(cfg.train.device)
        self.dist, self.device = dist, device
        if cfg.train.threads > 0:
            torch.set_num_threads(cfg.train.threads)
        self.amp_dtype = _AMP_DTYPES[cfg.train.amp]
        if cfg.train.amp == "fp16" and device.type != "cuda":
            raise GanforgeError("train.amp: fp16 needs a CUDA device (GradScaler); use train.amp=bf16 on CPU")
        seed_everything(derive_seed(cfg.seed, "init"))  # identical initial weights on every rank

        parts = build_run(cfg)
        self.parts = parts
        self.dataset, self.modality = parts.dataset, parts.dataset.info.modality
        self.G, self.D, self.G_ema = parts.G.to(device), parts.D.to(device), parts.G_ema.to(device)
        self.augment = parts.augment.to(device)
        self.terms = parts.terms
        self.phases = build_phases(self.terms)
        o = cfg.optim
        self.opt = {
            "G": make_optimizer(self.G.parameters(), o.g_lr, o.betas, o.eps, lazy_ratio(self.phases, "G")),
            "D": make_optimizer(self.D.parameters(), o.d_lr, o.betas, o.eps, lazy_ratio(self.phases, "D")),
        }
        fp16 = cfg.train.amp == "fp16"
        self.scaler = {n: torch.amp.GradScaler(device.type, enabled=fp16) for n in ("G", "D")}
        self.stream = BatchStream(self.dataset, cfg.train.batch_size, cfg.seed, dist.rank, dist.world)
        self.eval_hook = self._build_eval_hook()

        self.ckpt_dir = self.run_dir / "checkpoints"
        self.step = 0
        self.resumed_from: Path | None = None
        self.last_ckpt: Path | None = None
        found = load_latest(self.ckpt_dir, map_location=device)
        if found is not None:
            self._load_state(found[0])
            self.resumed_from = found[1]
        if dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.yaml").write_text(cfg.to_yaml())

    # ----------------------------------------------------------------------------------------------------------- state
    def _stateful_terms(self) -> dict[str, Any]:
        return {str(i): t for i, t in enumerate(self.terms) if hasattr(t, "state_dict")}

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "G": self.G.state_dict(), "D": self.D.state_dict(), "G_ema": self.G_ema.state_dict(),
            "opt_G": self.opt["G"].state_dict(), "opt_D": self.opt["D"].state_dict(),
            "scaler_G": self.scaler["G"].state_dict(), "scaler_D": self.scaler["D"].state_dict(),
            "augment": self.augment.state_dict(),
            "terms": {k: t.state_dict() for k, t in self._stateful_terms().items()},
            "rng_torch": torch.get_rng_state(),
            "eval_best": None if self.eval_hook is None else self.eval_hook.best,
            "config": self.cfg.to_dict(),
        }

    def _load_state(self, s: dict[str, Any]) -> None:
        try:
            self.G.load_state_dict(s["G"])
            self.D.load_state_dict(s["D"])
            self.G_ema.load_state_dict(s["G_ema"])
            self.opt["G"].load_state_dict(s["opt_G"])
            self.opt["D"].load_state_dict(s["opt_D"])
            self.scaler["G"].load_state_dict(s["scaler_G"])
            self.scaler["D"].load_state_dict(s["scaler_D"])
            self.augment.load_state_dict(s["augment"])
            for k, t in self._stateful_terms().items():
                t.load_state_dict(s["terms"][k])
        except (KeyError, RuntimeError, ValueError) as e:
            raise GanforgeError(f"{self.ckpt_dir}: the checkpoint does not match this config ({str(e).splitlines()[0]});"
                                f" use a new --out directory or the config the run was started with") from e
        torch.set_rng_state(s["rng_torch"].cpu())
        if self.eval_hook is not None:
            self.eval_hook.best = s.get("eval_best")
        self.step = int(s["step"])

    def save(self) -> Path | None:
        dist_utils.broadcast_buffers(self.G, self.dist)
        dist_utils.broadcast_buffers(self.D, self.dist)
        path = None
        if self.dist.is_main:
            path = save_checkpoint(self.state_dict(), self.ckpt_dir, self.step, self.cfg.train.keep_ckpts)
        dist_utils.barrier(self.dist)
        return path

    # ------------------------------------------------------------------------------------------------------- one step
    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _micro_batches(self, index: int) -> list[dict[str, Any]]:
        """This rank's share of global batch `index`, split into accumulation rounds."""
        x, y = self.stream.batch(index)
        real = self.modality.to_model(x.to(self.device))
        B = self.cfg.train.batch_size
        gen = generator(self.cfg.seed, "latents", index)  # drawn for the global batch, sliced per rank
        z = self.stream.local_slice(self.G.sample_z(B, generator=gen)).to(self.device)
        y_fake = None
        if self.parts.num_classes > 0:
            y_fake = self.stream.local_slice(torch.randint(0, self.parts.num_classes, (B,), generator=gen))
            y_fake, y = y_fake.to(self.device), y.to(self.device)
        else:
            y = None
        k = self.cfg.train.accumulate
        chunks = []
        for i in range(k):
            sl = slice(i * len(real) // k, (i + 1) * len(real) // k)
            chunks.append({"real": real[sl], "y_real": None if y is None else y[sl], "z": z[sl],
                           "y_fake": None if y_fake is None else y_fake[sl]})
        return chunks

    def _run_phase(self, phase: Phase, micro: list[dict[str, Any]]) -> dict[str, float]:
        net = self.G if phase.net == "G" else self.D
        opt, scaler = self.opt[phase.net], self.scaler[phase.net]
        self.G.requires_grad_(phase.net == "G")
        self.D.requires_grad_(phase.net == "D")
        opt.zero_grad(set_to_none=True)
        logged: dict[str, torch.Tensor] = {}
        for mb in micro:
            ctx = Context(G=self.G, D=self.D, phase=phase.net, augment=self.augment, **mb)
            with self._autocast():
                terms = phase.collect(ctx)
            total = sum(v.float() for v in terms.values())
            scaler.scale(total * (phase.every / len(micro))).backward()
            for name, v in terms.items():
                logged[name] = logged.get(name, 0.0) + v.detach().float() / len(micro)
        values = {k: float(v) for k, v in logged.items()}
        finite = all(math.isfinite(v) for v in values.values())
        if self.dist.enabled:
            flag = torch.tensor([1.0 if finite else 0.0], device=self.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
            finite = bool(flag.item() > 0)
        if not finite:
            last = self.resumed_from if self.last_ckpt is None else self.last_ckpt
            raise DivergenceError(
                f"non-finite loss in phase {phase.name} at step {self.step} ({_fmt(values)}); last good checkpoint: "
                f"{last or 'none yet'} — lower optim.g_lr/optim.d_lr, add a regularizer or set train.amp=none")
        dist_utils.all_reduce_grads([p for p in net.parameters()], self.dist)
        scaler.step(opt)
        scaler.update()
        return values

    def train_step(self) -> dict[str, float]:
        """One G step (with its optim.d_steps D steps): every phase that is due, then EMA."""
        cfg = self.cfg
        seed_everything(derive_seed(cfg.seed, "step", self.dist.rank, self.step))
        mult = lr_multiplier(cfg.optim.lr_decay, self.step, cfg.train.steps, cfg.optim.lr_decay_start)
        for opt in self.opt.values():
            set_lr(opt, mult)
        logs: dict[str, float] = {}
        micro: list[dict[str, Any]] = []
        for k in range(cfg.optim.d_steps):
            micro = self._micro_batches(self.step * cfg.optim.d_steps + k)
            for phase in self.phases:
                if phase.net == "D" and phase.due(self.step):
                    logs.update(self._run_phase(phase, micro))
        for phase in self.phases:  # G phases reuse the last D step's batch and latents (as StyleGAN2)
            if phase.net == "G" and phase.due(self.step):
                logs.update(self._run_phase(phase, micro))
        update_ema(self.G_ema, self.G, cfg.train.ema_decay, self.step, cfg.train.ema_start, cfg.train.ema_warmup)
        self.step += 1
        return logs

    # --------------------------------------------------------------------------------------------- periodic outputs
    @torch.no_grad()
    def sample_grid(self):
        """Fixed-noise samples of G_ema rendered for people (grid for images, scatter for points)."""
        n = self.cfg.train.grid_size if len(self.dataset.info.shape) == 3 else 2500
        labels = None
        if self.parts.num_classes > 0:
            labels = torch.arange(n) % self.parts.num_classes
        fake = generate(self.G_ema, n, seed=derive_seed(self.cfg.seed, "grid"), labels=labels, device=self.device)
        reference = None
        if len(self.dataset.info.shape) == 1:
            idx = torch.randperm(len(self.dataset), generator=generator(self.cfg.seed, "grid-ref"))[:n]
            reference = self.modality.to_model(self.dataset.get_batch(idx)[0])
        return self.modality.render(fake, reference=reference)

    @torch.no_grad()
    def mode_metrics(self) -> dict[str, float]:
        n = self.dataset.mode_samples
        if n <= 0:
            return {}
        fake = generate(self.G_ema, n, seed=derive_seed(self.cfg.seed, "modes"), device=self.device, batch_size=512)
        return {k: float(v) for k, v in self.dataset.mode_metrics(fake).items()}

    def _build_eval_hook(self):
        if self.cfg.eval.every <= 0 or not self.cfg.eval.metrics or not self.dist.is_main:
            return None
        from ..metrics.train_hook import EvalHook

        return EvalHook(self.cfg, self.dataset, self.device)

    # ------------------------------------------------------------------------------------------------------ the loop
    def run(self) -> dict[str, Any]:
        cfg, t = self.cfg, self.cfg.train
        main = self.dist.is_main
        log = RunLog(self.run_dir, self.step, t.tensorboard) if main else None
        self.last_ckpt: Path | None = None
        if main and self.step == 0:
            log.scalars(0, {"G_params": count_params(self.G), "D_params": count_params(self.D)}, event="info")
        bar = tqdm(total=t.steps, initial=self.step, disable=not (main and self.progress), dynamic_ncols=True,
                   desc=self.run_dir.name, unit="step")
        summary: dict[str, Any] = {}
        tick, tick_step = time.perf_counter(), self.step
        try:
            while self.step < t.steps:
                losses = self.train_step()
                step, last = self.step, self.step == t.steps
                bar.update(1)
                if main and _due(step, t.log_every, last):
                    now = time.perf_counter()
                    img_s = (step - tick_step) * t.batch_size * cfg.optim.d_steps / max(now - tick, 1e-9)
                    tick, tick_step = now, step
                    log.scalars(step, {**losses, "img_per_s": img_s, "kimg": step * t.batch_size / 1000})
                    bar.set_postfix({k: f"{v:.3g}" for k, v in losses.items()}, refresh=False)
                if main and _due(step, t.sample_every, last):
                    log.image(step, "fakes", self.sample_grid())
                if main and _due(step, t.mode_every, last):
                    modes = self.mode_metrics()
                    if modes:
                        log.scalars(step, modes, event="modes")
                        summary.update(modes)
                if main and self.eval_hook is not None and _due(step, cfg.eval.every, last):
                    results = self.eval_hook(self.G_ema, step)
                    log.scalars(step, results, event="eval")
                    summary.update(results)
                    if self.eval_hook.is_best(results):  # best/: G_ema export + the full training state
                        export_generator(self.G_ema, self.run_dir / "best", export_meta(cfg, self.parts, step))
                        atomic_save(self.state_dict(), self.run_dir / "best" / "checkpoint.pt")
                if _due(step, t.ckpt_every, last):
                    self.last_ckpt = self.save()
        finally:
            bar.close()
            if log is not None:
                log.close()
        if main:
            export_generator(self.G_ema, self.run_dir / "export", export_meta(cfg, self.parts, self.step))
            if not summary and self.dataset.mode_samples > 0:
                summary.update(self.mode_metrics())
            summary = {"step": self.step, **summary}
            (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        dist_utils.barrier(self.dist)
        return summary


def _due(step: int, every: int, last: bool) -> bool:
    """Whether a periodic action runs at `step`: every `every` steps and at the last step (every=0: last only)."""
    return last or (every > 0 and step % every == 0)


def _fmt(values: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in values.items())


def train(cfg: RunConfig, run_dir: str | Path, progress: bool = True) -> dict[str, Any]:
    """Train (resuming from the latest checkpoint in `run_dir` if any) and return the run summary."""
    trainer = Trainer(cfg, run_dir, progress=progress)
    try:
        if trainer.resumed_from is not None and trainer.dist.is_main:
            msg = f"resuming from {trainer.resumed_from} (step {trainer.step})"
            if trainer.step >= cfg.train.steps:
                msg += f"; already at train.steps={cfg.train.steps}: nothing to train, re-exporting"
            tqdm.write(msg)
        return trainer.run()
    finally:
        dist_utils.shutdown(trainer.dist)

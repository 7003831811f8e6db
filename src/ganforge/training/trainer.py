"""The training loop: phases, EMA, logging, checkpoints, export. It never branches on a component's name.

Reading order: `Trainer.__init__` builds everything from the config and resumes from the latest checkpoint in the run
directory (a new run may start from a source run's weights instead: `train.init_from`); `Trainer.train_step` is one
step (D phases for each of the optim.d_steps D steps, then G phases, EMA); `Trainer.run` is a flat loop around it with
the periodic work. How one phase runs lives in `phase_runner.py`.
"""
from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..config import RunConfig
from ..errors import GanforgeError
from ..nn.spectral_norm import manual_power_iteration
from ..objectives.base import StepInfo
from ..sampling import generate
from . import distributed as dist_utils
from .build import build_run, count_params, export_meta
from .checkpoint import atomic_save, load_latest, save_checkpoint
from .init_from import init_weights
from .divergence import DivergenceGuard
from .ema import halflife_decay, update_ema
from .schedule_runner import ScheduleRunner
from .export import staged_dir, write_export, export_generator
from .loader import BatchStream
from .logging import RunLog, append_jsonl, truncate_jsonl
from .phase_runner import PhaseRunner
from .plots import write_trajectories
from .phases import build_phases, lazy_ratio, lr_multiplier, make_optimizer, set_lr
from .rng import derive_seed, generator, seed_everything
from . import run_dir as rundir
from .stats import StatsWindow, is_stateful

_AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
CHECKPOINT_FORMAT = 2  # 2: terms keyed by origin and name, statistics windows, G-phase latents of their own


class Trainer:
    def __init__(self, cfg: RunConfig, run_dir: str | Path, progress: bool = True,
                 dist: dist_utils.DistInfo | None = None, device: torch.device | None = None,
                 allow_config_change: bool = False):
        self.cfg, self.run_dir, self.progress = cfg, Path(run_dir), progress
        if dist is None or device is None:
            dist, device = dist_utils.init_from_env(cfg.train.device)
        self.dist, self.device = dist, device
        if cfg.train.threads > 0:
            torch.set_num_threads(cfg.train.threads)
        self.amp_dtype = _AMP_DTYPES[cfg.train.amp]
        if cfg.train.amp == "fp16" and device.type != "cuda":
            raise GanforgeError("train.amp: fp16 needs a CUDA device (GradScaler); use train.amp=bf16 on CPU")
        if cfg.train.amp == "bf16" and device.type == "cpu" and not cpu_has_bf16() and dist.is_main:
            warnings.warn("train.amp=bf16: this CPU has no bf16 instructions (avx512_bf16 / AMX), so autocast is "
                          "emulated and usually slower than fp32 here (see docs/benchmarks.md)")
        seed_everything(derive_seed(cfg.seed, "init"))  # identical initial weights on every rank

        parts = build_run(cfg)
        self.parts = parts
        self.dataset, self.modality = parts.dataset, parts.dataset.info.modality
        self.G, self.D, self.G_ema = parts.G.to(device), parts.D.to(device), parts.G_ema.to(device)
        self.augment = parts.augment.to(device)
        self.terms = parts.terms
        for term in self.terms.values():
            if isinstance(term, torch.nn.Module):
                term.to(device)
        self.channels_last = self._memory_format()
        if cfg.train.compile:  # in place: state_dict keys stay those of the eager modules (checkpoints, exports)
            self.G.compile()
            self.D.compile()
        for net in (self.G, self.D, self.G_ema):
            manual_power_iteration(net)  # spectral norm: one power step per update of its network (Miyato Alg. 1)
        self.phases = build_phases(list(self.terms.values()))
        # components that prepare every phase's micro-batches before the phase's own terms (the text condition)
        self.preparers = [t for t in self.terms.values() if getattr(t, "prepares_every_phase", False)]
        self.text_encoder = parts.text.text_encoder if parts.text is not None else None
        if parts.text is not None:  # evaluation without given captions: those of random training images
            self.G_ema.sample_condition = parts.text.sample
        self.nets = self._nets()
        self.frozen = self._frozen()  # e.g. FreezeD's D blocks: no optimizer, no gradient, no SN power step
        frozen = {id(p) for m in self.frozen for p in m.parameters()}
        o = cfg.optim
        self.opt = {net: make_optimizer([p for m in mods for p in m.parameters() if id(p) not in frozen], lr,
                                        o.betas, o.eps, lazy_ratio(self.phases, net))
                    for net, mods, lr in (("G", self.nets["G"], o.g_lr), ("D", self.nets["D"], o.d_lr))}
        self.schedules = ScheduleRunner(self)
        self.hyper: dict[str, float] = {}  # this step's scheduled values (schedules.py)
        fp16 = cfg.train.amp == "fp16"
        self.scaler = {n: torch.amp.GradScaler(device.type, enabled=fp16) for n in ("G", "D")}
        self.stream = BatchStream(self.dataset, cfg.train.batch_size, cfg.seed, dist.rank, dist.world)
        self.consumers = self._consumers()
        self.runner = PhaseRunner(self)
        self.guard = DivergenceGuard.from_config(cfg.train)
        self.eval_hook = self._build_eval_hook()

        self.ckpt_dir = self.run_dir / "checkpoints"
        self.step = 0
        self.resumed_from: Path | None = None
        self.last_ckpt: Path | None = None
        self.notes: list[str] = []  # what the run directory told us at start (printed by `train`)
        if dist.is_main:
            cleaned = rundir.clean_interrupted(self.run_dir)
            if cleaned:
                self.notes.append(f"removed {len(cleaned)} leftover(s) of an interrupted write: "
                                  f"{', '.join(p.name for p in cleaned)}")
        found = load_latest(self.ckpt_dir, map_location=device)
        changes: dict[str, tuple] = {}
        allowed: dict[str, tuple] = {}
        if found is not None:
            changes = rundir.config_changes(found[0].get("config", {}), cfg.to_dict())
            allowed = rundir.check_resume(self.run_dir, found[1], changes, cfg.to_dict(), allow_config_change)
            if allowed:
                self.notes.append(f"config changed with --allow-config-change at step {found[0]['step']}: "
                                  f"{rundir.describe(allowed)}")
            self._load_state(found[0])
            self.resumed_from = found[1]
        elif cfg.train.init_from is not None:  # a new run from a source run's weights (fine-tuning)
            self.notes.append(init_weights(cfg.train.init_from, {"G": self.G, "D": self.D, "G_ema": self.G_ema},
                                           self.device))
        if dist.is_main:
            rundir.record_start(self.run_dir, cfg, self.dataset, self.step, self.resumed_from is not None, changes,
                                sorted(allowed), rundir.environment(torch.get_num_threads(), dist.world, str(device)))

    # ------------------------------------------------------------------------------------------------------ set-up
    def _memory_format(self) -> bool:
        """Put G, D and G_ema in channels-last memory format when configured (None: where the family declares it)."""
        choice = self.cfg.train.channels_last
        conv = len(self.dataset.info.shape) == 3
        use = conv and (choice if choice is not None else bool(self.G.channels_last and self.D.backbone.channels_last))
        if use:
            for net in (self.G, self.D, self.G_ema):
                net.to(memory_format=torch.channels_last)
        return use

    def _optim_hyperparameters(self) -> None:
        """Set each Adam's learning rate, betas and eps from the config (with the lazy-phase rescaling)."""
        o = self.cfg.optim
        for net, lr in (("G", o.g_lr), ("D", o.d_lr)):
            ratio = lazy_ratio(self.phases, net)
            for group in self.opt[net].param_groups:
                group["base_lr"] = group["lr"] = lr * ratio
                group["betas"] = (o.betas[0] ** ratio, o.betas[1] ** ratio)
                group["eps"] = o.eps

    def _nets(self) -> dict[str, list[torch.nn.Module]]:
        """What each phase trains: the network plus the terms whose parameters join its optimizer."""
        nets: dict[str, list[torch.nn.Module]] = {"G": [self.G], "D": [self.D]}
        for term in self.terms.values():
            if isinstance(term, torch.nn.Module) and any(True for _ in term.parameters()):
                nets[term.trains_with].append(term)
        return nets

    def _frozen(self) -> list[torch.nn.Module]:
        """Modules training must leave exactly as they are: the architecture's (`D.backbone.frozen_modules()`, a
        pretrained feature network) and those terms declare (`frozen_modules(D, where)`)."""
        out: list[torch.nn.Module] = list(self.D.backbone.frozen_modules())
        for key, term in self.terms.items():
            if hasattr(term, "frozen_modules"):
                out += term.frozen_modules(self.D, where=key.split(":")[0])
        return out

    def _consumers(self) -> list[tuple[str, Any, str, StatsWindow]]:
        """Stateful components fed with phase statistics: (key, component, phase name, window)."""
        out = []
        main_d = next((p.name for p in self.phases if p.net == "D" and p.every == 1), None)
        if is_stateful(self.augment) and main_d is not None:
            out.append(("augment", self.augment, main_d, StatsWindow(self.augment.update_every)))
        for key, term in self.terms.items():
            phase = next((p.name for p in self.phases if any(term is u for u in p.terms)), None)
            if is_stateful(term) and phase is not None:  # fed by the first phase it belongs to (D phases first)
                out.append((key, term, phase, StatsWindow(getattr(term, "update_every", 1))))
        return out

    # ----------------------------------------------------------------------------------------------------- state
    def _stateful_terms(self) -> dict[str, Any]:
        return {k: t for k, t in self.terms.items() if hasattr(t, "state_dict")}

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            "G": self.G.state_dict(), "D": self.D.state_dict(), "G_ema": self.G_ema.state_dict(),
            "opt_G": self.opt["G"].state_dict(), "opt_D": self.opt["D"].state_dict(),
            "scaler_G": self.scaler["G"].state_dict(), "scaler_D": self.scaler["D"].state_dict(),
            "augment": self.augment.state_dict(),
            "terms": {k: t.state_dict() for k, t in self._stateful_terms().items()},
            "stats_windows": {key: window.state_dict() for key, _, _, window in self.consumers},
            "rng_torch": torch.get_rng_state(),
            "eval_best": None if self.eval_hook is None else self.eval_hook.best,
            "guard": self.guard.state_dict(),
            "config": self.cfg.to_dict(),
        }

    def _load_state(self, s: dict[str, Any]) -> None:
        mine, saved = sorted(self._stateful_terms()), sorted(s.get("terms", {}))
        if s.get("format") != CHECKPOINT_FORMAT:
            raise GanforgeError(f"{self.ckpt_dir}: checkpoint format {s.get('format', 1)} was written by an older "
                                f"ganforge (this one writes format {CHECKPOINT_FORMAT}); use a new --out directory")
        if mine != saved:
            raise GanforgeError(f"{self.ckpt_dir}: the checkpoint holds state for terms {saved or 'none'} but this "
                                f"config has {mine or 'none'} (regularizers reordered or changed?); use the config the "
                                f"run was started with or a new --out directory")
        try:
            self.G.load_state_dict(s["G"])
            self.D.load_state_dict(s["D"])
            self.G_ema.load_state_dict(s["G_ema"])
            self.opt["G"].load_state_dict(s["opt_G"])
            self.opt["D"].load_state_dict(s["opt_D"])
            self._optim_hyperparameters()  # the config's lr/betas/eps, not the checkpoint's (they may be changed)
            self.scaler["G"].load_state_dict(s["scaler_G"])
            self.scaler["D"].load_state_dict(s["scaler_D"])
            self.augment.load_state_dict(s["augment"])
            for k, t in self._stateful_terms().items():
                t.load_state_dict(s["terms"][k])
            for key, _, _, window in self.consumers:
                window.load_state_dict(s["stats_windows"][key])
        except (KeyError, RuntimeError, ValueError) as e:
            raise GanforgeError(f"{self.ckpt_dir}: the checkpoint does not match this config ({str(e).splitlines()[0]});"
                                f" use a new --out directory or the config the run was started with") from e
        self.guard.load_state_dict(s.get("guard", {}))
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

    # ------------------------------------------------------------------------------------------------------ one step
    def nimg(self, step: int | None = None) -> int:
        """Real images shown to D after `step` G steps (all D steps of each)."""
        step = self.step if step is None else step
        return step * self.cfg.optim.d_steps * self.cfg.train.batch_size

    def train_step(self) -> dict[str, float]:
        """One G step with its optim.d_steps D steps: every phase that is due, then EMA."""
        cfg, run = self.cfg, self.runner
        self.begin_step()
        B = cfg.train.batch_size
        logs: dict[str, float] = {}
        micro: list[dict[str, Any]] = []
        for k in range(cfg.optim.d_steps):
            d_step = self.step * cfg.optim.d_steps + k
            micro = run.micro_batches(d_step, run.latents("latents", d_step))
            info = StepInfo(self.step, d_step, cfg.train.steps, B, d_step * B)
            for phase in self.phases:
                if phase.net == "D" and phase.due(d_step):  # lazy D terms count D steps
                    logs.update(run.run(phase, micro, d_step, info))
        # G phases: the last D step's reals, latents and labels of their own (StyleGAN2-ADA, SNGAN, BigGAN)
        micro = run.with_latents(micro, run.latents("latents-G", self.step))
        info = StepInfo(self.step, (self.step + 1) * cfg.optim.d_steps - 1, cfg.train.steps, B, self.nimg(self.step + 1))
        for phase in self.phases:
            if phase.net == "G" and phase.due(self.step):
                logs.update(run.run(phase, micro, self.step, info))
        self.update_ema()
        self.step += 1
        return logs

    def begin_step(self) -> None:
        """What every step does first: its global seed, the scheduled hyperparameters, the learning-rate decay."""
        cfg = self.cfg
        seed_everything(derive_seed(cfg.seed, "step", self.dist.rank, self.step))
        self.hyper = self.schedules.values(self.nimg())
        self.schedules.apply(self.hyper)
        mult = lr_multiplier(cfg.optim.lr_decay, self.step, cfg.train.steps, cfg.optim.lr_decay_start)
        for opt in self.opt.values():
            set_lr(opt, mult)

    def update_ema(self) -> None:
        """G_ema <- its average with G: ema_decay, or the (scheduled) half-life train.ema_kimg when set."""
        t = self.cfg.train
        kimg = self.hyper.get("train.ema_kimg", t.ema_kimg)
        if kimg > 0 or "train.ema_kimg" in self.hyper:  # a scheduled half-life may start at 0 (R3GAN: G_ema = G)
            decay = halflife_decay(t.batch_size, kimg, self.nimg(), t.ema_rampup)
            update_ema(self.G_ema, self.G, decay, self.step, t.ema_start, warmup=False)
        else:
            update_ema(self.G_ema, self.G, self.hyper.get("train.ema_decay", t.ema_decay), self.step, t.ema_start,
                       t.ema_warmup)

    def log_values(self) -> dict[str, float]:
        """Numbers stateful components want in the training log (augmentation p, LeCam anchors, ...)."""
        out: dict[str, float] = {}
        for component in (self.augment, *self.terms.values()):
            if hasattr(component, "log_values"):
                out.update({k: float(v) for k, v in component.log_values().items()})
        return out

    # --------------------------------------------------------------------------------------------- periodic outputs
    @torch.no_grad()
    def sample_grid(self):
        """Fixed-noise samples of G_ema rendered for people (grid for images, scatter for points)."""
        n = self.cfg.train.grid_size if len(self.dataset.info.shape) == 3 else 2500
        labels = None
        if self.parts.num_classes > 0:
            labels = torch.arange(n) % self.parts.num_classes
        if self.parts.text is not None:  # one training caption per sample (evenly spaced images)
            labels = self.parts.text.grid_condition(n, "cpu")
        fake = generate(self.G_ema, n, seed=derive_seed(self.cfg.seed, "grid"), labels=labels, device=self.device)
        reference = None
        if len(self.dataset.info.shape) == 1:
            idx = torch.randperm(len(self.dataset), generator=generator(self.cfg.seed, "grid-ref"))[:n]
            reference = self.modality.to_model(self.dataset.get_batch(idx)[0])
        return self.modality.render(fake, reference=reference)

    def mode_metrics(self) -> dict[str, float]:
        """Mode coverage of G_ema (modes, hq_frac, kl), the numbers `ganforge eval --metrics modes` gives the export."""
        return self.mode_evaluation()[0]

    def mode_evaluation(self) -> tuple[dict[str, float], torch.Tensor | None]:
        """(mode metrics, per-mode counts they are computed from) of G_ema on one draw of the protocol's samples, seed
        eval.seed: the path of the `modes` metric, so the scalars equal `ganforge eval --metrics modes`. ({}, None)
        for a dataset without mode metrics."""
        if self.dataset.mode_samples <= 0:
            return {}, None
        from ..metrics.modes import mode_coverage

        return mode_coverage(self.G_ema, self.dataset, seed=self.cfg.eval.seed, device=self.device)

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
        if main:  # per-mode counts: lines after a resumed step are redone, as in metrics.jsonl
            truncate_jsonl(self.run_dir / rundir.MODES, self.step)
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
                    img_s = (self.nimg(step) - self.nimg(tick_step)) / max(now - tick, 1e-9)
                    tick, tick_step = now, step
                    log.scalars(step, {**losses, **self.log_values(), "img_per_s": img_s,
                                       "kimg": self.nimg(step) / 1000})
                    bar.set_postfix({k: f"{v:.3g}" for k, v in losses.items()}, refresh=False)
                if main and _due(step, t.sample_every, last):
                    log.image(step, "fakes", self.sample_grid())
                    self._plot_trajectories(log, step)
                if main and _due(step, t.mode_every, last):
                    modes, counts = self.mode_evaluation()
                    if modes:
                        log.scalars(step, modes, event="modes")
                        summary.update(modes)
                    if counts is not None:  # the histogram behind the scalars, for the report's mode plots
                        append_jsonl(self.run_dir / rundir.MODES, {"step": step, "counts": counts.tolist()})
                if main and self.eval_hook is not None and _due(step, cfg.eval.every, last):
                    results = self.eval_hook(self.G_ema, step)
                    log.scalars(step, results, event="eval")
                    summary.update(results)
                    if self.eval_hook.is_best(results):  # best/: G_ema export + the full state, replaced whole
                        with staged_dir(self.run_dir / "best") as tmp:
                            write_export(self.G_ema, tmp, export_meta(cfg, self.parts, step), D=self.D,
                                         text_encoder=self.text_encoder)
                            atomic_save(self.state_dict(), tmp / "checkpoint.pt")
                if _due(step, t.ckpt_every, last):
                    self.last_ckpt = self.save()
        finally:
            bar.close()
            if log is not None:
                log.close()
        if main:
            export_generator(self.G_ema, self.run_dir / "export", export_meta(cfg, self.parts, self.step), D=self.D,
                             text_encoder=self.text_encoder)
            if not summary and self.dataset.mode_samples > 0:
                summary.update(self.mode_metrics())
            summary = {"step": self.step, **summary}
            (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
            if t.report:  # the HTML run report, from the files just written (metrics.jsonl is closed and flushed)
                from ..report import write_report

                write_report([self.run_dir], self.run_dir / "report.html")
        dist_utils.barrier(self.dist)
        return summary


    def _plot_trajectories(self, log: RunLog, step: int) -> None:
        """RUN/plots/KEY.png (and TensorBoard) for each value stateful components log: ADA's p, Diffusion-GAN's T..."""
        keys = sorted(self.log_values())
        if keys:
            log.flush()
            for key, picture in write_trajectories(self.run_dir, keys).items():
                log.tb_image(step, f"plots/{key}", picture)


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (avx512_bf16 or AMX), where bf16 autocast speeds training up."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def _due(step: int, every: int, last: bool) -> bool:
    """Whether a periodic action runs at `step`: every `every` steps and at the last step (every=0: last only)."""
    return last or (every > 0 and step % every == 0)


def train(cfg: RunConfig, run_dir: str | Path, progress: bool = True, allow_config_change: bool = False
          ) -> dict[str, Any]:
    """Train (resuming from the latest checkpoint in `run_dir` if any) and return the run summary.

    Resuming with a config that changes how training computes is refused unless `allow_config_change` (the change
    and its step are recorded in RUN/history.jsonl; the earlier config is kept as config-until-step-N.yaml).
    """
    main = int(os.environ.get("RANK", "0")) == 0
    if main:
        rundir.check_run_dir(Path(run_dir))
    lock = rundir.RunLock(Path(run_dir)).acquire() if main else None
    try:
        trainer = Trainer(cfg, run_dir, progress=progress, allow_config_change=allow_config_change)
        try:
            if trainer.dist.is_main:
                for note in trainer.notes:
                    tqdm.write(note)
            if trainer.resumed_from is not None and trainer.dist.is_main:
                msg = f"resuming from {trainer.resumed_from} (step {trainer.step})"
                if trainer.step >= cfg.train.steps:
                    msg += f"; already at train.steps={cfg.train.steps}: nothing to train, re-exporting"
                tqdm.write(msg)
            return trainer.run()
        finally:
            dist_utils.shutdown(trainer.dist)
    finally:
        if lock is not None:
            lock.release()

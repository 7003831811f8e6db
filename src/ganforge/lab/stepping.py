"""Phase-level stepping of ganforge's own Trainer: one D step or one G step at a time (GAN Lab's step buttons).

"GAN Lab: Understanding Complex Deep Generative Models using Interactive Visual Experimentation" (Kahng et al.,
2019) lets people update D alone or G alone to see what each update does. `PhaseStepper` does that with the Trainer's
`PhaseRunner` and phases, unchanged: `d_step()` runs the D phases due at the next D step (reals of global batch
`step * d_steps + k`, latents of the `latents` stream, as `Trainer.train_step` draws them), `g_step()` runs the G
phases due at the current G step with the last D step's reals and `latents-G` latents, then EMA, then counts the step.
`step()` is one full Trainer step: `Trainer.train_step()` itself when no D step of it was taken alone, else the
remaining D steps and the G step. D steps taken beyond `optim.d_steps` before a G step draw the following batches.
"""
from __future__ import annotations

from typing import Any

from ..objectives.base import StepInfo
from ..training.trainer import Trainer


class PhaseStepper:
    """D phases and G phases of a Trainer's step, run separately (the Trainer's counters stay its own)."""

    def __init__(self, trainer: Trainer):
        self.t = trainer
        self.d_taken = 0  # D steps taken since the last G step
        self.d_updates = 0  # D steps taken in this session
        self.g_updates = 0  # G steps taken in this session
        self._micro: list[dict[str, Any]] | None = None  # the last D step's micro-batches (reals for the G phases)

    def _begin(self) -> None:
        """What `train_step` does first: the step's global seed and the learning-rate schedule."""
        self.t.begin_step()

    def d_step(self) -> dict[str, float]:
        """One D step: every D phase due at D-step index `step * d_steps + d_taken`; G is left untouched."""
        t, run = self.t, self.t.runner
        if self.d_taken == 0:
            self._begin()
        k = t.cfg.optim.d_steps
        d_index = t.step * k + self.d_taken
        B = t.cfg.train.batch_size
        micro = run.micro_batches(d_index, run.latents("latents", d_index))
        info = StepInfo(t.step, d_index, t.cfg.train.steps, B, d_index * B)
        logs: dict[str, float] = {}
        for phase in t.phases:
            if phase.net == "D" and phase.due(d_index):  # lazy D terms count D steps
                logs.update(run.run(phase, micro, d_index, info))
        self._micro = micro
        self.d_taken += 1
        self.d_updates += 1
        return logs

    def g_step(self) -> dict[str, float]:
        """One G step: every G phase due at G step `step`, EMA, and the step counter + 1; D is left untouched."""
        t, run = self.t, self.t.runner
        if self.d_taken == 0:
            self._begin()
        k, B = t.cfg.optim.d_steps, t.cfg.train.batch_size
        micro = self._micro
        if micro is None:  # no D step taken alone: the reals train_step's last D step would have drawn
            last = t.step * k + k - 1
            micro = run.micro_batches(last, run.latents("latents", last))
        micro = run.with_latents(micro, run.latents("latents-G", t.step))
        info = StepInfo(t.step, (t.step + 1) * k - 1, t.cfg.train.steps, B, t.nimg(t.step + 1))
        logs: dict[str, float] = {}
        for phase in t.phases:
            if phase.net == "G" and phase.due(t.step):
                logs.update(run.run(phase, micro, t.step, info))
        t.update_ema()
        t.step += 1
        self._micro, self.d_taken = None, 0
        self.g_updates += 1
        return logs

    def step(self) -> dict[str, float]:
        """One full step (optim.d_steps D steps, then the G step): the Trainer's own `train_step` when possible."""
        if self.d_taken == 0:
            logs = self.t.train_step()
            self.d_updates += self.t.cfg.optim.d_steps
            self.g_updates += 1
            return logs
        logs = {}
        while self.d_taken < self.t.cfg.optim.d_steps:
            logs.update(self.d_step())
        logs.update(self.g_step())
        return logs

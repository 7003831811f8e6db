"""Training statistics handed to stateful components (adaptive augmentations, EMA anchors, path-length means, ...).

During a phase, terms (and the trainer) `record` per-sample values under a name; the recorder keeps float64 sums and
counts over the phase's micro-batches. After the phase they are summed over ranks in one all-reduce, so every rank
holds the statistics of the global batch. A `StatsWindow` adds up several phase runs (e.g. ADA's 4 minibatches) and,
every `every` runs, gives its consumer the means plus progress counters, then starts over. Windows are part of the
checkpoint, so a resumed run hands consumers exactly the numbers an uninterrupted run would.

The trainer records, after every D phase that computed them: `d_real` / `d_fake` (D's adversarial logits on reals /
fakes) and `d_real_sign` (their sign, ADA's r_t), from the same (augmented) D calls the loss used.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist


class StatsRecorder:
    """Sums and counts of recorded values within one phase run (all micro-batches of this rank)."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, name: str, values: torch.Tensor) -> None:
        v = values.detach().to(torch.float64)  # sums stay on the values' device: no sync until `reduced`
        self.sums[name] = self.sums[name] + v.sum() if name in self.sums else v.sum()
        self.counts[name] = self.counts.get(name, 0) + v.numel()

    def reduced(self, distributed: bool, device: torch.device) -> dict[str, tuple[float, int]]:
        """{name: (sum, count)} over every rank (one all-reduce; every rank records the same names)."""
        names = sorted(self.sums)
        if not names:
            return {}
        sums = torch.stack([self.sums[n].to(device) for n in names])
        counts = torch.tensor([float(self.counts[n]) for n in names], dtype=torch.float64, device=device)
        flat = torch.stack([sums, counts], dim=1)  # (names, 2)
        if distributed:
            dist.all_reduce(flat)
        flat = flat.cpu()
        return {n: (float(s), int(round(c))) for n, (s, c) in zip(names, flat.tolist())}


class StatsWindow:
    """Accumulates reduced phase statistics for one consumer and releases their means every `every` runs."""

    def __init__(self, every: int):
        if every < 1:
            raise ValueError(f"update_every must be >= 1, got {every}")
        self.every = every
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.runs = 0

    def add(self, reduced: dict[str, tuple[float, int]]) -> bool:
        """Add one phase run; True when the window is full (then call `release`)."""
        for name, (s, c) in reduced.items():
            self.sums[name] = self.sums.get(name, 0.0) + s
            self.counts[name] = self.counts.get(name, 0) + c
        self.runs += 1
        return self.runs >= self.every

    def release(self, **progress: Any) -> dict[str, Any]:
        """The window's means (`name`) and sample counts (`name_n`), plus `progress` counters; then reset."""
        out: dict[str, Any] = {"window_runs": self.runs, **progress}
        for name, s in self.sums.items():
            n = self.counts[name]
            out[name] = s / n if n else float("nan")
            out[f"{name}_n"] = n
        self.sums, self.counts, self.runs = {}, {}, 0
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"sums": dict(self.sums), "counts": dict(self.counts), "runs": self.runs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sums = {k: float(v) for k, v in state["sums"].items()}
        self.counts = {k: int(v) for k, v in state["counts"].items()}
        self.runs = int(state["runs"])


def is_stateful(component: object) -> bool:
    """Whether `component` implements `update(stats)` (the base `Augment.update` is a no-op and does not count)."""
    from ..augment.base import Augment

    method = getattr(type(component), "update", None)
    return callable(method) and method is not Augment.update

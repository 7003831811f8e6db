"""Periodic evaluation of G_ema during training (`eval.every`, `eval.metrics`, `eval.n`), best-checkpoint tracking.

It goes through the same `Evaluator` as `ganforge.evaluate` and `ganforge eval`, with the same seed (`eval.seed`,
default 0 like `ganforge eval --seed`), so a training log's FID equals the CLI's on the exported generator.
Its results carry the sample counts (`n`, `n_ref`) like every evaluation, so the logged eval events say what N each
value was computed at; the best checkpoint is chosen by a metric value only, never by a count.
"""
from __future__ import annotations

import math

import torch

from ..config import RunConfig
from ..data.base import Dataset
from ..errors import GanforgeError
from .evaluate import COUNT_KEYS, HIGHER_IS_BETTER, Evaluator, build_metrics, metric_name


class EvalHook:
    def __init__(self, cfg: RunConfig, dataset: Dataset, device: torch.device):
        e = cfg.eval
        reference = e.ref if e.ref is not None else dataset
        self.n = e.n
        keys = [k for m in build_metrics(e.metrics) for k in m.keys if k not in COUNT_KEYS]  # before extraction
        if e.best in COUNT_KEYS:
            raise GanforgeError(f"eval.best: {e.best!r} is a sample count, not a metric result; choose one of: "
                                f"{', '.join(keys)}")
        if e.best is not None and e.best not in keys:
            names = ", ".join(metric_name(m) for m in e.metrics)
            raise GanforgeError(f"eval.best: {e.best!r} is not a result of eval.metrics ({names}); "
                                f"choose one of: {', '.join(keys)}")
        self.best_key = e.best or keys[0]  # default: the first metric's first result (e.g. prdc -> precision)
        self.evaluator = Evaluator(reference, e.metrics, e.backbone, e.weights, e.resize, None, e.batch_size,
                                   device, seed=e.seed, progress=False)
        self.best: float | None = None

    def __call__(self, G_ema: torch.nn.Module, step: int) -> dict[str, float | int]:
        """The metric values and the sample counts `n` / `n_ref` they were computed at."""
        return self.evaluator(G_ema, self.n)

    def is_best(self, results: dict[str, float | int]) -> bool:
        """Whether `results` improve on the best so far by `eval.best` (a metric value; the counts are ignored)."""
        value = results.get(self.best_key) if self.best_key not in COUNT_KEYS else None
        if value is None or not math.isfinite(value):
            return False
        better = self.best is None or (value > self.best if self.best_key in HIGHER_IS_BETTER else value < self.best)
        if better:
            self.best = value
        return better

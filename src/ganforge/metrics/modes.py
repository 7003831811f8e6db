"""Mode coverage of the built-in sets as an evaluation metric (PacGAN protocols: Lin et al., 2018).

Unlike feature metrics, it works on generated samples themselves: the reference must be a dataset that defines
`mode_metrics` (ring8, grid25: modes captured / high-quality fraction / reverse KL; stacked-digits: modes hit / KL to
uniform through the bundled digit classifier), and it draws `dataset.mode_samples` samples from the generator.
That count is the protocol's, whatever `n` / `--n` says (the result's `n` reports it), so it needs no sample-count
check.

`mode_coverage` is the one path from a generator to mode numbers: it draws the protocol's samples once
(`draw_mode_samples`) and returns the scalars together with the per-mode counts they are computed from. The metric
(`ganforge eval --metrics modes`) and the trainer (metrics.jsonl "modes" rows + RUN/modes.jsonl) both call it, so
their numbers are the same for the same generator and seed.
"""
from __future__ import annotations

import torch

from ..data.base import Dataset
from ..errors import GanforgeError
from ..registries import METRICS
from ..sampling import generate
from .base import Features, Metric


def draw_mode_samples(G: torch.nn.Module, dataset: Dataset, seed: int = 0,
                      device: torch.device | str | None = None) -> torch.Tensor:
    """The protocol's `dataset.mode_samples` samples of `G` (in eval mode, latents from `seed`), model space."""
    if dataset.mode_samples <= 0:
        raise GanforgeError("metric modes: the reference dataset has no mode metrics (use ring8, grid25 or "
                            "stacked-digits)")
    if tuple(G.img_shape) != tuple(dataset.info.shape):
        raise GanforgeError(f"metric modes: generator makes samples of shape {tuple(G.img_shape)}, the reference "
                            f"dataset holds {tuple(dataset.info.shape)}")
    was_training = G.training
    G.eval()
    try:
        return generate(G, dataset.mode_samples, seed=seed, batch_size=512, device=device)
    finally:
        G.train(was_training)


def mode_coverage(G: torch.nn.Module, dataset: Dataset, seed: int = 0, device: torch.device | str | None = None
                  ) -> tuple[dict[str, float], torch.Tensor | None]:
    """(scalars {"modes", "hq_frac", "kl"}, per-mode counts (K,) int64) of `G` on one draw of the protocol's samples.

    The counts are those the scalars are computed from (ring8 / grid25: high-quality samples per nearest mode;
    stacked-digits: samples per predicted class); None for a dataset that defines `mode_metrics` only.
    """
    x = draw_mode_samples(G, dataset, seed, device)
    if hasattr(dataset, "mode_results"):
        metrics, counts = dataset.mode_results(x)
        counts = counts.detach().cpu().long()
    else:  # a plugin dataset with scalar mode metrics only
        metrics, counts = dataset.mode_metrics(x), None
    return {k: float(v) for k, v in metrics.items()}, counts


@METRICS.register("modes")
class ModeCoverage(Metric):
    """Mode coverage (PacGAN protocol) of ring8 / grid25 / stacked-digits: modes, hq_frac, kl."""

    needs = frozenset()
    needs_reference = False  # needs a reference *dataset*, not reference features
    on_samples = True
    keys = ("modes", "hq_frac", "kl")

    def compute(self, fake: Features, real: Features | None) -> dict[str, float]:
        raise GanforgeError("metric modes: works on generated samples; evaluate a generator against a built-in set")

    def compute_samples(self, G: torch.nn.Module, dataset: Dataset, seed: int = 0,
                        device: torch.device | str | None = None) -> dict[str, float]:
        return mode_coverage(G, dataset, seed, device)[0]

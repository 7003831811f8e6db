"""Latent recovery as an overfitting test (Webster et al., "Detecting Overfitting of Deep Generative Networks via
Latent Recovery", CVPR 2019).

For n training images and n held-out images (the run's test split, see below), each image x in model space
[-1, 1] gets a latent recovered by L-BFGS from z ~ N(0, I):
50 steps of `torch.optim.LBFGS(max_iter=1)` minimising MSE(G(z), x) (the authors' `latent_recovery.py`); the
recovery error is the final MSE. Images are recovered in batches with the sum of their per-image MSEs as the
objective (the latents are independent, so the optimum is the same; L-BFGS's curvature memory is shared over the
batch). A generator that memorised its training set recovers training images better than held-out ones:

    MRE-gap = |median(e_test) - median(e_train)| / median(e_test)

with the two-sample Kolmogorov-Smirnov test (scipy.stats.ks_2samp) of the two error samples; a large gap with
e_train < e_test signals memorisation. A conditional G uses each image's label.

Held-out images: the run's `test` split when its dataset has one; a dataset without one (e.g. procedural data, whose
every image may be seen) is a one-line error, since training images the run did not draw are not held out.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..checks import check_int
from ..data.base import ImageModality
from ..errors import GanforgeError
from ..registries import EXPLORERS
from ..training.rng import generator
from .base import Explorer, check_run_data, dataset_images, run_dataset, save_png
from .plot import line_plot


def recovery_gap(e_train, e_test) -> dict[str, float]:
    """MRE-gap |median(e_test) - median(e_train)| / median(e_test), medians, and the two-sample KS test."""
    from scipy.stats import ks_2samp

    tr, te = np.asarray(e_train, np.float64).ravel(), np.asarray(e_test, np.float64).ravel()
    if len(tr) == 0 or len(te) == 0:
        raise GanforgeError("recovery_gap: needs at least one training and one held-out error")
    m_tr, m_te = float(np.median(tr)), float(np.median(te))
    ks = ks_2samp(tr, te)
    return {"gap": abs(m_te - m_tr) / max(m_te, 1e-300), "median_train": m_tr, "median_test": m_te,
            "ks_statistic": float(ks.statistic), "ks_pvalue": float(ks.pvalue)}


def recover(G: nn.Module, x: torch.Tensor, y: torch.Tensor | None, *, steps: int = 50, lr: float = 1.0,
            seed: int = 0, batch_size: int = 64, line_search: str | None = "strong_wolfe",
            progress: bool = False) -> torch.Tensor:
    """(B,) recovery errors: final MSE(G(z), x) after `steps` L-BFGS steps (max_iter 1) from z ~ N(0, I)."""
    device = next(iter(G.parameters())).device
    gen = generator(seed, "recovery")
    requires = [p.requires_grad for p in G.parameters()]
    for p in G.parameters():
        p.requires_grad_(False)
    errors = []
    try:
        for i in tqdm(range(0, len(x), batch_size), desc="recovery", disable=not progress, leave=False):
            xb = x[i: i + batch_size].float().to(device)
            yb = None if y is None else y[i: i + batch_size].to(device)
            z = G.sample_z(len(xb), generator=gen).to(device).requires_grad_(True)
            opt = torch.optim.LBFGS([z], lr=lr, max_iter=1, line_search_fn=line_search)

            def closure():
                opt.zero_grad()
                loss = (G(z, yb) - xb).pow(2).flatten(1).mean(1).sum()
                loss.backward()
                return loss

            with torch.enable_grad():
                for _ in range(steps):
                    opt.step(closure)
            with torch.no_grad():
                errors.append((G(z, yb) - xb).pow(2).flatten(1).mean(1).cpu())
    finally:
        for p, r in zip(G.parameters(), requires):
            p.requires_grad_(r)
    return torch.cat(errors)


@EXPLORERS.register("recovery")
class Recovery(Explorer):
    """Latent recovery (Webster et al. 2019): recovery errors of training vs held-out images, MRE-gap and KS."""

    def __init__(self, *, n: int = 256, steps: int = 50, lr: float = 1.0, line_search: str | None = "strong_wolfe",
                 batch_size: int = 64, restarts: int = 1):
        """
        Args:
            n: training images and held-out images recovered (each; fewer if a split is smaller).
            restarts: random starting latents per image; its error is the best of them (one start's luck can
                outweigh a memorisation gap; the same starts serve both splits).
            steps: L-BFGS steps (max_iter 1 each; the authors: 50).
            lr: L-BFGS learning rate.
            line_search: "strong_wolfe" or none (torch's L-BFGS without a line search can diverge at lr 1).
            batch_size: images recovered together.
        """
        self.n = check_int(n, "explore recovery: n", minimum=1)
        self.steps = check_int(steps, "explore recovery: steps", minimum=1)
        self.restarts = check_int(restarts, "explore recovery: restarts", minimum=1)
        self.batch_size = check_int(batch_size, "explore recovery: batch_size", minimum=1)
        if not lr > 0:
            raise GanforgeError(f"explore recovery: lr must be > 0, got {lr}")
        if line_search not in (None, "none", "strong_wolfe"):
            raise GanforgeError(f"explore recovery: line_search must be strong_wolfe or none, got {line_search!r}")
        self.lr, self.line_search = float(lr), None if line_search in (None, "none") else line_search

    def check(self, G: torch.nn.Module) -> None:
        super().check(G)
        check_run_data(G, "recovery")

    def splits(self, G: nn.Module, seed: int):
        try:
            held_out = run_dataset(G, "test")
        except GanforgeError as e:
            raise GanforgeError(f"explore recovery: needs held-out images, and the run's data has no test split "
                                f"({e})") from None
        train = dataset_images(run_dataset(G), self.n, seed, "recovery-train", "recovery")
        test = dataset_images(held_out, self.n, seed, "recovery-test", "recovery")
        return train, test

    def run(self, G: torch.nn.Module, out_dir: Path, *, progress: bool, seed: int, device: str) -> dict[str, Any]:
        (x_tr, y_tr), (x_te, y_te) = self.splits(G, seed)
        to_model = ImageModality().to_model

        def labels(y, n):
            return None if G.num_classes <= 0 else (y if y is not None else torch.zeros(n, dtype=torch.long))

        def errors(x, y):  # best of `restarts` starts; start r is the same for both splits (common random numbers)
            runs = [recover(G, to_model(x), labels(y, len(x)), steps=self.steps, lr=self.lr, seed=seed + 7919 * r,
                            batch_size=self.batch_size, line_search=self.line_search, progress=progress)
                    for r in range(self.restarts)]
            return torch.stack(runs).amin(dim=0)

        e_tr, e_te = errors(x_tr, y_tr), errors(x_te, y_te)
        stats = recovery_gap(e_tr.numpy(), e_te.numpy())
        save_png(histogram_figure(e_tr.numpy(), e_te.numpy()), out_dir / "histogram.png")
        return {**stats, "memorisation_suspected": bool(stats["median_train"] < stats["median_test"]
                                                        and stats["ks_pvalue"] < 0.05),
                "n_train": len(e_tr), "n_test": len(e_te), "errors_train": e_tr, "errors_test": e_te}


def histogram_figure(e_train: np.ndarray, e_test: np.ndarray, bins: int = 20) -> np.ndarray:
    """Counts of the two error samples over shared bins (a line plot per split)."""
    lo, hi = float(min(e_train.min(), e_test.min())), float(max(e_train.max(), e_test.max()))
    edges = np.linspace(lo, hi if hi > lo else lo + 1e-12, bins + 1)
    h_tr = np.histogram(e_train, edges)[0].astype(np.float64)
    h_te = np.histogram(e_test, edges)[0].astype(np.float64)
    ticks = [f"{edges[i]:.2g}" if i in (0, bins // 2, bins - 1) else "" for i in range(bins)]
    return line_plot({"train": h_tr, "held-out": h_te}, {"train": "#1f5fbf", "held-out": "#d62728"},
                     "recovery error (MSE), bin start", "images", xticks=ticks)

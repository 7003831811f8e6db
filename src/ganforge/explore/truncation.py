"""Truncation sweep: samples and FID / precision / recall as the truncation psi varies (the fidelity-diversity
trade-off).

- Generators taking z: the truncation trick of BigGAN (Brock et al., "Large Scale GAN Training for High Fidelity
  Natural Image Synthesis", ICLR 2019, Sec. 3.1): z ~ N(0, I) with every coordinate |z_i| > psi resampled
  (`G.sample_z(truncation=psi)`); psi is a threshold, so large psi means little truncation.
- Style-based generators: truncation in w (StyleGAN, Karras et al. 2019, Sec. 2 / Eq. 2 of the appendix):
  w' = w_avg + psi (w - w_avg) on every layer (`G.mapping(truncation_psi=psi)`); psi = 1 is no truncation, psi = 0
  gives w_avg for every sample.
For each psi, n generated images are compared with n training images in a backbone's feature space: FID (Heusel et
al. 2017), precision / recall (Kynkaanniemi et al. 2019) and density / coverage (Naeem et al. 2020), computed by the
evaluation protocol (`metrics.evaluate.Evaluator`), so the numbers are those `ganforge eval` would give at that n.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..checks import check_int
from ..data.base import ImageModality
from ..errors import GanforgeError
from ..models.style import is_style_based
from ..registries import EXPLORERS
from ..sampling import latents
from .base import (Explorer, FeatureSpace, check_feature_space, check_run_data, dataset_images, render_grid,
                   run_dataset, save_png)
from .plot import line_plot

METRIC_KEYS = ("fid", "precision", "recall", "density", "coverage")


def truncated_z(G: torch.nn.Module, n: int, seed: int, psi: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """n seeded latents with BigGAN truncation at threshold psi (|z_i| <= psi), and their conditions."""
    return latents(G, n, seed, truncation=psi)


def truncated_ws(G: torch.nn.Module, z: torch.Tensor, y: torch.Tensor | None, psi: float) -> torch.Tensor:
    """ws of a style-based G truncated towards its w average: w_avg + psi (w - w_avg) on every layer."""
    return G.mapping(z, y, truncation_psi=psi, update_w_avg=False)


def truncated_samples(G: torch.nn.Module, n: int, seed: int, psi: float, device: str, batch_size: int = 100
                      ) -> torch.Tensor:
    """n model-space samples at truncation psi (in w for a style-based G, BigGAN's resampling of z otherwise)."""
    style = is_style_based(G)
    z, y = latents(G, n, seed) if style else truncated_z(G, n, seed, psi)
    out = []
    for i in range(0, n, batch_size):
        zb = z[i: i + batch_size].to(device)
        yb = None if y is None else y[i: i + batch_size].to(device)
        out.append((G.synthesis(truncated_ws(G, zb, yb, psi)) if style else G(zb, yb)).float().cpu())
    return torch.cat(out)


@EXPLORERS.register("truncation")
class Truncation(Explorer):
    """Truncation sweep: a sample grid per psi and FID / precision / recall vs psi in a backbone's features."""

    def __init__(self, *, psis: list[float] = (0.25, 0.5, 0.75, 1.0, 1.5), n: int = 1000, samples: int = 8,
                 backbone: str = "digits-classifier", weights: str | None = None, batch_size: int = 100):
        """
        Args:
            psis: truncation values (grid rows, curve points), in the given order.
            n: generated images per psi, and training images they are compared with.
            samples: seeded samples per grid row (the same seeds in every row).
            backbone: evaluation backbone of the metrics (`ganforge list backbones`).
            weights: the backbone's weights file, where it needs one.
            batch_size: images per generator / backbone batch.
        """
        self.psis = [float(p) for p in psis]
        if not self.psis or any(not p >= 0 for p in self.psis):
            raise GanforgeError(f"explore truncation: psis must be a non-empty list of numbers >= 0, got {psis}")
        self.n = check_int(n, "explore truncation: n", minimum=7)  # prdc's k-NN balls need more than 5 samples
        self.samples = check_int(samples, "explore truncation: samples", minimum=1)
        self.batch_size = check_int(batch_size, "explore truncation: batch_size", minimum=1)
        self.backbone = check_feature_space(backbone, "explore truncation: backbone")
        self.weights = weights

    def check(self, G: torch.nn.Module) -> None:
        super().check(G)
        check_run_data(G, "truncation")
        if not is_style_based(G) and min(self.psis) <= 0:
            raise GanforgeError(f"explore truncation: psi {min(self.psis)}: BigGAN truncation of z needs psi > 0 "
                                f"(a threshold on |z_i|); psi = 0 exists only in w (style-based generators)")

    def run(self, G: torch.nn.Module, out_dir: Path, *, progress: bool, seed: int, device: str) -> dict[str, Any]:
        from ..metrics.evaluate import Evaluator

        rows = [truncated_samples(G, self.samples, seed, psi, device, self.batch_size) for psi in self.psis]
        save_png(render_grid(G, torch.cat(rows), ncol=self.samples), out_dir / "grid.png")
        real, _ = dataset_images(run_dataset(G), self.n, seed, "truncation-real", "truncation")
        space = FeatureSpace(self.backbone, self.weights, device)
        backbone = space.backbone if space.backbone is not None else _PixelBackbone()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the FID-at-small-n warning: the curve compares psis at one n
            ev = Evaluator(real, ["fid", "prdc"], backbone, batch_size=self.batch_size, progress=False,
                           use_cache=False, device=device)
            curve = {key: [] for key in METRIC_KEYS}
            for psi in tqdm(self.psis, desc="truncation", disable=not progress, leave=False):
                fake = ImageModality().from_model(truncated_samples(G, self.n, seed, psi, device, self.batch_size))
                values = ev(fake)
                for key in METRIC_KEYS:
                    curve[key].append(values[key])
        ticks = [f"{p:g}" for p in self.psis]
        save_png(line_plot({"fid": np.array(curve["fid"])}, {"fid": "#d62728"}, "psi", "FID", xticks=ticks),
                 out_dir / "fid.png")
        save_png(line_plot({k: np.array(curve[k]) for k in ("precision", "recall")},
                           {"precision": "#1f5fbf", "recall": "#2ca02c"}, "psi", "precision / recall",
                           xticks=ticks), out_dir / "precision_recall.png")
        return {"psis": self.psis, "truncation": "w" if is_style_based(G) else "z-resampling",
                "n": self.n, "n_real": len(real), "backbone": self.backbone, **curve}


class _PixelBackbone(torch.nn.Module):
    """Raw pixels (uint8 / 255, flattened) as `pool` features, so the Evaluator can run in pixel space."""

    name = "pixels"
    device = torch.device("cpu")

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"pool": images.float().div(255.0).flatten(1)}

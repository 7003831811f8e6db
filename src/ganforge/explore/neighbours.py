"""Memorization check: the nearest real training images of generated images, with a real-vs-real baseline.

For each of n generated images, the k nearest training images by L2 distance in a backbone's feature space (or in
pixel space, `space=pixels`), the check StudioGAN and BigGAN (Brock et al. 2019, Appendix, nearest neighbours in
pixel and VGG feature space) show as image rows. The distance of a generated image to its nearest training image
means little alone, so the same distance is measured for real images the generator never saw: the dataset's
held-out (test) split where it has one, else a disjoint half of the training set (then the other half is the set
searched, for generated and baseline queries alike, so both see the same number of candidates). Reported:
- the distribution (mean, median, 5th percentile) of generated -> nearest-training distances d_gen and of
  baseline -> nearest-training distances d_real;
- ratio = median(d_gen) / median(d_real) (well below 1: generated images sit closer to training images than unseen
  real ones do, a sign of copying);
- memorized_fraction: the fraction of generated images with d_gen below the baseline's 5th percentile.
Distances are computed with torch.cdist in chunks of queries, so memory stays (chunk x N_train).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch

from ..checks import check_int
from ..data.base import ImageModality
from ..errors import GanforgeError
from ..registries import EXPLORERS
from .base import (PIXELS, Explorer, FeatureSpace, check_feature_space, check_run_data, dataset_images,
                   generated_images, render_grid, run_dataset, save_png)


def nearest(query: torch.Tensor, reference: torch.Tensor, k: int, chunk: int = 512
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """L2 distances (M, k) and indices (M, k) of each query row's k nearest reference rows, ascending."""
    k = min(k, reference.shape[0])
    ref = reference.double()
    dists, idx = [], []
    for i in range(0, query.shape[0], chunk):
        d = torch.cdist(query[i: i + chunk].double(), ref)
        top = d.topk(k, dim=1, largest=False)
        dists.append(top.values)
        idx.append(top.indices)
    return torch.cat(dists), torch.cat(idx)


def distance_summary(d: torch.Tensor) -> dict[str, float]:
    """Mean, median and 5th percentile of a set of distances."""
    d = d.double()
    return {"mean": float(d.mean()), "median": float(d.median()), "p05": float(torch.quantile(d, 0.05))}


def memorization(d_gen: torch.Tensor, d_real: torch.Tensor) -> dict[str, Any]:
    """The numbers of the check from nearest-training distances of generated (d_gen) and baseline real (d_real)."""
    real = distance_summary(d_real)
    gen = distance_summary(d_gen)
    return {"generated": gen, "baseline": real, "ratio": gen["median"] / max(real["median"], 1e-12),
            "memorized_fraction": float((d_gen.double() < real["p05"]).double().mean()),
            "memorized": (d_gen.double() < real["p05"]).nonzero().flatten().tolist()}


@EXPLORERS.register("neighbours")
class Neighbours(Explorer):
    """Memorization check: k nearest training images of generated ones, vs a held-out real baseline."""

    def __init__(self, *, n: int = 256, k: int = 5, show: int = 8, space: Literal["features", "pixels"] = "features",
                 backbone: str = "digits-classifier", weights: str | None = None, n_real: int | None = 10000,
                 batch_size: int = 100):
        """
        Args:
            n: generated images whose neighbours are measured.
            k: nearest training images per generated image (figure columns after the generated one).
            show: generated images shown in the figure (its rows).
            space: features (of `backbone`) or pixels.
            backbone: evaluation backbone for space=features (`ganforge list backbones`).
            weights: the backbone's weights file, where it needs one.
            n_real: cap on the training images searched (a seeded subset; None: all).
            batch_size: images per generator / backbone batch.
        """
        self.n = check_int(n, "explore neighbours: n", minimum=1)
        self.k = check_int(k, "explore neighbours: k", minimum=1)
        self.show = check_int(show, "explore neighbours: show", minimum=1)
        self.n_real = check_int(n_real, "explore neighbours: n_real", minimum=2, allow_none=True)
        self.batch_size = check_int(batch_size, "explore neighbours: batch_size", minimum=1)
        self.space = space
        self.backbone = PIXELS if space == "pixels" else check_feature_space(backbone, "explore neighbours: backbone")
        self.weights = weights

    def check(self, G: torch.nn.Module) -> None:
        super().check(G)
        check_run_data(G, "neighbours")

    def real_sets(self, G: torch.nn.Module, seed: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        """(training images searched, baseline real images, what the baseline is)."""
        train = run_dataset(G)
        try:
            held_out = run_dataset(G, "test")
        except GanforgeError:
            held_out = None
        if held_out is not None and len(held_out) >= 2:
            x_train, _ = dataset_images(train, self.n_real, seed, "neighbours-train", "neighbours")
            x_base, _ = dataset_images(held_out, self.n, seed, "neighbours-test", "neighbours")
            return x_train, x_base, "test split"
        x, _ = dataset_images(train, self.n_real, seed, "neighbours-train", "neighbours")
        if len(x) < 2:
            raise GanforgeError("explore neighbours: the training set needs at least 2 images for a baseline")
        half = len(x) // 2
        return x[:half], x[half: half + self.n], "disjoint half of the training set"

    def run(self, G: torch.nn.Module, out_dir: Path, *, progress: bool, seed: int, device: str) -> dict[str, Any]:
        x_train, x_base, baseline = self.real_sets(G, seed)
        x_gen, _ = generated_images(G, self.n, seed, device, self.batch_size, progress, desc="neighbours")
        if x_gen.shape[1:] != x_train.shape[1:]:
            raise GanforgeError(f"explore neighbours: training images {tuple(x_train.shape[1:])} and generated "
                                f"images {tuple(x_gen.shape[1:])} differ in shape")
        features = FeatureSpace(self.backbone, self.weights, device)
        f_train = features(x_train, self.batch_size, progress)
        d_gen, idx = nearest(features(x_gen, self.batch_size, progress), f_train, self.k)
        d_base, _ = nearest(features(x_base, self.batch_size, progress), f_train, 1)
        rows = []
        to_model = ImageModality().to_model
        for i in range(min(self.show, self.n)):
            rows += [to_model(x_gen[i: i + 1]), to_model(x_train[idx[i]])]
        save_png(render_grid(G, torch.cat(rows), ncol=1 + idx.shape[1]), out_dir / "neighbours.png")
        return {"space": self.backbone, "baseline_set": baseline, "n": self.n, "n_train": len(x_train),
                "n_baseline": len(x_base), **memorization(d_gen[:, 0], d_base[:, 0]),
                "nearest_distance": d_gen[:, 0], "nearest_index": idx[:, 0]}

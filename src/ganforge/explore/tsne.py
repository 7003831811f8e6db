"""t-SNE of real and generated images' backbone features, with a 1-NN two-sample test.

t-SNE (van der Maaten & Hinton, "Visualizing Data using t-SNE", JMLR 2008; scikit-learn's `TSNE`, init="pca",
random_state = the seed) embeds n real training images and n generated images, jointly, in 2-D; the scatter plot
colours them real / generated (and, for a class-conditional G, by class, real as discs and generated as crosses).
The picture is read together with a number: the leave-one-out 1-nearest-neighbour accuracy of telling real from
generated (the 1-NN two-sample test of Lopez-Paz & Oquab, "Revisiting Classifier Two-Sample Tests", ICLR 2017, used
for GANs by Xu et al., "An empirical study on evaluation metrics of generative adversarial networks", 2018): ~0.5
when the two sets are indistinguishable, ~1 when they are separated. It is reported in the 2-D embedding and in the
feature space itself (t-SNE distorts distances, so the latter is the one to trust).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checks import check_int
from ..errors import GanforgeError
from ..registries import EXPLORERS
from .base import (Explorer, FeatureSpace, check_feature_space, check_run_data, dataset_images, generated_images,
                   run_dataset, save_png)
from .plot import PALETTE, scatter_plot

REAL_COLOR, FAKE_COLOR = "#1f5fbf", "#d62728"


def one_nn_accuracy(X: torch.Tensor | np.ndarray, is_real: torch.Tensor | np.ndarray) -> float:
    """Leave-one-out 1-NN accuracy of predicting each point's set (real / generated) from its nearest other point."""
    X = torch.as_tensor(np.asarray(X), dtype=torch.float64)
    labels = torch.as_tensor(np.asarray(is_real)).bool()
    d = torch.cdist(X, X)
    d.fill_diagonal_(float("inf"))
    return float((labels[d.argmin(1)] == labels).double().mean())


def tsne_embed(features: torch.Tensor | np.ndarray, seed: int, perplexity: float = 30.0) -> np.ndarray:
    """2-D t-SNE coordinates (scikit-learn, init="pca", random_state=seed); perplexity capped below N / 3."""
    from sklearn.manifold import TSNE

    X = np.asarray(features, np.float64)
    perplexity = min(perplexity, max((len(X) - 1) / 3.0, 1.0))
    return TSNE(n_components=2, init="pca", random_state=seed % (2 ** 32), perplexity=perplexity).fit_transform(X)


@EXPLORERS.register("tsne")
class TSNEExplorer(Explorer):
    """t-SNE of real and generated backbone features; scatter plot and 1-NN real-vs-generated accuracy."""

    def __init__(self, *, n: int = 500, backbone: str = "digits-classifier", weights: str | None = None,
                 perplexity: float = 30.0, batch_size: int = 100):
        """
        Args:
            n: real and generated images each (fewer real ones when the training set is smaller).
            backbone: evaluation backbone whose features are embedded (`ganforge list backbones`), or pixels.
            weights: the backbone's weights file, where it needs one.
            perplexity: t-SNE perplexity (capped below the number of points / 3).
            batch_size: images per generator / backbone batch.
        """
        self.n = check_int(n, "explore tsne: n", minimum=2)
        self.batch_size = check_int(batch_size, "explore tsne: batch_size", minimum=1)
        if not perplexity > 0:
            raise GanforgeError(f"explore tsne: perplexity must be > 0, got {perplexity}")
        self.perplexity = float(perplexity)
        self.backbone = check_feature_space(backbone, "explore tsne: backbone")
        self.weights = weights

    def check(self, G: torch.nn.Module) -> None:
        super().check(G)
        check_run_data(G, "tsne")

    def run(self, G: torch.nn.Module, out_dir: Path, *, progress: bool, seed: int, device: str) -> dict[str, Any]:
        x_real, y_real = dataset_images(run_dataset(G), self.n, seed, "tsne-real", "tsne")
        x_fake, y_fake = generated_images(G, self.n, seed, device, self.batch_size, progress, desc="tsne")
        features = FeatureSpace(self.backbone, self.weights, device)
        f = torch.cat([features(x_real, self.batch_size, progress), features(x_fake, self.batch_size, progress)])
        is_real = torch.cat([torch.ones(len(x_real)), torch.zeros(len(x_fake))]).bool()
        emb = tsne_embed(f, seed, self.perplexity)
        order = np.random.default_rng(seed).permutation(len(emb))  # interleave, so neither set hides the other
        colors = [REAL_COLOR if r else FAKE_COLOR for r in is_real.tolist()]
        save_png(scatter_plot(emb[order], [colors[i] for i in order],
                              legend={"real": REAL_COLOR, "generated": FAKE_COLOR}), out_dir / "tsne.png")
        if y_real is not None and y_fake is not None:
            y = torch.cat([y_real, y_fake]).tolist()
            save_png(scatter_plot(emb[order], [PALETTE[y[i] % len(PALETTE)] for i in order],
                                  ["o" if is_real[i] else "x" for i in order],
                                  legend={"disc: real, cross: generated": "#000000"}), out_dir / "tsne_classes.png")
        return {"n_real": len(x_real), "n_fake": len(x_fake), "backbone": self.backbone,
                "one_nn_accuracy_embedding": one_nn_accuracy(emb, is_real),
                "one_nn_accuracy_features": one_nn_accuracy(f, is_real),
                "embedding_real_mean": emb[is_real.numpy()].mean(0),
                "embedding_fake_mean": emb[~is_real.numpy()].mean(0)}

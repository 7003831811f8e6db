"""Perceptual path length (Karras et al., "A Style-Based Generator Architecture for GANs", CVPR 2019, Sec. 4.1,
Eqs. 2 and 3; the protocol of NVIDIA's stylegan2-ada `metrics/perceptual_path_length.py`).

    PPL = E[ d(G(p(t)), G(p(t + eps))) / eps^2 ],  t ~ U(0, 1) ("full") or t = 0 ("end"),  eps = 1e-4,

with p the path between two random latents: slerp between z1, z2 in z space (Eq. 2), lerp between w1 = f(z1) and
w2 = f(z2) in w space (Eq. 3, style-based generators). d is the squared L2 distance between feature vectors of the
two images: a registered evaluation backbone's `pool` features, or the pixels themselves (`backbone=pixels`). The
paper's d is LPIPS (VGG16), which is not bundled: a user with LPIPS weights can wrap them as a `module` backbone.
The two images of a pair share G's random noise (same torch seed for both renders), and the per-pair values outside
the [1st, 99th] percentile are dropped before the mean (as StyleGAN). Images reach the backbone as floats, without
the uint8 rounding of `ganforge eval`: an eps step changes pixels by far less than one grey level, which rounding
would erase; the backbone's own resize and normalization are applied as in its forward.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
from tqdm import tqdm

from ..checks import check_int
from ..errors import GanforgeError
from ..metrics.backbones.base import NORMALIZATIONS
from ..metrics.resize import get_resize
from ..models.style import is_style_based
from ..registries import EXPLORERS
from ..training.rng import derive_seed, generator
from .base import PIXELS, Explorer, FeatureSpace, check_feature_space, save_png
from .interpolate import lerp, slerp
from .plot import line_plot

_PATHS = {"lerp": lerp, "slerp": slerp}


def path_lengths(render: Callable[[torch.Tensor], torch.Tensor], a: torch.Tensor, b: torch.Tensor, t: torch.Tensor,
                 eps: float, interpolate: Callable, features: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Per-pair d(G(p(t)), G(p(t + eps))) / eps^2 with d the squared L2 distance of `features` of the renders."""
    t = t.reshape(-1, 1).to(a.dtype)
    fa = features(render(interpolate(a, b, t)))
    fb = features(render(interpolate(a, b, t + eps)))
    return (fa.double() - fb.double()).flatten(1).pow(2).sum(1) / eps ** 2


def trimmed_mean(values: torch.Tensor | np.ndarray, lo_pct: float = 1.0, hi_pct: float = 99.0) -> float:
    """Mean of the values within [lo_pct, hi_pct] percentiles (lower / higher sample, as stylegan2-ada)."""
    v = np.asarray(values, np.float64)
    lo, hi = np.percentile(v, lo_pct, method="lower"), np.percentile(v, hi_pct, method="higher")
    return float(v[(v >= lo) & (v <= hi)].mean())


def float_features(space: FeatureSpace) -> Callable[[torch.Tensor], torch.Tensor]:
    """model-space images -> (B, F) features without uint8 rounding: pixels, or the backbone's resize/normalize/pool."""
    if space.backbone is None:
        return lambda x: x.flatten(1)
    bb = space.backbone

    def features(x: torch.Tensor) -> torch.Tensor:
        img = (x.float().clamp(-1, 1) + 1) * 127.5  # 0..255 floats, as Backbone.prepare gives
        img = img.to(bb.device)
        if img.shape[1] == 1:
            img = img.expand(-1, 3, -1, -1)
        if bb.input_size is not None:
            img = get_resize(bb.resize_mode)(img, bb.input_size)
        return bb.extract(NORMALIZATIONS[bb.normalization](img))["pool"].float().cpu()

    return features


@EXPLORERS.register("ppl")
class PPL(Explorer):
    """Perceptual path length (StyleGAN) in z (slerp) or w (lerp) with backbone-feature (or pixel) distances."""

    def __init__(self, *, n: int = 1000, eps: float = 1e-4, space: Literal["z", "w"] = "z",
                 sampling: Literal["full", "end"] = "full", backbone: str = "digits-classifier",
                 weights: str | None = None, interpolation: Literal["auto", "lerp", "slerp"] = "auto",
                 batch_size: int = 100):
        """
        Args:
            n: latent pairs (StyleGAN uses 50000).
            eps: the step along the path.
            space: z (any generator) or w (style-based generators).
            sampling: full (t ~ U(0, 1)) or end (t = 0).
            backbone: evaluation backbone whose features d compares (`ganforge list backbones`), or pixels.
            weights: the backbone's weights file, where it needs one.
            interpolation: auto (slerp in z, lerp in w, as StyleGAN), lerp or slerp.
            batch_size: pairs per generator batch.
        """
        self.n = check_int(n, "explore ppl: n", minimum=1)
        self.batch_size = check_int(batch_size, "explore ppl: batch_size", minimum=1)
        if not 0 < eps < 1:
            raise GanforgeError(f"explore ppl: eps must lie in (0, 1), got {eps}")
        self.eps, self.space, self.sampling = float(eps), space, sampling
        self.interpolation = interpolation if interpolation != "auto" else ("slerp" if space == "z" else "lerp")
        self.backbone = check_feature_space(backbone, "explore ppl: backbone")
        self.weights = weights

    def check(self, G: torch.nn.Module) -> None:
        super().check(G)
        if self.space == "w" and not is_style_based(G):
            raise GanforgeError(f"explore ppl: space 'w' needs a style-based generator (mapping + synthesis, "
                                f"models/style.py); {type(G).__name__} has no w; use space=z")

    def pairs(self, G: torch.nn.Module, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Any]:
        """Seeded endpoints z1, z2 (n, z_dim), positions t (n,) and per-pair conditions (or None)."""
        from ..sampling import latents

        gen = generator(seed, "explore-ppl")
        z1, z2 = G.sample_z(self.n, generator=gen), G.sample_z(self.n, generator=gen)
        t = torch.rand(self.n, generator=gen) if self.sampling == "full" else torch.zeros(self.n)
        _, y = latents(G, self.n, seed)
        return z1, z2, t, y

    def renderer(self, G: torch.nn.Module, y: torch.Tensor | None, noise_seed: int, device: str) -> Callable:
        """latents on the path -> images; both images of a pair get the same noise (same torch seed)."""
        def render(p: torch.Tensor) -> torch.Tensor:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(noise_seed)
                if self.space == "z":
                    return G(p.float().to(device), y).float().cpu()
                return G.synthesis(p.float().to(device)[:, None].repeat(1, G.num_ws, 1)).float().cpu()
        return render

    def run(self, G: torch.nn.Module, out_dir: Path, *, progress: bool, seed: int, device: str) -> dict[str, Any]:
        z1, z2, t, y = self.pairs(G, seed)
        features = float_features(FeatureSpace(self.backbone, self.weights, device))
        values = []
        for i in tqdm(range(0, self.n, self.batch_size), desc="ppl", disable=not progress, leave=False):
            sl = slice(i, i + self.batch_size)
            yb = None if y is None else y[sl].to(device)
            a, b = z1[sl].to(device), z2[sl].to(device)
            if self.space == "w":
                a, b = G.mapping(a, yb, update_w_avg=False)[:, 0], G.mapping(b, yb, update_w_avg=False)[:, 0]
            render = self.renderer(G, yb, derive_seed(seed, "explore-ppl-noise", i), device)
            values.append(path_lengths(render, a, b, t[sl].to(device), self.eps, _PATHS[self.interpolation],
                                       features).cpu())
        d = torch.cat(values)
        hist, edges = np.histogram(np.log10(d.clamp_min(1e-30).numpy()), bins=20)
        ticks = [f"{edges[i]:.2g}" if i % 5 == 0 else "" for i in range(len(hist))]
        save_png(line_plot({"pairs": hist.astype(np.float64)}, {"pairs": "#1f5fbf"}, "log10 (d / eps^2), bin start",
                           "count", xticks=ticks), out_dir / "histogram.png")
        return {"ppl": trimmed_mean(d), "ppl_untrimmed_mean": float(d.mean()), "median": float(d.median()),
                "space": self.space, "interpolation": self.interpolation, "sampling": self.sampling,
                "backbone": self.backbone if self.backbone != PIXELS else "pixels (model space)", "n": self.n,
                "eps": self.eps}

"""GAN inversion: project real images into G's latent space (z, w or w+), plain or with multiple latent codes.

Plain inversion (optimisation-based, as in Abdal et al. "Image2StyleGAN", ICCV 2019, for w / w+, and Zhu et al.
"Generative Visual Manipulation on the Natural Image Manifold", ECCV 2016, for z): minimise over the latent

    L = MSE(G(latent), x) + lambda * mean ||F(G(latent)) - F(x)||^2

with Adam (`steps`, `lr`); F a backbone's pool features (`explore/base.py FeatureSpace`, on float images so the loss
has a gradient) or none (lambda = 0). Spaces: z (every G; init a seeded N(0, I) draw), w (style-based G: one w for
every layer, init w_avg) and w+ (style-based G: one w per synthesis layer, init w_avg).

Multi-code inversion, `codes=N` (Gu et al., "Image Processing Using Multi-Code GAN Prior", CVPR 2020, Sec. 3.1,
Eq. 2-4): N latent codes z_n each run G up to an intermediate layer l, giving features F_n = G_1^(l)(z_n); they are
composed with learned per-channel adaptive importance weights alpha_n (one per channel of F),
F = sum_n F_n * alpha_n, and the rest of G maps F to the image, x_inv = G_2^(l)(F); codes and weights are optimised
together with the same loss. Splitting G at any module is done with forward hooks: one pass captures layer l's output
for all N codes, a second pass replaces layer l's output by the composition. alpha_n starts at 1/N (ganforge's
choice: the composition starts as the mean of the codes' features). `codes=1` is plain inversion.

A conditional G uses each image's label where the data has one, else class 0.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Literal, NamedTuple

import torch
from torch import nn
from tqdm import tqdm

from ..checks import check_int
from ..data.base import ImageModality
from ..errors import GanforgeError
from ..models.style import is_style_based
from ..registries import EXPLORERS
from ..training.rng import generator
from .base import (PIXELS, Explorer, FeatureSpace, check_feature_space, check_run_data, dataset_images,
                   render_grid, run_dataset, save_png)

SPACES = ("z", "w", "w+")


class Inversion(NamedTuple):
    """Optimised latents ((B, d) z / w, (B, num_ws, d) w+, or (N, B, d) for multi-code), the reconstructions,
    per-image pixel MSE (B,), and the per-channel composition weights (N, C) of multi-code inversion (else None)."""

    latents: torch.Tensor
    reconstruction: torch.Tensor
    mse: torch.Tensor
    alphas: torch.Tensor | None


def check_space(G: nn.Module, space: str, where: str = "invert") -> str:
    if space not in SPACES:
        raise GanforgeError(f"{where}: space must be one of {', '.join(SPACES)}, got {space!r}")
    if space != "z" and not is_style_based(G):
        raise GanforgeError(f"{where}: space {space!r} needs a style-based generator; {type(G).__name__} takes z")
    return space


def check_layer(G: nn.Module, layer: str, where: str = "invert") -> nn.Module:
    """Module `layer` of G, else a one-line error naming some valid names."""
    modules = dict(G.named_modules())
    if layer not in modules or not layer:
        names = [n for n in modules if n]
        raise GanforgeError(f"{where}: layer {layer!r} is not a module of {type(G).__name__}; valid names include: "
                            f"{', '.join(names[:8])}")
    return modules[layer]


def _renderer(G: nn.Module, space: str, y: torch.Tensor | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """latent -> model-space image for the space (z: G(z, y); w: every layer the same w; w+: per-layer ws)."""
    if space == "z":
        return lambda z: G(z, y)
    if space == "w":
        return lambda w: G.synthesis(w[:, None].repeat(1, G.num_ws, 1))
    return lambda ws: G.synthesis(ws)


def _init_latent(G: nn.Module, space: str, b: int, gen: torch.Generator, device) -> torch.Tensor:
    if space == "z":
        return G.sample_z(b, generator=gen).to(device)
    w = G.w_avg.detach().float().to(device).expand(b, -1).clone()
    return w if space == "w" else w[:, None].repeat(1, G.num_ws, 1)


class _Composer:
    """Forward hooks that split G at `module`: capture its output, or replace it by a composition."""

    def __init__(self, module: nn.Module):
        self.module, self.captured, self.replacement = module, None, None

    def __call__(self, module, inputs, output):
        if self.replacement is not None:
            return self.replacement
        self.captured = output
        return output

    def features(self, render: Callable, latent: torch.Tensor) -> torch.Tensor:
        handle = self.module.register_forward_hook(self)
        try:
            self.captured, self.replacement = None, None
            render(latent)
        finally:
            handle.remove()
        if self.captured is None:
            raise GanforgeError("invert: the composition layer did not run in G's forward pass")
        return self.captured

    def compose(self, render: Callable, latent: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
        handle = self.module.register_forward_hook(self)
        try:
            self.replacement = feature
            return render(latent)
        finally:
            self.replacement = None
            handle.remove()


def invert(G: nn.Module, x: torch.Tensor, *, space: str = "z", steps: int = 500, lr: float = 0.05,
           features: Callable[[torch.Tensor], torch.Tensor] | None = None, lam: float = 0.0, codes: int = 1,
           layer: str | None = None, y: torch.Tensor | None = None, seed: int = 0, progress: bool = False
           ) -> Inversion:
    """Invert model-space images x (B, C, H, W) into G's `space` (see the module docstring); G's weights are fixed.

    Args:
        features: differentiable model-space images -> (B, F) features for the feature term (None: pixels only).
        lam: weight of the feature term (0: pixel MSE only).
        codes: number of latent codes (> 1: multi-code inversion composed at `layer`).
        layer: module name inside G where multi-code features are composed (needed when codes > 1).
        y: conditions of a conditional G (one per image).
    """
    space = check_space(G, space)
    steps = check_int(steps, "invert: steps", minimum=0)
    codes = check_int(codes, "invert: codes", minimum=1)
    if lam < 0:
        raise GanforgeError(f"invert: lam must be >= 0, got {lam}")
    if lam > 0 and features is None:
        raise GanforgeError("invert: lam > 0 needs a feature extractor (features=)")
    device = next(iter(G.parameters())).device
    x = x.float().to(device)
    b = x.shape[0]
    render = _renderer(G, space, None if y is None else y.to(device))
    gen = generator(seed, "invert")
    composer = None
    if codes > 1:
        if layer is None:
            raise GanforgeError("invert: codes > 1 needs layer= (the module where the codes' features are composed)")
        composer = _Composer(check_layer(G, layer))
        render_n = _renderer(G, space, None if y is None else y.to(device).repeat(codes, *[1] * (y.ndim - 1)))
        latent = torch.stack([_init_latent(G, space, b, gen, device) for _ in range(codes)])  # (N, B, ...)
        with torch.no_grad():
            shape = composer.features(render_n, latent.flatten(0, 1)).shape
        alphas = torch.full((codes, shape[1]), 1.0 / codes, device=device)
        params = [latent.requires_grad_(True), alphas.requires_grad_(True)]
    else:
        latent = _init_latent(G, space, b, gen, device).requires_grad_(True)
        alphas = None
        params = [latent]
    target_feat = features(x).detach() if lam > 0 else None
    requires = [p.requires_grad for p in G.parameters()]
    for p in G.parameters():
        p.requires_grad_(False)

    def reconstruct() -> torch.Tensor:
        if composer is None:
            return render(latent)
        f = composer.features(render_n, latent.flatten(0, 1))
        f = f.reshape(codes, b, *f.shape[1:])
        a = alphas.reshape(codes, 1, alphas.shape[1], *[1] * (f.ndim - 3))
        return composer.compose(render, latent[0], (f * a).sum(0))

    try:
        with torch.enable_grad():
            opt = torch.optim.Adam(params, lr=lr)
            for _ in tqdm(range(steps), desc="invert", disable=not progress, leave=False):
                out = reconstruct()
                loss = (out - x).pow(2).flatten(1).mean(1).sum()
                if lam > 0:
                    loss = loss + lam * (features(out) - target_feat).pow(2).flatten(1).mean(1).sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
        with torch.no_grad():
            out = reconstruct().float()
    finally:
        for p, r in zip(G.parameters(), requires):
            p.requires_grad_(r)
    mse = (out - x).pow(2).flatten(1).mean(1)
    return Inversion(latent.detach().cpu(), out.cpu(), mse.cpu(), None if alphas is None else alphas.detach().cpu())


def load_image_folder(path: str, G: nn.Module, n: int | None) -> torch.Tensor:
    """uint8 (N, C, H, W) images of a folder (sorted names), resized to G's resolution and channels."""
    from PIL import Image

    folder = Path(path).expanduser()
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp")) \
        if folder.is_dir() else []
    if not files:
        raise GanforgeError(f"explore invert: images={path!r} is not a folder of PNG / JPEG images")
    c, h, w = G.img_shape
    out = []
    for f in files[:n]:
        im = Image.open(f).convert("L" if c == 1 else "RGB").resize((w, h), Image.BICUBIC)
        t = torch.as_tensor(bytearray(im.tobytes()), dtype=torch.uint8).reshape(h, w, c).permute(2, 0, 1)
        out.append(t)
    return torch.stack(out)


@EXPLORERS.register("invert")
class Invert(Explorer):
    """Project real images into z / w / w+ (Adam, pixel + feature loss); multi-code inversion with codes > 1."""

    def __init__(self, *, n: int = 8, images: str | None = None, space: Literal["z", "w", "w+"] = "z",
                 steps: int = 500, lr: float = 0.05, lam: float = 0.0, backbone: str = PIXELS,
                 weights: str | None = None, codes: int = 1, layer: str | None = None):
        """
        Args:
            n: real images inverted (a seeded subset of the run's training data, or the first n of `images`).
            images: a folder of images instead of the run's data.
            space: z, w or w+ (w, w+: style-based G).
            steps, lr: Adam steps and learning rate.
            lam: weight of the feature distance (0: pixel MSE only).
            backbone, weights: the feature space of the feature term (a registered backbone, or pixels).
            codes: latent codes (> 1: multi-code inversion, Gu et al. 2020).
            layer: where multi-code features are composed (default: the first layer with weights).
        """
        self.n = check_int(n, "explore invert: n", minimum=1)
        self.steps = check_int(steps, "explore invert: steps", minimum=0)
        self.codes = check_int(codes, "explore invert: codes", minimum=1)
        if not lr > 0:
            raise GanforgeError(f"explore invert: lr must be > 0, got {lr}")
        if not lam >= 0:
            raise GanforgeError(f"explore invert: lam must be >= 0, got {lam}")
        self.images, self.space, self.lr, self.lam = images, space, float(lr), float(lam)
        self.backbone = check_feature_space(backbone, "explore invert: backbone")
        self.weights, self.layer = weights, layer

    def check(self, G: torch.nn.Module) -> None:
        super().check(G)
        check_space(G, self.space, "explore invert")
        if self.layer is not None:
            check_layer(G, self.layer, "explore invert")
        if self.images is None:
            check_run_data(G, "invert")

    def real_images(self, G: nn.Module, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.images is not None:
            return load_image_folder(self.images, G, self.n), None
        return dataset_images(run_dataset(G), self.n, seed, "invert", "invert")

    def run(self, G: torch.nn.Module, out_dir: Path, *, progress: bool, seed: int, device: str) -> dict[str, Any]:
        from .ganspace import default_layer
        from .ppl import float_features

        x_u8, labels = self.real_images(G, seed)
        x = ImageModality().to_model(x_u8)
        y = None
        if G.num_classes > 0:
            y = labels if labels is not None else torch.zeros(len(x), dtype=torch.long)
        features = float_features(FeatureSpace(self.backbone, self.weights, device)) if self.lam > 0 else None
        layer = self.layer or (default_layer(G) if self.codes > 1 else None)
        res = invert(G, x, space=self.space, steps=self.steps, lr=self.lr, features=features, lam=self.lam,
                     codes=self.codes, layer=layer, y=y, seed=seed, progress=progress)
        pairs = torch.stack([x, res.reconstruction.clamp(-1, 1)], 1).flatten(0, 1)  # real, reconstruction, ...
        save_png(render_grid(G, pairs, ncol=2), out_dir / "pairs.png")
        return {"space": self.space, "codes": self.codes, "layer": layer, "n": len(x), "steps": self.steps,
                "lam": self.lam, "mse": res.mse, "mean_mse": float(res.mse.mean())}

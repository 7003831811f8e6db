"""GANSpace: principal components of a generator's latent or activation space as edit directions (Härkönen et al.,
"GANSpace: Discovering Interpretable GAN Controls", NeurIPS 2020).

- Style-based generators (models/style.py): PCA of N sampled w = mapping(z) (Sec. 2.2, "PCA in W"); the principal
  axes v_i are used directly as w-directions, edits w + alpha s_i v_i with s_i the std along v_i.
- Other generators (Sec. 2.2, BigGAN): PCA of the activations y = G_layer(z) of an intermediate layer (default: the
  output of the first layer with weights, as SeFa finds it); coordinates x = V^T (y - mu) scaled by their stds
  (x_i / s_i), then z is regressed onto them by least squares, min_M ||X M - Z||^2, so row i of M is the z-direction
  that moves component i by one std; directions are normalised to unit norm (the authors' code). Edits are
  z + alpha t_i u_i with t_i the std of the samples' z along u_i (~1 for Gaussian z).
- alpha spans [-sigma, sigma] (in std units; the paper's default sigma is 2).
PCA is exact (SVD of the centred samples, float64) rather than the paper's incremental PCA over 300k samples.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import torch
from tqdm import tqdm

from ..checks import check_int
from ..errors import GanforgeError
from ..models.style import is_style_based
from ..registries import EXPLORERS
from .base import Explorer, render_grid, row_latents, save_png
from .measure import MeasuresDirections
from .sefa import first_latent_layer


class PCA(NamedTuple):
    """Principal axes as rows (k, D), the std along each, the explained variance ratios and the data mean."""

    components: torch.Tensor
    stds: torch.Tensor
    explained: torch.Tensor
    mean: torch.Tensor


def pca(X: torch.Tensor, k: int) -> PCA:
    """The top k principal components of the rows of X (N, D), by SVD of the centred data (float64).

    Stds use the unbiased variance (N - 1); each axis's sign makes its largest-magnitude coordinate positive.
    """
    X = X.detach().double().flatten(1)
    if X.shape[0] < 2:
        raise GanforgeError(f"ganspace: PCA needs at least 2 samples, got {X.shape[0]}")
    mean = X.mean(0)
    _, s, vt = torch.linalg.svd(X - mean, full_matrices=False)
    var = s.pow(2) / (X.shape[0] - 1)
    k = min(k, len(s))
    comps = vt[:k]
    sign = torch.sign(comps.gather(1, comps.abs().argmax(1, keepdim=True)))
    return PCA(comps * sign, var[:k].sqrt(), var[:k] / var.sum().clamp_min(1e-300), mean)


def regress_directions(Z: torch.Tensor, X: torch.Tensor, p: PCA) -> torch.Tensor:
    """Unit z-directions (k, z_dim): least squares min_M ||A M - (Z - mean Z)||, A = PCA coordinates / stds."""
    A = ((X.detach().double().flatten(1) - p.mean) @ p.components.t()) / p.stds.clamp_min(1e-12)  # (N, k)
    Zc = Z.detach().double() - Z.detach().double().mean(0)
    M = torch.linalg.lstsq(A, Zc).solution  # (k, z_dim)
    return M / M.norm(dim=1, keepdim=True).clamp_min(1e-12)


def default_layer(G: torch.nn.Module) -> str:
    """The output of G's first layer with weights whose input moves with z (as SeFa finds it), else its first block."""
    try:
        return first_latent_layer(G).names[0]
    except GanforgeError:
        children = [name for name, m in G.named_children() if any(True for _ in m.parameters())]
        if not children:
            raise GanforgeError(f"explore ganspace: {type(G).__name__} has no layer with weights") from None
        return children[0]


def layer_activations(G: torch.nn.Module, layer: str, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """The output of module `layer` of G on latents z (flattened, (N, F)), captured by a forward hook."""
    module = dict(G.named_modules())[layer]
    got: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda m, i, out: got.append(out.detach().flatten(1)))
    try:
        G(z, y)
    finally:
        handle.remove()
    if not got:
        raise GanforgeError(f"explore ganspace: layer {layer!r} did not run in G's forward pass")
    return got[0]


@EXPLORERS.register("ganspace")
class GANSpace(MeasuresDirections, Explorer):
    """GANSpace (Härkönen et al. 2020): PCA of w (style G) or of a layer's activations regressed back to z."""

    def __init__(self, *, n: int = 2000, k: int = 5, sigma: float = 2.0, layer: str | None = None,
                 samples: int = 4, steps: int = 7, batch_size: int = 256, classifier: str | None = None,
                 measure_n: int = 64, module: str | None = None, attributes: dict[str, int] | None = None):
        """
        Args:
            n: sampled latents the PCA is fitted on.
            k: principal components (one edit grid each).
            sigma: largest edit, in stds of the component (alpha in [-sigma, sigma]).
            layer: module name inside G whose output is decomposed (non-style G; default: the first layer with
                weights); ignored for a style-based G, whose w is decomposed.
            samples: seeded latents edited per component (grid rows).
            steps: edit strengths (grid columns).
            batch_size: latents per forward pass while sampling.
            classifier: measure each component's attribute change per unit step (direction normalised) with this
                attribute classifier (digits, shapes or module; `explore/measure.py`), against random directions.
            measure_n: codes moved for that measurement.
            module, attributes: with classifier=module, the network factory and its attribute -> outputs.
        """
        self.measure_options(classifier, measure_n, module, attributes)
        self.n = check_int(n, "explore ganspace: n", minimum=2)
        self.k = check_int(k, "explore ganspace: k", minimum=1)
        self.samples = check_int(samples, "explore ganspace: samples", minimum=1)
        self.steps = check_int(steps, "explore ganspace: steps", minimum=2)
        self.batch_size = check_int(batch_size, "explore ganspace: batch_size", minimum=1)
        if not sigma > 0:
            raise GanforgeError(f"explore ganspace: sigma must be > 0, got {sigma}")
        self.sigma, self.layer = float(sigma), layer

    def check(self, G: torch.nn.Module) -> None:
        super().check(G)
        if self.layer is not None and not is_style_based(G):
            names = [name for name, _ in G.named_modules() if name]
            if self.layer not in names:
                raise GanforgeError(f"explore ganspace: layer {self.layer!r} is not a module of "
                                    f"{type(G).__name__}; valid names include: {', '.join(names[:8])}")

    def fit(self, G: torch.nn.Module, seed: int, device: str, progress: bool) -> dict[str, Any]:
        """Sample n latents, decompose w or the layer's output; directions (k, latent_dim) in w or z."""
        z, y = row_latents(G, self.n, seed + 1)  # a stream apart from the edited rows' latents
        style = is_style_based(G)
        layer = None if style else (self.layer or default_layer(G))
        feats = []
        for i in tqdm(range(0, self.n, self.batch_size), desc="ganspace", disable=not progress, leave=False):
            zb = z[i: i + self.batch_size].to(device)
            yb = None if y is None else y[i: i + self.batch_size].to(device)
            feats.append((G.mapping(zb, yb, update_w_avg=False)[:, 0] if style
                          else layer_activations(G, layer, zb, yb)).double().cpu())
        X = torch.cat(feats)
        p = pca(X, self.k)
        if style:
            return {"space": "w", "layer": "mapping", "pca": p, "directions": p.components, "latent_stds": p.stds}
        dirs = regress_directions(z, X, p)
        latent_stds = ((z.double() - z.double().mean(0)) @ dirs.t()).std(0)
        return {"space": "z", "layer": layer, "pca": p, "directions": dirs, "latent_stds": latent_stds}

    def edit(self, G: torch.nn.Module, z: torch.Tensor, y: torch.Tensor | None, direction: torch.Tensor,
             std: float, space: str, device: str) -> torch.Tensor:
        """(samples * steps) images, row-major: row i = latent i + alpha std d, alpha in [-sigma, sigma]."""
        alphas = torch.linspace(-self.sigma, self.sigma, self.steps) * std
        n = z.shape[0]
        yy = None if y is None else y.repeat_interleave(self.steps, 0).to(device)
        steps = (alphas[None, :, None] * direction.float()).to(device).expand(n, -1, -1)
        if space == "z":
            return G((z.to(device)[:, None] + steps).reshape(n * self.steps, -1), yy).cpu()
        w = G.mapping(z.to(device), None if y is None else y.to(device), update_w_avg=False)[:, 0]
        ww = (w[:, None] + steps).reshape(n * self.steps, -1)
        return G.synthesis(ww[:, None].repeat(1, G.num_ws, 1)).cpu()

    def run(self, G: torch.nn.Module, out_dir: Path, *, progress: bool, seed: int, device: str) -> dict[str, Any]:
        fit = self.fit(G, seed, device, progress)
        p, dirs = fit["pca"], fit["directions"]
        z, y = row_latents(G, self.samples, seed)
        for i in range(len(dirs)):
            x = self.edit(G, z, y, dirs[i], float(fit["latent_stds"][i]), fit["space"], device)
            save_png(render_grid(G, x, ncol=self.steps), out_dir / f"component-{i:02d}.png")
        return {"space": fit["space"], "layer": fit["layer"], "n": self.n, "explained_variance_ratio": p.explained,
                "stds": p.stds, "latent_stds": fit["latent_stds"], "directions": dirs,
                **self.measure(G, dirs, fit["space"], seed, device)}

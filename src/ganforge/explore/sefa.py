"""SeFa: closed-form factorization of latent semantics (Shen & Zhou, "Closed-Form Factorization of Latent Semantics
in GANs", CVPR 2021).

G's first latent-to-feature layer maps a latent z to A z (+ b). Editing z by alpha n changes that layer's output by
alpha A n, so the directions that change it most solve max ||A n||^2 subject to ||n|| = 1 (Eq. 4 of the paper): the
top eigenvectors of A^T A (Eq. 5), ordered by eigenvalue. No row normalisation of A (genforce does it; it is not the
paper's formula and makes W = diag(3, 1) degenerate).

Which layer: for generators that take z directly, the first layer with weights whose input moves with z (DCGAN's and
ResNet's `linear`, the MLP's first layer); A is its effective linear map from z, measured by probing (so a
conditioning that concatenates a label, or uses only a chunk of z, keeps the z columns only, and spectral norm or
equalised learning rates are included). For style-based generators (models/style.py) the latent is w and A stacks
the effective maps of every layer that reads a per-layer w (the style affines), as the paper does for StyleGAN.
Edits are z + alpha d (or w + alpha d on every layer) for alpha in [-distance, distance].
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


class LatentLayer(NamedTuple):
    """The effective linear map A (out, latent_dim) from the latent to the first features, and where it lives."""

    weight: torch.Tensor
    space: str  # "z" or "w"
    names: list[str]  # module names inside G that make up A


def sefa_directions(A: torch.Tensor, k: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (descending) and unit eigenvectors (as rows) of A^T A; the top k (all when k is None).

    Each direction's sign is fixed so that its largest-magnitude coordinate is positive (reproducible output).
    """
    A = A.detach().double()
    vals, vecs = torch.linalg.eigh(A.t() @ A)  # ascending
    vals, vecs = vals.flip(0), vecs.flip(1).t()  # (d,), (d, d) rows = directions
    sign = torch.sign(vecs.gather(1, vecs.abs().argmax(1, keepdim=True)))
    vecs = vecs * sign
    k = len(vals) if k is None else min(k, len(vals))
    return vals[:k].clamp_min(0), vecs[:k]


def _weighted_leaves(G: torch.nn.Module) -> dict[torch.nn.Module, str]:
    """Modules of G that hold their own `weight` parameter (linear, conv, ...), by module -> name."""
    return {m: name for name, m in G.named_modules()
            if isinstance(getattr(m, "weight", None), torch.Tensor) and getattr(m, "weight").ndim >= 2}


def _record_calls(modules: dict[torch.nn.Module, str], fn) -> list[tuple[torch.nn.Module, torch.Tensor,
                                                                              torch.Tensor]]:
    """(module, first input, output) of each call of `modules` while `fn()` runs, in call order."""
    calls = []

    def hook(module, inputs, output):
        if inputs and isinstance(inputs[0], torch.Tensor) and isinstance(output, torch.Tensor):
            calls.append((module, inputs[0].detach(), output.detach()))

    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        with torch.no_grad():
            fn()
    finally:
        for h in handles:
            h.remove()
    return calls


def _probe_conditions(G: torch.nn.Module, n: int, device) -> torch.Tensor | None:
    """A fixed condition for n probe latents: class 0, a zero sentence embedding, or none."""
    if G.text_dim > 0:
        return torch.zeros(n, G.text_dim, device=device)
    return torch.zeros(n, dtype=torch.long, device=device) if G.num_classes > 0 else None


def _affine_map(out: torch.Tensor, probe: torch.Tensor, d: int, what: str) -> torch.Tensor:
    """From outputs at latents [0, e_1 .. e_d, r] -> A (F, d) with out(x) = A x + out(0); checked at r."""
    flat = out.reshape(out.shape[0], -1).double()
    A = (flat[1: d + 1] - flat[0]).t()  # (F, d): column i = out(e_i) - out(0)
    predicted = flat[0] + A @ probe.double()
    if not torch.allclose(predicted, flat[d + 1], rtol=1e-3, atol=1e-4 * (1 + flat.abs().max().item())):
        raise GanforgeError(f"sefa: {what} is not linear in the latent, so it has no weight matrix to factorize")
    return A.float()


def first_latent_layer(G: torch.nn.Module) -> LatentLayer:
    """The effective weight of G's first latent-to-feature layer (z), or of its style affines (w, style-based G).

    Found by probing with latents 0, e_1 .. e_d and a random r, so any family qualifies whose first layer with weights
    is affine in the latent; otherwise a one-line error naming the reason.
    """
    device = next(iter(G.parameters())).device
    leaves = _weighted_leaves(G)
    d = G.w_dim if is_style_based(G) else G.z_dim
    probe = torch.randn(d, generator=torch.Generator().manual_seed(0))
    latents = torch.cat([torch.zeros(1, d), torch.eye(d), probe[None]]).to(device)  # (d + 2, d)
    if is_style_based(G):
        return _style_layers(G, leaves, latents, probe)
    calls = _record_calls(leaves, lambda: G(latents, _probe_conditions(G, d + 2, device)))
    for module, x, out in calls:
        if x.shape[0] == d + 2 and x.is_floating_point() and not torch.equal(x[1:], x[:1].expand_as(x[1:])):
            name = leaves[module]
            return LatentLayer(_affine_map(out, probe.to(device), d, f"layer {name!r}"), "z", [name])
    raise GanforgeError(f"sefa: found no layer with weights whose input depends on z in {type(G).__name__}")


def _style_layers(G: torch.nn.Module, leaves: dict, latents: torch.Tensor, probe: torch.Tensor) -> LatentLayer:
    """Every layer with weights that reads one layer's w in the synthesis network, stacked (StyleGAN in SeFa)."""
    n, d = latents.shape
    ws = torch.zeros(n, G.num_ws, d, device=latents.device)
    calls = _record_calls(leaves, lambda: G.synthesis(ws + latents[:, None]))  # every layer sees the probe w
    parts, names = [], []
    for module, x, out in calls:
        if x.shape == latents.shape and torch.equal(x, latents) and leaves[module] not in names:
            names.append(leaves[module])
            parts.append(_affine_map(out, probe.to(latents.device), d, f"style layer {leaves[module]!r}"))
    if not parts:
        raise GanforgeError(f"sefa: found no layer reading w in {type(G).__name__}'s synthesis network")
    return LatentLayer(torch.cat(parts), "w", names)


@EXPLORERS.register("sefa")
class SeFa(MeasuresDirections, Explorer):
    """SeFa (Shen & Zhou 2021): top eigenvectors of A^T A of G's first latent layer; edit grids per direction."""

    def __init__(self, *, k: int = 5, samples: int = 4, steps: int = 7, distance: float = 3.0,
                 classifier: str | None = None, measure_n: int = 64, module: str | None = None,
                 attributes: dict[str, int] | None = None):
        """
        Args:
            k: number of top directions to show (all eigenvalues are returned).
            samples: seeded latents edited per direction (grid rows).
            steps: alphas in [-distance, distance] (grid columns).
            distance: the largest |alpha|, in latent units.
            classifier: measure each shown direction's attribute change per unit step with this attribute classifier
                (digits, shapes or module; `explore/measure.py`), against random directions; none: not measured.
            measure_n: codes moved for that measurement.
            module, attributes: with classifier=module, the network factory and its attribute -> outputs.
        """
        self.measure_options(classifier, measure_n, module, attributes)
        self.k = check_int(k, "explore sefa: k", minimum=1)
        self.samples = check_int(samples, "explore sefa: samples", minimum=1)
        self.steps = check_int(steps, "explore sefa: steps", minimum=2)
        if not distance > 0:
            raise GanforgeError(f"explore sefa: distance must be > 0, got {distance}")
        self.distance = float(distance)

    def edit(self, G: torch.nn.Module, z: torch.Tensor, y: torch.Tensor | None, direction: torch.Tensor,
             space: str, device: str) -> torch.Tensor:
        """Images (samples * steps, C, H, W), row-major: row i = latent i moved by alpha d, alpha across."""
        alphas = torch.linspace(-self.distance, self.distance, self.steps)
        n = z.shape[0]
        yy = None if y is None else y.repeat_interleave(self.steps, 0).to(device)
        d = direction.float().to(device)
        steps = (alphas[None, :, None].to(device) * d).expand(n, -1, -1)  # (n, steps, dim)
        if space == "z":
            zz = (z.to(device)[:, None] + steps).reshape(n * self.steps, -1)
            return G(zz, yy).cpu()
        w = G.mapping(z.to(device), None if y is None else y.to(device), update_w_avg=False)[:, 0]  # (n, w_dim)
        ww = (w[:, None] + steps).reshape(n * self.steps, -1)
        return G.synthesis(ww[:, None].repeat(1, G.num_ws, 1)).cpu()

    def run(self, G: torch.nn.Module, out_dir: Path, *, progress: bool, seed: int, device: str) -> dict[str, Any]:
        layer = first_latent_layer(G)
        vals, dirs = sefa_directions(layer.weight)
        z, y = row_latents(G, self.samples, seed)
        k = min(self.k, len(vals))
        for i in tqdm(range(k), desc="sefa", disable=not progress, leave=False):
            x = self.edit(G, z, y, dirs[i], layer.space, device)
            save_png(render_grid(G, x, ncol=self.steps), out_dir / f"direction-{i:02d}.png")
        return {"space": layer.space, "layers": layer.names, "eigenvalues": vals,
                "explained": vals / vals.sum().clamp_min(1e-12), "directions": dirs[:k],
                **self.measure(G, dirs[:k], layer.space, seed, device)}

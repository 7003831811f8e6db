"""GAN Dissection: which units of a generator layer draw which concept, and what switching them off does (Bau et al.,
"GAN Dissection: Visualizing and Understanding Generative Adversarial Networks", ICLR 2019).

1. Dissection (Sec. 3.1). For n seeded samples, each unit u (a channel) of `layer` gives a map r_u, upsampled
   bilinearly to the image size (r_u↑), and a segmenter gives each concept's mask s_c (probability > 0.5). The
   agreement of unit and concept is IoU_{u,c} = sum |{r_u↑ > t_{u,c}} ∧ s_c| / sum |{r_u↑ > t_{u,c}} ∨ s_c|, summed
   over every pixel of every sample (the paper's E_z). Thresholds:
   - `method="iqr"` (the authors' default for generators, gandissect `collect_iqr`): per unit and concept, t_{u,c}
     maximises the information quality ratio I(A; B) / H(A, B) of A = {r_u↑ > t} and B = s_c over the quantile
     levels t = q_u(1 - f), f in logspace(-3, 0, 100). Only levels t > 0 where A and B agree on more than 80% of
     the pixels (P(A ∧ B) + P(¬A ∧ ¬B) > 0.8) compete; no information is counted at f = 1 (t = the minimum) nor for a
     concept covering under 0.1% of the pixels (too few to trust), as in the authors' code.
   - `method="quantile"`: one t_u per unit, the top `quantile` of r_u↑ (the authors' classifier default 0.005).
   A unit's concept is its highest-IoU concept; `min_iou` (the authors' 0.05) decides which units count as matched.
2. Average causal effect (Sec. 3.2). The `ablate_k` units with the highest IoU for concept c are set to 0 at every
   location, do(r_{U,P} = 0), on fresh samples; ACE = E_z[s_c(G(z))] - E_z[s_c(G(z; do(r_U = 0)))] with s_c the
   segmenter's probability of c averaged over the pixels (and, as `area`, the fraction of pixels where it is > 0.5).
   The same is measured for k units drawn at random (`random_draws` draws: mean and std), the baseline the units'
   effect must beat. `insert=True` also sets the units to their 99th-percentile activation everywhere (the authors'
   `_h99` insertion value): E[s_c(G(z; do(r_U = h99)))] - E[s_c(G(z))]. Concepts covering under 0.1% of the fresh
   samples' pixels are listed as absent (nothing to remove). `others_relative_drop` tells concept units (only c
   drops) from object units (everything drops).
Paper section numbers as cited; the equation numbers were not checked.

Segmenters (`segmenter=`): `shapes`, the bundled one for the procedural shapes set (`data/shapes_segmenter.py`: shape
kinds, colours and background), or `module`: a user factory "package.module:function" returning a network fed images
in [0, 1] (B, C, H, W) that returns per-pixel concept probabilities (B, K, H, W) in [0, 1], K = len(`concepts`).
Works on any generator whose layers give (C, H, W) feature maps (dcgan, resnet, ...); a generator of vectors (MLP,
points) is a one-line error.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageColor, ImageDraw

from ..checks import check_int
from ..errors import GanforgeError
from ..registries import EXPLORERS
from .base import Explorer, render_grid, row_latents, save_png, user_network
from .dissect_scores import MIN_LABEL_FRACTION, UnitScores, quantiles, score_units
from .plot import PALETTE

WHERE = "explore dissect"


# ------------------------------------------------------------------------------------------------------ segmenters
class Segmenter:
    """Model-space images (B, C, H, W) -> per-pixel concept probabilities (B, K, H, W), checked on every call."""

    def __init__(self, name: str, net: Callable[[torch.Tensor], torch.Tensor], concepts: Sequence[str],
                 prepare: Callable[[torch.Tensor], torch.Tensor]):
        self.name, self.net, self.prepare, self.concepts = name, net, prepare, tuple(concepts)
        self.accuracy: dict[str, Any] = {}  # what is known of its own accuracy (held-out IoU), for the report

    def __call__(self, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        parts = []
        for i in range(0, len(x), batch_size):
            xb = x[i: i + batch_size]
            p = self.net(self.prepare(xb))
            if not isinstance(p, torch.Tensor) or p.shape != (len(xb), len(self.concepts), *xb.shape[2:]):
                got = tuple(p.shape) if isinstance(p, torch.Tensor) else type(p).__name__
                raise GanforgeError(f"{WHERE}: segmenter {self.name} returned {got}; expected (B, K, H, W) = "
                                    f"{(len(xb), len(self.concepts), *xb.shape[2:])}, one map per concept at the "
                                    f"image size")
            p = p.detach().float().cpu()
            if p.numel() and not (p.min() >= 0 and p.max() <= 1):
                raise GanforgeError(f"{WHERE}: segmenter {self.name} must return probabilities in [0, 1] (apply "
                                    f"the sigmoid), got values in [{p.min():.3g}, {p.max():.3g}]")
            parts.append(p)
        return torch.cat(parts)


def check_shapes_images(G: torch.nn.Module) -> None:
    """One-line error unless G makes what the shapes segmenter reads: RGB square images of 16, 32 or 64 px."""
    from ..data.shapes_captioned import RESOLUTIONS

    c, h, w = G.img_shape
    if c != 3 or h != w or h not in RESOLUTIONS:
        raise GanforgeError(f"{WHERE}: segmenter shapes needs RGB square images of {RESOLUTIONS} px (the shapes "
                            f"set), G makes {tuple(G.img_shape)}; use segmenter=module for other data")


def _shapes_segmenter(G: torch.nn.Module, device: str) -> Segmenter:
    from ..data.shapes_segmenter import load_shapes_segmenter, to_segmenter_input

    check_shapes_images(G)
    net = load_shapes_segmenter(G.img_shape[1]).to(device)
    seg = Segmenter("shapes", lambda x: torch.sigmoid(net(x)), net.concepts,
                    lambda x: to_segmenter_input(x).to(device))
    seg.accuracy = {"heldout_iou": net.heldout_iou, "heldout_iou_noisy": net.heldout_iou_noisy}
    return seg


def _module_segmenter(module: Any, concepts: Sequence[str] | None, device: str) -> Segmenter:
    module = user_network(module, f"{WHERE}: segmenter module", device)
    if not concepts or len(set(concepts)) != len(concepts):
        raise GanforgeError(f"{WHERE}: segmenter module: name its outputs, concepts=[name, ...] (distinct), got "
                            f"{concepts!r}")
    return Segmenter("module", module, [str(c) for c in concepts],
                     lambda x: ((x.float().to(device) + 1) / 2).clamp(0, 1))


def build_segmenter(name: str, G: torch.nn.Module, *, module: Any = None, concepts: Sequence[str] | None = None,
                    device: str = "cpu") -> Segmenter:
    """The segmenter `name` (shapes or module) for images of G (see the module docstring)."""
    if name == "module":
        return _module_segmenter(module, concepts, device)
    return _shapes_segmenter(G, device)


# -------------------------------------------------------------------------------------------------- feature maps
class FeatureMap(NamedTuple):
    """A module of G whose output is one (B, C, H, W) map: its name and the (C, H, W) it gives."""

    name: str
    shape: tuple[int, int, int]


def feature_maps(G: torch.nn.Module) -> list[FeatureMap]:
    """G's modules giving one (B, C, h, w) tensor with h, w >= 2 per forward pass, in the order they finish.

    Found by one forward pass of two seeded latents with a hook on every module; modules called more than once
    (shared activations) and the image itself (C, H, W = G.img_shape) are left out: neither is a layer of units.
    """
    device = next(G.parameters()).device
    seen: dict[str, list] = {}
    handles = []
    for name, m in G.named_modules():
        if not name:
            continue

        def hook(_m, _i, out, name=name):
            shape = tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else None
            seen.setdefault(name, []).append(shape)

        handles.append(m.register_forward_hook(hook))
    z, y = row_latents(G, 2, 0)
    try:
        with torch.no_grad():
            G(z.to(device), None if y is None else y.to(device))
    finally:
        for h in handles:
            h.remove()
    img = tuple(getattr(G, "img_shape", ()))
    return [FeatureMap(name, shapes[0]) for name, shapes in seen.items()
            if len(shapes) == 1 and shapes[0] is not None and len(shapes[0]) == 3 and min(shapes[0][1:]) >= 2
            and shapes[0] != img]


def default_layer(maps: list[FeatureMap]) -> str:
    """A middle layer: at the middle one of G's feature-map sizes, the shallowest-named module that finishes last
    (the output of that resolution's stage, e.g. dcgan's `norms.1` at 16x16 of 32 px, resnet's `blocks.1`)."""
    sizes = sorted({m.shape[1] * m.shape[2] for m in maps})
    size = sizes[len(sizes) // 2]
    at = [m for m in maps if m.shape[1] * m.shape[2] == size]
    depth = min(m.name.count(".") for m in at)
    return [m for m in at if m.name.count(".") == depth][-1].name


def resolve_layer(G: torch.nn.Module, layer: str | None) -> FeatureMap:
    """The dissected layer (default: `default_layer`); one-line errors for G without maps or a bad name."""
    maps = feature_maps(G)
    if not maps:
        raise GanforgeError(f"{WHERE}: {type(G).__name__} has no convolutional feature maps (its layers give vectors, "
                            f"as an MLP or point generator's do); dissection needs units with (C, H, W) maps")
    if layer is None:
        layer = default_layer(maps)
    by_name = {m.name: m for m in maps}
    if layer not in by_name:
        valid = ", ".join(m.name for m in maps[:10])
        known = layer in dict(G.named_modules())
        what = "does not give a (C, H, W) feature map" if known else "is not a module"
        raise GanforgeError(f"{WHERE}: layer {layer!r} {what} of {type(G).__name__}; valid names include: {valid}")
    return by_name[layer]


@contextmanager
def intervene(G: torch.nn.Module, layer: str, units: Sequence[int] | torch.Tensor,
              value: float | torch.Tensor = 0.0) -> Iterator[None]:
    """Within the block, `layer`'s output has channels `units` set to `value` (one number, or one per unit) at every
    location: do(r_{U,P} = value) with P the whole map. `value` 0 is ablation."""
    module = dict(G.named_modules())[layer]
    idx = torch.as_tensor(units, dtype=torch.long).reshape(-1)
    vals = torch.as_tensor(value, dtype=torch.float32).reshape(-1)

    def hook(_m, _i, out):
        out = out.clone()
        out[:, idx.to(out.device)] = vals.to(out.device, out.dtype).view(1, -1, 1, 1).expand(
            out.shape[0], len(idx), *out.shape[2:])
        return out

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def ablated(G: torch.nn.Module, layer: str, units: Sequence[int] | torch.Tensor):
    """`intervene` with value 0: the units switched off at every location."""
    return intervene(G, layer, units, 0.0)


# ------------------------------------------------------------------------------------------------------ explorer
@EXPLORERS.register("dissect")
class Dissect(Explorer):
    """GAN Dissection (Bau et al. 2019): per-unit concept IoU at a conv layer, and the causal effect of ablation."""

    def __init__(self, *, layer: str | None = None, segmenter: Literal["shapes", "module"] = "shapes",
                 module: str | None = None, concepts: list[str] | None = None, n: int = 500,
                 method: Literal["iqr", "quantile"] = "iqr", quantile: float = 0.005, min_iou: float = 0.05,
                 top: int = 8, show: int = 6, ablate_k: int = 4, n_ace: int = 200, random_draws: int = 5,
                 insert: bool = False, batch_size: int = 100):
        """
        Args:
            layer: module name inside G whose output units are dissected (default: a middle feature map).
            segmenter: shapes (the bundled shapes-set segmenter) or module.
            module: with segmenter=module, "package.module:function" returning the segmentation network.
            concepts: with segmenter=module, the names of its K output maps.
            n: samples the IoU is measured on.
            method: iqr (threshold per unit and concept maximising I(A;B)/H(A,B)) or quantile (top `quantile`).
            quantile: the top fraction of each unit's values for method=quantile (the authors' classifier 0.005).
            min_iou: IoU at which a unit counts as matched to its concept (the authors' 0.05).
            top: units shown in the heat-map figure (highest IoU first).
            show: samples per unit / per ablation row in the figures.
            ablate_k: units switched off per concept for the causal effect.
            n_ace: fresh samples the causal effect is measured on.
            random_draws: draws of ablate_k random units (the baseline).
            insert: also measure insertion (units set to their 99th-percentile activation everywhere).
            batch_size: samples per forward pass.
        """
        self.n = check_int(n, f"{WHERE}: n", minimum=2)
        self.top = check_int(top, f"{WHERE}: top", minimum=1)
        self.show = check_int(show, f"{WHERE}: show", minimum=1)
        self.ablate_k = check_int(ablate_k, f"{WHERE}: ablate_k", minimum=1)
        self.n_ace = check_int(n_ace, f"{WHERE}: n_ace", minimum=1)
        self.random_draws = check_int(random_draws, f"{WHERE}: random_draws", minimum=1)
        self.batch_size = check_int(batch_size, f"{WHERE}: batch_size", minimum=1)
        if not 0 < quantile < 1:
            raise GanforgeError(f"{WHERE}: quantile must be in (0, 1), got {quantile}")
        if not 0 <= min_iou <= 1:
            raise GanforgeError(f"{WHERE}: min_iou must be in [0, 1], got {min_iou}")
        if segmenter == "module" and not module:
            raise GanforgeError(f"{WHERE}: segmenter=module needs module='package.module:function'")
        self.layer, self.segmenter, self.module, self.concepts = layer, segmenter, module, concepts
        self.method, self.quantile, self.min_iou, self.insert = method, float(quantile), float(min_iou), bool(insert)

    def check(self, G: torch.nn.Module) -> None:
        super().check(G)
        resolve_layer(G, self.layer)
        if self.segmenter == "shapes":
            check_shapes_images(G)

    # -------------------------------------------------------------------------------------------------- sampling
    def sample(self, G: torch.nn.Module, layer: str, z: torch.Tensor, y: torch.Tensor | None, device: str
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """(images (N, C, H, W), the layer's activations (N, U, h, w)) of latents z, on the CPU."""
        got: list[torch.Tensor] = []
        handle = dict(G.named_modules())[layer].register_forward_hook(
            lambda m, i, out: got.append(out.detach().float().cpu()))
        try:
            images = self.render(G, z, y, device)
        finally:
            handle.remove()
        return images, torch.cat(got)

    def render(self, G: torch.nn.Module, z: torch.Tensor, y: torch.Tensor | None, device: str) -> torch.Tensor:
        """Model-space images of latents z (conditions y), batch by batch, on the CPU."""
        out = []
        for i in range(0, len(z), self.batch_size):
            yb = None if y is None else y[i: i + self.batch_size].to(device)
            out.append(G(z[i: i + self.batch_size].to(device), yb).float().cpu())
        return torch.cat(out)

    # ------------------------------------------------------------------------------------------------------- run
    def run(self, G: torch.nn.Module, out_dir: Path, *, progress: bool, seed: int, device: str) -> dict[str, Any]:
        fmap = resolve_layer(G, self.layer)
        seg = build_segmenter(self.segmenter, G, module=self.module, concepts=self.concepts, device=device)
        concepts = list(seg.concepts)
        z, y = row_latents(G, self.n, seed)
        images, acts = self.sample(G, fmap.name, z, y, device)
        masks = seg(images, self.batch_size) > 0.5  # (N, K, H, W)
        scores = score_units(acts, masks, self.method, self.quantile, progress=progress)
        best_iou, best = scores.iou.max(dim=1)  # (U,)
        order = torch.argsort(best_iou, descending=True)
        matched = best_iou >= self.min_iou
        h99 = torch.stack([quantiles(acts[:, u].reshape(-1), torch.tensor([0.99]))[0]
                           for u in range(acts.shape[1])]).float()
        ace = self.causal_effects(G, fmap.name, scores.iou, concepts, h99, seg, seed, device, out_dir)
        self.unit_figure(images, acts, scores, order[: self.top], best, concepts, out_dir / "units.png")
        save_png(iou_bars(best_iou[order].numpy(), [concepts[int(best[u])] for u in order], concepts,
                          self.min_iou), out_dir / "iou.png")
        return {
            "layer": fmap.name, "layer_shape": list(fmap.shape), "units": acts.shape[1], "n": self.n,
            "method": self.method, "segmenter": seg.name, "concepts": concepts,
            "segmenter_accuracy": seg.accuracy,
            "concept_area": {c: float(masks[:, k].float().mean()) for k, c in enumerate(concepts)},
            "top_units": [{"unit": int(u), "concept": concepts[int(best[u])], "iou": float(best_iou[u]),
                           "threshold": float(scores.threshold[u, best[u]]),
                           "fraction_above": float(scores.fraction[u, best[u]])} for u in order[: self.top]],
            "units_per_concept": {c: int((matched & (best == k)).sum()) for k, c in enumerate(concepts)},
            "matched_units": int(matched.sum()),
            "unit_concept": [concepts[int(k)] for k in best], "unit_iou": best_iou.float(),
            "iou": scores.iou.float(), "threshold": scores.threshold.float(),
            "ace": ace,
        }

    # ------------------------------------------------------------------------------------------------ causal effect
    def causal_effects(self, G: torch.nn.Module, layer: str, iou: torch.Tensor, concepts: list[str],
                       h99: torch.Tensor, seg: Segmenter, seed: int, device: str, out_dir: Path) -> dict[str, Any]:
        """Per concept: the drop of its probability / area when its top-k units are ablated, vs k random units."""
        n_units = iou.shape[0]
        k = min(self.ablate_k, n_units)
        z, y = row_latents(G, self.n_ace, seed + 1)  # fresh samples, apart from the dissected ones
        base_x = self.render(G, z, y, device)

        def presence(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            p = seg(x, self.batch_size)  # (N, K, H, W)
            return p.mean(dim=(0, 2, 3)).double(), (p > 0.5).float().mean(dim=(0, 2, 3)).double()

        base_p, base_a = presence(base_x)
        gen = torch.Generator().manual_seed(seed)
        draws = [torch.randperm(n_units, generator=gen)[:k] for _ in range(self.random_draws)]
        rand_p, rand_a, rand_ins, rand_x = [], [], [], None
        for units in draws:
            with ablated(G, layer, units):
                x = self.render(G, z, y, device)
            p, a = presence(x)
            rand_p.append(base_p - p)
            rand_a.append(base_a - a)
            rand_x = x if rand_x is None else rand_x
            if self.insert:
                with intervene(G, layer, units, h99[units]):
                    rand_ins.append(presence(self.render(G, z, y, device))[0] - base_p)
        rand_p_t, rand_a_t = torch.stack(rand_p), torch.stack(rand_a)  # (draws, K)
        out: dict[str, Any] = {"k": k, "n": self.n_ace, "random_draws": self.random_draws, "concepts": {}}
        present = [c for c in range(len(concepts)) if base_a[c] >= MIN_LABEL_FRACTION]  # others: nothing to remove
        out["absent"] = [name for c, name in enumerate(concepts) if c not in present]
        for c in present:
            name = concepts[c]
            units = torch.argsort(iou[:, c], descending=True)[:k]
            with ablated(G, layer, units):
                x = self.render(G, z, y, device)
            p, a = presence(x)
            row = {"units": units.tolist(), "unit_iou": iou[units, c].tolist(),
                   "base_prob": float(base_p[c]), "base_area": float(base_a[c]),
                   "ace_top": float(base_p[c] - p[c]), "ace_top_area": float(base_a[c] - a[c]),
                   "ace_random_mean": float(rand_p_t[:, c].mean()), "ace_random_std": _std(rand_p_t[:, c]),
                   "ace_random_area_mean": float(rand_a_t[:, c].mean()), "ace_random_area_std": _std(rand_a_t[:, c]),
                   "relative_drop_top": float((base_p[c] - p[c]) / base_p[c]),
                   "relative_drop_random": float(rand_p_t[:, c].mean() / base_p[c]),
                   "others_relative_drop": {concepts[j]: float((base_p[j] - p[j]) / base_p[j]) for j in present
                                            if j != c}}
            row["others_relative_drop_mean"] = float(np.mean(list(row["others_relative_drop"].values()))) \
                if len(present) > 1 else None
            if self.insert:
                with intervene(G, layer, units, h99[units]):
                    row["insert_top"] = float(presence(self.render(G, z, y, device))[0][c] - base_p[c])
                ins = torch.stack(rand_ins)[:, c]
                row["insert_random_mean"], row["insert_random_std"] = float(ins.mean()), _std(ins)
            out["concepts"][name] = row
            cols = min(self.show, len(z))
            grid = torch.cat([base_x[:cols], x[:cols], rand_x[:cols]])
            save_png(label_rows(render_grid(G, grid, ncol=cols), ["original", f"top {k} off", f"random {k} off"]),
                     out_dir / f"ablation-{_slug(name)}.png")
        rows = list(out["concepts"].values())
        if rows:
            out["mean_ace_top"] = float(np.mean([r["ace_top"] for r in rows]))
            out["mean_ace_random"] = float(np.mean([r["ace_random_mean"] for r in rows]))
            out["mean_relative_drop_top"] = float(np.mean([r["relative_drop_top"] for r in rows]))
            out["mean_relative_drop_random"] = float(np.mean([r["relative_drop_random"] for r in rows]))
        return out

    # ------------------------------------------------------------------------------------------------------ figures
    def unit_figure(self, images: torch.Tensor, acts: torch.Tensor, scores: UnitScores, units: torch.Tensor,
                    best: torch.Tensor, concepts: list[str], path: Path) -> None:
        """Rows: top units; columns: the samples where the unit is most active, its region (> t) bright, the rest
        dimmed, outlined in white; labelled with unit, concept and IoU."""
        from ..data.base import ImageModality

        size = tuple(images.shape[2:])
        rows, labels = [], []
        for u in units.tolist():
            c = int(best[u])
            up = F.interpolate(acts[:, u: u + 1], size=size, mode="bilinear", align_corners=False)[:, 0]
            pick = torch.argsort(up.mean(dim=(1, 2)), descending=True)[: self.show]
            tiles = [overlay(ImageModality().from_model(images[i]), up[i] > scores.threshold[u, c]) for i in pick]
            rows.append(np.concatenate([np.pad(t, ((2, 2), (2, 2), (0, 0))) for t in tiles], axis=1))
            labels.append(f"unit {u}: {concepts[c]} {float(scores.iou[u, c]):.2f}")
        save_png(label_rows(np.concatenate(rows, axis=0), labels), path)


def _std(v: torch.Tensor) -> float:
    return float(v.std()) if len(v) > 1 else 0.0


def _colour(name: str, index: int) -> str | tuple[int, int, int]:
    """A concept named after a colour ("red") is drawn in it; others take the palette's index-th colour."""
    try:
        return ImageColor.getrgb(name)
    except ValueError:
        return PALETTE[index % len(PALETTE)]


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name)


# ------------------------------------------------------------------------------------------------------- drawing
def overlay(image: torch.Tensor, region: torch.Tensor, min_side: int = 64) -> np.ndarray:
    """uint8 (C, H, W) image and bool (H, W) region -> uint8 (h, w, 3), enlarged to >= min_side px: the region as
    it is, the rest at 30% brightness, the region's border in white."""
    scale = max(1, min_side // max(image.shape[1:]))
    img = image.numpy().transpose(1, 2, 0)
    img = np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img[:, :, :3]
    img = img.repeat(scale, 0).repeat(scale, 1).astype(np.float64)
    r = region.numpy().repeat(scale, 0).repeat(scale, 1)
    out = np.where(r[..., None], img, img * 0.3)
    inner = r.copy()
    inner[1:] &= r[:-1]
    inner[:-1] &= r[1:]
    inner[:, 1:] &= r[:, :-1]
    inner[:, :-1] &= r[:, 1:]
    out[r & ~inner] = 255
    return out.round().astype(np.uint8)


def label_rows(grid: np.ndarray, labels: list[str], width: int = 150) -> np.ndarray:
    """A white strip left of `grid` with one label per equal-height row of it."""
    h = grid.shape[0]
    canvas = Image.new("RGB", (width + grid.shape[1], h), "white")
    canvas.paste(Image.fromarray(np.ascontiguousarray(grid)), (width, 0))
    draw = ImageDraw.Draw(canvas)
    row_h = h / max(len(labels), 1)
    for i, text in enumerate(labels):
        draw.text((4, int(i * row_h + row_h / 2 - 5)), text, fill="black")
    return np.asarray(canvas)


def iou_bars(values: np.ndarray, unit_concepts: list[str], concepts: list[str], min_iou: float,
             height: int = 240) -> np.ndarray:
    """Every unit's best IoU as a bar (sorted, coloured by its concept), the `min_iou` line dashed, a legend with
    the number of matched units per concept."""
    n = len(values)
    bar = max(2, min(12, 720 // max(n, 1)))
    left, top, bottom = 40, 10, 20
    legend_w = 170
    w = left + n * bar + 10 + legend_w
    canvas = Image.new("RGB", (w, height), "white")
    draw = ImageDraw.Draw(canvas)
    hi = max(float(values.max()) if n else 0.0, min_iou, 1e-6)
    plot_h = height - top - bottom
    colors = {c: _colour(c, i) for i, c in enumerate(concepts)}
    for i, (v, c) in enumerate(zip(values, unit_concepts)):
        x0 = left + i * bar
        draw.rectangle([x0, top + plot_h * (1 - v / hi), x0 + bar - 1, top + plot_h], fill=colors[c])
    y = top + plot_h * (1 - min_iou / hi)
    for x in range(left, left + n * bar, 6):
        draw.line([(x, y), (x + 3, y)], fill="black")
    draw.line([(left, top + plot_h), (left + n * bar, top + plot_h)], fill="black")
    draw.text((2, top - 2), f"{hi:.2f}", fill="black")
    draw.text((2, top + plot_h - 10), "0", fill="black")
    draw.text((left, height - 15), f"units, by IoU (dashed: {min_iou:g})", fill="black")
    x_leg = left + n * bar + 10
    for k, c in enumerate(concepts):
        count = sum(1 for v, uc in zip(values, unit_concepts) if uc == c and v >= min_iou)
        draw.rectangle([x_leg, top + 14 * k, x_leg + 9, top + 14 * k + 9], fill=colors[c])
        draw.text((x_leg + 14, top + 14 * k - 1), f"{c} ({count})", fill="black")
    return np.asarray(canvas)

"""InterFaceGAN: a linear SVM boundary in latent space per attribute, and conditional editing (Shen et al.,
"Interpreting the Latent Space of GANs for Semantic Face Editing", CVPR 2020).

1. Sample n latents (z; w = mapping(z) for a style-based G), render them and score the images with an attribute
   classifier (`explore/attributes.py`). For a binary quantity s (a score, or one class's probability one-vs-rest),
   the codes with the top `ratio` of s are positives and the bottom `ratio` negatives (the authors' code:
   `chosen_num_or_ratio` 0.02 on each side), split 70/30 into train / validation (`val` 0.3).
2. A linear SVM (sklearn `LinearSVC`, C = 1; the authors use `SVC(kernel="linear")`, the same model class, solved
   by another solver) separates them; the boundary's unit normal n = w / ||w|| (Sec. 3.1, Eq. 2: the hyperplane
   n^T z = 0) is the edit direction, oriented towards the positives. Edits z + alpha n, alpha in [-3, 3] (Sec. 3.2).
3. Conditional manipulation (Sec. 3.2, Eq. 4): with condition normals n_1 .. n_m, the primal direction is projected
   onto the orthogonal complement of their span, n' = n - N^T (N N^T)^{-1} N n (N the m x d matrix of the n_c; for
   one condition n' = n - (n^T n_c) n_c), then renormalised, so moving along n' leaves every condition's SVM score
   n_c^T z unchanged.

Numbers: the SVM's validation accuracy per quantity, the cosine between n and each condition, and the
classifier-measured change per unit step along n and n' (mean over samples and alphas != 0 of (s(z + alpha d) -
s(z)) / alpha) of the target and condition quantities, and the total-variation change per unit step of every other
attribute.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tqdm import tqdm

from ..checks import check_int
from ..errors import GanforgeError
from ..models.style import is_style_based
from ..registries import EXPLORERS
from .attributes import AttributeScorer, AttributeSpec, attribute_change, attribute_scorer, check_classifier
from .base import Explorer, render_grid, row_latents, save_png


# ------------------------------------------------------------------------------------------------- latent codes
def latent_space(G: torch.nn.Module, space: str, where: str) -> str:
    """The space edits happen in: z, or w (style-based G); "auto" = w for style G, z otherwise."""
    if space == "auto":
        return "w" if is_style_based(G) else "z"
    if space == "w" and not is_style_based(G):
        raise GanforgeError(f"{where}: space 'w' needs a style-based generator; {type(G).__name__} takes z")
    return space


def sample_codes(G: torch.nn.Module, n: int, seed: int, space: str, device: str
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """n seeded latent codes (z, or w = mapping(z)) on the CPU and their conditions."""
    z, y = row_latents(G, n, seed)
    if space == "z":
        return z, y
    ws = []
    for i in range(0, n, 512):
        yb = None if y is None else y[i: i + 512].to(device)
        ws.append(G.mapping(z[i: i + 512].to(device), yb, update_w_avg=False)[:, 0].cpu())
    return torch.cat(ws), y


def render_codes(G: torch.nn.Module, codes: torch.Tensor, y: torch.Tensor | None, space: str, device: str,
                 batch_size: int = 256) -> torch.Tensor:
    """Model-space images (on the CPU) of latent codes: G(z, y), or synthesis(w broadcast to every layer)."""
    out = []
    for i in range(0, len(codes), batch_size):
        c = codes[i: i + batch_size].float().to(device)
        if space == "z":
            out.append(G(c, None if y is None else y[i: i + batch_size].to(device)).float().cpu())
        else:
            out.append(G.synthesis(c[:, None].repeat(1, G.num_ws, 1)).float().cpu())
    return torch.cat(out)


# ----------------------------------------------------------------------------------------------------- the math
def top_bottom(scores: torch.Tensor, ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the top and bottom `ratio` of scores (at least one each), highest / lowest first."""
    n = len(scores)
    m = max(1, int(round(ratio * n)))
    if 2 * m > n:
        raise GanforgeError(f"top / bottom {ratio} of {n} codes overlap; lower the ratio or sample more")
    order = torch.argsort(scores.double(), descending=True)
    return order[:m], order.flip(0)[:m]


def svm_boundary(codes: torch.Tensor, scores: torch.Tensor, ratio: float = 0.02, val: float = 0.3, seed: int = 0,
                 C: float = 1.0) -> tuple[torch.Tensor, float]:
    """(unit normal (d,) pointing to high scores, validation accuracy) of a linear SVM on top vs bottom codes."""
    from sklearn.svm import LinearSVC

    pos, neg = top_bottom(scores, ratio)
    X = torch.cat([codes[pos], codes[neg]]).double().numpy()
    t = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    perm = np.random.default_rng(seed).permutation(len(X))
    n_val = int(round(val * len(X))) if len(X) >= 4 else 0
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    if len(set(t[train_idx])) < 2:
        raise GanforgeError("the SVM's training split holds one class only; sample more codes or raise the ratio")
    svm = LinearSVC(C=C, max_iter=20000).fit(X[train_idx], t[train_idx])
    w = torch.from_numpy(svm.coef_[0].copy())
    normal = w / w.norm().clamp_min(1e-300)
    acc = float((svm.predict(X[val_idx]) == t[val_idx]).mean()) if n_val else float("nan")
    return normal, acc


def conditional_direction(n: torch.Tensor, conditions: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    """n projected onto the orthogonal complement of span{conditions} (rows), renormalised (Eq. 4 of the paper)."""
    n = n.double()
    N = torch.stack(list(conditions)).double() if isinstance(conditions, list) else conditions.double()
    if N.numel() == 0:
        return n / n.norm()
    N = N.reshape(-1, n.shape[0])
    coef = torch.linalg.lstsq(N @ N.t(), N @ n[:, None]).solution  # Gram solve; lstsq also handles repeated normals
    out = n - (N.t() @ coef)[:, 0]
    norm = out.norm()
    if norm < 1e-9:
        raise GanforgeError("the target direction lies in the span of the condition directions; nothing is left "
                            "after removing them")
    return out / norm


def per_unit_change(scorer: AttributeScorer, render, codes: torch.Tensor, direction: torch.Tensor,
                    alphas: torch.Tensor, specs: list[AttributeSpec], others: list[str]) -> dict[str, float]:
    """Classifier-measured change per unit step along `direction`: signed for specs, total variation for others."""
    base = scorer(render(codes))
    signed = {str(s): 0.0 for s in specs}
    tv = {a: 0.0 for a in others}
    moved = [float(a) for a in alphas if abs(float(a)) > 1e-12]
    for a in moved:
        after = scorer(render(codes + a * direction.float()))
        for s in specs:
            signed[str(s)] += float((scorer.binary(after, s) - scorer.binary(base, s)).mean()) / a / len(moved)
        for attr in others:
            tv[attr] += float(attribute_change(base[attr], after[attr]).mean()) / abs(a) / len(moved)
    return {**signed, **{f"{a} (total variation)": v for a, v in tv.items()}}


@EXPLORERS.register("interfacegan")
class InterFaceGAN(Explorer):
    """InterFaceGAN (Shen et al. 2020): SVM normal of an attribute in z / w, and the conditional direction n'."""

    def __init__(self, *, classifier: str = "digits", target: str = "class:1", conditions: list[str] | None = None,
                 n: int = 5000, ratio: float = 0.02, val: float = 0.3, space: Literal["auto", "z", "w"] = "auto",
                 samples: int = 4, steps: int = 7, distance: float = 3.0, module: str | None = None,
                 attributes: dict[str, int] | None = None, batch_size: int = 256):
        """
        Args:
            classifier: attribute classifier: digits, shapes or module (`explore/attributes.py`).
            target: the edited quantity, "attr" or "attr:class" (one-vs-rest; default class 1).
            conditions: quantities kept fixed by the conditional direction n' (none: n' is not computed).
            n: sampled codes scored by the classifier.
            ratio: fraction of codes taken as positives (top) and as negatives (bottom) each (the paper's 0.02).
            val: fraction of the chosen codes held out to measure the SVM's accuracy.
            space: auto (w for a style-based G, else z), z or w.
            samples: codes edited in the figures (rows) and measured for the per-step change.
            steps: alphas evenly in [-distance, distance] (columns).
            distance: the largest |alpha| (the paper: 3).
            module: with classifier=module, "package.module:function" returning the network.
            attributes: with classifier=module, attribute -> number of outputs.
            batch_size: images per forward pass.
        """
        self.classifier = check_classifier(classifier, "explore interfacegan: classifier")
        self.target, self.conditions = str(target), [str(c) for c in (conditions or [])]
        self.n = check_int(n, "explore interfacegan: n", minimum=4)
        self.samples = check_int(samples, "explore interfacegan: samples", minimum=1)
        self.steps = check_int(steps, "explore interfacegan: steps", minimum=2)
        self.batch_size = check_int(batch_size, "explore interfacegan: batch_size", minimum=1)
        if not 0 < ratio <= 0.5:
            raise GanforgeError(f"explore interfacegan: ratio must be in (0, 0.5], got {ratio}")
        if not 0 <= val < 1:
            raise GanforgeError(f"explore interfacegan: val must be in [0, 1), got {val}")
        if not distance > 0:
            raise GanforgeError(f"explore interfacegan: distance must be > 0, got {distance}")
        self.ratio, self.val, self.distance, self.space = float(ratio), float(val), float(distance), space
        self.module, self.attributes = module, attributes

    def check(self, G: torch.nn.Module) -> None:
        super().check(G)
        latent_space(G, self.space, "explore interfacegan")

    def run(self, G: torch.nn.Module, out_dir: Path, *, progress: bool, seed: int, device: str) -> dict[str, Any]:
        where = "explore interfacegan"
        space = latent_space(G, self.space, where)
        scorer = attribute_scorer(self.classifier, G, module=self.module, attributes=self.attributes, device=device)
        target = scorer.spec(self.target, f"{where}: target")
        conds = [scorer.spec(c, f"{where}: conditions") for c in self.conditions]
        codes, y = sample_codes(G, self.n, seed + 1, space, device)
        images = []
        for i in tqdm(range(0, self.n, self.batch_size), desc="interfacegan", disable=not progress, leave=False):
            images.append(render_codes(G, codes[i: i + self.batch_size], None if y is None else
                                       y[i: i + self.batch_size], space, device, self.batch_size))
        scores = scorer(torch.cat(images), self.batch_size)
        fits = {str(s): svm_boundary(codes, scorer.binary(scores, s), self.ratio, self.val, seed)
                for s in [target, *conds]}
        n = fits[str(target)][0]
        dirs = {"n": n}
        if conds:
            dirs["n_conditional"] = conditional_direction(n, [fits[str(c)][0] for c in conds])
        rows, ry = sample_codes(G, self.samples, seed, space, device)

        def render(c: torch.Tensor) -> torch.Tensor:
            return render_codes(G, c, ry, space, device, self.batch_size)

        alphas = torch.linspace(-self.distance, self.distance, self.steps)
        others = [a for a in scorer.attributes if a not in {s.attr for s in [target, *conds]}]
        change = {}
        for name, d in dirs.items():
            grid = torch.cat([render_codes(G, rows[i] + alphas[:, None] * d.float(), None if ry is None else
                                           ry[i: i + 1].expand(self.steps, *ry.shape[1:]), space, device)
                              for i in range(self.samples)])
            save_png(render_grid(G, grid, ncol=self.steps), out_dir / f"edit-{name}.png")
            change[name] = per_unit_change(scorer, render, rows, d, alphas, [target, *conds], others)
        return {"space": space, "classifier": self.classifier, "target": str(target),
                "conditions": [str(c) for c in conds], "n": self.n, "chosen_per_side": len(top_bottom(
                    scorer.binary(scores, target), self.ratio)[0]),
                "svm_val_accuracy": {k: v[1] for k, v in fits.items()},
                "cos_with_conditions": {str(c): float(n @ fits[str(c)][0]) for c in conds},
                "change_per_unit_step": change, "directions": {k: v.float() for k, v in dirs.items()}}

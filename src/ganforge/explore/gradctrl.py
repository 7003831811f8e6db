"""GradCtrl: gradient-based multi-directional controls (Chen et al., "Exploring Gradient-based Multi-directional
Controls in GANs", ECCV 2022).

1. Sample n latents (w for a style-based G, else z) and score their images with an attribute classifier
   (`explore/attributes.py`). A binary quantity (a score, or a 2-class head's class 1) keeps the top and bottom
   `ratio` (the authors' `p_perclass` 0.05) as positives / negatives; a K-class attribute (K > 2) keeps every code,
   labelled by the classifier's argmax class.
2. A small latent-space classifier C, one branch per attribute: Linear(d, 16) - LeakyReLU(0.1) - Linear(16, 1)
   with a sigmoid and BCE for binary quantities, Linear(16, K) with a softmax and cross-entropy for a K-class
   attribute (the multi-directional case, Sec. 3.3); Adam, lr 1e-3, 1 epoch (the authors' defaults).
3. The edit direction at code w is d = grad_w C_target(w) (Sec. 3.1), recomputed at every step, so the path bends.
   For a K-class attribute C_target is the probability of the target class: one direction per class.
4. Disentanglement (Sec. 3.2): for every excluded quantity a, the saliency |grad_w C_a(w)| picks its top-k channels,
   which are zeroed in d; then d is normalised to unit length (`gradctrl_direction`).
5. Steps w <- w +- (4/9) d, 9 of them (the authors' `manipulate.py`); on a style-based G the edited w drives every
   synthesis layer (the paper restricts FFHQ edits to a W+ layer range, which `layers=[lo, hi]` reproduces).

Numbers, masked (excluded attributes' channels zeroed) and unmasked (plain gradient), for the issue's benchmark: the
classifier-measured change of the target quantity and of each excluded quantity per unit of path length (mean over
samples and both directions of (s(w_end) - s(w_0)) / (steps * step_size), signed by the direction), and the
training accuracy of C's branches.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import torch
from torch import nn

from ..checks import check_int
from ..errors import GanforgeError
from ..registries import EXPLORERS
from ..training.rng import generator
from .attributes import AttributeScorer, AttributeSpec, attribute_scorer, check_classifier
from .base import Explorer, render_grid, save_png
from .interfacegan import latent_space, render_codes, sample_codes, top_bottom


def gradctrl_direction(C_target: Callable[[torch.Tensor], torch.Tensor],
                       C_others: Sequence[Callable[[torch.Tensor], torch.Tensor]], w: torch.Tensor,
                       k: int | Sequence[int]) -> torch.Tensor:
    """(B, d) unit directions: grad_w C_target(w) with, per excluded C_a, its top-k |grad_w C_a| channels zeroed.

    Each C maps codes (B, d) to (B,) outputs; samples are independent, so the gradient of the sum is per-sample.
    `k`: one count for every excluded classifier, or one each.
    """
    ks = [int(k)] * len(C_others) if isinstance(k, int) else [int(v) for v in k]
    if len(ks) != len(C_others):
        raise GanforgeError(f"gradctrl: {len(ks)} top-k counts for {len(C_others)} excluded attributes")
    with torch.enable_grad():
        w = w.detach().float().requires_grad_(True)
        d = torch.autograd.grad(C_target(w).sum(), w)[0]
        keep = torch.ones_like(d, dtype=torch.bool)
        for C_a, k_a in zip(C_others, ks):
            if k_a <= 0:
                continue
            sal = torch.autograd.grad(C_a(w).sum(), w)[0].abs()
            top = sal.topk(min(k_a, sal.shape[1]), dim=1).indices
            keep.scatter_(1, top, False)
    d = torch.where(keep, d, torch.zeros_like(d))
    norm = d.norm(dim=1, keepdim=True)
    return torch.where(norm > 0, d / norm.clamp_min(1e-30), d).detach()


class LatentAttributeNet(nn.Module):
    """C: one small MLP branch per attribute on latent codes (hidden 16, LeakyReLU 0.1), returning logits."""

    def __init__(self, dim: int, outputs: dict[str, int], hidden: int = 16):
        super().__init__()
        self.outputs = dict(outputs)
        self.branches = nn.ModuleDict({a: nn.Sequential(nn.Linear(dim, hidden), nn.LeakyReLU(0.1),
                                                        nn.Linear(hidden, k)) for a, k in outputs.items()})

    def forward(self, w: torch.Tensor) -> dict[str, torch.Tensor]:
        return {a: b(w) for a, b in self.branches.items()}

    def quantity(self, key: str, cls: int | None) -> Callable[[torch.Tensor], torch.Tensor]:
        """w -> (B,) sigmoid probability of a binary branch, or softmax probability of class `cls`."""
        if self.outputs[key] == 1:
            return lambda w: torch.sigmoid(self.branches[key](w)[:, 0])
        return lambda w: self.branches[key](w).softmax(dim=1)[:, cls]


def _branch_data(scorer: AttributeScorer, scores: dict, spec: AttributeSpec, ratio: float
                 ) -> tuple[str, int, torch.Tensor, torch.Tensor]:
    """(branch key, outputs, code indices, targets) of one quantity's training set."""
    k = scorer.attributes[spec.attr]
    if k > 2:
        labels = scores[spec.attr].argmax(dim=1)
        return spec.attr, k, torch.arange(len(labels)), labels
    pos, neg = top_bottom(scorer.binary(scores, spec), ratio)
    return str(spec), 1, torch.cat([pos, neg]), torch.cat([torch.ones(len(pos)), torch.zeros(len(neg))])


def train_latent_classifier(codes: torch.Tensor, data: dict[str, tuple[int, torch.Tensor, torch.Tensor]], seed: int,
                            epochs: int = 1, lr: float = 1e-3, batch_size: int = 32) -> tuple[LatentAttributeNet,
                                                                                                 dict[str, float]]:
    """Train C's branches (BCE / cross-entropy, Adam) on their own code subsets; returns C and training accuracies."""
    torch.manual_seed(seed)
    net = LatentAttributeNet(codes.shape[1], {key: k for key, (k, _, _) in data.items()})
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    gen = generator(seed, "gradctrl-train")
    with torch.enable_grad():
        for _ in range(epochs):
            for key, (k, idx, t) in data.items():
                order = torch.randperm(len(idx), generator=gen)
                for i in range(0, len(idx), batch_size):
                    b = order[i: i + batch_size]
                    logits = net.branches[key](codes[idx[b]].float())
                    loss = (nn.functional.binary_cross_entropy_with_logits(logits[:, 0], t[b].float()) if k == 1
                            else nn.functional.cross_entropy(logits, t[b].long()))
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
    acc = {}
    with torch.no_grad():
        for key, (k, idx, t) in data.items():
            logits = net.branches[key](codes[idx].float())
            pred = (logits[:, 0] > 0).float() if k == 1 else logits.argmax(dim=1)
            acc[key] = float((pred == t.to(pred.dtype)).float().mean())
    return net.eval(), acc


@EXPLORERS.register("gradctrl")
class GradCtrl(Explorer):
    """GradCtrl (Chen et al. 2022): per-step gradient of a latent attribute classifier, top-k masked by the others."""

    def __init__(self, *, classifier: str = "digits", target: str = "class:1", exclude: list[str] | None = None,
                 k: int | list[int] = 2, n: int = 5000, ratio: float = 0.05, epochs: int = 1, lr: float = 1e-3,
                 steps: int = 9, step_size: float = 4 / 9, space: Literal["auto", "z", "w"] = "auto",
                 layers: list[int] | None = None, samples: int = 4, module: str | None = None,
                 attributes: dict[str, int] | None = None, batch_size: int = 256):
        """
        Args:
            classifier: attribute classifier: digits, shapes or module (`explore/attributes.py`).
            target: the edited quantity, "attr" or "attr:class" (a K-class attribute: that class's direction).
            exclude: quantities whose top-k salient channels are masked out of d (none: no masking).
            k: channels masked per excluded quantity (one count, or one per quantity). The paper uses 50-300 of
                512 w channels on FFHQ; the default 2 suits ganforge's small latents.
            n: sampled codes scored to train C.
            ratio: top / bottom fraction per binary quantity (the authors' 0.05).
            epochs, lr: C's training (the authors: 1 epoch, Adam 1e-3).
            steps, step_size: steps of the edit path each way and their length (the authors: 9 of 4/9).
            space: auto (w for a style-based G, else z), z or w.
            layers: [lo, hi) W+ layers the edit is written into (style-based G; default all).
            samples: codes edited in the figures and measured.
            module, attributes: with classifier=module, its factory and attribute -> outputs.
            batch_size: images per forward pass.
        """
        self.classifier = check_classifier(classifier, "explore gradctrl: classifier")
        self.target, self.exclude = str(target), [str(e) for e in (exclude or [])]
        ks = [k] if isinstance(k, int) else list(k)
        self.k = [check_int(v, "explore gradctrl: k", minimum=0) for v in ks]
        if len(self.k) not in (1, len(self.exclude) or 1):
            raise GanforgeError(f"explore gradctrl: k gives {len(self.k)} counts for {len(self.exclude)} excluded "
                                f"quantities")
        self.n = check_int(n, "explore gradctrl: n", minimum=4)
        self.epochs = check_int(epochs, "explore gradctrl: epochs", minimum=1)
        self.steps = check_int(steps, "explore gradctrl: steps", minimum=1)
        self.samples = check_int(samples, "explore gradctrl: samples", minimum=1)
        self.batch_size = check_int(batch_size, "explore gradctrl: batch_size", minimum=1)
        for key, v, lo in (("ratio", ratio, 0.0), ("lr", lr, 0.0), ("step_size", step_size, 0.0)):
            if not v > lo:
                raise GanforgeError(f"explore gradctrl: {key} must be > 0, got {v}")
        if ratio > 0.5:
            raise GanforgeError(f"explore gradctrl: ratio must be <= 0.5, got {ratio}")
        if layers is not None and (len(layers) != 2 or not 0 <= layers[0] < layers[1]):
            raise GanforgeError(f"explore gradctrl: layers must be [lo, hi) with 0 <= lo < hi, got {layers}")
        self.ratio, self.lr, self.step_size, self.space, self.layers = float(ratio), float(lr), float(step_size), \
            space, layers
        self.module, self.attributes = module, attributes

    def check(self, G: torch.nn.Module) -> None:
        super().check(G)
        space = latent_space(G, self.space, "explore gradctrl")
        if self.layers is not None and (space != "w" or self.layers[1] > G.num_ws):
            raise GanforgeError(f"explore gradctrl: layers={self.layers} needs a style-based G in w space with at "
                                f"least {self.layers[1]} layers")

    def fit(self, G, scorer: AttributeScorer, specs: list[AttributeSpec], space: str, seed: int, device: str):
        """Sample and score codes, train C; returns (C, quantity functions per spec, C's accuracies)."""
        codes, y = sample_codes(G, self.n, seed + 1, space, device)
        scores = scorer(render_codes(G, codes, y, space, device, self.batch_size), self.batch_size)
        data, keys = {}, []
        for s in specs:
            key, k, idx, t = _branch_data(scorer, scores, s, self.ratio)
            data[key] = (k, idx, t)
            keys.append((key, None if k == 1 else s.cls))
        net, acc = train_latent_classifier(codes, data, seed, self.epochs, self.lr)
        return [net.quantity(key, cls) for key, cls in keys], acc

    def path(self, G, start: torch.Tensor, C_t, C_o, sign: float) -> list[torch.Tensor]:
        """Codes along the path from `start`: each step recomputes (and masks) the gradient direction."""
        ks = [] if not C_o else (self.k * len(C_o) if len(self.k) == 1 else self.k)  # unmasked: no counts
        out, w = [start], start.clone()
        for _ in range(self.steps):
            w = w + sign * self.step_size * gradctrl_direction(C_t, C_o, w, ks)
            out.append(w)
        return out

    def render_path(self, G, start_ws, codes: torch.Tensor, y, space: str, device: str) -> torch.Tensor:
        """Images of codes; with `layers` only W+ layers [lo, hi) take the edited code, the rest keep the start."""
        if self.layers is None:
            return render_codes(G, codes, y, space, device, self.batch_size)
        lo, hi = self.layers
        ws = start_ws[:, None].repeat(1, G.num_ws, 1)
        ws[:, lo:hi] = codes[:, None].float()
        return G.synthesis(ws.to(device)).float().cpu()

    def run(self, G: torch.nn.Module, out_dir: Path, *, progress: bool, seed: int, device: str) -> dict[str, Any]:
        where = "explore gradctrl"
        space = latent_space(G, self.space, where)
        scorer = attribute_scorer(self.classifier, G, module=self.module, attributes=self.attributes, device=device)
        target = scorer.spec(self.target, f"{where}: target")
        excl = [scorer.spec(e, f"{where}: exclude") for e in self.exclude]
        quantities, acc = self.fit(G, scorer, [target, *excl], space, seed, device)
        C_t, C_o = quantities[0], quantities[1:]
        rows, ry = sample_codes(G, self.samples, seed, space, device)
        length = self.steps * self.step_size
        results: dict[str, Any] = {"space": space, "classifier": self.classifier, "target": str(target),
                                   "exclude": [str(e) for e in excl], "k": self.k, "n": self.n,
                                   "latent_classifier_accuracy": acc, "path_length": length}
        variants = {"masked": C_o, "unmasked": []} if C_o else {"unmasked": []}
        base = scorer(self.render_path(G, rows, rows, ry, space, device))
        for name, others in variants.items():
            change = {str(s): 0.0 for s in [target, *excl]}
            frames = {}
            for sign in (1.0, -1.0):
                codes = self.path(G, rows, C_t, others, sign)
                frames[sign] = codes
                end = scorer(self.render_path(G, rows, codes[-1], ry, space, device))
                for s in [target, *excl]:
                    delta = scorer.binary(end, s) - scorer.binary(base, s)
                    change[str(s)] += sign * float(delta.mean()) / length / 2
            results[f"change_per_unit_{name}"] = change
            cols = [*frames[-1.0][::-1], *frames[1.0][1:]]  # -steps .. 0 .. +steps
            grid = torch.cat([self.render_path(G, rows[i: i + 1].expand(len(cols), -1),
                                               torch.stack([c[i] for c in cols]),
                                               None if ry is None else ry[i: i + 1].expand(len(cols), *ry.shape[1:]),
                                               space, device) for i in range(self.samples)])
            save_png(render_grid(G, grid, ncol=len(cols)), out_dir / f"edit-{name}.png")
        return results

"""Training phases (StyleGAN2's Dmain / Dreg / Gmain / Greg), built from the objective terms alone.

Each term goes to the D and/or G phase depending on which of `d_terms` / `g_terms` it implements; terms with
`every` > 1 form lazy phases run every `every` updates *of the network they train* (D steps for D phases, G steps
for G phases; with optim.d_steps = 3 a D-side `every: 4` still runs every 4th D step) with their sum multiplied by
`every`. Adam is rescaled for the extra steps lazy phases take (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN", App. B):
with lazy intervals e_i, ratio = 1 / (1 + sum_i 1/e_i) (= k/(k+1) for one interval k); lr *= ratio, beta **= ratio.
"""
from __future__ import annotations

from dataclasses import dataclass

import math

import torch

from ..objectives.base import Context, ObjectiveTerm


def implements(term: ObjectiveTerm, method: str) -> bool:
    return getattr(type(term), method) is not getattr(ObjectiveTerm, method)


@dataclass
class Phase:
    name: str  # e.g. "Dmain", "Dreg16", "Gmain"
    net: str  # "D" or "G": the network this phase steps
    terms: list[ObjectiveTerm]
    every: int = 1

    @property
    def wants_features(self) -> bool:
        """Whether a term of this phase reads D's intermediate feature maps."""
        return any(getattr(t, "needs_features", False) for t in self.terms)

    def due(self, count: int) -> bool:
        """Whether the phase runs at update number `count` of its network (D steps for D, G steps for G)."""
        return count % self.every == 0

    def prepare(self, ctx: Context, augment: object = None) -> None:
        """Let the phase's terms, then the augmentation, change the micro-batch before any term computes.

        A component's optional `prepare(ctx)` may replace `ctx.z` (latent optimisation), `ctx.real` / `ctx.y_real`
        (APA's pseudo reals) or `ctx.D` (a D wrapper such as AdaptiveMix's). It runs in every phase the term belongs
        to (the augmentation's in every phase), under the phase's autocast.
        """
        for component in (*self.terms, augment):
            hook = getattr(component, "prepare", None)
            if hook is not None:
                hook(ctx)

    def collect(self, ctx: Context) -> dict[str, torch.Tensor]:
        """Named loss terms of this phase (names made unique if two terms use the same one)."""
        out: dict[str, torch.Tensor] = {}
        method = "d_terms" if self.net == "D" else "g_terms"
        for term in self.terms:
            for name, value in getattr(term, method)(ctx).items():
                key, i = name, 2
                while key in out:
                    key, i = f"{name}{i}", i + 1
                out[key] = value
        return out


def build_phases(terms: list[ObjectiveTerm]) -> list[Phase]:
    phases = []
    for net, method in (("D", "d_terms"), ("G", "g_terms")):
        mine = [t for t in terms if implements(t, method)]
        main = [t for t in mine if t.every <= 1]
        if main:
            phases.append(Phase(f"{net}main", net, main))
        for every in sorted({t.every for t in mine if t.every > 1}):
            phases.append(Phase(f"{net}reg{every}", net, [t for t in mine if t.every == every], every))
    return phases


def lazy_ratio(phases: list[Phase], net: str) -> float:
    """Adam rescaling factor for `net` given its lazy phases."""
    return 1.0 / (1.0 + sum(1.0 / p.every for p in phases if p.net == net and p.every > 1))


def make_optimizer(params, lr: float, betas: tuple[float, float], eps: float, ratio: float) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=lr * ratio, betas=(betas[0] ** ratio, betas[1] ** ratio), eps=eps)


# learning-rate multiplier as a function of progress t in [0, 1] after the decay starts
LR_SCHEDULES = {
    "none": lambda t: 1.0,
    "linear": lambda t: 1.0 - t,
    "cosine": lambda t: 0.5 * (1.0 + math.cos(math.pi * t)),
}


def lr_multiplier(schedule: str, step: int, total: int, start: float = 0.0) -> float:
    """Multiplier for `step` of `total` (a pure function of the step, so resumed runs match)."""
    begin = start * total
    if step < begin or total <= begin:
        return 1.0
    return LR_SCHEDULES[schedule]((step - begin) / (total - begin))


def set_lr(opt: torch.optim.Optimizer, multiplier: float) -> None:
    for group in opt.param_groups:
        group.setdefault("base_lr", group["lr"])
        group["lr"] = group["base_lr"] * multiplier

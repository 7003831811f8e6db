"""How much a latent direction changes what a classifier sees: the measured side of the unsupervised explorers.

For SeFa, GANSpace and the Householder projector (which find directions without labels), an attribute classifier
(`explore/attributes.py`: digits, shapes or a user module) scores images before and after moving n seeded codes by
+-`distance` along each unit direction; the change per unit step of every attribute is its total variation
0.5 ||p' - p||_1 (or |s' - s| for a score) divided by the step. The same is measured along `random` unit directions
drawn from a fixed seed, the baseline a direction must beat to be called semantic.
"""
from __future__ import annotations

from typing import Any

import torch

from ..checks import check_int
from .attributes import attribute_scorer, check_classifier
from .interfacegan import per_unit_change, render_codes, sample_codes


def direction_effects(G: torch.nn.Module, directions: torch.Tensor, space: str, classifier: str, *, n: int,
                      seed: int, device: str, distance: float = 1.0, random: int = 8, module: Any = None,
                      attributes: dict[str, int] | None = None) -> dict[str, Any]:
    """Attribute change per unit step along each direction (rows) and along `random` random unit directions."""
    scorer = attribute_scorer(classifier, G, module=module, attributes=attributes, device=device)
    codes, y = sample_codes(G, n, seed + 7, space, device)
    attrs = list(scorer.attributes)
    alphas = torch.tensor([-distance, distance])

    def render(c: torch.Tensor) -> torch.Tensor:
        return render_codes(G, c, y, space, device)

    def effect(d: torch.Tensor) -> dict[str, float]:
        d = d.float() / d.float().norm().clamp_min(1e-12)
        change = per_unit_change(scorer, render, codes, d, alphas, [], attrs)
        return {a: change[f"{a} (total variation)"] for a in attrs}

    top = [effect(d) for d in directions]
    g = torch.Generator().manual_seed(seed + 11)
    rand = [effect(torch.randn(directions.shape[1], generator=g)) for _ in range(random)]
    best = [max(e.values()) for e in top]
    rand_best = torch.tensor([max(e.values()) for e in rand])
    return {"classifier": classifier, "n": n, "distance": distance,
            "directions": [{"attribute": max(e, key=e.get), "change": e} for e in top],
            "random": {a: {"mean": float(torch.tensor([e[a] for e in rand]).mean()),
                           "std": float(torch.tensor([e[a] for e in rand]).std()) if random > 1 else 0.0}
                       for a in attrs},
            "best_change_mean": sum(best) / len(best), "random_best_change_mean": float(rand_best.mean()),
            "random_best_change_std": float(rand_best.std()) if random > 1 else 0.0}


class MeasuresDirections:
    """Mixin of the unsupervised explorers: options classifier / measure_n / module / attributes, and `measure`."""

    classifier: str | None = None

    def measure_options(self, classifier: str | None, measure_n: int, module: Any, attributes: dict | None) -> None:
        where = f"explore {self.name}" if getattr(self, "name", "explorer") != "explorer" else "explore"
        self.classifier = None if classifier is None else check_classifier(classifier, f"{where}: classifier")
        self.measure_n = check_int(measure_n, f"{where}: measure_n", minimum=1)
        self.module, self.attributes = module, attributes

    def measure(self, G: torch.nn.Module, dirs: torch.Tensor, space: str, seed: int, device: str) -> dict[str, Any]:
        """{"attribute_change": direction_effects(...)} when a classifier was given, else {}."""
        if self.classifier is None:
            return {}
        return {"attribute_change": direction_effects(G, dirs, space, self.classifier, n=self.measure_n, seed=seed,
                                                      device=device, module=self.module, attributes=self.attributes)}

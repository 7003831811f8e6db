"""Drawing samples from a generator in batches, reproducibly from a seed."""
from __future__ import annotations

from typing import Iterator

import torch

from .training.rng import generator


def latents(G: torch.nn.Module, n: int, seed: int, labels: int | torch.Tensor | None = None,
            truncation: float | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """n latents (and labels, for conditional G) from `seed`; `labels` an int fixes the class."""
    gen = generator(seed, "sample")
    z = G.sample_z(n, generator=gen, truncation=truncation)
    if G.num_classes <= 0:
        return z, None
    if labels is None:
        y = torch.randint(0, G.num_classes, (n,), generator=gen)
    elif isinstance(labels, int):
        y = torch.full((n,), labels, dtype=torch.long)
    else:
        y = labels.long()
    if int(y.min()) < 0 or int(y.max()) >= G.num_classes:
        raise ValueError(f"class labels must lie in [0, {G.num_classes - 1}]")
    return z, y


@torch.no_grad()
def generate_batches(G: torch.nn.Module, n: int, seed: int = 0, batch_size: int = 256,
                     labels: int | torch.Tensor | None = None, truncation: float | None = None,
                     device: torch.device | str | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """Yield (model-space samples on CPU, labels) batches; samples depend only on (seed, index), not batch size."""
    device = device or next(G.parameters()).device
    z, y = latents(G, n, seed, labels, truncation)
    for i in range(0, n, batch_size):
        yb = None if y is None else y[i: i + batch_size]
        x = G(z[i: i + batch_size].to(device), None if yb is None else yb.to(device))
        yield x.float().cpu(), yb


def generate(G: torch.nn.Module, n: int, **kwargs) -> torch.Tensor:
    """n model-space samples (CPU tensor)."""
    return torch.cat([x for x, _ in generate_batches(G, n, **kwargs)])

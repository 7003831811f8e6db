"""Drawing samples from a generator in batches, reproducibly from a seed.

Arguments are checked here, before any sample is drawn, with one-line errors naming them (`n`, `seed`, `batch_size`,
`labels`, `truncation`), since the API's `generate(G, n)` is where a user's values enter.

`sampler=` draws through a sampling-time method that uses D (`ganforge list samplers`: ddls, drs, logan; see
`ganforge.samplers`), with `D=` the discriminator (default: the one exported next to an exported G). A generator bound
to a sampler (`samplers.SampledGenerator`) draws through it too. Without one, sampling is plain G sampling.
"""
from __future__ import annotations

from typing import Iterator

import torch

from .checks import check_int, describe, is_int
from .errors import GanforgeError
from .training.rng import generator


def check_labels(G: torch.nn.Module, n: int, labels: int | torch.Tensor | None) -> torch.Tensor | None:
    """`labels` as n int64 class labels in [0, K-1] (None: none given), or a one-line error. For a text-conditional
    G, `labels` are the (n, text_dim) sentence embeddings, which must be given."""
    text_dim = int(getattr(G, "text_dim", 0) or 0)
    if text_dim > 0:
        if labels is None and getattr(G, "sample_condition", None) is not None:
            return None  # captions of random training images (`latents` draws them)
        if not isinstance(labels, torch.Tensor) or not labels.is_floating_point() \
                or tuple(labels.shape) != (n, text_dim):
            raise GanforgeError(f"labels: this generator is text-conditional; pass sentence embeddings of shape "
                                f"({n}, {text_dim}) (`ganforge sample RUN --text ...` encodes captions), got "
                                f"{describe(labels)}")
        return labels.float().cpu()
    k = getattr(G, "num_classes", 0) or 0
    if labels is None:
        return None
    if k <= 0:
        raise GanforgeError(f"labels: this generator is unconditional (num_classes=0); pass labels=None, got "
                            f"{describe(labels)}")
    if is_int(labels):
        if not 0 <= labels < k:
            raise GanforgeError(f"labels: class labels must lie in [0, {k - 1}], got {labels}")
        return torch.full((n,), int(labels), dtype=torch.long)
    if not isinstance(labels, torch.Tensor) or labels.is_floating_point() or labels.is_complex() \
            or labels.dtype == torch.bool:
        raise GanforgeError(f"labels: expected an int or an integer tensor of class labels in [0, {k - 1}], got "
                            f"{describe(labels)}")
    if tuple(labels.shape) != (n,):
        raise GanforgeError(f"labels: expected one label per sample, shape ({n},), got {tuple(labels.shape)}")
    y = labels.long().cpu()
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= k:
        raise GanforgeError(f"labels: class labels must lie in [0, {k - 1}], got values in [{lo}, {hi}]")
    return y


def latents(G: torch.nn.Module, n: int, seed: int, labels: int | torch.Tensor | None = None,
            truncation: float | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """n latents (and labels, for conditional G) from `seed`; `labels` an int fixes the class."""
    n = check_int(n, "n", minimum=1)
    seed = check_int(seed, "seed")
    y = check_labels(G, n, labels)
    gen = generator(seed, "sample")
    z = G.sample_z(n, generator=gen, truncation=truncation)
    if y is not None and y.is_floating_point():  # sentence embeddings of a text-conditional G
        return z, y
    if y is None and int(getattr(G, "text_dim", 0) or 0) > 0:  # no captions given: those of random training images
        return z, G.sample_condition(n, gen)
    if G.num_classes <= 0:
        return z, None
    if y is None:
        y = torch.randint(0, G.num_classes, (n,), generator=gen)
    return z, y


def generate_batches(G: torch.nn.Module, n: int, seed: int = 0, batch_size: int = 256,
                     labels: int | torch.Tensor | None = None, truncation: float | None = None,
                     device: torch.device | str | None = None, sampler=None, D=None, data=None
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """Yield (model-space samples on CPU, labels) batches; plain samples depend only on (seed, index), not batch size.

    The arguments are checked (and the latents drawn) when this is called, not at the first batch. `sampler`: a
    sampler spec ("ddls:steps=100", {"name": "drs"}, a Sampler; None / "none": plain sampling) drawing with `D` (a
    module or export path; None: the one exported next to G) and, for calibration, `data` (see ganforge.samplers).
    """
    if sampler is not None or not isinstance(G, torch.nn.Module):  # a sampler asked for, or G already bound to one
        from .samplers.base import SampledGenerator, bind

        G = bind(G, sampler, D, device, data)
        if isinstance(G, SampledGenerator):
            return G.generate_batches(n, seed=seed, batch_size=batch_size, labels=labels, truncation=truncation,
                                      device=device)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    if device is None:
        param = next(iter(G.parameters()), None)
        device = param.device if param is not None else "cpu"
    z, y = latents(G, n, seed, labels, truncation)
    return _batches(G, z, y, batch_size, device)


@torch.no_grad()
def _batches(G: torch.nn.Module, z: torch.Tensor, y: torch.Tensor | None, batch_size: int,
             device: torch.device | str) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    for i in range(0, len(z), batch_size):
        yb = None if y is None else y[i: i + batch_size]
        x = G(z[i: i + batch_size].to(device), None if yb is None else yb.to(device))
        yield x.float().cpu(), yb


def generate(G: torch.nn.Module, n: int, **kwargs) -> torch.Tensor:
    """n model-space samples (CPU tensor)."""
    return torch.cat([x for x, _ in generate_batches(G, n, **kwargs)])

"""Weight initialization schemes, chosen by name.

The choices GAN codebases such as StudioGAN offer:
- `ortho`: orthogonal ("Exact solutions to the nonlinear dynamics of learning in deep linear networks", Saxe et al.,
  2014; BigGAN's default);
- `normal`: N(0, 0.02) ("Unsupervised Representation Learning with Deep Convolutional GANs", Radford et al., 2016);
- `xavier`: Glorot uniform ("Understanding the difficulty of training deep feedforward neural networks", Glorot &
  Bengio, 2010);
- `default`: keep PyTorch's initialization.
Schemes touch weight layers (Linear, Conv, ConvTranspose, Embedding) but not norm layers that take labels: those own
their initialization (e.g. cBN's gamma = 1). Apply before `maybe_sn`, so spectral norm's power iteration starts from
the final weights.
"""
from __future__ import annotations

from typing import Callable, Iterator

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..errors import GanforgeError
from .norms import LabelNorm

WEIGHT_LAYERS: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d, nn.Embedding)


def weight_layers(module: nn.Module) -> Iterator[nn.Module]:
    """`module` itself if it is a weight layer, else every weight layer inside it, skipping `LabelNorm` subtrees."""
    if isinstance(module, WEIGHT_LAYERS):
        yield module
    elif not isinstance(module, LabelNorm):
        for child in module.children():
            yield from weight_layers(child)


def raw_weight(layer: nn.Module) -> torch.Tensor:
    """The stored weight: the parametrization's original when the layer is parametrized (e.g. spectral norm)."""
    if parametrize.is_parametrized(layer, "weight"):
        return layer.parametrizations.weight.original
    return layer.weight


def _on_weight(fn: Callable[[torch.Tensor], object]) -> Callable[[nn.Module], None]:
    """A scheme that applies `fn` to the weight and zeroes the bias."""

    def scheme(layer: nn.Module) -> None:
        fn(raw_weight(layer))
        if getattr(layer, "bias", None) is not None:
            nn.init.zeros_(layer.bias)

    return scheme


def _keep(layer: nn.Module) -> None:
    """PyTorch's default initialization: nothing to do."""


INIT_SCHEMES: dict[str, Callable[[nn.Module], None]] = {
    "ortho": _on_weight(nn.init.orthogonal_),
    "normal": _on_weight(lambda w: nn.init.normal_(w, mean=0.0, std=0.02)),  # DCGAN, Radford et al. 2016, Sec. 4
    "xavier": _on_weight(nn.init.xavier_uniform_),
    "default": _keep,
}


def init_weights(module: nn.Module, scheme: str, where: str = "init") -> nn.Module:
    """Initialize every weight layer of `module` with the named scheme; returns `module`.

    Args:
        module: a layer or a network.
        scheme: one of `INIT_SCHEMES` (ortho, normal, xavier, default).
        where: config key named in the error for an unknown scheme.
    """
    if scheme not in INIT_SCHEMES:
        raise GanforgeError(f"{where}: unknown init scheme {scheme!r}; choose one of: {', '.join(sorted(INIT_SCHEMES))}")
    apply = INIT_SCHEMES[scheme]
    with torch.no_grad():
        for layer in weight_layers(module):
            apply(layer)
    return module

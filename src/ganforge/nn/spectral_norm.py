"""Spectral normalization of weight layers.

"Spectral Normalization for Generative Adversarial Networks" (Miyato et al., 2018): each weight W is replaced by
W / sigma(W), sigma the largest singular value, estimated by one power-iteration step per training forward pass
(Algorithm 1), which makes each layer 1-Lipschitz. Built on PyTorch's parametrization: the stored weight is
`layer.parametrizations.weight.original`; `layer.weight` is the normalized one.
"""
from __future__ import annotations

from typing import TypeVar

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from .init import weight_layers

M = TypeVar("M", bound=nn.Module)


def maybe_sn(module: M, enabled: bool = True, n_power_iterations: int = 1, eps: float = 1e-12) -> M:
    """Spectral-normalize `module` (a weight layer) or every weight layer inside it when `enabled`; returns it.

    Norm layers that take labels (`LabelNorm`) are left alone. Layers already parametrized are skipped.
    """
    if not enabled:
        return module
    for layer in weight_layers(module):
        if not parametrize.is_parametrized(layer, "weight"):
            spectral_norm(layer, n_power_iterations=n_power_iterations, eps=eps)
    return module


def has_sn(layer: nn.Module) -> bool:
    """Whether `layer.weight` is parametrized (by `maybe_sn`)."""
    return parametrize.is_parametrized(layer, "weight")


def top_singular_value(layer: nn.Module) -> torch.Tensor:
    """Largest singular value of the layer's (effective) weight as a matrix, the quantity SN divides by (Eq. 7).

    Conv weights are reshaped to (out, in*k*k); ConvTranspose weights (in, out, k, k) to (out, in*k*k), as SN does.
    """
    w = layer.weight.detach()
    if isinstance(layer, nn.ConvTranspose2d):
        w = w.transpose(0, 1)
    return torch.linalg.matrix_norm(w.flatten(1), ord=2)

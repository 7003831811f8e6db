"""Spectral normalization of weight layers.

"Spectral Normalization for Generative Adversarial Networks" (Miyato et al., 2018): each weight W is replaced by
W / sigma(W), sigma the largest singular value estimated by power iteration, which makes each layer 1-Lipschitz.
Algorithm 1 of the paper runs one power-iteration step per *update* of the network. Stand-alone layers here behave
like PyTorch's `spectral_norm` (a step at every training-mode forward); the trainer switches them to the paper's
schedule (`manual_power_iteration`) and calls `power_iterate` once before each optimizer step of the network, so the
estimate does not depend on how many times D runs per step (R1's extra pass, gradient accumulation, ranks).

Built on PyTorch's parametrization, with the buffers PyTorch's own spectral norm uses (`_u`, `_v`): the stored weight
is `layer.parametrizations.weight.original`; `layer.weight` is the normalized one. sigma is computed in float32 even
under autocast.
"""
from __future__ import annotations

from typing import Iterator, TypeVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from .init import weight_layers

M = TypeVar("M", bound=nn.Module)


class SpectralNorm(nn.Module):
    """Parametrization W -> W / sigma(W) with power-iteration vectors u (rows) and v (columns) as buffers."""

    def __init__(self, weight: torch.Tensor, n_power_iterations: int = 1, dim: int = 0, eps: float = 1e-12):
        super().__init__()
        if n_power_iterations < 1:
            raise ValueError(f"spectral norm: n_power_iterations must be >= 1, got {n_power_iterations}")
        self.dim, self.eps, self.n_power_iterations = dim, eps, n_power_iterations
        self.auto = True  # power step at every training-mode forward (PyTorch's behaviour) until made manual
        if weight.ndim > 1:
            mat = self._matrix(weight.detach())
            h, w = mat.shape
            self.register_buffer("_u", F.normalize(mat.new_empty(h).normal_(0, 1), dim=0, eps=eps))
            self.register_buffer("_v", F.normalize(mat.new_empty(w).normal_(0, 1), dim=0, eps=eps))
            self._power_method(mat, 15)  # start from a converged estimate, as PyTorch does

    def _matrix(self, weight: torch.Tensor) -> torch.Tensor:
        """W as a matrix (out, in*k*k), with `dim` as the rows (1 for ConvTranspose)."""
        if self.dim != 0:
            weight = weight.movedim(self.dim, 0)
        return weight.flatten(1).float()

    @torch.no_grad()
    def _power_method(self, mat: torch.Tensor, steps: int) -> None:
        for _ in range(steps):  # Algorithm 1: v <- W^T u / ||W^T u||, u <- W v / ||W v||
            self._v.copy_(F.normalize(torch.mv(mat.t(), self._u), dim=0, eps=self.eps))
            self._u.copy_(F.normalize(torch.mv(mat, self._v), dim=0, eps=self.eps))

    def step(self, weight: torch.Tensor) -> None:
        """One power-iteration update from the raw (unnormalized) weight."""
        if weight.ndim > 1:
            with torch.autocast(device_type=weight.device.type, enabled=False):
                self._power_method(self._matrix(weight.detach()), self.n_power_iterations)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if weight.ndim == 1:
            return F.normalize(weight, dim=0, eps=self.eps)
        with torch.autocast(device_type=weight.device.type, enabled=False):
            mat = self._matrix(weight)
            if self.training and self.auto:
                self._power_method(mat.detach(), self.n_power_iterations)
            u, v = self._u.clone(), self._v.clone()  # clones: autograd must not see the in-place updates
            sigma = torch.dot(u, torch.mv(mat, v))  # Eq. (7): sigma(W) ~ u^T W v
            return weight / sigma.to(weight.dtype)


def maybe_sn(module: M, enabled: bool = True, n_power_iterations: int = 1, eps: float = 1e-12) -> M:
    """Spectral-normalize `module` (a weight layer) or every weight layer inside it when `enabled`; returns it.

    Norm layers that take labels (`LabelNorm`) are left alone. Layers already parametrized are skipped.
    """
    if not enabled:
        return module
    for layer in weight_layers(module):
        if not parametrize.is_parametrized(layer, "weight"):
            dim = 1 if isinstance(layer, nn.ConvTranspose2d) else 0
            parametrize.register_parametrization(layer, "weight",
                                                 SpectralNorm(layer.weight, n_power_iterations, dim, eps))
    return module


def has_sn(layer: nn.Module) -> bool:
    """Whether `layer.weight` is parametrized (by `maybe_sn`)."""
    return parametrize.is_parametrized(layer, "weight")


def _sn_pairs(module: nn.Module) -> Iterator[tuple[SpectralNorm, torch.Tensor]]:
    for layer in module.modules():
        if parametrize.is_parametrized(layer, "weight"):
            plist = layer.parametrizations.weight
            for p in plist:
                if isinstance(p, SpectralNorm):
                    yield p, plist.original


def manual_power_iteration(module: nn.Module) -> int:
    """Stop the per-forward power steps of every spectral norm in `module` (see `power_iterate`); returns the count."""
    count = 0
    for sn, _ in _sn_pairs(module):
        sn.auto = False
        count += 1
    return count


def power_iterate(module: nn.Module) -> None:
    """One power-iteration step for every spectral norm in `module` (call once per optimizer update)."""
    for sn, weight in _sn_pairs(module):
        sn.step(weight)


def top_singular_value(layer: nn.Module) -> torch.Tensor:
    """Largest singular value of the layer's (effective) weight as a matrix, the quantity SN divides by (Eq. 7).

    Conv weights are reshaped to (out, in*k*k); ConvTranspose weights (in, out, k, k) to (out, in*k*k), as SN does.
    """
    w = layer.weight.detach()
    if isinstance(layer, nn.ConvTranspose2d):
        w = w.transpose(0, 1)
    return torch.linalg.matrix_norm(w.flatten(1), ord=2)

"""Hand-made networks whose outputs and gradients are known in closed form, shared by the objective tests."""
from __future__ import annotations

import torch
from torch import nn

from ganforge.conditioning.base import DOutput


class FnD(nn.Module):
    """D(x) = fn(self, x) as a DOutput, with named scalar parameters `p`; counts its calls."""

    def __init__(self, fn, **params: float):
        super().__init__()
        self.fn = fn
        self.p = nn.ParameterDict({k: nn.Parameter(torch.tensor(v)) for k, v in params.items()})
        self.calls = 0

    def forward(self, x, y=None):
        self.calls += 1
        return DOutput(adv=self.fn(self, x))


class ScaleG(nn.Module):
    """G(z) = w * z with one parameter w (w = 1: the identity)."""

    def __init__(self, w: float = 1.0):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w))

    def forward(self, z, y=None):
        return self.w * z

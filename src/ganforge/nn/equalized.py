"""Equalized learning rate: weights stored as N(0, 1) / lr_mul and scaled at run time.

Karras et al., "Progressive Growing of GANs for Improved Quality, Stability, and Variation", 2018 (Sec. 4.1): with
w_hat = w * c, c = 1 / sqrt(fan_in) applied in every forward pass (not folded into the init), every weight moves at
the same relative speed under Adam, whatever its layer's fan-in. StyleGAN ("A Style-Based Generator Architecture for
GANs", Karras et al., 2019, Sec. 2 / Appendix C) adds a learning-rate multiplier lr_mul (0.01 in the mapping network):
the stored parameter is N(0, 1) / lr_mul and the effective weight is param * lr_mul / sqrt(fan_in), so the effective
weight starts as N(0, 1/fan_in) but its updates shrink by lr_mul. The bias is stored as bias_init / lr_mul and used as
param * lr_mul (StyleGAN3's convention: the effective bias starts at `bias_init`; stylegan2-ada-pytorch stores
bias_init itself, which differs only when both bias_init != 0 and lr_mul != 1, a case it never builds).
Both layers keep the name `weight` for their stored parameter, so analyses that probe weight layers find them.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GanforgeError
from .resample import conv2d_down, fir_filter


def _check(where: str, **values: float) -> None:
    """One-line errors for non-positive sizes or multipliers."""
    for key, value in values.items():
        if not value > 0:
            raise GanforgeError(f"{where}: {key} must be > 0, got {value}")


class EqualizedLinear(nn.Module):
    """y = x (param * lr_mul / sqrt(in))^T + bias_param * lr_mul; the stored weight is N(0, 1) / lr_mul."""

    def __init__(self, in_features: int, out_features: int, *, bias: bool = True, bias_init: float = 0.0,
                 lr_mul: float = 1.0):
        super().__init__()
        _check("EqualizedLinear", in_features=in_features, out_features=out_features, lr_mul=lr_mul)
        self.in_features, self.out_features, self.lr_mul = in_features, out_features, float(lr_mul)
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), bias_init / lr_mul)) if bias else None
        self.weight_gain = lr_mul / math.sqrt(in_features)  # runtime scale (equalized lr)

    def effective_weight(self) -> torch.Tensor:
        """The weight the layer applies: param * lr_mul / sqrt(fan_in)."""
        return self.weight * self.weight_gain

    def effective_bias(self) -> torch.Tensor | None:
        return None if self.bias is None else self.bias * self.lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.effective_weight(), self.effective_bias())  # (B, out)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, lr_mul={self.lr_mul}"


class EqualizedConv2d(nn.Module):
    """Conv with weight param * lr_mul / sqrt(in * k * k), 'same' padding; `down=2` filters with [1,3,3,1] first.

    The downsampling variant follows stylegan2-ada's conv2d_resample: FIR low-pass, then a stride-2 convolution
    (`nn/resample.py`), so the output is exactly half the input size.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, bias: bool = True,
                 lr_mul: float = 1.0, down: int = 1):
        super().__init__()
        _check("EqualizedConv2d", in_channels=in_channels, out_channels=out_channels, kernel_size=kernel_size,
               lr_mul=lr_mul)
        if down not in (1, 2):
            raise GanforgeError(f"EqualizedConv2d: down must be 1 or 2, got {down}")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.lr_mul, self.down, self.padding = float(lr_mul), down, kernel_size // 2
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size) / lr_mul)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = lr_mul / math.sqrt(in_channels * kernel_size * kernel_size)
        if down > 1:
            self.register_buffer("resample_filter", fir_filter(), persistent=False)

    def effective_weight(self) -> torch.Tensor:
        """The kernel the layer applies: param * lr_mul / sqrt(fan_in)."""
        return self.weight * self.weight_gain

    def effective_bias(self) -> torch.Tensor | None:
        return None if self.bias is None else self.bias * self.lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.effective_weight(), self.effective_bias()
        if self.down == 1:
            return F.conv2d(x, w.to(x.dtype), None if b is None else b.to(x.dtype), padding=self.padding)
        x = conv2d_down(x, w.to(x.dtype), self.resample_filter, padding=self.padding)  # (B, out, H/2, W/2)
        return x if b is None else x + b.to(x.dtype).view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, lr_mul={self.lr_mul}, "
                f"down={self.down}")

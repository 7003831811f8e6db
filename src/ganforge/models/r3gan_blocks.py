"""Layers of R3GAN ("The GAN is dead; long live the GAN! A Modern GAN Baseline", Huang et al., NeurIPS 2024, Sec. 3-4).

Everything here is plain torch: no normalization layers, no custom kernels, and every op has a double backward (R1 and
R2 differentiate D's input gradient).
- `msr_init`: He / MSR init N(0, gain^2 / fan_in), zero biases (He et al., "Delving Deep into Rectifiers", 2015).
- `BiasedLeakyReLU`: a per-channel bias added *before* LeakyReLU(0.2); the convolutions themselves have no bias.
- `ResidualBlock`: ResNeXt-style inverted bottleneck (Sec. 4, "Stage 3/4"): 1x1 expand -> grouped 3x3 -> 1x1 back,
  biased LeakyReLU after the first two. Fix-up initialization (Zhang et al., "Fixup Initialization", 2019), as the
  paper's code: the first two convs use gain g = lrelu_gain * L^(-1/(2m-2)) with L the network's number of blocks and
  m = 3 linear layers per block, the last conv is zero, so every block is the identity at init.
- `Resample2d`: the paper's [1, 2, 1] low-pass filter convolved with the [1, 1] box, i.e. [1, 3, 3, 1] / 8 per axis,
  separable and normalized. Upsampling inserts zeros and filters (gain 4, so a constant stays constant: bilinear
  interpolation with half-pixel centers, out_j = (x_{i-1} + 3 x_i) / 4 at j = 2i); downsampling filters and keeps every
  other sample (out_i = (x_{2i-1} + 3 x_{2i} + 3 x_{2i+1} + x_{2i+2}) / 8). Zero padding at the borders.
- `GenerativeBasis` (G's input): a learned (C, h, w) tensor scaled per channel by a linear map of G's input vector.
- `DiscriminativeBasis` (D's output): a (h, w) depthwise conv over the last feature map, then a linear layer.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0 / (1.0 + LRELU_SLOPE ** 2))  # keeps the second moment of LeakyReLU(0.2) inputs (He 2015)
LAYERS_PER_BLOCK = 3  # m in the fix-up gain L^(-1/(2m-2))


def fixup_gain(total_blocks: int) -> float:
    """Init gain of a block's first two convs: lrelu_gain * L^(-1/(2m-2)) with m = 3, i.e. lrelu_gain * L^(-1/4)."""
    return LRELU_GAIN * total_blocks ** (-1.0 / (2 * LAYERS_PER_BLOCK - 2))


def msr_init(layer: nn.Conv2d | nn.Linear, gain: float = 1.0) -> nn.Module:
    """He / MSR init: weight ~ N(0, gain^2 / fan_in) (fan_in = input channels per group x kernel area); bias 0."""
    fan_in = layer.weight[0].numel()
    with torch.no_grad():
        layer.weight.normal_(0.0, gain / math.sqrt(fan_in))
        if layer.bias is not None:
            layer.bias.zero_()
    return layer


def conv(c_in: int, c_out: int, kernel: int = 1, groups: int = 1, gain: float = 1.0) -> nn.Conv2d:
    """A bias-free 'same' convolution with MSR init (R3GAN's biases live in the activations)."""
    return msr_init(nn.Conv2d(c_in, c_out, kernel, padding=(kernel - 1) // 2, groups=groups, bias=False), gain)


class BiasedLeakyReLU(nn.Module):
    """LeakyReLU(0.2)(x + b): a learned per-channel bias (zero at init) applied before the activation."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x + self.bias.to(x.dtype).view(1, -1, 1, 1), LRELU_SLOPE)


class ResidualBlock(nn.Module):
    """x + conv3(act(conv2(act(conv1(x))))): 1x1 expand -> grouped 3x3 -> 1x1 back; identity at init (conv3 = 0)."""

    def __init__(self, channels: int, expansion: int, group_width: int, total_blocks: int):
        super().__init__()
        wide = channels * expansion
        self.groups = wide // min(group_width, wide)  # ResNeXt cardinality; a layer narrower than a group is dense
        gain = fixup_gain(total_blocks)
        self.conv1 = conv(channels, wide, 1, gain=gain)
        self.act1 = BiasedLeakyReLU(wide)
        self.conv2 = conv(wide, wide, 3, groups=self.groups, gain=gain)
        self.act2 = BiasedLeakyReLU(wide)
        self.conv3 = conv(wide, channels, 1, gain=0.0)  # zero: the block starts as the identity (fix-up)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv3(self.act2(self.conv2(self.act1(self.conv1(x)))))


def lowpass_kernel() -> torch.Tensor:
    """The 4x4 separable kernel outer(f, f) with f = [1, 2, 1] * [1, 1] = [1, 3, 3, 1], normalized to sum 1."""
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = torch.outer(f, f)
    return k / k.sum()


class Resample2d(nn.Module):
    """2x up- or downsampling of every channel with the [1, 3, 3, 1] low-pass filter (a depthwise conv)."""

    def __init__(self, channels: int, up: bool):
        super().__init__()
        self.up = up
        kernel = lowpass_kernel() * (4.0 if up else 1.0)  # upsampling: 3 of 4 samples are inserted zeros
        # A constant of the architecture, rebuilt by the constructor: not saved with the weights.
        self.register_buffer("kernel", kernel.expand(channels, 1, 4, 4).contiguous(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel.to(x.dtype)
        if self.up:  # zero insertion + filter: (H, W) -> (2H, 2W)
            return F.conv_transpose2d(x, k, stride=2, padding=1, groups=x.shape[1])
        return F.conv2d(x, k, stride=2, padding=1, groups=x.shape[1])  # filter + decimate: (H, W) -> (H/2, W/2)


class UpTransition(nn.Sequential):
    """G's stage transition: 1x1 conv when the width changes (at the coarse side, where it is cheaper), then 2x up."""

    def __init__(self, c_in: int, c_out: int):
        layers = [conv(c_in, c_out, 1)] if c_in != c_out else []
        super().__init__(*layers, Resample2d(c_out, up=True))


class DownTransition(nn.Sequential):
    """D's stage transition: 2x down, then a 1x1 conv when the width changes."""

    def __init__(self, c_in: int, c_out: int):
        layers = [conv(c_in, c_out, 1)] if c_in != c_out else []
        super().__init__(Resample2d(c_in, up=False), *layers)


class GenerativeBasis(nn.Module):
    """G's input layer: a learned basis B (C, h, w), N(0, 1) at init, scaled per channel by Linear(v) (no bias)."""

    def __init__(self, in_features: int, channels: int, base: tuple[int, int]):
        super().__init__()
        self.basis = nn.Parameter(torch.randn(channels, *base))
        self.linear = msr_init(nn.Linear(in_features, channels, bias=False))

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.basis.unsqueeze(0) * self.linear(v)[:, :, None, None]  # (B, C, h, w)


class DiscriminativeBasis(nn.Module):
    """D's output layer: a depthwise conv with one (h, w) kernel per channel (the transpose of G's basis), then a
    bias-free linear layer: (B, C, h, w) -> (B, features)."""

    def __init__(self, channels: int, base: tuple[int, int], features: int):
        super().__init__()
        self.basis = msr_init(nn.Conv2d(channels, channels, base, groups=channels, bias=False))
        self.linear = msr_init(nn.Linear(channels, features, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.basis(x).flatten(1))  # (B, features)

"""StyleGAN2's layers: mapping MLP, modulated convolution, noise inputs, ToRGB, synthesis blocks, D blocks, mbstd.

Karras et al., "Analyzing and Improving the Image Quality of StyleGAN", CVPR 2020 (StyleGAN2), with the details of
the authors' stylegan2-ada-pytorch (`training/networks.py`), written here in plain torch ops:
- modulation w'_ijk = s_i w_ijk (Eq. 1), demodulation w''_ijk = w'_ijk / sqrt(sum_{i,k} w'_ijk^2 + 1e-8) (Eq. 3),
  computed the "non-fused" way (scale the input by s, shared convolution, scale the output by the demodulation
  coefficient), which is the same function as convolving each sample with its own w'' (Sec. 2.2);
- styles s = A(w) with A an equalized-lr affine whose bias starts at 1; ToRGB is a modulated 1x1 conv without
  demodulation, its style scaled by 1 / sqrt(fan_in);
- noise (StyleGAN, Sec. 2 and 3.2): a single-channel N(0, 1) map per layer, times a learned strength that starts at 0;
- activations: bias, leaky ReLU(0.2), times sqrt(2) (the gain that keeps unit second moments), optional clamp;
- D: residual blocks (Fig. 7c) with gain sqrt(0.5) on both paths, or the plain 'orig' blocks; minibatch standard
  deviation (Karras et al. 2018, Sec. 3) as an extra channel; then conv + FC to the features.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..nn.equalized import EqualizedConv2d, EqualizedLinear
from ..nn.resample import conv2d_up, fir_filter, upsample2d

SQRT2 = math.sqrt(2.0)
NOISE_MODES = ("random", "const", "none")


def bias_act(x: torch.Tensor, bias: torch.Tensor | None = None, *, gain: float = SQRT2, clamp: float | None = None,
             linear: bool = False) -> torch.Tensor:
    """x + bias -> leaky ReLU(0.2) (unless linear) -> x gain -> clamp to [-clamp, clamp] (stylegan2-ada's bias_act)."""
    if bias is not None:
        x = x + bias.to(x.dtype).view(1, -1, *([1] * (x.ndim - 2)))
    if not linear:
        x = F.leaky_relu(x, 0.2)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """x / sqrt(mean(x^2) + eps) per row: the mapping network's input normalization."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def modulated_weight(weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True,
                     eps: float = 1e-8) -> torch.Tensor:
    """Each sample's kernel (B, O, I, k, k): w' = s_i w (Eq. 1), divided by ||w'_o|| when demodulating (Eq. 3)."""
    w = weight.unsqueeze(0) * styles[:, None, :, None, None]
    if demodulate:
        w = w * (w.square().sum(dim=(2, 3, 4), keepdim=True) + eps).rsqrt()
    return w


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, *, demodulate: bool = True,
                     up: bool = False, resample_filter: torch.Tensor | None = None, eps: float = 1e-8) -> torch.Tensor:
    """conv(x, modulated_weight(weight, styles)) per sample, computed as conv(x * s) * d with d the demodulation
    coefficient 1 / sqrt(sum_i s_i^2 sum_k w_oik^2 + eps); 'same' padding, or 2x up with the FIR filter."""
    weight = weight.to(x.dtype)
    styles = styles.to(x.dtype)
    padding = weight.shape[-1] // 2
    x = x * styles[:, :, None, None]  # (B, I, H, W)
    x = conv2d_up(x, weight, resample_filter, padding) if up else F.conv2d(x, weight, padding=padding)
    if demodulate:
        d = (styles.square() @ weight.square().sum(dim=(2, 3)).t() + eps).rsqrt()  # (B, O)
        x = x * d[:, :, None, None]
    return x


class MappingNetwork(nn.Module):
    """z (and the conditioning's extra columns, embedded) -> w: normalize, `layers` equalized FC + lrelu.

    As stylegan2-ada's conditional mapping: c is embedded by an FC to w_dim, z and embed(c) are 2nd-moment
    normalized separately and concatenated; the FC layers run at lr multiplier `lr_mul` (0.01).
    """

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, layers: int, lr_mul: float):
        super().__init__()
        self.embed = EqualizedLinear(c_dim, w_dim) if c_dim > 0 else None
        widths = [z_dim + (w_dim if c_dim > 0 else 0)] + [w_dim] * layers
        self.fcs = nn.ModuleList(EqualizedLinear(a, b, lr_mul=lr_mul) for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, z: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        x = normalize_2nd_moment(z)
        if self.embed is not None:
            x = torch.cat([x, normalize_2nd_moment(self.embed(c))], dim=1)  # (B, z_dim + w_dim)
        for fc in self.fcs:
            x = bias_act(fc(x))
        return x  # (B, w_dim)


class SynthesisLayer(nn.Module):
    """Modulated/demodulated 3x3 conv (optionally 2x up), + strength * noise, + bias, lrelu x sqrt(2)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, size: tuple[int, int], *, up: bool = False,
                 conv_clamp: float | None = None, kernel_size: int = 3):
        super().__init__()
        self.affine = EqualizedLinear(w_dim, in_channels, bias_init=1.0)  # s = A(w), starting around 1
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("noise_const", torch.randn(size))  # the fixed noise map of noise_mode const
        self.noise_strength = nn.Parameter(torch.zeros([]))  # 0 at init: noise starts switched off
        self.up, self.conv_clamp = up, conv_clamp
        self.register_buffer("resample_filter", fir_filter(), persistent=False)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        styles = self.affine(w)  # (B, in)
        x = modulated_conv2d(x, self.weight, styles, up=self.up, resample_filter=self.resample_filter)
        if noise_mode == "random":  # per sample, one channel, broadcast over the feature maps
            x = x + torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype) * self.noise_strength
        elif noise_mode == "const":
            x = x + self.noise_const.to(x.dtype) * self.noise_strength
        return bias_act(x, self.bias, clamp=self.conv_clamp)


class ToRGB(nn.Module):
    """Modulated 1x1 conv to image channels, not demodulated, style scaled by 1/sqrt(fan_in); + bias, linear."""

    def __init__(self, in_channels: int, img_channels: int, w_dim: int, conv_clamp: float | None = None):
        super().__init__()
        self.affine = EqualizedLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(img_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(img_channels))
        self.weight_gain = 1.0 / math.sqrt(in_channels)
        self.conv_clamp = conv_clamp

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False)
        return bias_act(x, self.bias, gain=1.0, clamp=self.conv_clamp, linear=True)


class SynthesisBlock(nn.Module):
    """One resolution of the skip generator (Fig. 7b): [const | up conv] -> conv -> ToRGB, added to the upsampled
    image so far. Reads num_conv + 1 ws; the ToRGB's w is shared with the next block's first conv."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, size: tuple[int, int], img_channels: int,
                 conv_clamp: float | None = None):
        super().__init__()
        self.first = in_channels == 0
        if self.first:
            self.const = nn.Parameter(torch.randn(out_channels, *size))  # the learned 4x4 input
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, size, up=True, conv_clamp=conv_clamp)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, size, conv_clamp=conv_clamp)
        self.torgb = ToRGB(out_channels, img_channels, w_dim, conv_clamp)
        self.num_conv = 1 if self.first else 2
        self.register_buffer("resample_filter", fir_filter(), persistent=False)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor,
                noise_mode: str) -> tuple[torch.Tensor, torch.Tensor]:
        w = ws.unbind(dim=1)  # num_conv + 1 vectors (B, w_dim)
        if self.first:
            x = self.const.unsqueeze(0).expand(ws.shape[0], *self.const.shape).to(ws.dtype)
        else:
            x = self.conv0(x, w[0], noise_mode)  # (B, C, 2H, 2W)
        x = self.conv1(x, w[self.num_conv - 1], noise_mode)
        y = self.torgb(x, w[self.num_conv])
        img = y if img is None else upsample2d(img, self.resample_filter).to(y.dtype) + y  # skip connections
        return x, img


class MinibatchStd(nn.Module):
    """Append the mean over features of the per-group std (sqrt(var + 1e-8)) as one extra channel.

    Groups of `group_size` samples (at most the batch; a batch not divisible by it uses its largest divisor below
    it, where the reference would fail); sample i belongs to group i mod (N / G), as in the reference's reshape.
    """

    def __init__(self, group_size: int):
        super().__init__()
        self.group_size = group_size

    def group(self, n: int) -> int:
        g = min(self.group_size, n)
        while n % g:
            g -= 1
        return g

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = self.group(n)
        y = x.reshape(g, -1, 1, c, h, w)  # (G, n/G, F=1, c, H, W)
        y = (y - y.mean(dim=0)).square().mean(dim=0)  # variance over the group
        y = (y + 1e-8).sqrt().mean(dim=(2, 3, 4))  # (n/G, 1): std, averaged over channels and pixels
        y = y.reshape(-1, 1, 1, 1).repeat(g, 1, h, w)  # (N, 1, H, W)
        return torch.cat([x, y.to(x.dtype)], dim=1)


class DBlock(nn.Module):
    """One D resolution: [fromRGB] -> conv3x3 -> conv3x3 down; 'resnet' adds a 1x1 down skip, both paths x sqrt(.5)."""

    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, img_channels: int,
                 architecture: str = "resnet", conv_clamp: float | None = None):
        super().__init__()
        self.fromrgb = EqualizedConv2d(img_channels, tmp_channels, 1) if in_channels == 0 else None
        self.conv0 = EqualizedConv2d(tmp_channels, tmp_channels, 3)
        self.conv1 = EqualizedConv2d(tmp_channels, out_channels, 3, down=2)
        self.skip = EqualizedConv2d(tmp_channels, out_channels, 1, bias=False, down=2) \
            if architecture == "resnet" else None
        self.conv_clamp = conv_clamp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fromrgb is not None:
            x = bias_act(self.fromrgb(x), clamp=self.conv_clamp)
        gain = math.sqrt(0.5) if self.skip is not None else 1.0  # residual gain
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain  # the reference scales the clamp too
        y = None if self.skip is None else bias_act(self.skip(x), gain=gain, clamp=clamp, linear=True)
        x = bias_act(self.conv0(x), clamp=self.conv_clamp)
        x = bias_act(self.conv1(x), gain=SQRT2 * gain, clamp=clamp)  # (B, out, H/2, W/2)
        return x if y is None else y + x


class DEpilogue(nn.Module):
    """At the base grid: minibatch std -> conv3x3 -> FC -> features (B, channels); the D head makes the logits."""

    def __init__(self, channels: int, size: tuple[int, int], mbstd_group: int, conv_clamp: float | None = None):
        super().__init__()
        self.mbstd = MinibatchStd(mbstd_group)
        self.conv = EqualizedConv2d(channels + 1, channels, 3)
        self.fc = EqualizedLinear(channels * size[0] * size[1], channels)
        self.conv_clamp = conv_clamp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = bias_act(self.conv(self.mbstd(x)), clamp=self.conv_clamp)
        return bias_act(self.fc(x.flatten(1)))  # (B, channels)

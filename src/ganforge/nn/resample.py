"""FIR up/down-sampling with plain conv2d / conv_transpose2d, as StyleGAN2 resamples (no custom CUDA op).

Karras et al., "Analyzing and Improving the Image Quality of StyleGAN", 2020, after Zhang, "Making Convolutional
Networks Shift-Invariant Again", 2019: resampling low-pass filters with the separable binomial [1, 3, 3, 1]
(stylegan2-ada-pytorch's default resample_filter, normalized to sum 1 in 2-D). Padding and gains follow that code's
`upfirdn2d` / `conv2d_resample` (upsample: zero insertion, filter with gain up^2 = 4, so a constant image stays that
constant; downsample: filter with gain 1, keep every 2nd pixel), so sizes are exactly 2H / H/2 and the sampling grid
matches the reference. Every op here is a differentiable torch op, so double backward (R1, path length) passes
through. `conv2d_up` applies a true convolution (the reference's flip_weight=False for up layers).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def fir_filter(taps: Sequence[float] = (1, 3, 3, 1)) -> torch.Tensor:
    """The separable 2-D filter outer(taps, taps), normalized to sum 1: (k, k)."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = torch.outer(f, f)
    return f / f.sum()


def _pads(padding: int | Sequence[int]) -> list[int]:
    """[x0, x1, y0, y1] from an int or such a list (the reference's order)."""
    if isinstance(padding, int):
        return [padding] * 4
    return [int(p) for p in padding]


def upfirdn2d(x: torch.Tensor, f: torch.Tensor, *, up: int = 1, down: int = 1, padding: int | Sequence[int] = 0,
              gain: float = 1.0) -> torch.Tensor:
    """Upsample by zero insertion, pad (negative values crop), convolve each channel with f * gain, keep every
    `down`-th pixel: the reference's upfirdn2d for a 2-D filter, in plain ops."""
    b, c, h, w = x.shape
    if up > 1:  # x[i] lands at 2i, zeros in between (and one after the last sample)
        x = F.pad(x.reshape(b, c, h, 1, w, 1), [0, up - 1, 0, 0, 0, up - 1]).reshape(b, c, h * up, w * up)
    x0, x1, y0, y1 = _pads(padding)
    x = F.pad(x, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    x = x[:, :, max(-y0, 0):x.shape[2] - max(-y1, 0), max(-x0, 0):x.shape[3] - max(-x1, 0)]
    kernel = (f * gain).flip([0, 1]).to(x.dtype)  # a true convolution (conv2d correlates)
    kernel = kernel[None, None].expand(c, 1, *f.shape).contiguous()
    return F.conv2d(x, kernel, stride=down, groups=c)


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, up H, up W), low-passed with f; DC gain 1 (a constant image stays constant)."""
    fw = f.shape[-1]
    p0, p1 = (fw + up - 1) // 2, (fw - up) // 2
    return upfirdn2d(x, f, up=up, padding=[p0, p1, p0, p1], gain=up * up)


def downsample2d(x: torch.Tensor, f: torch.Tensor, down: int = 2) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H / down, W / down), low-passed with f (sum 1) before decimation."""
    fw = f.shape[-1]
    p0, p1 = (fw - down + 1) // 2, (fw - down) // 2
    return upfirdn2d(x, f, down=down, padding=[p0, p1, p0, p1])


def conv2d_up(x: torch.Tensor, weight: torch.Tensor, f: torch.Tensor, padding: int = 1) -> torch.Tensor:
    """A 'same' conv with `weight` (out, in, k, k) at twice the resolution: stride-2 transposed conv, then the FIR
    filter with gain 4 (the reference's conv2d_resample with up=2). (B, in, H, W) -> (B, out, 2H, 2W)."""
    up, fw, kh, kw = 2, f.shape[-1], weight.shape[2], weight.shape[3]
    px0 = padding + (fw + up - 1) // 2 - (kw - 1)
    px1 = padding + (fw - up) // 2 - (kw - up)
    py0 = padding + (fw + up - 1) // 2 - (kh - 1)
    py1 = padding + (fw - up) // 2 - (kh - up)
    pxt, pyt = max(min(-px0, -px1), 0), max(min(-py0, -py1), 0)
    x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=up, padding=[pyt, pxt])
    return upfirdn2d(x, f, padding=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt], gain=up * up)


def conv2d_down(x: torch.Tensor, weight: torch.Tensor, f: torch.Tensor, padding: int = 1) -> torch.Tensor:
    """A 'same' conv with `weight` (out, in, k, k) followed by 2x decimation: FIR filter, then a stride-2 conv (1x1
    kernels: filter-and-decimate first). (B, in, H, W) -> (B, out, H/2, W/2)."""
    down, fw, k = 2, f.shape[-1], weight.shape[-1]
    p0, p1 = padding + (fw - down + 1) // 2, padding + (fw - down) // 2
    if k == 1:
        return F.conv2d(upfirdn2d(x, f, down=down, padding=[p0, p1, p0, p1]), weight)
    return F.conv2d(upfirdn2d(x, f, padding=[p0, p1, p0, p1]), weight, stride=down)

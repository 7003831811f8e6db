"""Nearest-neighbour upsampling followed by a conv, and a conv followed by 2x2 average pooling, each as one strided
conv with an equivalent kernel: the same function with fewer multiply-adds.

The SNGAN / SAGAN / BigGAN ResNet blocks upsample x2 (nearest) and then apply a 3x3 'same' conv, or apply a 3x3
'same' conv and then average-pool 2x2. Both pairs are linear in x, so each collapses into a single conv on the
low-resolution side:

- up x2 then 3x3 conv (padding 1) == stride-2 transposed conv with a 4x4 kernel (padding 1). Along each axis the
  output at 2i sees x[i-1] with tap w0 and x[i] with w1 + w2; at 2i+1 it sees x[i] with w0 + w1 and x[i+1] with w2.
  As transposed-conv taps k = 0..3 that is [w2, w1 + w2, w0 + w1, w0] (UP below), per axis.
- 3x3 conv (padding 1) then 2x2 mean == stride-2 conv with a 4x4 kernel (padding 1) whose taps along each axis are
  [w0, w0 + w1, w1 + w2, w2] / 2 (POOL below): the 3x3 kernel convolved with the 2x2 box.
- A 1x1 conv commutes with both: conv then up, pool then conv (4x fewer multiply-adds than the other order).

The zero padding of the original pairs maps onto the zero padding of the fused conv, so the outputs agree everywhere
(tests: float64 agreement to 1e-12, gradients included). Per output pixel a fused 3x3 pair costs 4 multiply-adds per
channel pair instead of 9; on CPU the fused conv runs about 2x faster forward + backward
(benchmarks/bench_fused_resample.py). The modules keep their ordinary `nn.Conv2d` (spectral norm, init and
state_dict keys unchanged): these functions read `conv.weight` (the normalized one under SN) and `conv.bias`. A conv
with forward hooks (GAN Dissection's feature maps and interventions, SeFa's call records) runs as itself, after or
before the resampling, so the hooks see its call and its full-resolution output.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

UP = torch.tensor([[0, 0, 1], [0, 1, 1], [1, 1, 0], [1, 0, 0]], dtype=torch.float32)  # (4 taps, 3 taps)
POOL = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 1, 1], [0, 0, 1]], dtype=torch.float32) / 2


def _plain(conv: nn.Conv2d, k: int) -> bool:
    """Whether `conv` is a k x k 'same' conv these identities hold for (stride 1, dilation 1, no groups, zero pad)
    and nothing observes its calls (no forward hooks on it, no global ones)."""
    pad = (k - 1) // 2
    hooked = (conv._forward_hooks or conv._forward_pre_hooks or nn.modules.module._global_forward_hooks
              or nn.modules.module._global_forward_pre_hooks)
    return (not hooked and conv.kernel_size == (k, k) and conv.stride == (1, 1) and conv.dilation == (1, 1)
            and conv.groups == 1 and conv.padding == (pad, pad) and conv.padding_mode == "zeros")


def _taps(weight: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """(out, in, 3, 3) -> (out, in, 4, 4): apply the per-axis tap map to both spatial axes, in float32 or wider."""
    with torch.autocast(device_type=weight.device.type, enabled=False):
        t = taps.to(device=weight.device, dtype=torch.promote_types(weight.dtype, torch.float32))
        return torch.einsum("ka,lb,oiab->oikl", t, t, weight.to(t.dtype)).to(weight.dtype)


def up_conv(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """conv(nearest_up_x2(x)): (B, in, H, W) -> (B, out, 2H, 2W)."""
    if _plain(conv, 1):
        return F.interpolate(conv(x), scale_factor=2, mode="nearest")
    if not _plain(conv, 3):
        return conv(F.interpolate(x, scale_factor=2, mode="nearest"))
    weight = _taps(conv.weight, UP).transpose(0, 1)  # conv_transpose2d wants (in, out, k, k)
    return F.conv_transpose2d(x, weight, conv.bias, stride=2, padding=1)


def conv_pool(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """avg_pool2d(conv(x), 2): (B, in, H, W) -> (B, out, H // 2, W // 2) (an odd last row / column is dropped, as
    avg_pool2d drops it)."""
    if _plain(conv, 1):
        return conv(F.avg_pool2d(x, 2))
    if not _plain(conv, 3):
        return F.avg_pool2d(conv(x), 2)
    return F.conv2d(x, _taps(conv.weight, POOL), conv.bias, stride=2, padding=1)

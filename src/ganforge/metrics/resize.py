"""Resize protocols for evaluation backbones, chosen by name, and the quantization every fake goes through.

Where FID numbers disagree between implementations, the resize is usually why (Parmar, Zhang, Zhu, "On Aliased
Resizing and Surprising Subtleties in GAN Evaluation", 2022 — clean-fid). The protocols here:

- `tf-bilinear`: TensorFlow 1's `tf.image.resize_bilinear` (align_corners=False, half_pixel_centers=False), the resize
  of the original TF FID code (Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
  Equilibrium", 2017). Computed in float32 in the order of TF's CPU kernel so that results are bit-compatible.
- `clean`: clean-fid's resize — PIL bicubic on each channel as a float32 ('F') image, clipped to [0, 255].
- `torch-bilinear`: legacy `F.interpolate(mode="bilinear", align_corners=False)` (pytorch-fid's choice; aliased).
- `torch-bilinear-aa`, `torch-bicubic-aa`: `F.interpolate` with `antialias=True` (torchvision's tensor `Resize`),
  bicubic clamped to [0, 255].
- `area`: box-filter averaging (`F.interpolate(mode="area")`), for small classifiers such as the digits one.

Every protocol takes uint8 or float (B, C, H, W) images with values in 0..255 and returns float32 0..255 at the
target size.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import GanforgeError

Size = tuple[int, int]  # (H, W)
ResizeFn = Callable[[torch.Tensor, Size], torch.Tensor]


def quantize(x_model: torch.Tensor) -> torch.Tensor:
    """Map model-space images in [-1, 1] to uint8 0..255 with rounding, not truncation.

    Uses the same rule as `ImageModality.from_model`: clamp to [-1, 1], scale by 127.5 and round to nearest
    (ties to even), so fakes and reals pass through identical arithmetic before a backbone sees them.
    """
    return ((x_model.detach().float().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)


def _tf_legacy_weights(in_size: int, out_size: int,
                       device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """TF1's CachedInterpolation for one axis: (lower index, upper index, lerp) per output index, in float32."""
    # scale = in / out in float32 (CalculateResizeScale without align_corners)
    scale = torch.tensor(float(in_size), dtype=torch.float32) / torch.tensor(float(out_size), dtype=torch.float32)
    # LegacyScaler: source coordinate = dst_index * scale (no half-pixel offset)
    src = torch.arange(out_size, dtype=torch.float32) * scale
    src_floor = torch.floor(src)
    lower = src_floor.to(torch.int64).clamp(min=0)
    upper = torch.ceil(src).to(torch.int64).clamp(max=in_size - 1)
    lerp = src - src_floor
    return lower.to(device), upper.to(device), lerp.to(device)


def resize_tf_bilinear(x: torch.Tensor, size: Size) -> torch.Tensor:
    """TensorFlow 1 `resize_bilinear` (align_corners=False, half_pixel_centers=False), float32, bit-compatible."""
    x = x.to(torch.float32)
    in_h, in_w = x.shape[-2:]
    y_lo, y_hi, y_lerp = _tf_legacy_weights(in_h, size[0], x.device)
    x_lo, x_hi, x_lerp = _tf_legacy_weights(in_w, size[1], x.device)
    rows_lo, rows_hi = x[..., y_lo, :], x[..., y_hi, :]  # (B, C, out_h, in_w)
    top_left, top_right = rows_lo[..., x_lo], rows_lo[..., x_hi]  # (B, C, out_h, out_w)
    bottom_left, bottom_right = rows_hi[..., x_lo], rows_hi[..., x_hi]
    # TF's compute_lerp: top/bottom along x first, then along y, each as a + (b - a) * lerp
    top = top_left + (top_right - top_left) * x_lerp
    bottom = bottom_left + (bottom_right - bottom_left) * x_lerp
    return top + (bottom - top) * y_lerp[:, None]


def resize_clean(x: torch.Tensor, size: Size) -> torch.Tensor:
    """clean-fid: PIL bicubic resize of each channel as a float32 'F' image, clipped to [0, 255]."""
    arr = x.detach().to("cpu", torch.float32).numpy()
    b, c = arr.shape[:2]
    out = np.empty((b, c, size[0], size[1]), dtype=np.float32)
    for i in range(b):
        for j in range(c):
            img = Image.fromarray(np.ascontiguousarray(arr[i, j]))  # float32 array -> mode 'F'
            out[i, j] = np.asarray(img.resize((size[1], size[0]), resample=Image.BICUBIC))
    return torch.from_numpy(out).clip_(0.0, 255.0).to(x.device)


def resize_torch_bilinear(x: torch.Tensor, size: Size) -> torch.Tensor:
    """Legacy `F.interpolate(mode="bilinear", align_corners=False)` without antialiasing."""
    return F.interpolate(x.to(torch.float32), size=size, mode="bilinear", align_corners=False)


def resize_torch_bilinear_aa(x: torch.Tensor, size: Size) -> torch.Tensor:
    """`F.interpolate(mode="bilinear", antialias=True)`, as torchvision's tensor `Resize` does."""
    return F.interpolate(x.to(torch.float32), size=size, mode="bilinear", align_corners=False, antialias=True)


def resize_torch_bicubic_aa(x: torch.Tensor, size: Size) -> torch.Tensor:
    """`F.interpolate(mode="bicubic", antialias=True)`, clamped to [0, 255] (bicubic overshoots)."""
    y = F.interpolate(x.to(torch.float32), size=size, mode="bicubic", align_corners=False, antialias=True)
    return y.clamp_(0.0, 255.0)


def resize_area(x: torch.Tensor, size: Size) -> torch.Tensor:
    """Box-filter averaging over each output cell (`F.interpolate(mode="area")`)."""
    return F.interpolate(x.to(torch.float32), size=size, mode="area")


RESIZE_MODES: dict[str, ResizeFn] = {
    "tf-bilinear": resize_tf_bilinear,
    "clean": resize_clean,
    "torch-bilinear": resize_torch_bilinear,
    "torch-bilinear-aa": resize_torch_bilinear_aa,
    "torch-bicubic-aa": resize_torch_bicubic_aa,
    "area": resize_area,
}


def get_resize(mode: str, where: str = "resize") -> ResizeFn:
    """The resize function called `mode`; an unknown name raises a one-line error listing the choices."""
    if mode not in RESIZE_MODES:
        raise GanforgeError(f"{where}: unknown resize mode {mode!r}; choose one of: {', '.join(RESIZE_MODES)}")
    return RESIZE_MODES[mode]


def resize(x: torch.Tensor, size: int | Size, mode: str) -> torch.Tensor:
    """Resize (B, C, H, W) images with values 0..255 to `size` with protocol `mode`; float32 0..255 out."""
    if x.dim() != 4:
        raise GanforgeError(f"resize: expected images of shape (B, C, H, W), got {tuple(x.shape)}")
    hw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    return get_resize(mode)(x, hw)

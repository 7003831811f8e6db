"""Spatial layout of convolutional G/D pairs, and option checks shared by the architecture factories.

A conv generator starts from a small base grid and doubles its resolution k times; the discriminator mirrors it.
As in DCGAN ("Unsupervised Representation Learning with Deep Convolutional GANs", Radford et al., 2016) the base is
about 4x4; here the smaller side of the base may be 4..7 (so 28x28 starts at 7x7) and the other side follows the
image's aspect ratio (16x32 starts at 4x8), which gives non-square images for free.
"""
from __future__ import annotations

from typing import NamedTuple

from ..errors import GanforgeError


class Grid(NamedTuple):
    base: tuple[int, int]  # (h, w) of the first feature map
    steps: int  # number of 2x resolution steps from the base to the image


def conv_grid(img_shape: tuple[int, ...], arch: str) -> Grid:
    """Base grid and number of doublings for an image shape (C, H, W); halve while both sides are even."""
    if len(img_shape) != 3:
        raise GanforgeError(f"architecture {arch!r}: needs an image shape (C, H, W), got {tuple(img_shape)}; "
                            "use 'mlp' for points")
    _, height, width = img_shape
    h, w, steps = height, width, 0
    while h % 2 == 0 and w % 2 == 0 and min(h, w) // 2 >= 4:
        h, w, steps = h // 2, w // 2, steps + 1
    if steps == 0 or min(h, w) > 7:
        raise GanforgeError(f"architecture {arch!r}: image size {height}x{width} not supported; the smaller side must "
                            "be b*2^k with b in 4..7 and k >= 1 (8, 12, 16, 28, 32, 64, ...) and the other side "
                            "divisible by 2^k")
    return Grid((h, w), steps)


def check_positive(arch: str, **values: int) -> None:
    """Raise a one-line error naming the option when any of `values` is < 1."""
    for key, value in values.items():
        if value < 1:
            raise GanforgeError(f"architecture {arch!r}: option {key} must be >= 1, got {value}")

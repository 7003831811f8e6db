"""Dataset interface.

A dataset holds N samples with integer labels and returns whole batches by index: `get_batch(idx) -> (x, y)` with
x uint8 (B, C, H, W) for images or float32 (B, D) for point sets, y int64 (B,). Batched access keeps the loader fast
on few cores. `info.modality` converts between the stored form and model space and renders samples for people, so
the trainer never asks what kind of data it has.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


class Modality:
    """How samples are stored, fed to models and shown."""

    kind: str = ""

    def to_config(self) -> dict:
        """A JSON-able description (saved with exported generators)."""
        return {"kind": self.kind}

    def to_model(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def from_model(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def render(self, x: torch.Tensor, reference: torch.Tensor | None = None, nrow: int | None = None) -> np.ndarray:
        """A uint8 (H, W, 3) picture of model-space samples `x` (reference samples shown beneath where it helps)."""
        raise NotImplementedError


class ImageModality(Modality):
    """uint8 images <-> [-1, 1] floats; rendered as a grid."""

    kind = "image"

    def to_model(self, x: torch.Tensor) -> torch.Tensor:
        return x.float().div(127.5).sub(1.0)

    def from_model(self, x: torch.Tensor) -> torch.Tensor:
        """[-1, 1] floats -> uint8 with rounding (not truncation), as evaluation protocols require."""
        return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)

    def render(self, x: torch.Tensor, reference: torch.Tensor | None = None, nrow: int | None = None) -> np.ndarray:
        """A grid; tiles smaller than 64 px are enlarged by pixel repetition so people can see them."""
        images = self.from_model(x)
        scale = max(1, 64 // max(images.shape[-2:]))
        if scale > 1:
            images = images.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)
        return image_grid(images, nrow)


class PointModality(Modality):
    """float coordinates, used as they are; rendered as a scatter plot of fakes (red) over reals (grey)."""

    kind = "points"

    def __init__(self, extent: float):
        self.extent = extent  # half-width of the plotted square

    def to_config(self) -> dict:
        return {"kind": self.kind, "extent": self.extent}

    def to_model(self, x: torch.Tensor) -> torch.Tensor:
        return x.float()

    def from_model(self, x: torch.Tensor) -> torch.Tensor:
        return x.detach().float()

    def render(self, x: torch.Tensor, reference: torch.Tensor | None = None, nrow: int | None = None) -> np.ndarray:
        size = 512
        img = np.full((size, size, 3), 255, np.uint8)

        def plot(pts: torch.Tensor, color: tuple[int, int, int], radius: int) -> None:
            p = pts.detach().cpu().numpy()[:, :2]
            pix = np.round((p / self.extent * 0.5 + 0.5) * (size - 1)).astype(int)
            pix[:, 1] = size - 1 - pix[:, 1]  # y axis up
            for dx in range(-radius, radius + 1):
                for dy in range(-radius, radius + 1):
                    c = pix + [dx, dy]
                    ok = (c >= 0).all(1) & (c < size).all(1)
                    img[c[ok, 1], c[ok, 0]] = color

        if reference is not None:
            plot(reference, (170, 170, 170), 1)
        plot(x, (220, 30, 30), 1)
        return img


MODALITIES = {"image": ImageModality, "points": PointModality}


def modality_from_config(cfg: dict) -> Modality:
    opts = {k: v for k, v in cfg.items() if k != "kind"}
    return MODALITIES[cfg["kind"]](**opts)


def image_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 2) -> np.ndarray:
    """uint8 (B, C, H, W) -> uint8 (H', W', 3) grid; grayscale repeated to RGB, extra channels dropped."""
    b, c, h, w = images.shape
    nrow = nrow or max(1, int(math.ceil(math.sqrt(b))))
    ncol = int(math.ceil(b / nrow))
    grid = np.zeros((ncol * (h + pad) + pad, nrow * (w + pad) + pad, 3), np.uint8)
    imgs = images.cpu().numpy()
    if c == 1:
        imgs = np.repeat(imgs, 3, axis=1)
    imgs = imgs[:, :3].transpose(0, 2, 3, 1)
    for i in range(b):
        r, q = divmod(i, nrow)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = imgs[i]
    return grid


@dataclass(frozen=True)
class DataInfo:
    shape: tuple[int, ...]  # (C, H, W) for images, (D,) for points
    num_classes: int
    modality: Modality


class Dataset:
    """Base class. Subclasses set `info` and implement `__len__` and `get_batch`."""

    info: DataInfo

    def __len__(self) -> int:
        raise NotImplementedError

    def get_batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x, y = self.get_batch(torch.tensor([i]))
        return x[0], int(y[0])

    def fingerprint(self) -> str:
        """A string that changes when the data changes (used to key cached reference statistics)."""
        raise NotImplementedError

    # Mode-coverage metrics (PacGAN protocols) for the built-in sets; 0 samples means the dataset has none.
    mode_samples: int = 0

    def mode_metrics(self, fake: torch.Tensor) -> dict[str, float]:
        """Model-space fakes (mode_samples of them) -> {"modes": ..., "hq_frac": ..., "kl": ...}."""
        raise NotImplementedError


class TensorDataset(Dataset):
    """Samples held in memory as one tensor."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, info: DataInfo, fingerprint: str):
        self.x, self.y, self.info, self._fingerprint = x, y.long(), info, fingerprint

    def __len__(self) -> int:
        return len(self.x)

    def get_batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[idx], self.y[idx]

    def fingerprint(self) -> str:
        return self._fingerprint

"""The evaluation-backbone interface: uint8 images in, named float32 features out.

A backbone owns its input protocol — resize mode and target size, normalization, channel handling — so that a metric
(FID, KID, IS, PRDC, ...) only consumes features. What makes numbers comparable between runs is captured by
`protocol_id()` (backbone name + weights id + resize mode + options that change features), which keys feature caches.
The split into "features of a fixed pretrained network after a fixed resize" follows Heusel et al., "GANs Trained by
a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium" (2017), and Parmar et al., "On Aliased Resizing and
Surprising Subtleties in GAN Evaluation" (2022).

Subclasses build their network, call `_init_protocol(...)`, load weights with `_load_standard(...)` (or set
`weights_id` themselves) and implement `extract(x)` on normalized float32 images. `weights="random"` builds the
network with a fixed seed and no weight file (id "random-seed0"): useful for tests and smoke runs, meaningless numbers.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
from torch import nn

from ...errors import GanforgeError
from ..resize import get_resize
from ..weights import load_into, read_state_dict, resolve_weights, weights_sha256

RANDOM_WEIGHTS = "random"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _normalize_inception(x: torch.Tensor) -> torch.Tensor:
    return (x - 128.0) / 128.0  # TF Inception's input scaling, as torch-fidelity applies it


def _normalize_imagenet(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x / 255.0 - mean) / std


def _normalize_half(x: torch.Tensor) -> torch.Tensor:
    return x / 127.5 - 1.0  # [-1, 1]: timm's mean = std = (0.5, 0.5, 0.5) on [0, 1] images (tf_efficientnet_lite*)


def _normalize_unit(x: torch.Tensor) -> torch.Tensor:
    return x / 255.0


def _normalize_none(x: torch.Tensor) -> torch.Tensor:
    return x


# name -> map from float32 0..255 images to the network's input range
NORMALIZATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "inception": _normalize_inception,
    "imagenet": _normalize_imagenet,
    "half": _normalize_half,
    "unit": _normalize_unit,
    "none": _normalize_none,
}


@contextlib.contextmanager
def seeded_init(seed: int = 0) -> Iterator[None]:
    """Build modules under a fixed seed without touching the caller's RNG (so random weights are reproducible)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class Backbone(nn.Module):
    """Base class: a feature extractor with its own resize/normalization protocol; always in eval mode."""

    name: str = ""
    feature_dim: int
    outputs: tuple[str, ...]
    weights_id: str
    resize_mode: str
    input_size: tuple[int, int] | None = None  # resize target (H, W); None keeps the input size
    normalization: str = "none"

    def _init_protocol(self, *, device: str, resize_mode: str, input_size: int | tuple[int, int] | None,
                       normalization: str) -> None:
        """Check and store the input protocol (unknown names raise a one-line error listing the choices)."""
        where = f"backbone {self.name}"
        if input_size is not None:
            get_resize(resize_mode, f"{where}.resize")
        if normalization not in NORMALIZATIONS:
            raise GanforgeError(f"{where}.normalize: unknown normalization {normalization!r}; "
                                f"choose one of: {', '.join(NORMALIZATIONS)}")
        try:
            self._device = torch.device(device)
        except RuntimeError as e:
            raise GanforgeError(f"{where}: invalid device {device!r}") from e
        self.resize_mode = resize_mode if input_size is not None else "none"
        self.input_size = (input_size, input_size) if isinstance(input_size, int) else input_size
        self.normalization = normalization

    def _load_standard(self, known: str, weights: str | None, net: nn.Module, **load_kwargs) -> None:
        """Load the standard file `known` (or the user's `weights` path) into `net`; set `weights_id`."""
        if weights == RANDOM_WEIGHTS:
            with seeded_init(0):
                self._init_random()
            self.weights_id = "random-seed0"
            return
        path = resolve_weights(known, weights)
        state = self._adapt_state(read_state_dict(path), path)
        load_into(net, state, path, **load_kwargs)
        self.weights_id = weights_sha256(path)

    def _init_random(self) -> None:
        """Hook for weights="random": He-normal conv/linear weights, zero biases, so features keep a usable scale."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def _adapt_state(self, state: dict[str, torch.Tensor], path: object) -> dict[str, torch.Tensor]:
        """Hook: rename keys / resize the module to the file before checking (default: unchanged)."""
        return state

    def _finish(self) -> None:
        """Move to the device, freeze, and switch to eval mode."""
        self.requires_grad_(False)
        self.to(self._device)
        self.eval()

    @property
    def device(self) -> torch.device:
        for t in self.parameters():
            return t.device
        return self._device

    def train(self, mode: bool = True) -> "Backbone":
        """Evaluation backbones stay in eval mode (BatchNorm uses running statistics; outputs do not depend on B)."""
        return super().train(False)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Check uint8 (B, C, H, W) input; grayscale is repeated to 3 channels; float32 0..255 on the device."""
        where = f"backbone {self.name}"
        if not torch.is_tensor(images) or images.dim() != 4:
            shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
            raise GanforgeError(f"{where}: expected uint8 images of shape (B, 3, H, W), got {shape}")
        if images.dtype != torch.uint8:
            raise GanforgeError(f"{where}: expected uint8 images, got {images.dtype}; pass generated images through "
                                f"ganforge.metrics.resize.quantize first")
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        elif images.shape[1] != 3:
            raise GanforgeError(f"{where}: expected 1 or 3 channels, got {images.shape[1]} (shape "
                                f"{tuple(images.shape)})")
        return images.to(self.device).to(torch.float32)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """uint8 (B, 3|1, H, W) -> {output name: float32 (B, ...)} following this backbone's protocol."""
        x = self.prepare(images)  # (B, 3, H, W) float32 0..255
        if self.input_size is not None:
            x = get_resize(self.resize_mode)(x, self.input_size)
        x = NORMALIZATIONS[self.normalization](x)
        with torch.no_grad():
            out = self.extract(x)
        return {k: v.float() for k, v in out.items()}

    def extract(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run the network on resized, normalized images; return the named outputs."""
        raise NotImplementedError

    def protocol_extras(self) -> tuple[str, ...]:
        """Options besides weights and resize that change the features (appended to `protocol_id`)."""
        return ()

    def protocol_id(self) -> str:
        """A string that identifies the feature protocol: name, weights id, resize mode (+ extras); keys caches."""
        return "_".join((self.name, self.weights_id, self.resize_mode, *self.protocol_extras()))

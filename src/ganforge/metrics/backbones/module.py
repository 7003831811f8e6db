"""A user-supplied network as an evaluation backbone: a TorchScript file or an importable factory.

Lets FID-style metrics run on any feature extractor (e.g. NVIDIA's TorchScript Inception used by StyleGAN and clean-fid,
Parmar et al., "On Aliased Resizing and Surprising Subtleties in GAN Evaluation", 2022, or a domain-specific encoder)
with the same uint8 input protocol: optional resize to `size`, then one of the named normalizations. A module that
returns a dict of tensors gives those outputs; otherwise its output, flattened to (B, F), is `pool`.
"""
from __future__ import annotations

import importlib
from pathlib import Path

import torch
from torch import nn

from ...errors import GanforgeError
from ...registries import BACKBONES
from ..weights import load_into, module_sha256, read_state_dict, weights_sha256
from .base import RANDOM_WEIGHTS, Backbone


def _load_torchscript(path: str, device: torch.device) -> nn.Module:
    p = Path(path).expanduser()
    if p.suffix not in (".pt", ".pth"):
        raise GanforgeError(f"backbone module.path: expected a TorchScript file ending in .pt or .pth, got {path!r}")
    if not p.is_file():
        raise GanforgeError(f"backbone module.path: file {p} does not exist")
    try:
        return torch.jit.load(str(p), map_location=device)
    except Exception as e:  # noqa: BLE001 -- any reader failure becomes one user-facing line
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise GanforgeError(f"backbone module.path: {p} is not a TorchScript file ({first})") from e


def _call_factory(spec: str) -> nn.Module:
    mod_name, sep, fn_name = spec.partition(":")
    if not sep or not mod_name or not fn_name:
        raise GanforgeError(f"backbone module.factory: expected 'package.module:function', got {spec!r}")
    try:
        fn = getattr(importlib.import_module(mod_name), fn_name)
    except (ImportError, AttributeError) as e:
        raise GanforgeError(f"backbone module.factory: cannot import {spec!r} ({e})") from e
    net = fn()
    if not isinstance(net, nn.Module):
        raise GanforgeError(f"backbone module.factory: {spec!r} returned {type(net).__name__}, expected an nn.Module")
    return net


@BACKBONES.register("module")
class ModuleBackbone(Backbone):
    """Any network: a TorchScript file (`path`) or a factory "package.module:function" returning an nn.Module."""

    name = "module"

    def __init__(self, *, weights: str | None = None, device: str = "cpu", path: str | None = None,
                 factory: str | None = None, size: int | None = None, resize: str = "clean",
                 normalize: str = "inception"):
        """
        Args:
            weights: with `factory`, an optional state dict loaded (strictly) into the module it returns.
            device: where the network runs.
            path: TorchScript file (.pt/.pth, loaded with torch.jit.load).
            factory: "package.module:function" returning an nn.Module (exactly one of `path`, `factory`).
            size: resize target (square); None feeds images at their own size.
            resize: resize protocol used when `size` is set.
            normalize: "inception" ((x - 128) / 128), "imagenet" (mean/std), "unit" ([0, 1]) or "none" (0..255).
        """
        super().__init__()
        if (path is None) == (factory is None):
            raise GanforgeError("backbone module: set exactly one of 'path' (TorchScript file) or 'factory' "
                                "('package.module:function')")
        self._init_protocol(device=device, resize_mode=resize, input_size=size, normalization=normalize)
        self.size = size
        if path is not None:
            if weights not in (None, RANDOM_WEIGHTS):
                raise GanforgeError("backbone module: 'weights' applies to a 'factory' module, not a TorchScript file")
            self.net = _load_torchscript(path, self._device)
            self.weights_id = weights_sha256(Path(path).expanduser())
        else:
            self.net = _call_factory(factory)
            if weights not in (None, RANDOM_WEIGHTS):
                load_into(self.net, read_state_dict(weights), weights, optional_suffixes=())
            self.weights_id = module_sha256(self.net)  # content id: same weights, same cache
        self._probe: tuple[int, tuple[str, ...]] | None = None
        self._finish()

    def extract(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.net(x)
        if isinstance(out, dict):
            result = {str(k): v for k, v in out.items() if torch.is_tensor(v)}
        elif torch.is_tensor(out):
            result = {"pool": out.flatten(1)}  # (B, F)
        else:
            raise GanforgeError(f"backbone module: the network returned {type(out).__name__}; expected a tensor or "
                                f"a dict of tensors")
        if self._probe is None:
            self._probe = (int(result["pool"].shape[1]) if "pool" in result else 0, tuple(result))
        return result

    def _probed(self) -> tuple[int, tuple[str, ...]]:
        """Feature size and output names, learnt from the first batch (or from a zero batch if none ran yet)."""
        if self._probe is None:
            side = self.size or 64
            self(torch.zeros(2, 3, side, side, dtype=torch.uint8))
        assert self._probe is not None
        return self._probe

    @property
    def feature_dim(self) -> int:  # type: ignore[override]
        return self._probed()[0]

    @property
    def outputs(self) -> tuple[str, ...]:  # type: ignore[override]
        return self._probed()[1]

    def protocol_extras(self) -> tuple[str, ...]:
        return (f"size{self.size}" if self.size else "nosize", self.normalization)

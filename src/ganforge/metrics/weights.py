"""Weight files of the evaluation backbones: where they come from, how they are checked and read.

The table `KNOWN_WEIGHTS` lists each standard file (URL, file name, sha256 where one is published). The FID Inception
file is the TF-ported "pt_inception-2015-12-05" network of pytorch-fid (Heusel et al., "GANs Trained by a Two
Time-Scale Update Rule Converge to a Local Nash Equilibrium", 2017); SwAV ResNet-50 (Caron et al., "Unsupervised
Learning of Visual Features by Contrasting Cluster Assignments", 2020) and DINOv2 (Oquab et al., "DINOv2: Learning
Robust Visual Features without Supervision", 2023) have no published checksum here.

Checksum policy of `resolve_weights(name, path)`:
- no `path`: fetch the standard file into `cache_dir("weights")`, verifying its sha256 when the table has one (a file
  without a known sha256 is accepted as downloaded; its own sha256 still keys every cache built from it);
- a user `path` whose file name equals the standard file name *claims to be* the standard file: it is verified
  against the known sha256, and a mismatch is a one-line error;
- any other user `path` is the user's own weights: it must exist and is used as it is (its sha256 becomes the
  backbone's `weights_id`, so caches never mix different weights).

Files are read with `torch.load(..., weights_only=True)` or safetensors — never by plain unpickling.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import torch
from torch import nn

from ..download import cache_dir, fetch, file_digest, verify_file
from ..errors import GanforgeError

WEIGHTS_HINT = "pass a local copy with --weights PATH (API: weights=PATH)"


@dataclass(frozen=True)
class WeightsInfo:
    """One standard weight file: where to download it, its file name and sha256 (None: not published)."""

    url: str
    filename: str
    sha256: str | None
    description: str


KNOWN_WEIGHTS: dict[str, WeightsInfo] = {
    "inception-fid": WeightsInfo(
        url=("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
             "pt_inception-2015-12-05-6726825d.pth"),
        filename="pt_inception-2015-12-05-6726825d.pth",
        sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
        description="FID Inception (TF 2015-12-05, pytorch-fid layout)",
    ),
    "swav-resnet50": WeightsInfo(
        url="https://dl.fbaipublicfiles.com/deepcluster/swav_800ep_pretrain.pth.tar",
        filename="swav_800ep_pretrain.pth.tar",
        sha256=None,
        description="SwAV ResNet-50, 800 epochs",
    ),
    "dinov2-vits14": WeightsInfo(
        url="https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth",
        filename="dinov2_vits14_pretrain.pth",
        sha256=None,
        description="DINOv2 ViT-S/14",
    ),
    "dinov2-vitb14": WeightsInfo(
        url="https://dl.fbaipublicfiles.com/dinov2/dinov2_vitb14/dinov2_vitb14_pretrain.pth",
        filename="dinov2_vitb14_pretrain.pth",
        sha256=None,
        description="DINOv2 ViT-B/14",
    ),
    # only the sha256's first 8 hex digits (0aa007d2) are published, in the file name (torch.hub's convention)
    "tf-efficientnet-lite0": WeightsInfo(
        url=("https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights/"
             "tf_efficientnet_lite0-0aa007d2.pth"),
        filename="tf_efficientnet_lite0-0aa007d2.pth",
        sha256=None,
        description="EfficientNet-lite0 (timm tf_efficientnet_lite0, ImageNet)",
    ),
}

_SHA_MEMO: dict[tuple[str, int, int], str] = {}


def _memo_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)


def weights_sha256(path: str | os.PathLike) -> str:
    """sha256 of a weight file, memoized per (path, size, mtime) so a process hashes each file once."""
    p = Path(path)
    key = _memo_key(p)
    if key not in _SHA_MEMO:
        _SHA_MEMO[key] = file_digest(p, "sha256")
    return _SHA_MEMO[key]


def resolve_weights(name: str, path: str | os.PathLike | None = None) -> Path:
    """The local file to load for the standard weights `name`: the user's `path` (checked), else a verified download.

    Args:
        name: a key of `KNOWN_WEIGHTS` (e.g. "inception-fid").
        path: a user-supplied file (CLI `--weights PATH`, API `weights=`), or None to use the cached standard file.
    """
    if name not in KNOWN_WEIGHTS:
        raise GanforgeError(f"weights: unknown weights {name!r}; known: {', '.join(KNOWN_WEIGHTS)}")
    info = KNOWN_WEIGHTS[name]
    what = f"{name} weights"
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise GanforgeError(f"{what}: file {p} does not exist (expected e.g. {info.filename} from {info.url})")
        if info.sha256 is not None and p.name == info.filename:
            verify_file(p, sha256=info.sha256, what=what)  # named like the standard file: must be it
            _SHA_MEMO[_memo_key(p)] = info.sha256
        return p
    dest = fetch(info.url, cache_dir("weights") / info.filename, sha256=info.sha256, what=what, hint=WEIGHTS_HINT)
    if info.sha256 is not None:
        _SHA_MEMO[_memo_key(dest)] = info.sha256
    return dest


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a flat {name: tensor} state dict from a .safetensors file or a `torch.save` file (weights_only).

    A checkpoint that wraps its weights in a "state_dict" or "model" entry is unwrapped one level.
    """
    p = Path(path)
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(p), device="cpu")
        else:
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 -- any reader failure becomes one user-facing line
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise GanforgeError(f"{p}: cannot read weights ({first}); expected a state dict from torch.save or "
                            f".safetensors") from e
    if isinstance(obj, Mapping):
        for wrapper in ("state_dict", "model"):
            if isinstance(obj.get(wrapper), Mapping):
                obj = obj[wrapper]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items()):
        raise GanforgeError(f"{p}: expected a state dict (a mapping of names to tensors), got {type(obj).__name__}")
    return dict(obj)


def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Remove `prefix` (e.g. DataParallel's "module.") from every key that has it."""
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state.items()}


def load_into(module: nn.Module, state: Mapping[str, torch.Tensor], source: str | os.PathLike, *,
              optional_suffixes: Iterable[str] = ("num_batches_tracked",),
              ignore_prefixes: Iterable[str] = (), layout: str = "") -> None:
    """Load `state` into `module` after checking names and shapes; a one-line error names the file and first bad key.

    Args:
        optional_suffixes: module keys the file may lack (e.g. BatchNorm's `num_batches_tracked`).
        ignore_prefixes: file keys that are not part of the module and are skipped (e.g. SwAV's projection head).
        layout: a short description of the expected layout for error messages.
    """
    optional_suffixes, ignore_prefixes = tuple(optional_suffixes), tuple(ignore_prefixes)
    expected = module.state_dict()
    layout_txt = f" ({layout} layout expected)" if layout else ""
    for key in expected:
        if key not in state and not key.endswith(optional_suffixes):
            raise GanforgeError(f"{source}: missing key {key!r}{layout_txt}")
    for key in state:
        if key not in expected and not key.startswith(ignore_prefixes):
            raise GanforgeError(f"{source}: unexpected key {key!r}{layout_txt}")
    for key, want in expected.items():
        if key in state and tuple(state[key].shape) != tuple(want.shape):
            raise GanforgeError(f"{source}: key {key!r} has shape {tuple(state[key].shape)}, "
                                f"expected {tuple(want.shape)}{layout_txt}")
    module.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)


def module_sha256(module: nn.Module) -> str:
    """A content id of a module's weights (sha256 over names, dtypes, shapes and bytes of its state dict)."""
    h = hashlib.sha256()
    for key, value in module.state_dict().items():
        t = value.detach().to("cpu").contiguous()
        h.update(f"{key}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()

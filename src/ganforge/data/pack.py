"""Packed datasets: a whole image dataset in ONE safetensors file, loaded without pickle.

Tensors: `images` uint8 (N, C, H, W) and `labels` int64 (N,). String metadata: `format` ("ganforge-packed"),
`version`, `shape` (JSON [C, H, W]), `count`, `num_classes`, `class_names` (JSON list), `source` (what was packed)
and `fingerprint` (of the source). Written to a temporary file and renamed, so an interrupted pack never leaves a
file that looks complete, with the permissions the umask gives (as any file ganforge hands to users). The output is
checked (not a directory, writable, and not already there unless replacing is asked for) before anything is decoded,
so a mistake is reported in a second, not after packing the whole dataset. `ganforge data pack SRC OUT` calls
`pack_source`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from ..errors import GanforgeError
from ..fileio import save_safetensors
from ..registries import DATASETS
from .base import DataInfo, Dataset, ImageModality, TensorDataset
from .common import fingerprint as make_fingerprint

PACK_FORMAT = "ganforge-packed"
PACK_VERSION = 1


def check_output(out: str | os.PathLike, overwrite: bool = True) -> Path:
    """`out` if a packed file can be written there, else a one-line error; creates nothing.

    Refuses a directory, a parent that is not a writable directory, and (unless `overwrite`) an existing file.
    """
    out = Path(out).expanduser()
    if out.is_dir():
        raise GanforgeError(f"data pack: output {out} is a directory; give a file name such as "
                            f"{out / 'dataset.safetensors'}")
    if out.exists() and not overwrite:
        raise GanforgeError(f"data pack: output {out} already exists; pass --force to replace it")
    parent = out.parent
    while not parent.exists() and parent != parent.parent:  # write_packed creates missing folders
        parent = parent.parent
    if not parent.is_dir():
        raise GanforgeError(f"data pack: cannot write {out}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise GanforgeError(f"data pack: cannot write {out}: directory {parent} is not writable")
    return out


def write_packed(out: str | os.PathLike, images: torch.Tensor, labels: torch.Tensor, *, num_classes: int,
                 class_names: list[str] | None = None, source: str = "", fingerprint: str = "") -> Path:
    """Write uint8 (N, C, H, W) `images` and int64 (N,) `labels` with their metadata to `out` atomically."""
    if images.dtype != torch.uint8 or images.ndim != 4 or labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"write_packed: expected uint8 (N, C, H, W) images and (N,) labels, got "
                         f"{images.dtype} {tuple(images.shape)} and {tuple(labels.shape)}")
    out = check_output(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": PACK_FORMAT, "version": str(PACK_VERSION), "shape": json.dumps(list(images.shape[1:])),
            "count": str(len(images)), "num_classes": str(num_classes),
            "class_names": json.dumps(list(class_names or [])), "source": source, "fingerprint": fingerprint}
    tensors = {"images": images.contiguous(), "labels": labels.to(torch.int64).contiguous()}
    return save_safetensors(tensors, out, meta)


def pack(dataset: Dataset, out: str | os.PathLike, *, source: str | None = None, chunk_size: int = 256,
         progress: bool = True) -> Path:
    """Write every sample of an image `dataset` to the safetensors file `out`, chunk by chunk with a progress bar.

    Args:
        dataset: any image dataset (uint8 (C, H, W) samples).
        out: the file to write (replaced atomically).
        source: description stored in the metadata (default: the dataset's class name).
        chunk_size: samples fetched per `get_batch` call.
        progress: show a tqdm bar.
    """
    from tqdm import tqdm

    check_output(out)  # a directory or an unwritable place fails now, not after decoding everything
    shape = tuple(dataset.info.shape)
    if len(shape) != 3 or not isinstance(dataset.info.modality, ImageModality):
        raise GanforgeError(f"data pack: only image datasets can be packed (this one has samples of shape {shape})")
    n = len(dataset)
    images = torch.empty((n, *shape), dtype=torch.uint8)
    labels = torch.empty(n, dtype=torch.int64)
    with tqdm(total=n, unit="img", desc=f"packing {Path(out).name}", disable=not progress) as bar:
        for start in range(0, n, chunk_size):
            idx = torch.arange(start, min(n, start + chunk_size))
            x, y = dataset.get_batch(idx)
            images[idx], labels[idx] = x, y
            bar.update(len(idx))
    return write_packed(out, images, labels, num_classes=dataset.info.num_classes,
                        class_names=list(getattr(dataset, "class_names", None) or []),
                        source=source or type(dataset).__name__, fingerprint=dataset.fingerprint())


def read_packed(path: str | os.PathLike, where: str = "data.path") -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """(images, labels, metadata) of a packed file, validated; errors name the file and what is wrong."""
    from safetensors import safe_open

    path = Path(path).expanduser()
    if not path.is_file():
        raise GanforgeError(f"{where}: {path} not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in ("images", "labels") if k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for bad headers / truncated files
        raise GanforgeError(f"{where}: {path} is not a readable safetensors file ({e})") from e
    if meta.get("format") != PACK_FORMAT:
        raise GanforgeError(f"{where}: {path} is not a ganforge packed dataset (metadata format="
                            f"{meta.get('format')!r}, expected {PACK_FORMAT!r})")
    missing = sorted({"images", "labels"} - set(tensors))
    if missing:
        raise GanforgeError(f"{where}: {path} lacks tensor(s) {', '.join(missing)}")
    images, labels = tensors["images"], tensors["labels"]
    try:
        version = int(meta["version"])
        shape = tuple(json.loads(meta["shape"]))
        num_classes = int(meta["num_classes"])
        class_names = json.loads(meta.get("class_names") or "[]")
    except (KeyError, ValueError, TypeError) as e:
        raise GanforgeError(f"{where}: {path} has missing or malformed metadata ({e!r})") from e
    if version > PACK_VERSION:
        raise GanforgeError(f"{where}: {path} has packed-format version {version}; this ganforge reads up to "
                            f"{PACK_VERSION} (upgrade ganforge)")
    if images.dtype != torch.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != shape:
        raise GanforgeError(f"{where}: {path} images are {images.dtype} {tuple(images.shape)}, expected uint8 "
                            f"(N, {', '.join(map(str, shape))}) as its metadata says")
    if labels.dtype != torch.int64 or labels.shape != (len(images),):
        raise GanforgeError(f"{where}: {path} labels are {labels.dtype} {tuple(labels.shape)}, expected int64 "
                            f"({len(images)},)")
    if len(labels) and (labels.min() < 0 or labels.max() >= max(num_classes, 1)):
        raise GanforgeError(f"{where}: {path} has labels outside [0, {max(num_classes, 1)})")
    if class_names and len(class_names) != num_classes:
        raise GanforgeError(f"{where}: {path} lists {len(class_names)} class names for {num_classes} classes")
    meta.update(version=version, shape=shape, num_classes=num_classes, class_names=class_names)
    return images, labels, meta


@DATASETS.register("packed")
class Packed(TensorDataset):
    """A packed safetensors file (`ganforge data pack`) held in memory; one file holds one split."""

    def __init__(self, *, split: str = "train", cache_dir: str | None = None, path: str):
        images, labels, meta = read_packed(path)
        info = DataInfo(tuple(images.shape[1:]), meta["num_classes"], ImageModality())
        fp = make_fingerprint("packed", {"shape": meta["shape"], "count": len(images)}, meta.get("fingerprint", ""))
        super().__init__(images, labels, info, fp)
        self.class_names: list[str] = meta["class_names"]
        self.source: str = meta.get("source", "")
        self.path = Path(path).expanduser()


def pack_source(src: str, out: str, resolution: int | list[int] | None = None, resize: str = "center-crop",
                channels: int = 3, split: str = "train", options: dict[str, Any] | None = None,
                progress: bool = True, overwrite: bool = True) -> str:
    """Pack an image folder or a registered dataset into the safetensors file `out`; return a one-line summary.

    Args:
        src: a directory of images, or the name of a registered image dataset (e.g. "digits", "cifar10").
        out: the file to write.
        resolution, resize, channels: folder options (int or [H, W]; "center-crop" | "pad" | "stretch"; 1 | 3).
            For a registered dataset, `resolution` is passed on when set, and `resize` / `channels` when they differ
            from these defaults (at the defaults the dataset keeps its own); the dataset must have such an option.
        split: the split of a registered dataset.
        options: further options of a registered dataset (e.g. {"archive": "cifar-10-python.tar.gz"}).
        progress: show progress bars (verification, packing).
        overwrite: replace an existing `out` (the CLI passes False unless --force is given).

    The output is checked before the source is opened, so nothing is decoded when it cannot be written.
    """
    from .folder import ImageFolder

    check_output(out, overwrite)

    if Path(src).expanduser().is_dir():
        if options:
            raise GanforgeError(f"data pack: {src} is a folder; extra options {sorted(options)} are not used")
        dataset: Dataset = ImageFolder(root=src, resolution=resolution, resize=resize, channels=channels,
                                       progress=progress)
        source = f"folder {Path(src).expanduser().resolve()}"
    elif src in DATASETS:
        given = {"resolution": resolution, "resize": None if resize == "center-crop" else resize,
                 "channels": None if channels == 3 else channels}
        given = {k: v for k, v in given.items() if v is not None}
        accepted = DATASETS.get(src).options()
        unknown = sorted(k for k in given if k not in accepted)
        if unknown:
            raise GanforgeError(f"data pack: dataset {src!r} has no option {', '.join(unknown)}")
        opts = {**given, **(options or {})}
        dataset = DATASETS.build(src, opts, where="data", split=split, cache_dir=None)
        source = f"dataset {src} split={split} " + json.dumps(opts, sort_keys=True, default=str)
    else:
        raise GanforgeError(f"data pack: {src!r} is neither a directory nor a registered dataset "
                            f"({', '.join(DATASETS.names())})")
    pack(dataset, out, source=source, progress=progress)
    shape = "x".join(map(str, dataset.info.shape))
    return f"{len(dataset)} images of {shape}, {dataset.info.num_classes} classes, from {source}"

"""A directory tree of images as a dataset, decoded on demand.

Layout: class subfolders (`ROOT/<class>/**/*.png`, sorted names -> labels 0..K-1) or images directly in ROOT
(unconditional: num_classes 0, every label 0). Images are converted to RGB or grayscale (palette expanded, alpha
composited on black, EXIF orientation applied) and resized to the target with Lanczos resampling (antialiased):
"center-crop" scales the image to cover the target and crops the middle; "pad" scales it to fit inside and pads
with black; "stretch" resizes to the target ignoring the aspect ratio. Non-square targets are given as [H, W]
(users of StyleGAN2-ADA and StudioGAN keep asking for them).

Every file is checked when the dataset is built (`data/verify.py`: fast, parallel, cached per folder listing), so a
corrupt image stops the run before training with ONE message listing every bad file (`on_bad_image: error`, the
default), or is left out with a warning (`on_bad_image: skip`; the list is in `dataset.bad_files`).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from ..errors import GanforgeError
from ..registries import DATASETS
from .base import DataInfo, Dataset, ImageModality
from .common import fingerprint
from .verify import bad_list_path, verify_folder, write_bad_list

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
RESIZE_MODES = ("center-crop", "pad", "stretch")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
ON_BAD_IMAGE = ("error", "skip")
MAX_LISTED = 20  # bad files named in the error message; the rest are in a file it names


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTS and not path.name.startswith(".")


def _images_under(folder: Path) -> list[Path]:
    """Image files anywhere under `folder`, in sorted order, hidden files and folders skipped."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / f for f in sorted(filenames) if _is_image(Path(f))]
    return found


def scan_image_folder(root: str | os.PathLike, where: str = "data.root") -> tuple[list[Path], list[int], list[str]]:
    """(files, labels, class_names) of an image tree; class names are the sorted subfolders that hold images."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise GanforgeError(f"{where}: {root} is not a directory" if root.exists() else f"{where}: {root} not found")
    top = sorted(p for p in root.iterdir() if p.is_file() and _is_image(p))
    classes = [(d.name, _images_under(d)) for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    classes = [(name, files) for name, files in classes if files]  # folders without images are not classes
    if classes and top:
        raise GanforgeError(f"{where}: {root} has images both at the top level ({top[0].name}, ...) and in class "
                            f"subfolders; move the top-level images into a class folder")
    if classes:
        files = [f for _, fs in classes for f in fs]
        labels = [k for k, (_, fs) in enumerate(classes) for _ in fs]
        return files, labels, [name for name, _ in classes]
    if not top:
        raise GanforgeError(f"{where}: no images ({'/'.join(IMAGE_EXTS)}) under {root}")
    return top, [0] * len(top), []


def parse_resolution(resolution: int | list[int] | tuple[int, ...] | None, where: str = "data.resolution"
                     ) -> tuple[int, int] | None:
    """int -> (r, r); [H, W] -> (H, W); None -> None. Sizes must be positive."""
    if resolution is None:
        return None
    hw = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
    if len(hw) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in hw):
        raise GanforgeError(f"{where}: expected a positive integer or [height, width], got {resolution!r}")
    return hw  # type: ignore[return-value]


def _convert(im: Image.Image, channels: int) -> Image.Image:
    """Any PIL mode -> 'L' (channels 1) or 'RGB' (channels 3); alpha composited on black."""
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif im.mode.startswith("I;16"):
        im = Image.fromarray((np.asarray(im).astype(np.uint32) >> 8).astype(np.uint8))  # 16-bit -> 8-bit
    elif im.mode in ("I", "F"):
        im = Image.fromarray(np.clip(np.asarray(im), 0, 255).astype(np.uint8))
    if im.mode in _ALPHA_MODES:
        rgba = im.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        im = Image.alpha_composite(black, rgba)  # out = alpha * rgb + (1 - alpha) * black
    return im.convert("L" if channels == 1 else "RGB")


def resize_image(im: Image.Image, size_hw: tuple[int, int], mode: str) -> Image.Image:
    """Resize to (H, W) by `mode` ("center-crop", "pad" or "stretch") with Lanczos resampling."""
    th, tw = size_hw
    w, h = im.size
    if (h, w) == (th, tw):
        return im
    lanczos = Image.Resampling.LANCZOS
    if mode == "stretch":
        return im.resize((tw, th), lanczos)
    if mode == "center-crop":
        if w * th > h * tw:  # wider than the target: crop the sides
            cw = h * tw / th
            box = ((w - cw) / 2, 0.0, (w + cw) / 2, float(h))
        else:  # taller: crop top and bottom
            ch = w * th / tw
            box = (0.0, (h - ch) / 2, float(w), (h + ch) / 2)
        return im.resize((tw, th), lanczos, box=box)
    if mode == "pad":
        scale = min(th / h, tw / w)
        nw, nh = max(1, min(tw, round(w * scale))), max(1, min(th, round(h * scale)))
        canvas = Image.new(im.mode, (tw, th), 0)
        canvas.paste(im.resize((nw, nh), lanczos), ((tw - nw) // 2, (th - nh) // 2))
        return canvas
    raise GanforgeError(f"data.resize: expected one of {', '.join(RESIZE_MODES)}, got {mode!r}")


def load_image(path: str | os.PathLike, channels: int = 3, size_hw: tuple[int, int] | None = None,
               resize: str = "center-crop") -> np.ndarray:
    """Decode one image file to uint8 (C, H, W), converted and (when `size_hw` is given) resized."""
    try:
        with Image.open(path) as f:
            im = ImageOps.exif_transpose(f)
            im.load()
            im = _convert(im, channels)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise GanforgeError(f"data.root: cannot read image {path} ({type(e).__name__}: {e})") from e
    if size_hw is not None:
        im = resize_image(im, size_hw, resize)
    arr = np.asarray(im, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)  # (C, H, W)


def _listing(root: Path, files: list[Path], labels: list[int]) -> list[str]:
    """One "relpath|label|size|mtime_ns" line per file: the input of the fingerprint and the verification key."""
    out = []
    for f, label in zip(files, labels):
        st = f.stat()
        out.append(f"{f.relative_to(root).as_posix()}|{label}|{st.st_size}|{st.st_mtime_ns}")
    return out


def bad_images_error(root: Path, bad: list[tuple[str, str]], key: str, total: int) -> GanforgeError:
    """ONE error naming every bad file (the first MAX_LISTED, then a file holding the full list)."""
    shown = "; ".join(f"{root / rel} ({reason})" for rel, reason in bad[:MAX_LISTED])
    if len(bad) > MAX_LISTED:
        full = write_bad_list(bad, bad_list_path(key))
        shown += f"; ... and {len(bad) - MAX_LISTED} more (full list: {full})"
    if len(bad) == total:
        return GanforgeError(f"data.root: all {total} image file(s) under {root} are unreadable: {shown}")
    return GanforgeError(f"data.root: {len(bad)} of {total} image files under {root} are unreadable: {shown}; fix "
                         f"or remove them, or set data.on_bad_image: skip to leave them out")


@DATASETS.register("folder")
class ImageFolder(Dataset):
    """A directory of images (class subfolders -> labels), decoded and resized on demand; any [H, W].

    Args:
        root: the folder.
        resolution: int or [H, W]; None keeps the native size (that of the first good image; all must share it).
        resize: "center-crop" | "pad" | "stretch".
        channels: 1 (grayscale) or 3 (RGB).
        on_bad_image: what to do with files that fail the up-front check: "error" (one error listing all of them)
            or "skip" (leave them out, warn with the count; the list is `bad_files`, see `write_bad_files`).
        progress: allow the verification progress bar (it appears only when checking takes over a second).
    """

    def __init__(self, *, split: str = "train", cache_dir: str | None = None, root: str,
                 resolution: int | list[int] | None = None, resize: str = "center-crop", channels: int = 3,
                 on_bad_image: str = "error", progress: bool = True):
        if resize not in RESIZE_MODES:
            raise GanforgeError(f"data.resize: expected one of {', '.join(RESIZE_MODES)}, got {resize!r}")
        if channels not in (1, 3):
            raise GanforgeError(f"data.channels: expected 1 or 3, got {channels}")
        if on_bad_image not in ON_BAD_IMAGE:
            raise GanforgeError(f"data.on_bad_image: expected one of {', '.join(ON_BAD_IMAGE)}, got {on_bad_image!r}")
        self.target = parse_resolution(resolution)  # option errors before the (slower) scan and checks
        self.root = Path(root).expanduser()
        files, labels, self.class_names = scan_image_folder(self.root)
        listing = _listing(self.root, files, labels)
        bad, key = verify_folder(self.root, files, listing, progress=progress)
        self.bad_files: list[tuple[str, str]] = bad  # (path relative to root, reason) of the files left out
        if bad and (on_bad_image == "error" or len(bad) == len(files)):
            raise bad_images_error(self.root, bad, key, len(files))
        if bad:
            warnings.warn(f"data.root: skipping {len(bad)} unreadable image file(s) of {len(files)} under "
                          f"{self.root} (data.on_bad_image: skip; first: {bad[0][0]}: {bad[0][1]})", stacklevel=2)
            dropped = {rel for rel, _ in bad}
            kept = [i for i, f in enumerate(files) if f.relative_to(self.root).as_posix() not in dropped]
            files, labels, listing = [files[i] for i in kept], [labels[i] for i in kept], [listing[i] for i in kept]
        self.files = files
        self.y = torch.tensor(labels, dtype=torch.int64)
        self.resize, self.channels = resize, channels
        if self.target is None:  # native size: that of the first (good) image, which all others must share
            self.native = load_image(self.files[0], channels).shape[1:]
        h, w = self.target or self.native
        self.info = DataInfo((channels, h, w), len(self.class_names), ImageModality())
        self._options = {"resolution": list(self.target) if self.target else None, "resize": resize,
                         "channels": channels}
        self._listing = listing  # of the files actually used, so a skip dataset's fingerprint reflects them
        self._fingerprint: str | None = None

    def write_bad_files(self, path: str | os.PathLike) -> Path:
        """Write the skipped files to `path`, one "relpath<TAB>reason" a line (an empty file when none)."""
        return write_bad_list(self.bad_files, path)

    def __len__(self) -> int:
        return len(self.files)

    def load(self, i: int) -> np.ndarray:
        """Image `i` as uint8 (C, H, W) at the dataset's shape."""
        x = load_image(self.files[i], self.channels, self.target, self.resize)
        if x.shape != self.info.shape:
            raise GanforgeError(f"data.root: {self.files[i]} is {x.shape[2]}x{x.shape[1]} but "
                                f"{self.files[0].name} is {self.info.shape[2]}x{self.info.shape[1]}; set "
                                f"data.resolution to resize all images")
        return x

    def get_batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(idx, dtype=torch.int64).reshape(-1)
        x = np.stack([self.load(int(i)) for i in idx]) if len(idx) else np.zeros((0, *self.info.shape), np.uint8)
        return torch.from_numpy(x), self.y[idx]

    def fingerprint(self) -> str:
        """Hash of the options and every used file's relative path, label, size and modification time (as listed
        when the dataset was built)."""
        if self._fingerprint is None:
            self._fingerprint = fingerprint("folder", self._options, "\n".join(self._listing))
        return self._fingerprint

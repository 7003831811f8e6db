"""Captioned image datasets: the interface every text-conditional set shares, and the `captions` folder format.

Text-to-image GAN data pairs each image with several captions (CUB and COCO, as used by AttnGAN, Xu et al., CVPR
2018, and DF-GAN, Tao et al., CVPR 2022, have 10 and 5 per image; Text2FaceGAN, Nasir et al., 2019, generates
several per face from its attributes). A training step draws one caption per image at random.

`CaptionedDataset` holds every caption once, flat, in `caption_texts` (image i owns the rows
`caption_offsets[i]:caption_offsets[i + 1]`), so a cache of caption embeddings (`ganforge.text.cache`) is one
(N_captions, dim) tensor, and `sample_caption_ids(idx, generator)` draws one row per image with the caller's seeded
generator (reproducible, resumable).

`captions` format: an image folder (data/folder.py: layout, resizing, the up-front check of every file) plus a
captions file, by default `ROOT/captions.jsonl`, else `ROOT/captions.tsv`:
- `.jsonl`: one JSON object a line, `{"image": "relative/path.png", "captions": ["...", "..."]}`;
- `.tsv`: `relative/path.png<TAB>caption` a line, an image repeated on as many lines as it has captions (an optional
  first line `image<TAB>caption` is a header).
Blank lines are skipped; an image named on several lines gets all their captions. Bad input stops the build with
one line naming the file and line: bad JSON, an entry that is not {"image": str, "captions": [str, ...]}, an empty
caption, a path outside ROOT, or an image that is not in the folder. Images without a caption are left out with a
warning, or refused (`require_all: true`).
"""
from __future__ import annotations

import json
import posixpath
import warnings
from pathlib import Path

import torch

from ..errors import GanforgeError
from ..registries import DATASETS
from .base import Dataset
from .common import fingerprint
from .folder import ImageFolder

CAPTION_FILES = ("captions.jsonl", "captions.tsv")
WHERE = "data.captions"


class CaptionedDataset(Dataset):
    """A dataset whose images each have one or more captions.

    Subclasses set `caption_texts` (every caption, image by image) and `caption_offsets` (N + 1,) int64 by calling
    `set_captions`.
    """

    has_captions = True  # capability the trainer reads (text conditioning needs it)
    caption_texts: list[str]
    caption_offsets: torch.Tensor

    def set_captions(self, per_image: list[list[str]]) -> None:
        """Store the captions of each image (in dataset order) flat, with the offsets of each image's first row."""
        if any(not caps for caps in per_image):
            raise ValueError("every image needs at least one caption")
        self.caption_texts = [c for caps in per_image for c in caps]
        counts = torch.tensor([len(caps) for caps in per_image], dtype=torch.int64)
        self.caption_offsets = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)])

    def captions(self, i: int) -> list[str]:
        """All captions of image `i`."""
        lo, hi = int(self.caption_offsets[i]), int(self.caption_offsets[i + 1])
        return self.caption_texts[lo:hi]

    def item(self, i: int) -> tuple[torch.Tensor, list[str]]:
        """Image `i` (uint8 (C, H, W)) and all its captions."""
        x, _ = self.get_batch(torch.tensor([i]))
        return x[0], self.captions(i)

    def caption_counts(self) -> torch.Tensor:
        """Captions per image, (N,) int64."""
        return self.caption_offsets[1:] - self.caption_offsets[:-1]

    def sample_caption_ids(self, idx: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One caption row per image of `idx`, uniformly among that image's captions: (B,) int64 indices into
        `caption_texts` (and into the rows of a cached embedding table)."""
        idx = torch.as_tensor(idx, dtype=torch.int64).reshape(-1)
        lo, counts = self.caption_offsets[idx], self.caption_counts()[idx]
        u = torch.rand(len(idx), generator=generator, dtype=torch.float64)
        return lo + (u * counts).long().clamp_(max=counts - 1)  # floor(u * count): uniform over 0..count-1

    def caption_batch(self, ids: torch.Tensor) -> list[str]:
        """The texts of caption rows `ids`."""
        return [self.caption_texts[int(i)] for i in torch.as_tensor(ids).reshape(-1)]


def _normalize_image_path(raw: str, where: str) -> str:
    """A caption file's image path as the folder lists it (relative, '/'-separated, no './'); outside ROOT refused."""
    rel = posixpath.normpath(raw.strip().replace("\\", "/"))
    if not raw.strip() or rel.startswith("/") or rel == ".." or rel.startswith("../") or rel == ".":
        raise GanforgeError(f"{where}: image path {raw!r} must be relative to data.root (inside it)")
    return rel


def _lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the non-blank lines of a UTF-8 file (a BOM and CR line ends allowed)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise GanforgeError(f"{WHERE}: cannot read {path} ({type(e).__name__}: {e})") from e
    out = []
    for no, raw in enumerate(data.split(b"\n"), 1):
        try:
            line = raw.decode("utf-8-sig" if no == 1 else "utf-8").rstrip("\r")
        except UnicodeDecodeError as e:
            raise GanforgeError(f"{WHERE}: {path}:{no}: not UTF-8 text ({e.reason} at byte {e.start})") from e
        if line.strip():
            out.append((no, line))
    return out


def _check_caption(text: object, where: str, k: int, image: str) -> str:
    if not isinstance(text, str):
        raise GanforgeError(f"{where}: caption {k} of {image!r} must be a string, got {type(text).__name__}")
    if not text.strip():
        raise GanforgeError(f"{where}: caption {k} of {image!r} is empty")
    return text.strip()


def parse_jsonl(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, image path, captions) of each line of a captions.jsonl file; one-line errors naming file and line."""
    entries = []
    for no, line in _lines(path):
        where = f"{WHERE}: {path}:{no}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise GanforgeError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from e
        if not isinstance(obj, dict) or not isinstance(obj.get("image"), str) or \
                not isinstance(obj.get("captions"), list):
            raise GanforgeError(f'{where}: expected an object {{"image": "path", "captions": ["...", ...]}}, got '
                                f"{line.strip()[:60]!r}")
        image = _normalize_image_path(obj["image"], where)
        if not obj["captions"]:
            raise GanforgeError(f"{where}: {image!r} has an empty caption list")
        entries.append((no, image, [_check_caption(c, where, k, image) for k, c in enumerate(obj["captions"])]))
    return entries


def parse_tsv(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, image path, [caption]) of each line of a captions.tsv file (an `image<TAB>caption` header skipped)."""
    entries = []
    for k, (no, line) in enumerate(_lines(path)):
        where = f"{WHERE}: {path}:{no}"
        if "\t" not in line:
            raise GanforgeError(f"{where}: expected 'image path<TAB>caption', found no tab")
        raw_image, caption = line.split("\t", 1)
        if k == 0 and (raw_image.strip().lower(), caption.strip().lower()) == ("image", "caption"):
            continue  # header
        image = _normalize_image_path(raw_image, where)
        entries.append((no, image, [_check_caption(caption, where, 0, image)]))
    return entries


PARSERS = {".jsonl": parse_jsonl, ".tsv": parse_tsv}


def find_captions_file(root: Path, captions: str | None) -> Path:
    """The captions file: `captions` (relative paths are taken inside ROOT first) or ROOT/captions.jsonl|tsv."""
    if captions is not None:
        path = Path(captions).expanduser()
        if not path.is_absolute() and (root / path).exists():
            path = root / path  # inside ROOT first, else relative to the working directory
        if path.suffix.lower() not in PARSERS:
            raise GanforgeError(f"{WHERE}: {path}: expected a .jsonl or .tsv captions file")
        if not path.is_file():
            raise GanforgeError(f"{WHERE}: {path} not found")
        return path
    for name in CAPTION_FILES:
        if (root / name).is_file():
            return root / name
    raise GanforgeError(f"{WHERE}: no {' or '.join(CAPTION_FILES)} in {root}; write one or set data.captions")


@DATASETS.register("captions")
class CaptionedFolder(CaptionedDataset):
    """An image folder with several captions per image (captions.jsonl or .tsv), for text-conditional GANs."""

    def __init__(self, *, split: str = "train", cache_dir: str | None = None, root: str,
                 captions: str | None = None, resolution: int | list[int] | None = None,
                 resize: str = "center-crop", channels: int = 3, on_bad_image: str = "error",
                 require_all: bool = False, progress: bool = True):
        """
        Args:
            root: the image folder (class subfolders still give labels).
            captions: the captions file (.jsonl or .tsv); None: ROOT/captions.jsonl, else ROOT/captions.tsv.
            resolution, resize, channels, on_bad_image, progress: as for the `folder` dataset.
            require_all: refuse images without a caption (default: leave them out, with a warning).
        """
        self.images = ImageFolder(split=split, cache_dir=cache_dir, root=root, resolution=resolution,
                                  resize=resize, channels=channels, on_bad_image=on_bad_image, progress=progress)
        self.root = self.images.root
        self.captions_file = find_captions_file(self.root, captions)
        entries = PARSERS[self.captions_file.suffix.lower()](self.captions_file)
        per_image = self._assign(entries, require_all)
        self.keep = torch.tensor([i for i, caps in enumerate(per_image) if caps], dtype=torch.int64)
        self.set_captions([per_image[i] for i in self.keep.tolist()])
        self.info = self.images.info
        self.class_names = self.images.class_names
        self._fingerprint = fingerprint("captions", {"require_all": require_all}, self.images.fingerprint(),
                                        self.keep, "\n".join(f"{len(c)}:{c}" for c in self.caption_texts))

    def _assign(self, entries: list[tuple[int, str, list[str]]], require_all: bool) -> list[list[str]]:
        """Captions of each folder image (in folder order); unknown images refused, uncaptioned ones checked."""
        index = {f.relative_to(self.root).as_posix(): i for i, f in enumerate(self.images.files)}
        skipped = {rel for rel, _ in self.images.bad_files}  # unreadable files left out by on_bad_image: skip
        per_image: list[list[str]] = [[] for _ in self.images.files]
        for no, image, caps in entries:
            if image in index:
                per_image[index[image]] += caps
            elif image not in skipped:
                raise GanforgeError(f"{WHERE}: {self.captions_file}:{no}: image {image!r} not found under "
                                    f"{self.root}")
        missing = [rel for rel, i in index.items() if not per_image[i]]
        if missing and (require_all or len(missing) == len(index)):
            hint = "add captions for them or set data.require_all: false" if require_all else "add captions"
            raise GanforgeError(f"{WHERE}: {self.captions_file}: {len(missing)} of {len(index)} images under "
                                f"{self.root} have no caption (first: {missing[0]}); {hint}")
        if missing:
            warnings.warn(f"{WHERE}: leaving out {len(missing)} of {len(index)} images under {self.root} that have "
                          f"no caption in {self.captions_file} (first: {missing[0]})", stacklevel=3)
        return per_image

    def __len__(self) -> int:
        return len(self.keep)

    def get_batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(idx, dtype=torch.int64).reshape(-1)
        return self.images.get_batch(self.keep[idx])

    def fingerprint(self) -> str:
        """Hash of the folder's fingerprint, the images kept and every caption."""
        return self._fingerprint

"""Image sources for evaluation: a generator, a dataset, an image folder, a run/export dir, or a uint8 tensor.

Every source yields uint8 (B, C, H, W) batches (generated images are quantized with rounding first) and says how many
images it has and, for fixed image sets, a fingerprint that keys the feature cache (generators are never cached).
A fixed image set (dataset, folder, tensor) gives the first n images of a seeded permutation; when it holds fewer than
the n requested, all of them are used and a one-line warning says so (the result's `n` / `n_ref` report the count).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn

from ..data.base import Dataset, ImageModality
from ..errors import GanforgeError

Batches = Iterator[tuple[torch.Tensor, "torch.Tensor | None"]]


@dataclass
class ImageSource:
    description: str
    n: int
    fingerprint: str | None  # None: not cacheable (generated images)
    batches: Callable[[int], Batches]  # batch_size -> uint8 image batches with labels (or None)
    has_labels: bool = False
    generated: bool = False  # drawn from a generator (not a fixed image set)


def from_generator(G: nn.Module, n: int, seed: int = 0, device: torch.device | str | None = None,
                   truncation: float | None = None, description: str = "generator", sampler=None,
                   discriminator=None) -> ImageSource:
    """n images of G (class labels drawn uniformly for conditional G), quantized to uint8 with rounding.

    `sampler` (e.g. "drs", "ddls:steps=100"; None: plain G) draws them through a sampling-time method that uses D:
    `discriminator` (a module or export path), by default the one exported next to G (see ganforge.samplers).
    """
    if len(getattr(G, "img_shape", ())) != 3:
        raise GanforgeError(f"{description}: produces points, not images; image metrics need an image generator "
                            f"(use the mode metrics for 2-D sets)")
    from ..samplers.base import bind
    from ..sampling import generate_batches

    G = bind(G, sampler, discriminator, device)  # G itself without a sampler

    quantize = ImageModality().from_model
    was_training = G.training
    G.eval()

    def batches(batch_size: int) -> Batches:
        try:
            for x, y in generate_batches(G, n, seed=seed, batch_size=batch_size, truncation=truncation,
                                         device=device):
                yield quantize(x), y
        finally:
            G.train(was_training)

    return ImageSource(description, n, None, batches, has_labels=G.num_classes > 0, generated=True)


def count_flag(role: str) -> str:
    """How the user set the image count of this role: 'n (--n)' or 'n_ref (--n-ref)'."""
    return "n_ref (--n-ref)" if role == "reference" else "n (--n)"


def _subset(total: int, n: int | None, seed: int, description: str, flag: str) -> tuple[torch.Tensor, int]:
    """Indices of the first n of a seeded permutation (all, in order, when n is None or >= total), and their count."""
    if n is not None and n > total:
        warnings.warn(f"{description}: {total} images, fewer than the {n} requested by {flag}; evaluated on {total}",
                      stacklevel=3)
    if n is None or n >= total:
        return torch.arange(total), total
    return torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:n], n


def from_dataset(ds: Dataset, n: int | None, seed: int = 0, description: str = "dataset",
                 flag: str = "n (--n)") -> ImageSource:
    """The first n images of a seeded permutation of `ds` (all of them, in order, when n is None or >= len)."""
    total = len(ds)
    if total == 0:
        raise GanforgeError(f"{description}: no images")
    if len(ds.info.shape) != 3:
        raise GanforgeError(f"{description}: holds points, not images; image metrics need images")
    idx, n = _subset(total, n, seed, description, flag)

    def batches(batch_size: int) -> Batches:
        for i in range(0, n, batch_size):
            x, y = ds.get_batch(idx[i: i + batch_size])
            yield x, y

    fp = f"{ds.fingerprint()}|n={n}|seed={seed if n < total else 'all'}"
    return ImageSource(description, n, fp, batches, has_labels=ds.info.num_classes > 1)


def from_tensor(images: torch.Tensor, labels: torch.Tensor | None = None, description: str = "images",
                n: int | None = None, seed: int = 0, flag: str = "n (--n)") -> ImageSource:
    """The first n images of a seeded permutation of a uint8 tensor (N, C, H, W), as for a dataset."""
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise GanforgeError(f"{description}: expected a uint8 tensor (N, C, H, W), got {images.dtype} "
                            f"{tuple(images.shape)}")
    if len(images) == 0:
        raise GanforgeError(f"{description}: no images")
    idx, count = _subset(len(images), n, seed, description, flag)
    if count < len(images):
        images, labels = images[idx], None if labels is None else labels[idx]

    def batches(batch_size: int) -> Batches:
        for i in range(0, len(images), batch_size):
            yield images[i: i + batch_size], None if labels is None else labels[i: i + batch_size]

    return ImageSource(description, len(images), None, batches, has_labels=labels is not None)


def resolve(spec, n: int | None, seed: int = 0, device: torch.device | str | None = None, role: str = "source",
            sampler=None, discriminator=None):
    """Turn what a user passes (module, tensor, dataset, path, dataset name, preset) into an ImageSource.

    Returns a `Features` object instead when `spec` is a saved statistics file. `sampler` / `discriminator` apply to
    generators (see `from_generator`); with a fixed image set, a sampler is an error.
    """
    out = _resolve(spec, n, seed, device, role, sampler, discriminator)
    if sampler is not None and not getattr(out, "generated", False):
        raise GanforgeError(f"{role}: a sampler draws from a generator, but {getattr(out, 'description', spec)} is a "
                            f"fixed set of images or statistics; evaluate a run, an export or a generator module")
    return out


def _resolve(spec, n, seed, device, role, sampler, discriminator):
    from ..data.base import Dataset as _Dataset

    if isinstance(spec, ImageSource):
        return spec
    if isinstance(spec, nn.Module):
        return from_generator(spec, _need_n(n, role), seed, device, description=f"{role} generator",
                              sampler=sampler, discriminator=discriminator)
    if isinstance(spec, torch.Tensor):
        return from_tensor(spec, description=f"{role} tensor", n=n, seed=seed, flag=count_flag(role))
    if isinstance(spec, _Dataset):
        return from_dataset(spec, n, seed, description=f"{role} dataset", flag=count_flag(role))
    if not isinstance(spec, (str, Path)):
        raise GanforgeError(f"{role}: cannot evaluate a {type(spec).__name__}")
    text = str(spec)
    path = Path(text)
    if path.is_file() and path.suffix in (".npz", ".safetensors") and not _is_generator_file(path):
        from .cache import load_stats_file

        return load_stats_file(path)
    if path.is_dir() or _is_generator_file(path):
        from ..training.export import find_export, load_generator

        try:
            export = find_export(path)
        except GanforgeError:
            export = None
        if export is not None:
            G = load_generator(export, device=device or "cpu")
            return from_generator(G, _need_n(n, role), seed, device, description=f"{role} {export}",
                                  sampler=sampler, discriminator=discriminator)
        if (path / "checkpoints").is_dir() or (path / "metrics.jsonl").is_file():
            # a run dir without export/ would otherwise be read as an image folder of its sample grids
            raise GanforgeError(f"{role} {path}: a run directory without export/ (unfinished run?); finish or "
                                f"re-run `ganforge train` with this --out to export the generator")
        return from_dataset(_folder(path), n, seed, description=f"{role} folder {path}", flag=count_flag(role))
    if path.exists() and path.suffix not in (".yaml", ".yml"):  # a config file names its dataset
        raise GanforgeError(f"{role} {path}: expected a run/export directory, an image folder, a config file or a "
                            f"stats file (.npz / .safetensors)")
    return from_dataset(_named_dataset(text, role), n, seed, description=f"{role} {text}", flag=count_flag(role))


DEFAULT_GENERATED = 50000  # images generated when no count is given (the FID protocol's N)


def _need_n(n: int | None, role: str) -> int:
    """How many images to generate: `n`, or the protocol's 50k when None (a fixed set uses all its images)."""
    if n is None:
        return DEFAULT_GENERATED
    if n < 1:
        raise GanforgeError(f"{role}: how many images to generate? pass {count_flag(role)}, e.g. 10000")
    return n


def _is_generator_file(path: Path) -> bool:
    """An exported `generator.safetensors` (next to its config.json), which `ganforge sample` also accepts."""
    return path.is_file() and path.name == "generator.safetensors" and (path.parent / "config.json").is_file()


def _folder(path: Path) -> Dataset:
    from ..registries import DATASETS, load_all

    load_all()
    return DATASETS.build("folder", {"root": str(path)}, where=str(path), split="train", cache_dir=None)


def _named_dataset(text: str, role: str) -> Dataset:
    """A registered dataset name, or a config/preset whose data section names one."""
    from ..config import load_config
    from ..registries import DATASETS, load_all
    from ..training.build import build_dataset

    load_all()
    if text in DATASETS:
        return DATASETS.build(text, {}, where=role, split="train", cache_dir=None)
    if Path(text).is_file():
        return build_dataset(load_config(text).data)  # a config file's own errors name the file and key
    try:
        cfg = load_config(text)
    except GanforgeError:
        raise GanforgeError(f"{role} {text!r}: not a file, folder, dataset name ({', '.join(DATASETS.names())}) "
                            f"or config preset") from None
    return build_dataset(cfg.data)


def resolve_generator(spec, device: torch.device | str | None = None, role: str = "source") -> nn.Module:
    """A generator module, or one loaded from a run/export directory or generator.safetensors."""
    if isinstance(spec, nn.Module):
        return spec
    if isinstance(spec, (str, Path)):
        from ..training.export import load_generator

        return load_generator(spec, device=device or "cpu")
    raise GanforgeError(f"{role}: expected a generator (module, run or export directory), got {type(spec).__name__}")


def resolve_dataset(spec, role: str = "reference") -> Dataset:
    """A Dataset instance, or a registered dataset name / preset / config file naming one."""
    if isinstance(spec, Dataset):
        return spec
    if spec is None:
        raise GanforgeError(f"{role}: mode metrics need a built-in dataset as reference (ring8, grid25, stacked-digits)")
    if isinstance(spec, dict):  # a config's data section, {name: ..., **options}
        from ..config import data_component
        from ..training.build import build_dataset

        return build_dataset(data_component(spec, role))
    text = str(spec)
    if Path(text).is_dir():
        raise GanforgeError(f"{role} {text}: mode metrics need a built-in dataset name or config, not a folder")
    return _named_dataset(text, role)

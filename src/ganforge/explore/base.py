"""The explorer framework: a registered method looks at a generator and writes figures plus numbers.

An explorer is a class registered in `EXPLORERS` whose keyword-only constructor options are its config (validated by
the registry, one-line errors naming the key). `check(G)` refuses a generator the method cannot read (one line naming
the reason) before anything is written; `run(G, out_dir, *, progress, seed, device) -> dict` writes its PNG / GIF
figures into `out_dir` and returns a JSON-able dict of numbers. `explore()` stages all of it in a private directory,
adds `result.json` (method, options, seed, source, results, files) and `index.html` (figures embedded as base64 data
URIs, the numbers and the options as tables; no external resources), then swaps the directory into
`RUN/explore/METHOD/` in one step, so a crash leaves the previous page or none, never half of one.
"""
from __future__ import annotations

import base64
import html
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ..errors import GanforgeError

IMAGE_SUFFIXES = {".png": "image/png", ".gif": "image/gif"}


class Explorer:
    """Base class of explorers; subclasses implement `run` and, where they need something of G, `check`."""

    needs_images: bool = True  # the method renders image samples (point generators are refused in `check`)
    name: str = "explorer"  # set by the framework from the registry name, for messages

    def check(self, G: torch.nn.Module) -> None:
        """Raise a one-line GanforgeError when this method cannot run on `G`."""
        if self.needs_images and len(getattr(G, "img_shape", ())) != 3:
            raise GanforgeError(f"explore {self.name}: needs a generator of images (C, H, W); this one makes "
                                f"samples of shape {tuple(getattr(G, 'img_shape', ()))}")

    def run(self, G: torch.nn.Module, out_dir: Path, *, progress: bool, seed: int, device: str) -> dict[str, Any]:
        raise NotImplementedError


def user_network(module: Any, where: str, device: str) -> Any:
    """A user's network: an nn.Module / callable, or "package.module:function" returning one (one-line errors naming
    `where`); a module is moved to `device` in eval mode. Fed images in [0, 1] by the caller."""
    import importlib

    if isinstance(module, str):
        mod_name, sep, fn_name = module.partition(":")
        if not sep or not mod_name or not fn_name:
            raise GanforgeError(f"{where}: expected 'package.module:function', got {module!r}")
        try:
            module = getattr(importlib.import_module(mod_name), fn_name)()
        except (ImportError, AttributeError) as e:
            raise GanforgeError(f"{where}: cannot import {module!r} ({e})") from e
    if not callable(module):
        raise GanforgeError(f"{where}: expected an nn.Module, got {type(module).__name__}")
    return module.to(device).eval() if isinstance(module, torch.nn.Module) else module


# ---------------------------------------------------------------------------------------------------------- running
def explore_dir(G: torch.nn.Module, method: str) -> Path:
    """Default output: RUN/explore/METHOD for an export inside a run dir, else EXPORT/explore/METHOD."""
    export_dir = getattr(G, "export_dir", None)
    if export_dir is None:
        raise GanforgeError(f"explore {method}: this generator was not loaded from an export; pass out=DIR")
    export_dir = Path(export_dir)
    run_dir = export_dir.parent if export_dir.name == "export" else export_dir  # a run's export lives in RUN/export
    return run_dir / "explore" / method


def build_explorer(method: str, options: dict[str, Any] | None = None) -> Explorer:
    """The registered explorer `method` with validated `options` (one-line errors naming the method or key)."""
    from ..registries import EXPLORERS, load_all

    load_all()
    explorer = EXPLORERS.build(method, dict(options or {}), where=f"explore {method}")
    explorer.name = method
    return explorer


def explore(source: str | os.PathLike | torch.nn.Module, method: str, options: dict[str, Any] | None = None, *,
            out: str | os.PathLike | None = None, seed: int = 0, progress: bool = True,
            device: str = "cpu") -> Path:
    """Run explorer `method` on a generator (a module, or a run / export path) and write its page; returns its dir.

    Args:
        source: a generator module, a run directory, an export directory or its generator.safetensors.
        method: a registered explorer name (`ganforge list explorers`).
        options: the explorer's options (its constructor's keyword arguments).
        out: output directory (default RUN/explore/METHOD).
        seed: seed of every latent the method draws.
        progress: show progress bars on long work.
        device: torch device to run G on.
    """
    from ..training.export import load_generator, staged_dir

    explorer = build_explorer(method, options)  # bad names / options fail before anything is loaded
    G = source if isinstance(source, torch.nn.Module) else load_generator(source, device=device)
    G = G.to(device).eval()
    explorer.check(G)
    dest = Path(out) if out is not None else explore_dir(G, method)
    used = {**_defaults(method), **dict(options or {})}
    with staged_dir(dest) as tmp:
        with torch.no_grad():
            results = explorer.run(G, tmp, progress=progress, seed=seed, device=device)
        files = sorted(p.name for p in tmp.iterdir() if p.is_file())
        record = {"method": method, "options": jsonable(used), "seed": seed,
                  "source": str(getattr(G, "export_dir", "") or ""), "results": jsonable(results), "files": files}
        (tmp / "result.json").write_text(json.dumps(record, indent=2))
        write_page(tmp, record)
    return dest


def _defaults(method: str) -> dict[str, Any]:
    from ..registries import EXPLORERS

    return EXPLORERS.get(method).defaults()


def jsonable(value: Any) -> Any:
    """Tensors, numpy values and tuples -> plain JSON values (non-finite floats -> None)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ------------------------------------------------------------------------------------------------------------- page
def write_page(directory: Path, record: dict[str, Any]) -> Path:
    """`index.html` in `directory`: the figures (embedded), the numbers and the options, with no outside resource."""
    directory = Path(directory)
    title = f"ganforge explore {record['method']}"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1.5em}"
             "td,th{border:1px solid #bbb;padding:3px 8px;text-align:left;vertical-align:top}"
             "img{image-rendering:pixelated;max-width:100%;border:1px solid #ddd}figure{margin:0 0 1.5em 0}"
             "code{font-size:85%}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             f"<p>source: <code>{html.escape(str(record.get('source') or '(module)'))}</code>, seed "
             f"{html.escape(str(record.get('seed')))}</p>",
             "<h2>Options</h2>", _table(record.get("options", {})),
             "<h2>Results</h2>", _table(record.get("results", {})), "<h2>Figures</h2>"]
    for name in record.get("files", []):
        mime = IMAGE_SUFFIXES.get(Path(name).suffix.lower())
        if mime is None:
            continue
        data = base64.b64encode((directory / name).read_bytes()).decode("ascii")
        parts.append(f"<figure><img alt='{html.escape(name)}' src='data:{mime};base64,{data}'>"
                     f"<figcaption>{html.escape(name)}</figcaption></figure>")
    parts.append("</body></html>")
    path = directory / "index.html"
    path.write_text("\n".join(parts))
    return path


def _table(values: dict[str, Any]) -> str:
    if not values:
        return "<p>(none)</p>"
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_cell(v))}</td></tr>"
                   for k, v in values.items())
    return f"<table>{rows}</table>"


def _cell(value: Any, limit: int = 400) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    text = json.dumps(jsonable(value), default=str)
    if isinstance(value, (list, tuple)):  # long arrays: short floats
        text = json.dumps(_rounded(jsonable(value)))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------------------- figures
def save_png(img: np.ndarray, path: Path) -> Path:
    """uint8 (H, W, 3) or (H, W) -> PNG."""
    Image.fromarray(np.ascontiguousarray(img)).save(path, format="PNG")
    return Path(path)


def save_gif(frames: list[np.ndarray], path: Path, frame_ms: int = 120) -> Path:
    """uint8 (H, W, 3) frames -> a looping animated GIF."""
    images = [Image.fromarray(np.ascontiguousarray(f)) for f in frames]
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=frame_ms, loop=0)
    return Path(path)


def render_grid(G: torch.nn.Module, x: torch.Tensor, ncol: int) -> np.ndarray:
    """Model-space images (rows * ncol, C, H, W), row-major -> a uint8 grid picture (small tiles enlarged)."""
    from ..data.base import ImageModality

    return ImageModality().render(x.float().cpu(), nrow=ncol)


def row_latents(G: torch.nn.Module, n: int, seed: int, label: int | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """n seeded latents and their conditions (a class, or a training caption's embedding for a text G)."""
    from ..sampling import latents

    return latents(G, n, seed, labels=label)


def repeat_condition(y: torch.Tensor | None, times: int) -> torch.Tensor | None:
    """Each row's condition repeated `times` times (row-major), so one row keeps one label."""
    return None if y is None else y.repeat_interleave(times, dim=0)


# ------------------------------------------------------------------------------------ real data and feature spaces
PIXELS = "pixels"  # the feature space of raw pixels (uint8 / 255, flattened) instead of a backbone's features


def check_run_data(G: torch.nn.Module, method: str) -> None:
    """One-line error when G was not loaded from an export whose config.json names its training data."""
    if not (getattr(G, "export_config", None) or {}).get("data"):
        raise GanforgeError(f"explore {method}: needs the run's training data, named in an export's config.json; "
                            f"load the generator from a run or export (ganforge.training.export.load_generator)")


def run_dataset(G: torch.nn.Module, split: str = "train"):
    """The run's dataset (split `split`), rebuilt from the export's config.json ("data")."""
    from ..config import Component
    from ..training.build import build_dataset

    data = dict(G.export_config["data"])
    return build_dataset(Component(data.pop("name"), data), split=split)


def dataset_images(dataset, n: int | None, seed: int, purpose: str, method: str
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Up to n uint8 images (a seeded random subset; all when n is None) and their labels (None when unlabelled)."""
    from ..training.rng import generator

    idx = torch.randperm(len(dataset), generator=generator(seed, f"explore-{purpose}"))
    x, y = dataset.get_batch(idx if n is None else idx[:n])
    if x.dtype != torch.uint8 or x.ndim != 4:
        raise GanforgeError(f"explore {method}: the training data is not images (got {tuple(x.shape)} {x.dtype})")
    labelled = dataset.info.num_classes > 1 and y is not None and not y.is_floating_point()
    return x, (y if labelled else None)


def generated_images(G: torch.nn.Module, n: int, seed: int, device: str, batch_size: int = 100,
                     progress: bool = False, desc: str = "generate") -> tuple[torch.Tensor, torch.Tensor | None]:
    """n seeded samples of G as uint8 images (rounded, as evaluation protocols require) and their class labels."""
    from ..data.base import ImageModality
    from ..sampling import generate_batches

    batches = generate_batches(G, n, seed=seed, batch_size=batch_size, device=device)
    xs, ys = [], []
    for x, y in tqdm(batches, total=-(-n // batch_size), desc=desc, disable=not progress, leave=False):
        xs.append(ImageModality().from_model(x))
        ys.append(y)
    labels = None if ys[0] is None or ys[0].is_floating_point() else torch.cat(ys)
    return torch.cat(xs), labels


def check_feature_space(name: str, where: str) -> str:
    """`name` if it is `pixels` or a registered backbone, else a one-line error listing the choices."""
    from ..registries import BACKBONES, load_all

    load_all()
    if name != PIXELS and name not in BACKBONES.names():
        raise GanforgeError(f"{where}: unknown backbone {name!r}; choose {PIXELS} or one of: "
                            f"{', '.join(BACKBONES.names())}")
    return name


class FeatureSpace:
    """Features of uint8 images: a registered evaluation backbone's `pool` output, or raw pixels (`pixels`).

    Backbone features go through `metrics.extract.extract_features`, the evaluation protocol's own extraction.
    """

    def __init__(self, name: str, weights: str | None = None, device: str = "cpu"):
        self.name = name
        self.backbone = None
        if name != PIXELS:
            from ..metrics.evaluate import build_backbone

            self.backbone = build_backbone(name, weights, device)

    def __call__(self, images: torch.Tensor, batch_size: int = 100, progress: bool = False) -> torch.Tensor:
        """(N, F) float32 features of uint8 (N, C, H, W) images, on the CPU."""
        if self.backbone is None:
            return images.float().div(255.0).flatten(1)
        from ..metrics.extract import extract_features
        from ..metrics.sources import from_tensor

        source = from_tensor(images, description=f"{self.name} features")
        return extract_features(source, self.backbone, {"pool"}, batch_size, progress).pool.float()

"""Inference export: `generator.safetensors` + `config.json`, loadable without the training code path.

The config names the architecture and G conditioning with their options (a component's constructor arguments are
its config), the sample shape, number of classes and modality; `load_generator` rebuilds G from the registries and
loads the weights from safetensors (no pickle).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors.torch import load_file

from ..errors import GanforgeError
from ..fileio import crash_point, follow_umask, replace_dir, save_safetensors, staging_dir

FORMAT = "ganforge-generator"
_REQUIRED_KEYS = ("architecture", "g_conditioning", "img_shape", "num_classes", "modality")  # what loading needs


def write_export(G: torch.nn.Module, out_dir: Path, meta: dict[str, Any]) -> Path:
    """Write G's weights and config.json into the (new, private) directory `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in G.state_dict().items()}
    save_safetensors(tensors, out_dir / "generator.safetensors", metadata={"format": FORMAT})
    crash_point("export-between-files")
    cfg = {"format": FORMAT, "version": 1, **meta}
    (out_dir / "config.json").write_text(json.dumps(cfg, indent=2))
    return out_dir


def export_generator(G: torch.nn.Module, out_dir: Path, meta: dict[str, Any]) -> Path:
    """Write G's weights and `meta` (architecture, g_conditioning, img_shape, num_classes, modality, ...) as `out_dir`.

    The directory is replaced in one step: a kill at any moment leaves the previous export or the new one, complete.
    """
    out_dir = Path(out_dir)
    with staged_dir(out_dir) as tmp:
        write_export(G, tmp, meta)
    return out_dir


@contextlib.contextmanager
def staged_dir(dest: Path) -> Iterator[Path]:
    """Write a directory's content into a private staging directory that then replaces `dest` whole."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = staging_dir(dest)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        follow_umask(tmp)
        replace_dir(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def find_export(path: str | os.PathLike) -> Path:
    """Accept an export dir, its generator.safetensors, or a run dir containing export/."""
    p = Path(path)
    if p.is_file() and p.suffix == ".safetensors":
        p = p.parent
    if (p / "export" / "config.json").exists():
        p = p / "export"
    if not (p / "config.json").exists() or not (p / "generator.safetensors").exists():
        raise GanforgeError(f"{path}: no exported generator here (expected config.json + generator.safetensors, or a "
                            f"finished run dir with export/)")
    return p


def read_export_config(directory: Path) -> dict[str, Any]:
    try:
        cfg = json.loads((directory / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise GanforgeError(f"{directory / 'config.json'}: unreadable export config ({e})") from e
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        found = cfg.get("format") if isinstance(cfg, dict) else type(cfg).__name__
        raise GanforgeError(f"{directory / 'config.json'}: not a ganforge generator export (format={found!r})")
    missing = [k for k in _REQUIRED_KEYS if k not in cfg]
    if missing:
        raise GanforgeError(f"{directory / 'config.json'}: incomplete export config (missing {', '.join(missing)})")
    return cfg


def build_generator_from_meta(cfg: dict[str, Any]) -> torch.nn.Module:
    from ..registries import ARCHITECTURES, G_CONDITIONING, load_all

    load_all()
    arch, cond = cfg["architecture"], cfg["g_conditioning"]
    num_classes = int(cfg["num_classes"])
    g_cond = G_CONDITIONING.build(cond["name"], cond.get("options", {}), where="g_conditioning",
                                  num_classes=num_classes)
    pair = ARCHITECTURES.build(arch["name"], arch.get("options", {}), where="architecture",
                               img_shape=tuple(cfg["img_shape"]), num_classes=num_classes, g_cond=g_cond)
    return pair.G


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild an exported generator in eval mode; `G.export_config` holds its config.json."""
    directory = find_export(path)
    cfg = read_export_config(directory)
    G = build_generator_from_meta(cfg)
    weights = directory / "generator.safetensors"
    try:
        state = load_file(str(weights))
    except Exception as e:
        raise GanforgeError(f"{weights}: unreadable safetensors file ({e})") from e
    try:
        G.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise GanforgeError(f"{weights}: weights do not match the architecture in config.json "
                            f"({str(e).splitlines()[0]})") from e
    G.export_config = cfg
    return G.to(device).eval()

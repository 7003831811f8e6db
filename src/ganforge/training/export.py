"""Inference export: `generator.safetensors` (+ `discriminator.safetensors`) + `config.json`, loadable without the
training code path.

The config names the architecture, G conditioning and D head with their options (a component's constructor arguments
are its config), the sample shape, number of classes and modality; `load_generator` rebuilds G from the registries and
loads the weights from safetensors (no pickle). `load_discriminator` rebuilds D (the architecture's D backbone + the
D head) the same way; sampling-time methods that use D (DDLS, DRS: `ganforge.samplers`) need it. Exports written
before D was exported hold G only; loading D from them is a one-line error that says how to re-export.
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
D_FORMAT = "ganforge-discriminator"
D_WEIGHTS = "discriminator.safetensors"
TEXT_WEIGHTS = "text_encoder.safetensors"
TEXT_FORMAT = "ganforge-text-encoder"
_REQUIRED_KEYS = ("architecture", "g_conditioning", "img_shape", "num_classes", "modality")  # what loading needs


def _cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}


def write_export(G: torch.nn.Module, out_dir: Path, meta: dict[str, Any], D: torch.nn.Module | None = None,
                 text_encoder: torch.nn.Module | None = None) -> Path:
    """Write G's (and D's) weights and config.json into the (new, private) directory `out_dir`.

    With D, `meta` must name its head (`d_head`: {name, options}, as `training.build.export_meta` does). A text-
    conditional run also exports its caption encoder (`meta["text"]`: name, options, vocabulary; its weights in
    `text_encoder.safetensors` when it has any), so `ganforge sample --text` can encode new captions.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_safetensors(_cpu_state(G), out_dir / "generator.safetensors", metadata={"format": FORMAT})
    crash_point("export-between-files")
    if D is not None:
        if "d_head" not in meta:
            raise GanforgeError("export: a discriminator is exported with its head's name and options (meta "
                                "'d_head'); use training.build.export_meta")
        save_safetensors(_cpu_state(D), out_dir / D_WEIGHTS, metadata={"format": D_FORMAT})
    if text_encoder is not None and text_encoder.state_dict():
        save_safetensors(_cpu_state(text_encoder), out_dir / TEXT_WEIGHTS, metadata={"format": TEXT_FORMAT})
    cfg = {"format": FORMAT, "version": 1, **meta, "discriminator": D_WEIGHTS if D is not None else None}
    (out_dir / "config.json").write_text(json.dumps(cfg, indent=2))  # last: its presence marks a complete export
    return out_dir


def export_generator(G: torch.nn.Module, out_dir: Path, meta: dict[str, Any], D: torch.nn.Module | None = None,
                     text_encoder: torch.nn.Module | None = None) -> Path:
    """Write G's weights (and D's, when given) and `meta` (architecture, g_conditioning, d_head, img_shape,
    num_classes, modality, ...) as `out_dir`.

    The directory is replaced in one step: a kill at any moment leaves the previous export or the new one, complete.
    """
    out_dir = Path(out_dir)
    with staged_dir(out_dir) as tmp:
        write_export(G, tmp, meta, D=D, text_encoder=text_encoder)
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


def _build_pair(cfg: dict[str, Any]):
    """The architecture's (G, D backbone) pair named by an export config."""
    from ..registries import ARCHITECTURES, G_CONDITIONING, load_all

    load_all()
    arch, cond = cfg["architecture"], cfg["g_conditioning"]
    num_classes = int(cfg["num_classes"])
    g_cond = G_CONDITIONING.build(cond["name"], cond.get("options", {}), where="g_conditioning",
                                  num_classes=num_classes, text_dim=int(cfg.get("text_dim", 0)))
    return ARCHITECTURES.build(arch["name"], arch.get("options", {}), where="architecture",
                               img_shape=tuple(cfg["img_shape"]), num_classes=num_classes, g_cond=g_cond)


def build_generator_from_meta(cfg: dict[str, Any]) -> torch.nn.Module:
    return _build_pair(cfg).G


def build_discriminator_from_meta(cfg: dict[str, Any]) -> torch.nn.Module:
    """D = the architecture's D backbone + the D head named in `d_head` (as `training.build.build_models` makes it)."""
    from ..models.base import Discriminator
    from ..registries import D_HEADS

    backbone = _build_pair(cfg).D
    head_cfg = cfg["d_head"]
    head = D_HEADS.build(head_cfg["name"], head_cfg.get("options", {}), where="d_head",
                         in_features=backbone.feature_dim, num_classes=int(cfg["num_classes"]),
                         d_sn=bool(getattr(backbone, "spectral_norm", False)), text_dim=int(cfg.get("text_dim", 0)))
    return Discriminator(backbone, head)


class _TrainingCaptions:
    """Sentence embeddings of random training captions for an exported text-conditional G, built on first use (the
    training set named in config.json and the exported encoder)."""

    def __init__(self, directory: Path, cfg: dict[str, Any]):
        self.directory, self.cfg, self.condition = directory, cfg, None

    def __call__(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.condition is None:
            from ..config import Component
            from ..text.condition import TextCondition
            from .build import build_dataset

            data = dict(self.cfg["data"])
            dataset = build_dataset(Component(data.pop("name"), data))
            encoder = load_text_encoder(self.directory)
            encoder.requires_grad_(False)
            self.condition = TextCondition(encoder, dataset.caption_texts, dataset.caption_offsets)
        return self.condition.sample(n, generator)


def load_text_encoder(path: str | os.PathLike, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The caption encoder exported with a text-conditional generator (a run dir, export dir or its
    generator.safetensors), in eval mode."""
    from ..registries import TEXT_ENCODERS, load_all

    directory = find_export(path)
    cfg = read_export_config(directory)
    text = cfg.get("text")
    if not text:
        raise GanforgeError(f"{directory}: this generator is not text-conditional (its export has no text encoder); "
                            f"sample it without --text")
    load_all()
    encoder = TEXT_ENCODERS.build(text["name"], text.get("options", {}), where="text", captions=None,
                                  vocab=text.get("vocab"))
    if (directory / TEXT_WEIGHTS).exists():
        _load_weights(encoder, directory / TEXT_WEIGHTS)
    return encoder.to(device).eval()


def _load_weights(module: torch.nn.Module, weights: Path) -> None:
    try:
        state = load_file(str(weights))
    except Exception as e:
        raise GanforgeError(f"{weights}: unreadable safetensors file ({e})") from e
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise GanforgeError(f"{weights}: weights do not match the architecture in config.json "
                            f"({str(e).splitlines()[0]})") from e


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild an exported generator in eval mode; `G.export_config` holds its config.json, `G.export_dir` its
    directory (where `load_discriminator` finds D)."""
    directory = find_export(path)
    cfg = read_export_config(directory)
    G = build_generator_from_meta(cfg)
    _load_weights(G, directory / "generator.safetensors")
    if cfg.get("text"):  # a text-conditional G: captions of random training images when none are given
        G.sample_condition = _TrainingCaptions(directory, cfg)
    G.export_config = cfg
    G.export_dir = directory
    return G.to(device).eval()


def load_discriminator(path: str | os.PathLike, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild the discriminator exported next to a generator (a run dir, export dir or its generator.safetensors),
    in eval mode; `D.export_config` holds config.json."""
    directory = find_export(path)
    cfg = read_export_config(directory)
    weights = directory / D_WEIGHTS
    if not cfg.get("discriminator") or "d_head" not in cfg or not weights.is_file():
        raise GanforgeError(f"{directory}: this export holds no discriminator ({D_WEIGHTS}), which DDLS/DRS need; "
                            f"re-export with this version of ganforge: re-run `ganforge train` with the run's config "
                            f"and --out (a finished run re-exports without training)")
    D = build_discriminator_from_meta(cfg)
    _load_weights(D, weights)
    D.export_config = cfg
    return D.to(device).eval()

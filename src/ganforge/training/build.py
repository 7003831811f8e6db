"""Build a run's parts from a validated RunConfig: dataset, G, D (backbone + head), G_ema, objective terms, augment."""
from __future__ import annotations

import copy
from dataclasses import dataclass

from torch import nn

from ..augment.base import Augment
from ..config import Component, RunConfig
from ..data.base import Dataset
from ..errors import GanforgeError
from ..models.base import Discriminator, Generator
from ..objectives.base import ObjectiveTerm
from ..registries import (ARCHITECTURES, AUGMENTATIONS, D_HEADS, DATASETS, G_CONDITIONING, LOSSES, REGULARIZERS,
                          load_all)


@dataclass
class RunParts:
    dataset: Dataset
    G: Generator
    D: Discriminator
    G_ema: Generator
    terms: list[ObjectiveTerm]  # the adversarial loss first, then the regularizers
    augment: Augment
    num_classes: int  # 0 for unconditional runs


def build_dataset(spec: Component, split: str = "train", cache_dir: str | None = None) -> Dataset:
    load_all()
    return DATASETS.build(spec.name, spec.options, where="data", split=split, cache_dir=cache_dir)


def build_models(cfg: RunConfig, dataset: Dataset) -> tuple[Generator, Discriminator, int]:
    info = dataset.info
    num_classes = info.num_classes if cfg.conditional else 0
    if cfg.conditional and num_classes < 2:
        raise GanforgeError(f"conditioning: {cfg.g_cond.name}/{cfg.d_head.name} needs labels, but data "
                            f"{cfg.data.name!r} has {info.num_classes} class(es); use conditioning g=none, d=linear")
    g_cond = G_CONDITIONING.build(cfg.g_cond.name, cfg.g_cond.options, where="conditioning.g",
                                  num_classes=num_classes)
    pair = ARCHITECTURES.build(cfg.model.name, cfg.model.options, where="model", img_shape=tuple(info.shape),
                               num_classes=num_classes, g_cond=g_cond)
    head = D_HEADS.build(cfg.d_head.name, cfg.d_head.options, where="conditioning.d",
                         in_features=pair.D.feature_dim, num_classes=num_classes)
    return pair.G, Discriminator(pair.D, head), num_classes


def build_run(cfg: RunConfig, cache_dir: str | None = None) -> RunParts:
    dataset = build_dataset(cfg.data, cache_dir=cache_dir)
    G, D, num_classes = build_models(cfg, dataset)
    G_ema = copy.deepcopy(G).eval()
    for p in G_ema.parameters():
        p.requires_grad_(False)
    terms = [LOSSES.build(cfg.loss.name, cfg.loss.options, where="loss")]
    terms += [REGULARIZERS.build(r.name, r.options, where=f"regularizers.{i}") for i, r in enumerate(cfg.regularizers)]
    augment = AUGMENTATIONS.build(cfg.augment.name, cfg.augment.options, where="augment", num_classes=num_classes)
    return RunParts(dataset, G, D, G_ema, terms, augment, num_classes)


def export_meta(cfg: RunConfig, parts: RunParts, step: int) -> dict:
    """What `load_generator` needs to rebuild G without the training code path."""
    num_classes = parts.num_classes
    return {
        "architecture": {"name": cfg.model.name, "options": cfg.model.options},
        "g_conditioning": {"name": cfg.g_cond.name, "options": cfg.g_cond.options},
        "img_shape": list(parts.dataset.info.shape),
        "num_classes": num_classes,
        "modality": parts.dataset.info.modality.to_config(),
        "data": cfg.data.to_dict(),
        "step": step,
        "seed": cfg.seed,
    }


def count_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())

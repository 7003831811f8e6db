"""Build a run's parts from a validated RunConfig: dataset, G, D (backbone + head), G_ema, objective terms, augment.

Terms come from the loss, the regularizers, and from components that bring their own (a D head, D backbone or G
conditioning with a `terms()` method: e.g. an auxiliary-classifier head brings its classification loss, InfoGAN's G
conditioning its Q head). Each term is keyed by where it came from and its name (`loss:hinge`,
`regularizers.1:lecam`, `conditioning.d:ac`), which is how its state is checkpointed. Terms, augmentations and
`terms()` methods get the build context they name as keyword parameters (see `registries.BUILD_CONTEXT`; e.g.
`terms(self, *, feature_dim)`).
"""
from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..augment.base import Augment
from ..config import Component, RunConfig, check_requires
from ..data.base import Dataset
from ..errors import GanforgeError
from ..models.base import Discriminator, Generator
from ..objectives.base import ObjectiveTerm
from ..registries import (ARCHITECTURES, AUGMENTATIONS, BUILD_CONTEXT, D_HEADS, DATASETS, G_CONDITIONING, LOSSES,
                          REGULARIZERS, load_all)
from ..registry import Registry


@dataclass
class RunParts:
    dataset: Dataset
    G: Generator
    D: Discriminator
    G_ema: Generator
    terms: dict[str, ObjectiveTerm]  # key -> term; the adversarial loss first, then regularizers, then contributed
    augment: Augment
    num_classes: int  # 0 for unconditional runs
    text: Any = None  # the TextCondition of a text-conditional run (text/condition.py), else None


def build_dataset(spec: Component, split: str = "train", cache_dir: str | None = None) -> Dataset:
    load_all()
    return DATASETS.build(spec.name, spec.options, where="data", split=split, cache_dir=cache_dir)


def build_text(cfg: RunConfig, dataset: Dataset, cache_dir: str | None = None) -> Any:
    """The run's TextCondition (caption encoder + caption table), or None without conditioning.text."""
    if cfg.text is None:
        return None
    from ..registries import TEXT_ENCODERS
    from ..text.condition import TextCondition

    if not getattr(dataset, "has_captions", False):
        raise GanforgeError(f"conditioning.text: needs a captioned dataset (e.g. data: {{name: shapes-captions}} or "
                            f"{{name: captions, root: ...}}), but data {cfg.data.name!r} has no captions")
    encoder = TEXT_ENCODERS.build(cfg.text.name, cfg.text.options, where="conditioning.text",
                                  captions=dataset.caption_texts, vocab=None, dataset=dataset)
    return TextCondition(encoder, dataset.caption_texts, dataset.caption_offsets, cache_dir=cache_dir)


def build_models(cfg: RunConfig, dataset: Dataset, text_dim: int = 0) -> tuple[Generator, Discriminator, int]:
    info = dataset.info
    num_classes = info.num_classes if cfg.conditional else 0
    if cfg.conditional and num_classes < 2:
        users = ", ".join(cfg.label_users())
        raise GanforgeError(f"{users}: needs class labels, but data {cfg.data.name!r} has {info.num_classes} "
                            f"class(es); choose label-free components (e.g. conditioning g=none, d=linear)")
    g_cond = G_CONDITIONING.build(cfg.g_cond.name, cfg.g_cond.options, where="conditioning.g",
                                  num_classes=num_classes, text_dim=text_dim)
    pair = ARCHITECTURES.build(cfg.model.name, cfg.model.options, where="model", img_shape=tuple(info.shape),
                               num_classes=num_classes, g_cond=g_cond)
    head = D_HEADS.build(cfg.d_head.name, cfg.d_head.options, where="conditioning.d",
                         in_features=pair.D.feature_dim, num_classes=num_classes,
                         d_sn=bool(getattr(pair.D, "spectral_norm", False)), text_dim=text_dim)
    return pair.G, Discriminator(pair.D, head), num_classes


def tap_shapes(D: Discriminator, img_shape: tuple[int, ...], num_classes: int,
               text_dim: int = 0) -> dict[str, tuple[int, ...]]:
    """Shapes (without batch) of D's intermediate feature maps, from one forward pass on zeros in eval mode."""
    if not D.backbone.taps():
        return {}
    was = D.training
    D.eval()
    try:
        with torch.no_grad():
            y = torch.zeros(2, dtype=torch.long) if num_classes > 0 else None
            if text_dim > 0:  # a text-conditional D reads sentence embeddings
                y = torch.zeros(2, text_dim)
            out = D(torch.zeros(2, *img_shape), y, features=True)
    finally:
        D.train(was)
    return {name: tuple(t.shape[1:]) for name, t in out.features.items()}


class _Context:
    """Build context for terms and augmentations; `tap_shapes` is computed only for components that ask."""

    def __init__(self, cfg: RunConfig, dataset: Dataset, D: Discriminator, num_classes: int, text_dim: int = 0,
                 text_encoder: Any = None):
        self.D, self.img_shape, self.num_classes = D, tuple(dataset.info.shape), num_classes
        self.values: dict[str, Any] = {"num_classes": num_classes, "img_shape": self.img_shape,
                                       "feature_dim": D.backbone.feature_dim, "total_steps": cfg.train.steps,
                                       "batch_size": cfg.train.batch_size, "d_steps": cfg.optim.d_steps,
                                       "dataset_size": len(dataset), "text_dim": text_dim,
                                       "text_encoder": text_encoder}

    def _need(self, name: str) -> None:
        """Compute a lazily built piece of context (tap_shapes: one forward pass of D) once someone asks for it."""
        if name == "tap_shapes" and "tap_shapes" not in self.values:
            self.values["tap_shapes"] = tap_shapes(self.D, self.img_shape, self.num_classes, self.values["text_dim"])

    def build(self, registry: Registry, spec: Component, where: str) -> Any:
        if registry.get(spec.name, where).wants_context("tap_shapes"):
            self._need("tap_shapes")
        return registry.build(spec.name, spec.options, where=where, **self.values)

    def call(self, fn: Any, where: str) -> Any:
        """`fn(**the build context it names)`: a component's `terms()` may take any of `BUILD_CONTEXT` by keyword."""
        params = inspect.signature(fn).parameters
        named = [n for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
        unknown = [n for n in named if n not in BUILD_CONTEXT and params[n].default is inspect.Parameter.empty]
        if unknown:
            raise GanforgeError(f"{where}: terms() asks for {', '.join(unknown)}, which is not build context (one of: "
                                f"{', '.join(BUILD_CONTEXT)})")
        wanted = [n for n in named if n in BUILD_CONTEXT]
        for name in wanted:
            self._need(name)
        return fn(**{n: self.values[n] for n in wanted})


def build_terms(cfg: RunConfig, context: _Context, contributors: dict[str, Any]) -> dict[str, ObjectiveTerm]:
    """The run's objective terms keyed by origin and name, with their declarations checked."""
    terms: dict[str, ObjectiveTerm] = {f"loss:{cfg.loss.name}": context.build(LOSSES, cfg.loss, "loss")}
    for i, r in enumerate(cfg.regularizers):
        terms[f"regularizers.{i}:{r.name}"] = context.build(REGULARIZERS, r, f"regularizers.{i}")
    for where, component in contributors.items():  # components that bring their own loss terms
        for j, term in enumerate(context.call(component.terms, where) if hasattr(component, "terms") else []):
            terms[f"{where}:{type(term).__name__}{'' if j == 0 else j}"] = term
    provided = set(getattr(contributors["conditioning.d"], "provides", frozenset()))
    for key, term in terms.items():
        check_requires(key, getattr(term, "requires", frozenset()), cfg.d_head.name, provided)
        if getattr(term, "trains_with", "D") not in ("G", "D"):
            raise GanforgeError(f"{key}: trains_with must be 'G' or 'D', got {term.trains_with!r}")
    return terms


def build_run(cfg: RunConfig, cache_dir: str | None = None) -> RunParts:
    dataset = build_dataset(cfg.data, cache_dir=cache_dir)
    text = build_text(cfg, dataset)
    text_dim = text.dim if text is not None else 0
    G, D, num_classes = build_models(cfg, dataset, text_dim)
    G_ema = copy.deepcopy(G).eval()
    for p in G_ema.parameters():
        p.requires_grad_(False)
    context = _Context(cfg, dataset, D, num_classes, text_dim, text.text_encoder if text is not None else None)
    contributors = {"conditioning.d": D.head, "model": D.backbone}
    if isinstance(getattr(G, "g_cond", None), nn.Module):
        contributors["conditioning.g"] = G.g_cond
    terms = build_terms(cfg, context, contributors)
    if text is not None:  # checkpointed (and, when trainable, optimized) like a term with parameters
        terms[f"conditioning.text:{cfg.text.name}"] = text
    augment = context.build(AUGMENTATIONS, cfg.augment, "augment")
    return RunParts(dataset, G, D, G_ema, terms, augment, num_classes, text)


def export_meta(cfg: RunConfig, parts: RunParts, step: int) -> dict:
    """What `load_generator` / `load_discriminator` need to rebuild G and D without the training code path.

    `loss` is provenance: D's logit is a log density ratio (what DDLS / DRS read it as) only for the logistic losses.
    """
    return {
        "architecture": {"name": cfg.model.name, "options": cfg.model.options},
        "g_conditioning": {"name": cfg.g_cond.name, "options": cfg.g_cond.options},
        "d_head": {"name": cfg.d_head.name, "options": cfg.d_head.options},
        "loss": {"name": cfg.loss.name, "options": cfg.loss.options},
        "img_shape": list(parts.dataset.info.shape),
        "num_classes": parts.num_classes,
        "text_dim": parts.text.dim if parts.text is not None else 0,
        **({"text": {"name": cfg.text.name, "options": cfg.text.options,
                     "vocab": parts.text.text_encoder.vocab_json()}} if parts.text is not None else {}),
        "modality": parts.dataset.info.modality.to_config(),
        "data": cfg.data.to_dict(),
        "plugins": list(cfg.plugins),
        "step": step,
        "seed": cfg.seed,
    }


def count_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())

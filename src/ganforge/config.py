"""Run configuration: one YAML file with typed sections, dotted overrides, validation with one-line errors.

Fixed sections (`optim`, `train`, `eval`) are dataclasses whose fields are checked by type. Component sections
(`data`, `model`, `conditioning.g`, `conditioning.d`, `loss`, `regularizers[i]`, `augment`, and `eval.metrics[i]`)
are `{name: ..., **options}` and are checked against the named component's signature in its registry, so a
component's options are documented in exactly one place: its constructor. `conditioning.fake_labels` (uniform |
prior) says how G's class labels are drawn in training: uniform over the classes, or with the training set's class
frequencies. `plugins: [my_pkg.my_module, ...]` names modules that register more components; they are imported
before anything is validated.
"""
from __future__ import annotations

import copy
import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import GanforgeError
from .config_files import apply_overrides, load_raw, parse_value, presets_dir, resolve_preset  # noqa: F401
from .registry import Registry, check_type
from .training.schedules import Schedule, component_target, parse_schedules


@dataclass
class Component:
    """A component chosen by name with its options."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.options}


@dataclass
class OptimConfig:
    g_lr: float = 2e-4
    d_lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    eps: float = 1e-8
    d_steps: int = 1  # D steps per G step
    lr_decay: str = "none"  # none | linear | cosine: multiplier on both learning rates over train.steps
    lr_decay_start: float = 0.0  # fraction of train.steps before the decay begins


@dataclass
class TrainConfig:
    steps: int = 1000  # G steps
    batch_size: int = 64  # global batch (split over ranks and accumulation rounds)
    accumulate: int = 1  # gradient-accumulation rounds per step
    ema_decay: float = 0.999
    ema_start: int = 0  # step from which G_ema averages (before it, G_ema copies G)
    ema_warmup: bool = True  # decay_t = min(ema_decay, (1 + t) / (10 + t)) so early G_ema is not stuck near init
    ema_kimg: float = 0.0  # > 0: G_ema's half-life in thousands of G images instead of ema_decay (StyleGAN2-ADA):
    # beta = 0.5 ** (batch_size / (ema_kimg * 1000)); 0 keeps ema_decay
    ema_rampup: float = 0.0  # > 0 (with ema_kimg): the half-life is at most ema_rampup x the images shown so far
    amp: str = "none"  # none | bf16 | fp16 (fp16 needs CUDA: GradScaler)
    channels_last: bool | None = None  # channels-last memory format for G, D and D's inputs; None: where the family
    # declares that it helps (convolutional families)
    compile: bool = False  # torch.compile G's and D's forward passes in place (nn.Module.compile: parameter names,
    # checkpoints and exports unchanged); for GPUs; on CPU 1.05x on bf16 + channels-last (docs/benchmarks.md)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    log_every: int = 50  # *_every intervals also fire at the last step; 0: at the last step only
    sample_every: int = 500
    ckpt_every: int = 500
    keep_ckpts: int = 3
    mode_every: int = 0  # mode metrics every N steps (0: at the end only); datasets without mode metrics skip
    grid_size: int = 64  # number of fixed-noise samples in the grid
    tensorboard: bool = True
    report: bool = False  # write RUN/report.html (`ganforge report RUN`) when training ends
    threads: int = 0  # torch intra-op threads (0: torch's default, the machine's core count: results then differ
    # bit for bit between machines with different core counts)
    # divergence guard (training/divergence.py); each 0 disables its check
    guard_value: float = 1e6  # stop when a loss or a D logit exceeds this in absolute value
    guard_output: float = 100.0  # ... when generated samples exceed this multiple of the largest real |value|
    guard_collapse: float = 1e-3  # ... when the spread of G's samples stays below this fraction of the data's
    guard_patience: int = 100  # ... for this many G steps in a row
    init_from: str | None = None  # a new run starts from this source run's (or checkpoint file's) G, D and G_ema
    # weights, with fresh optimizers at step 0 (fine-tuning); ignored when the run resumes from its own checkpoint


@dataclass
class EvalConfig:
    every: int = 0  # evaluate G_ema every N steps (0: never during training)
    metrics: list[str | dict] = field(default_factory=list)  # names, or {name: kid, subsets: 50}
    n: int = 10000
    backbone: str = "inception-fid"
    weights: str | None = None  # local weights file for the backbone
    resize: str | None = None  # backbone's default when None
    ref: str | None = None  # reference: image folder / stats file; None = the training dataset
    best: str | None = None  # keep a best checkpoint by this metric key (lower is better except is/precision/...)
    batch_size: int = 100
    seed: int = 0  # latents of the evaluated samples (training hook, mode metrics and `ganforge eval --seed` alike)


_AMP_MODES = ("none", "bf16", "fp16")
FAKE_LABELS_DEFAULT = "uniform"  # conditioning.fake_labels: uniform over the classes unless the user asks for prior


@dataclass
class RunConfig:
    data: Component
    model: Component
    g_cond: Component
    d_head: Component
    loss: Component
    regularizers: list[Component]
    augment: Component
    optim: OptimConfig
    train: TrainConfig
    eval: EvalConfig
    seed: int = 0
    plugins: list[str] = field(default_factory=list)
    fake_labels: str = FAKE_LABELS_DEFAULT  # conditioning.fake_labels: how G's class labels are drawn (phase_runner.py)
    text: Component | None = None  # conditioning.text: the caption encoder of a text-conditional run (TEXT_ENCODERS)
    schedules: list[Schedule] = field(default_factory=list)  # hyperparameters that move with nimg (schedules.py)

    def components(self) -> list[tuple[str, Registry, Component]]:
        """(config key, registry, choice) of every training component."""
        from .registries import (ARCHITECTURES, AUGMENTATIONS, D_HEADS, DATASETS, G_CONDITIONING, LOSSES, REGULARIZERS,
                                 TEXT_ENCODERS)

        text = [("conditioning.text", TEXT_ENCODERS, self.text)] if self.text is not None else []
        return [("data", DATASETS, self.data), ("model", ARCHITECTURES, self.model),
                ("conditioning.g", G_CONDITIONING, self.g_cond), ("conditioning.d", D_HEADS, self.d_head), *text,
                ("loss", LOSSES, self.loss),
                *[(f"regularizers.{i}", REGULARIZERS, r) for i, r in enumerate(self.regularizers)],
                ("augment", AUGMENTATIONS, self.augment)]

    def text_users(self) -> list[str]:
        """Config keys of the components that declare they read sentence embeddings (`uses_text`)."""
        return [f"{where} {c.name!r}" for where, reg, c in self.components()
                if reg.get(c.name, where).declares("uses_text", False)]

    def label_users(self) -> list[str]:
        """Config keys of the components that declare they need class labels (`uses_labels`)."""
        return [f"{where} {c.name!r}" for where, reg, c in self.components()
                if reg.get(c.name, where).declares("uses_labels", False)]

    @property
    def conditional(self) -> bool:
        """Whether labels are fed to G and D: some chosen component declares that it uses them."""
        return bool(self.label_users())

    def to_dict(self) -> dict[str, Any]:
        return {
            **({"plugins": list(self.plugins)} if self.plugins else {}),
            "seed": self.seed,
            "data": self.data.to_dict(),
            "model": self.model.to_dict(),
            "conditioning": self._conditioning_dict(),
            "loss": self.loss.to_dict(),
            "regularizers": [r.to_dict() for r in self.regularizers],
            "augment": self.augment.to_dict(),
            "optim": _plain(dataclasses.asdict(self.optim)),
            "train": dataclasses.asdict(self.train),
            "eval": dataclasses.asdict(self.eval),
            **({"schedules": [sch.to_dict() for sch in self.schedules]} if self.schedules else {}),
        }

    def _conditioning_dict(self) -> dict[str, Any]:
        """The conditioning section; `fake_labels` only when not the default, so configs saved before the key existed
        compare equal to today's (resuming them needs no --allow-config-change)."""
        out: dict[str, Any] = {"g": self.g_cond.to_dict(), "d": self.d_head.to_dict()}
        if self.fake_labels != FAKE_LABELS_DEFAULT:
            out["fake_labels"] = self.fake_labels
        if self.text is not None:
            out["text"] = self.text.to_dict()
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _plain(d: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


_TOP_KEYS = ("plugins", "seed", "data", "model", "conditioning", "loss", "regularizers", "augment", "optim", "train",
             "eval", "schedules")
_DEFAULTS = {
    "plugins": [],
    "seed": 0,
    "conditioning": {"g": {"name": "none"}, "d": {"name": "linear"}},
    "loss": {"name": "hinge"},
    "regularizers": [],
    "augment": {"name": "none"},
    "optim": {},
    "train": {},
    "eval": {},
}


def _component(raw: Any, registry: Registry, where: str) -> Component:
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict):
        raise GanforgeError(f"{where}: expected a mapping with 'name' (one of: {', '.join(registry.names())}), got {raw!r}")
    if "name" not in raw:
        raise GanforgeError(f"{where}.name: missing; choose one of: {', '.join(registry.names())}")
    opts = {k: v for k, v in raw.items() if k != "name"}
    name = raw["name"]
    if not isinstance(name, str):
        raise GanforgeError(f"{where}.name: expected a string, got {name!r}")
    return Component(name, registry.validate(name, opts, where))


def data_component(raw: Any, where: str = "data") -> Component:
    """A validated `data` section ({name: ..., **options}) on its own, e.g. from an export's config.json."""
    from .registries import DATASETS, load_all

    load_all()
    return _component(raw, DATASETS, where)


def _section(cls: type, raw: Any, where: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise GanforgeError(f"{where}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        if key not in names:
            raise GanforgeError(f"{where}.{key}: unknown key; valid keys: {', '.join(names)}")
        kwargs[key] = check_type(value, hints[key], f"{where}.{key}")
    return cls(**kwargs)


def from_dict(raw: dict[str, Any]) -> RunConfig:
    """Validate a raw config mapping (after overrides) into a RunConfig."""
    from .registries import (ARCHITECTURES, AUGMENTATIONS, D_HEADS, DATASETS, G_CONDITIONING, LOSSES, METRICS,
                             REGULARIZERS, TEXT_ENCODERS, load_all, load_plugins)

    if not isinstance(raw, dict):
        raise GanforgeError(f"config: expected a mapping at the top level, got {type(raw).__name__}")
    for key in raw:
        if key not in _TOP_KEYS:
            raise GanforgeError(f"{key}: unknown top-level key; valid keys: {', '.join(_TOP_KEYS)}")
    plugins = raw.get("plugins") or []
    if not isinstance(plugins, list):
        raise GanforgeError(f"plugins: expected a list of module names, got {plugins!r}")
    load_all()
    load_plugins(plugins)
    for key in ("data", "model"):
        if key not in raw:
            raise GanforgeError(f"{key}: missing section (a mapping with 'name')")
    raw = {**copy.deepcopy(_DEFAULTS), **raw}
    cond = raw["conditioning"] or {}
    if not isinstance(cond, dict) or set(cond) - {"g", "d", "fake_labels", "text"}:
        raise GanforgeError(f"conditioning: expected a mapping with keys g, d (and optionally fake_labels, text), "
                            f"got {cond!r}")
    regs = raw["regularizers"] or []
    if not isinstance(regs, list):
        raise GanforgeError(f"regularizers: expected a list of mappings with 'name', got {regs!r}")
    cfg = RunConfig(
        seed=check_type(raw["seed"], int, "seed"),
        data=_component(raw["data"], DATASETS, "data"),
        model=_component(raw["model"], ARCHITECTURES, "model"),
        g_cond=_component(cond.get("g", "none"), G_CONDITIONING, "conditioning.g"),
        d_head=_component(cond.get("d", "linear"), D_HEADS, "conditioning.d"),
        loss=_component(raw["loss"], LOSSES, "loss"),
        regularizers=[_component(r, REGULARIZERS, f"regularizers.{i}") for i, r in enumerate(regs)],
        augment=_component(raw["augment"], AUGMENTATIONS, "augment"),
        optim=_section(OptimConfig, raw["optim"], "optim"),
        train=_section(TrainConfig, raw["train"], "train"),
        eval=_section(EvalConfig, raw["eval"], "eval"),
        plugins=list(plugins),
        fake_labels=check_type(cond.get("fake_labels", FAKE_LABELS_DEFAULT), str, "conditioning.fake_labels"),
        text=_component(cond["text"], TEXT_ENCODERS, "conditioning.text") if cond.get("text") is not None else None,
        schedules=parse_schedules(raw.get("schedules")),
    )
    cfg.eval.metrics = [metric_spec(m, METRICS, f"eval.metrics.{i}") for i, m in enumerate(cfg.eval.metrics)]
    _check_values(cfg)
    _check_declarations(cfg)
    return cfg


def metric_spec(raw: Any, registry: Registry, where: str) -> str | dict[str, Any]:
    """A validated metric choice: its name, or {name, **options} when it has options (kept in that form)."""
    comp = _component(raw, registry, where)
    return comp.to_dict() if comp.options else comp.name


def check_requires(who: str, requires: set | frozenset, head: str, provided: set | frozenset) -> None:
    """A one-line error when a term reads D outputs the chosen D head does not provide."""
    missing = set(requires) - set(provided)
    if missing:
        raise GanforgeError(f"{who} needs D output(s) {', '.join(sorted(missing))}, which D head {head!r} does not "
                            f"provide (it provides: {', '.join(sorted(provided)) or 'adv only'})")


def _check_declarations(cfg: RunConfig) -> None:
    """What components declare about each other: D outputs terms read, decomposability under accumulation."""
    from .registries import D_HEADS

    from .registries import ARCHITECTURES

    provided = set(D_HEADS.get(cfg.d_head.name).declares("provides", frozenset()))
    style = ARCHITECTURES.get(cfg.model.name, "model").declares("style_based", False)
    for where, reg, comp in cfg.components():
        entry = reg.get(comp.name, where)
        if entry.declares("needs_style_generator", False) and not style:
            raise GanforgeError(f"{where}: {comp.name!r} needs a style-based generator (mapping + synthesis, e.g. "
                                f"model.name=style-mlp); architecture {cfg.model.name!r} is not one")
        family = entry.declares("needs_architecture", None)
        if family is not None and cfg.model.name != family:
            raise GanforgeError(f"{where}: {comp.name!r} works on the {family!r} architecture's D only; set "
                                f"model.name={family} (got {cfg.model.name!r})")
        check_requires(f"{where}: {comp.name!r}", entry.declares("requires", frozenset()), cfg.d_head.name, provided)
        if cfg.train.accumulate > 1 and not entry.declares("decomposable", True):
            raise GanforgeError(f"{where}: {comp.name!r} is computed over the whole batch and cannot be split into "
                                f"accumulation rounds; set train.accumulate=1 (got {cfg.train.accumulate})")


def _check_text(cfg: RunConfig) -> None:
    """A text-conditional run: a text encoder, components that read captions (G's included), no class labels."""
    users = cfg.text_users()
    if users and cfg.text is None:
        raise GanforgeError(f"{users[0]}: conditions on captions, but no text encoder is chosen; set "
                            f"conditioning.text (e.g. {{name: learned}}) and use a captioned dataset")
    if cfg.text is not None and not users:
        raise GanforgeError("conditioning.text: a text encoder is chosen but no component reads its embeddings; "
                            "choose text-conditional components (e.g. conditioning g=text-cbn, d=text-projection)")
    from .registries import G_CONDITIONING

    g_entry = G_CONDITIONING.get(cfg.g_cond.name, "conditioning.g")
    if cfg.text is not None and not g_entry.declares("uses_text", False):
        raise GanforgeError(f"conditioning.g {cfg.g_cond.name!r}: does not read captions, so G would ignore the text "
                            f"of a text-conditional run; choose a text G conditioning (e.g. text-cbn or dfgan)")
    if cfg.text is not None and cfg.conditional:
        raise GanforgeError(f"conditioning.text: text conditioning cannot be combined with class labels "
                            f"({', '.join(cfg.label_users())}); choose components that read captions only")


def schedule_components(cfg: RunConfig) -> dict[str, tuple[str, dict[str, Any], dict[str, Any]]]:
    """Config key -> (name, options given, option defaults) of the components a schedule may address."""
    return {where: (comp.name, comp.options, reg.get(comp.name, where).defaults())
            for where, reg, comp in cfg.components() if where == "loss" or where == "augment"
            or where.startswith("regularizers.")}


def _check_schedules(cfg: RunConfig) -> None:
    """Every schedule addresses a value this config has (its start is the configured value)."""
    components = schedule_components(cfg)
    for i, sch in enumerate(cfg.schedules):
        if sch.key.split(".")[0] in ("loss", "regularizers", "augment"):
            component_target(sch.key, components, f"schedules.{i}")
        elif sch.key == "train.ema_kimg" and cfg.train.ema_kimg <= 0 and sch.to <= 0:
            raise GanforgeError(f"schedules.{i}: train.ema_kimg stays 0 (ema_decay is used), so the schedule does "
                                f"nothing; set `to` > 0")
    if cfg.train.ema_kimg < 0 or cfg.train.ema_rampup < 0:
        raise GanforgeError(f"train.ema_kimg / train.ema_rampup: expected numbers >= 0, got {cfg.train.ema_kimg} / "
                            f"{cfg.train.ema_rampup}")


def _check_values(cfg: RunConfig) -> None:
    positive = {"train.steps": cfg.train.steps, "train.batch_size": cfg.train.batch_size,
                "train.accumulate": cfg.train.accumulate, "optim.d_steps": cfg.optim.d_steps,
                "train.keep_ckpts": cfg.train.keep_ckpts, "eval.n": cfg.eval.n}
    for key, value in positive.items():
        if value < 1:
            raise GanforgeError(f"{key}: expected a positive integer, got {value}")
    every = {f"train.{k}": (getattr(cfg.train, k), "at the end only")
             for k in ("log_every", "sample_every", "ckpt_every", "mode_every")}
    for key, (value, zero) in {**every, "eval.every": (cfg.eval.every, "no evaluation during training")}.items():
        if value < 0:
            raise GanforgeError(f"{key}: expected a step interval >= 0 (0: {zero}), got {value}")
    if cfg.train.amp not in _AMP_MODES:
        raise GanforgeError(f"train.amp: expected one of {', '.join(_AMP_MODES)}, got {cfg.train.amp!r}")
    from .training.phases import LR_SCHEDULES
    from .training.phase_runner import FAKE_LABELS

    if cfg.fake_labels not in FAKE_LABELS:
        raise GanforgeError(f"conditioning.fake_labels: expected one of {', '.join(FAKE_LABELS)}, got "
                            f"{cfg.fake_labels!r}")
    _check_text(cfg)
    _check_schedules(cfg)
    if cfg.fake_labels != FAKE_LABELS_DEFAULT and not cfg.conditional:
        raise GanforgeError(f"conditioning.fake_labels: {cfg.fake_labels!r} draws G's class labels, but no chosen "
                            f"component uses labels (the run is unconditional); remove it or choose a "
                            f"class-conditional G / D (e.g. conditioning g=cbn, d=projection)")

    if cfg.optim.lr_decay not in LR_SCHEDULES:
        raise GanforgeError(f"optim.lr_decay: expected one of {', '.join(LR_SCHEDULES)}, got {cfg.optim.lr_decay!r}")
    if not 0.0 <= cfg.optim.lr_decay_start < 1.0:
        raise GanforgeError(f"optim.lr_decay_start: expected a fraction in [0, 1), got {cfg.optim.lr_decay_start}")
    for key in ("guard_value", "guard_output", "guard_collapse"):
        if not getattr(cfg.train, key) >= 0:
            raise GanforgeError(f"train.{key}: expected a bound >= 0 (0: off), got {getattr(cfg.train, key)}")
    if cfg.train.guard_patience < 1:
        raise GanforgeError(f"train.guard_patience: expected a positive number of G steps, got "
                            f"{cfg.train.guard_patience}")
    if cfg.train.threads < 0:
        raise GanforgeError(f"train.threads: expected a thread count >= 0 (0: torch's default), got "
                            f"{cfg.train.threads}")
    if cfg.train.init_from is not None and not cfg.train.init_from.strip():
        raise GanforgeError("train.init_from: expected a source run directory or checkpoint file (or null), got ''")
    if not 0.0 <= cfg.train.ema_decay < 1.0:
        raise GanforgeError(f"train.ema_decay: expected a value in [0, 1), got {cfg.train.ema_decay}")
    if cfg.train.batch_size % cfg.train.accumulate:
        raise GanforgeError(f"train.batch_size: {cfg.train.batch_size} is not divisible by train.accumulate="
                            f"{cfg.train.accumulate}")
    for key in ("g_lr", "d_lr", "eps"):
        value = getattr(cfg.optim, key)
        if not value > 0:
            raise GanforgeError(f"optim.{key}: expected a number > 0, got {value}")
    for i, beta in enumerate(cfg.optim.betas):
        if not 0.0 <= beta < 1.0:
            raise GanforgeError(f"optim.betas[{i}]: expected a number in [0, 1), got {beta}")


def load_config(path: str | Path, overrides: list[str] = ()) -> RunConfig:
    """YAML file (or preset name) + dotted overrides -> validated RunConfig."""
    return from_dict(apply_overrides(load_raw(path), list(overrides)))

"""Subcommands: each `add_*` registers its parser; each `cmd_*` does the work through the public API."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import GanforgeError


# --sampler of `sample` and `eval`
SAMPLER_HELP = ("draw with a sampling method (`ganforge list samplers`): ddls, drs or logan use the run's exported "
                "D, hubness needs none; options as ddls:steps=100:step_size=0.01; default none: plain G sampling")

def _writable_dir(path: Path, what: str) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".ganforge-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise GanforgeError(f"{what} {path}: not writable ({e.strerror})") from e
    return path


def check_device(text: str, flag: str = "--device") -> str:
    """A torch device string that exists on this machine, else a one-line error."""
    from ..training.distributed import check_device as _check

    _check(text, flag)
    return text


# ------------------------------------------------------------------------------------------------------------ train
def add_train(sub) -> None:
    p = sub.add_parser("train", help="train a GAN from a YAML config or preset",
                       description="Train from CONFIG (a YAML file or preset name) with dotted overrides, e.g. "
                                   "`ganforge train ring8 train.steps=2000 optim.d_lr=4e-4`. Re-running with the "
                                   "same --out resumes from the latest checkpoint.")
    p.add_argument("config", help="YAML file or preset name (see `ganforge list presets`)")
    p.add_argument("overrides", nargs="*", help="KEY=VALUE overrides (train.steps=2000 regularizers.0.gamma=5)")
    p.add_argument("--out", help="run directory (default: runs/<config name>)")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--allow-config-change", action="store_true",
                   help="resume even though the config changes how training computes (the diff and its step are "
                        "recorded in RUN/history.jsonl; the earlier config is kept as config-until-step-N.yaml)")
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    from ..config import load_config
    from ..training.trainer import train

    cfg = load_config(args.config, args.overrides)
    if args.dry_run:
        print(cfg.to_yaml(), end="")
        return 0
    out = Path(args.out or Path("runs") / Path(args.config).stem)
    if int(os.environ.get("RANK", "0")) == 0:
        _writable_dir(out, "--out")
    summary = train(cfg, out, progress=not args.no_progress, allow_config_change=args.allow_config_change)
    if int(os.environ.get("RANK", "0")) == 0:
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items())
        print(f"done: {out} ({shown}); generator exported to {out / 'export'}")
    return 0


# ----------------------------------------------------------------------------------------------------------- sample
def add_sample(sub) -> None:
    p = sub.add_parser("sample", help="generate images from a run or an exported generator")
    p.add_argument("source", help="run directory, export directory or generator.safetensors")
    p.add_argument("--n", type=int, default=64, help="number of samples")
    p.add_argument("--out", default="samples.png", help="grid PNG path, or a directory for one PNG per sample")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--class", dest="label", type=int, default=None, help="class label for conditional generators")
    p.add_argument("--text", action="append", default=None,
                   help="caption for a text-conditional generator (repeat for several; the n samples cycle "
                        "through them)")
    p.add_argument("--truncation", type=float, default=None, help="truncation threshold psi (resample |z| > psi)")
    p.add_argument("--sampler", default=None, help=SAMPLER_HELP)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_sample)


_OTHER_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def cmd_sample(args) -> int:
    import torch

    from ..data.base import image_grid, modality_from_config
    from ..samplers.base import bind, build_sampler
    from ..sampling import generate
    from ..training.export import load_generator
    from ..training.logging import save_png

    if args.n < 1:
        raise GanforgeError(f"--n: expected a positive number of samples, got {args.n}")
    sampler = build_sampler(args.sampler)  # a bad name or option fails before anything is loaded
    G = load_generator(args.source, device=check_device(args.device))
    if args.label is not None and not 0 <= args.label < max(G.num_classes, 0):
        what = "is unconditional" if G.num_classes == 0 else f"has classes 0..{G.num_classes - 1}"
        raise GanforgeError(f"--class {args.label}: this generator {what}")
    if args.truncation is not None and args.truncation <= 0:
        raise GanforgeError(f"--truncation: expected a positive threshold, got {args.truncation}")
    labels = args.label if args.text is None else _text_condition(args, G)
    modality = modality_from_config(G.export_config["modality"])
    out = Path(args.out)
    if out.suffix.lower() in _OTHER_IMAGE_SUFFIXES:
        raise GanforgeError(f"--out {out}: samples are written as PNG; give a .png path or a directory")
    if out.suffix.lower() != ".png" and modality.kind != "image":
        raise GanforgeError(f"--out {out}: this generator makes {modality.kind}, not images; give a .png path for "
                            f"a scatter plot")
    grid = out.suffix.lower() == ".png"
    _writable_dir(out.parent if grid else out, "--out")  # before generating: a bad path fails fast
    source = bind(G, sampler, device=args.device)  # with a sampler: G and the D exported next to it
    with torch.no_grad():
        x = generate(source, args.n, seed=args.seed, labels=labels, truncation=args.truncation, device=args.device)
    if grid:
        save_png(modality.render(x), out)
        print(f"wrote {out} ({args.n} samples)")
    else:
        for i, img in enumerate(modality.from_model(x)):
            save_png(image_grid(img[None], nrow=1, pad=0), out / f"{i:06d}.png")
        print(f"wrote {args.n} images to {out}")
    if sampler is not None and sampler.summary():
        print(sampler.summary())
    return 0


def _text_condition(args, G):
    """Sentence embeddings (n, text_dim) of the --text captions, cycled over the n samples."""
    import torch

    from ..training.export import load_text_encoder

    if args.label is not None:
        raise GanforgeError("--text: give either --class or --text, not both")
    texts = [t.strip() for t in args.text]
    if not all(texts):
        raise GanforgeError("--text: a caption is empty; give the words of the image to generate")
    if G.text_dim <= 0:
        raise GanforgeError(f"--text: this generator is not text-conditional; sample it without --text"
                            f"{' (use --class)' if G.num_classes > 0 else ''}")
    encoder = load_text_encoder(args.source)
    with torch.no_grad():
        e = encoder(texts).sentence.float().cpu()  # (T, text_dim)
    return e[torch.arange(args.n) % len(texts)]


# ------------------------------------------------------------------------------------------------------------- list
def add_list(sub) -> None:
    p = sub.add_parser("list", help="list registered components (or presets)")
    p.add_argument("kind", nargs="?", help="architectures, g-conditioning, d-heads, losses, regularizers, "
                                           "augmentations, datasets, backbones, metrics, samplers, explorers, ... "
                                           "or presets (no kind: all of them)")
    p.set_defaults(func=cmd_list)


def cmd_list(args) -> int:
    from ..config import presets_dir
    from ..registries import ALL, load_all

    load_all()
    kinds = list(ALL) + ["presets"]
    if args.kind and args.kind not in kinds:
        raise GanforgeError(f"list {args.kind!r}: unknown kind; choose one of: {', '.join(kinds)}")
    for kind in [args.kind] if args.kind else kinds:
        print(f"{kind}:")
        if kind == "presets":
            rows = []
            for p in sorted(presets_dir().glob("*.yaml")):
                first = p.read_text().splitlines()[0] if p.read_text() else ""
                rows.append((p.stem, first.lstrip("# ").strip()))
        else:
            rows = ALL[kind].describe()
        width = max((len(n) for n, _ in rows), default=0)
        for name, desc in rows:
            print(f"  {name.ljust(width)}  {desc}")
    return 0


# ------------------------------------------------------------------------------------------------------------- data
def add_data(sub) -> None:
    p = sub.add_parser("data", help="dataset tools")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    dsub.required = True
    pk = dsub.add_parser("pack", help="pack an image folder or a dataset into one fast-loading file")
    pk.add_argument("src", help="image folder or registered dataset name")
    pk.add_argument("out", help="output file (.safetensors)")
    pk.add_argument("--resolution", help="N for NxN or HxW, e.g. 64 or 64x128 (default: keep the first image's size)")
    pk.add_argument("--resize", default="center-crop", help="center-crop | pad | stretch")
    pk.add_argument("--channels", type=int, default=3, help="1 or 3")
    pk.add_argument("--force", action="store_true", help="replace OUT if it already exists")
    pk.add_argument("--no-progress", action="store_true", help="no progress bars")
    pk.set_defaults(func=cmd_pack)


def _parse_resolution(text: str | None):
    if text is None:
        return None
    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError:
        raise GanforgeError(f"--resolution {text!r}: expected N or HxW, e.g. 64 or 64x128") from None
    if len(parts) not in (1, 2) or min(parts) < 1:
        raise GanforgeError(f"--resolution {text!r}: expected N or HxW, e.g. 64 or 64x128")
    return parts[0] if len(parts) == 1 else parts


def cmd_pack(args) -> int:
    from ..data.pack import pack_source

    out = Path(args.out)  # pack_source checks it (directory, writable, exists without --force) before decoding
    info = pack_source(args.src, str(out), resolution=_parse_resolution(args.resolution), resize=args.resize,
                       channels=args.channels, progress=not args.no_progress, overwrite=args.force)
    print(f"wrote {out}" + (f" ({info})" if info else ""))
    return 0


def _add_demo(sub) -> None:
    from .demo_cmd import add_demo

    add_demo(sub)


def _add_eval(sub) -> None:
    from .eval_cmd import add_eval

    add_eval(sub)


def _add_explore(sub) -> None:
    from .explore_cmd import add_explore

    add_explore(sub)


def _add_report(sub) -> None:
    from .report_cmd import add_report

    add_report(sub)


def _add_lab(sub) -> None:
    from .lab_cmd import add_lab

    add_lab(sub)


REGISTER = [add_train, add_sample, _add_eval, add_list, add_data, _add_demo, _add_explore, _add_report, _add_lab]

"""`ganforge explore RUN METHOD [KEY=VALUE ...]`: run a latent-space / spectrum method on a trained generator.

Writes RUN/explore/METHOD/ (figures, result.json, a self-contained index.html); `ganforge list explorers` lists the
methods, and each method's options are its constructor's keyword arguments (docs/explore.md).
"""
from __future__ import annotations

from ..errors import GanforgeError
from .commands import _writable_dir, check_device


def add_explore(sub) -> None:
    p = sub.add_parser("explore", help="look inside a trained generator (interpolation, spectrum, SeFa, ...)",
                       description="Run explorer METHOD (`ganforge list explorers`) on RUN (a run dir or export) "
                                   "with KEY=VALUE options, e.g. `ganforge explore runs/digits interpolate "
                                   "mode=slerp steps=10`. Writes figures, result.json and index.html into "
                                   "RUN/explore/METHOD (or --out).")
    p.add_argument("run", help="run directory, export directory or generator.safetensors")
    p.add_argument("method", help="explorer name (see `ganforge list explorers`)")
    p.add_argument("options", nargs="*", help="KEY=VALUE options of the explorer (steps=10 mode=lerp)")
    p.add_argument("--out", help="output directory (default: RUN/explore/METHOD)")
    p.add_argument("--seed", type=int, default=0, help="seed of the latents the method draws")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_explore)


def parse_options(items: list[str]) -> dict:
    """KEY=VALUE strings -> {key: YAML-parsed value}; one-line errors for malformed or repeated keys."""
    from ..config_files import parse_value

    options: dict = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise GanforgeError(f"explore option {item!r}: expected KEY=VALUE, e.g. steps=10")
        key = key.strip()
        if key in options:
            raise GanforgeError(f"explore option {key!r}: given twice")
        options[key] = parse_value(text)
    return options


def cmd_explore(args) -> int:
    from pathlib import Path

    from ..explore.base import build_explorer, explore, explore_dir
    from ..training.export import load_generator

    options = parse_options(args.options)
    build_explorer(args.method, options)  # an unknown method or bad option fails before the generator is loaded
    G = load_generator(args.run, device=check_device(args.device))
    out = Path(args.out) if args.out else explore_dir(G, args.method)
    _writable_dir(out.parent, "--out")
    dest = explore(G, args.method, options, out=out, seed=args.seed, progress=not args.no_progress,
                   device=args.device)
    print(f"wrote {dest / 'index.html'} (and result.json, figures)")
    return 0

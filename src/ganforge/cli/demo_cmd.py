"""`ganforge demo`: train the ring8 and stacked-digits presets on bundled data, print mode metrics, write grids."""
from __future__ import annotations

import time
from pathlib import Path

DEMO_PRESETS = ("ring8", "stacked-digits")


def add_demo(sub) -> None:
    p = sub.add_parser("demo", help="train the ring8 and stacked-digits presets (about 10 min on 2 CPU cores)")
    p.add_argument("--out", default="runs/demo", help="directory for the demo runs")
    p.add_argument("--steps", type=int, default=None, help="override train.steps for a quicker look")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    from ..config import load_config
    from ..training.trainer import train

    out = Path(args.out)
    rows = []
    for preset in DEMO_PRESETS:
        overrides = [f"train.steps={args.steps}"] if args.steps else []
        cfg = load_config(preset, overrides)
        print(f"== {preset}: {cfg.model.name} on {cfg.data.name}, {cfg.train.steps} steps of batch {cfg.train.batch_size}")
        t0 = time.perf_counter()
        summary = train(cfg, out / preset, progress=not args.no_progress)
        minutes = (time.perf_counter() - t0) / 60
        grids = sorted((out / preset / "samples").glob("fakes-*.png"))
        rows.append((preset, summary, minutes, grids[-1] if grids else None))
    print("\nmode coverage (PacGAN protocol; see docs/benchmarks.md for the published figures):")
    for preset, s, minutes, grid in rows:
        hq = f", high-quality {100 * s['hq_frac']:.1f}%" if "hq_frac" in s else ""
        print(f"  {preset:15s} modes {int(s.get('modes', 0))}{hq}, KL {s.get('kl', float('nan')):.3f}  "
              f"[{minutes:.1f} min]  samples: {grid}")
    return 0

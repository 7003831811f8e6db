"""Mode coverage within a time budget: the ring8 / grid25 / stacked-digits presets (PacGAN protocols).

Trains each preset and prints its mode metrics at every `mode_every` checkpoint with the elapsed wall time and the
process CPU time, so "N modes within M CPU-minutes" can be read off directly.

    python benchmarks/bench_modes.py [--presets ring8,grid25,stacked-digits] [--seeds 0,1,2] [--out runs/bench-modes]
                                     [KEY=VALUE ...]

With several seeds, each preset is trained once per seed and a last line gives the worst and mean final values.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from ganforge.config import load_config
from ganforge.training.trainer import train


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--presets", default="ring8,grid25,stacked-digits")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default: the preset's own seed)")
    p.add_argument("--out", default="runs/bench-modes")
    p.add_argument("overrides", nargs="*")
    a = p.parse_args()
    seeds = [None] if a.seeds is None else [int(s) for s in a.seeds.split(",")]
    for preset in a.presets.split(","):
        finals = [run_one(preset, seed, Path(a.out), a.overrides) for seed in seeds]
        if len(finals) > 1:
            for key in ("modes", "hq_frac", "kl"):
                values = [f[key] for f in finals if key in f]
                if values:
                    worst = max(values) if key == "kl" else min(values)
                    mean = sum(values) / len(values)
                    print(f"   {preset} over seeds {a.seeds}: {key} worst {worst:.4f} mean {mean:.4f}")


def run_one(preset: str, seed: int | None, out_root: Path, overrides: list[str]) -> dict:
    """Train `preset` (with `seed=` when given) from scratch; print its mode events; return the final summary."""
    out = out_root / (preset if seed is None else f"{preset}-seed{seed}")
    shutil.rmtree(out, ignore_errors=True)
    extra = [] if seed is None else [f"seed={seed}"]
    cfg = load_config(preset, ["train.tensorboard=false", *overrides, *extra])
    t0, c0 = time.perf_counter(), time.process_time()
    summary = train(cfg, out, progress=False)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"== {preset} (seed {cfg.seed}): {cfg.train.steps} steps x batch {cfg.train.batch_size}; "
          f"wall {wall / 60:.2f} min, process CPU {cpu / 60:.2f} min (includes periodic mode evaluation)")
    for line in (out / "metrics.jsonl").read_text().splitlines():
        e = json.loads(line)
        if e["event"] == "modes":
            hq = f" hq {100 * e['hq_frac']:.1f}%" if "hq_frac" in e else ""
            print(f"   step {e['step']:6d}: modes {e['modes']:.0f}{hq} KL {e['kl']:.4f}")
    print(f"   final: {json.dumps(summary)}", flush=True)
    return summary


if __name__ == "__main__":
    main()

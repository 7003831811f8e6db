"""Mode coverage within a time budget: the ring8 / grid25 / stacked-digits presets (PacGAN protocols).

Trains each preset and prints its mode metrics at every `mode_every` checkpoint with the elapsed wall time and the
process CPU time, so "N modes within M CPU-minutes" can be read off directly.

    python benchmarks/bench_modes.py [--presets ring8,grid25,stacked-digits] [--out runs/bench-modes] [KEY=VALUE ...]
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
    p.add_argument("--out", default="runs/bench-modes")
    p.add_argument("overrides", nargs="*")
    a = p.parse_args()
    for preset in a.presets.split(","):
        out = Path(a.out) / preset
        shutil.rmtree(out, ignore_errors=True)
        cfg = load_config(preset, ["train.tensorboard=false", *a.overrides])
        t0, c0 = time.perf_counter(), time.process_time()
        summary = train(cfg, out, progress=False)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"== {preset}: {cfg.train.steps} steps x batch {cfg.train.batch_size}; wall {wall / 60:.2f} min, "
              f"process CPU {cpu / 60:.2f} min (includes periodic mode evaluation)")
        for line in (out / "metrics.jsonl").read_text().splitlines():
            e = json.loads(line)
            if e["event"] == "modes":
                hq = f" hq {100 * e['hq_frac']:.1f}%" if "hq_frac" in e else ""
                print(f"   step {e['step']:6d}: modes {e['modes']:.0f}{hq} KL {e['kl']:.4f}")
        print(f"   final: {json.dumps(summary)}")


if __name__ == "__main__":
    main()

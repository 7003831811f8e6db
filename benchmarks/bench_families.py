"""Quality of every architecture family's CPU-scale preset on bundled data, over seeds, with its CPU time.

    python benchmarks/bench_families.py [--presets digits-sagan,digits-biggan,...] [--seeds 0,1] [--jobs 2]
                                        [--out runs/bench-families] [--set key=value ...] [--report]

Each preset (`src/ganforge/configs/<preset>.yaml`; default: every `digits-<family>` / `stacked-digits-<family>` preset
of a family in FAMILY_PRESETS) trains once per seed in its own process (one torch thread), then its exported G_ema is
scored against the training split with the bundled classifier backbone of its dataset: FID (and class-consistency
accuracy when the preset is class-conditional) on 2,000 samples for digits; FID and 1,000-mode coverage / KL on
26,000 samples for stacked-digits. `--set` applies dotted overrides to every preset (e.g. train.steps=500).
Results accumulate in OUT/results.jsonl (a rerun skips finished runs); the table is mean ± std over seeds.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_pool import run_all, table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ROOT / "src" / "ganforge" / "configs"
FAMILY_PRESETS = ("dcgan", "sagan", "biggan", "biggan-deep", "stylegan2", "r3gan", "fastgan", "projected", "vitgan",
                  "san")
EVAL = {  # dataset -> (backbone, samples)
    "digits": ("digits-classifier", 2000),
    "stacked-digits": ("stacked-digits-classifier", 10000),
}
KEYS = ("fid", "class_acc", "modes", "kl", "train_cpu_min", "train_wall_min")


def default_presets() -> list[str]:
    found = []
    for family in FAMILY_PRESETS:
        for data in EVAL:
            if (PRESETS / f"{data}-{family}.yaml").is_file():
                found.append(f"{data}-{family}")
    return found


def run_child(spec: dict) -> dict:
    import torch

    from ganforge.config import load_config
    from ganforge.metrics.evaluate import evaluate
    from ganforge.registries import DATASETS, load_all
    from ganforge.sampling import generate
    from ganforge.training.export import load_generator
    from ganforge.training.trainer import train

    torch.set_num_threads(1)
    out = Path(spec["out"])
    shutil.rmtree(out, ignore_errors=True)
    cfg = load_config(PRESETS / f"{spec['preset']}.yaml", [f"seed={spec['seed']}", "train.threads=1",
                                                          "train.tensorboard=false", *spec["overrides"]])
    t0, c0 = time.perf_counter(), time.process_time()
    train(cfg, out, progress=False)
    result = {"train_wall_min": (time.perf_counter() - t0) / 60, "train_cpu_min": (time.process_time() - c0) / 60,
              "steps": cfg.train.steps}
    load_all()
    data = cfg.data.name
    backbone, n = EVAL[data]
    refs = dict(cfg.data.options)
    if data == "stacked-digits":
        refs["n"] = 10000  # as bench_conditioning: 10 reference triples per class
    train_set = DATASETS.build(data, refs, split="train", cache_dir=None)
    metrics = "fid,class-acc" if cfg.conditional else "fid"
    result.update(evaluate(out / "export", train_set, metrics=metrics, backbone=backbone, n=n, progress=False))
    if data == "stacked-digits":
        G = load_generator(out / "export")
        labels = torch.arange(26000) % 1000 if cfg.conditional else None
        result.update(train_set.mode_metrics(generate(G, 26000, seed=0, labels=labels)))
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--presets", default=None)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", default="runs/bench-families")
    p.add_argument("--set", nargs="*", default=[], help="dotted overrides for every preset")
    p.add_argument("--report", action="store_true")
    a = p.parse_args()
    if a.child:
        print(json.dumps(run_child(json.loads(a.child))))
        return
    presets = a.presets.split(",") if a.presets else default_presets()
    for preset in presets:
        if not (PRESETS / f"{preset}.yaml").is_file():
            raise SystemExit(f"--presets: no preset {preset!r} in {PRESETS}")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = ("-" + "-".join(s.replace("=", "") for s in a.set)) if a.set else ""
    specs = [{"key": f"{preset}{tag}-seed{seed}", "preset": preset, "name": preset + tag, "seed": seed, "overrides": list(a.set),
              "out": str(out / f"{preset}{tag}-seed{seed}")}
             for preset in presets for seed in (int(s) for s in a.seeds.split(","))]
    rows = run_all(__file__, specs, out, a.jobs, report_only=a.report)
    keys = tuple(k for k in KEYS if any(k in r for r in rows))
    print(table(rows, ("name",), keys))


if __name__ == "__main__":
    main()

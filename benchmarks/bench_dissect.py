"""GAN Dissection benchmark: do the units dissection matches to a concept remove it when switched off, more than as
many random units do?

Protocol (issue 11, "Measured"): an unconditional SN-DCGAN (hinge, Adam 2e-4 (0, 0.9), batch 64, EMA 0.999, one
thread) is trained on the procedural captioned shapes (`shapes-captions`, captions unused) for `--steps` G steps, or
reused when `--out` already holds its export. Then `ganforge explore RUN dissect` runs on G_ema with the bundled
shapes segmenter (its held-out IoU is printed too): per-unit concept IoU at the default middle layer with the IQR
thresholds, and for every concept present in the samples the average causal effect (ACE: the drop of the
segmenter's mean concept probability) of switching off the `--k` units with the highest IoU for it, against `k`
random units (`--draws` draws, mean ± std). CPU minutes are the process's own (`time.process_time`).

    python benchmarks/bench_dissect.py [--steps 3000] [--resolution 16] [--out runs/bench-dissect] [--k 4]
                                       [--n 500] [--n-ace 200] [--draws 10] [--layer NAME] [--seed 0]
                                       [--dissect-seed 0] [--insert]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def train_config(resolution: int, steps: int, seed: int) -> dict:
    return {
        "seed": seed,
        "data": {"name": "shapes-captions", "resolution": resolution, "n": 10000},
        "model": {"name": "dcgan", "z_dim": 64, "g_ch": 32, "d_ch": 32, "d_sn": True},
        "loss": {"name": "hinge"},
        "optim": {"g_lr": 2e-4, "d_lr": 2e-4, "betas": [0.0, 0.9]},
        "train": {"steps": steps, "batch_size": 64, "ema_decay": 0.999, "log_every": 100, "sample_every": 0,
                  "ckpt_every": 1000, "mode_every": 0, "tensorboard": False, "threads": 1},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--resolution", type=int, default=16)
    ap.add_argument("--out", default="runs/bench-dissect")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--n-ace", type=int, default=200)
    ap.add_argument("--draws", type=int, default=10)
    ap.add_argument("--layer", default=None)
    ap.add_argument("--seed", type=int, default=0, help="seed of the training run")
    ap.add_argument("--dissect-seed", type=int, default=0, help="seed of the dissected / ablated samples")
    ap.add_argument("--insert", action="store_true", help="also measure insertion (units set to their h99)")
    args = ap.parse_args()

    import torch

    from ganforge.config import from_dict
    from ganforge.data.shapes_segmenter import load_shapes_segmenter
    from ganforge.explore import explore
    from ganforge.training.trainer import train

    torch.set_num_threads(1)
    run = Path(args.out)
    if (run / "export" / "generator.safetensors").is_file():
        print(f"reusing {run}")
        train_cpu = json.loads((run / "bench-train.json").read_text())["train_cpu_min"] \
            if (run / "bench-train.json").is_file() else None
    else:
        t0 = time.process_time()
        train(from_dict(train_config(args.resolution, args.steps, args.seed)), run, progress=False)
        train_cpu = (time.process_time() - t0) / 60
        (run / "bench-train.json").write_text(json.dumps({"train_cpu_min": train_cpu, "steps": args.steps}))
    print(f"train: {args.steps} steps, {train_cpu:.2f} CPU-min" if train_cpu is not None else "train: (reused)")

    t0 = time.process_time()
    seg = load_shapes_segmenter(args.resolution)
    print(f"segmenter r{args.resolution}: {time.process_time() - t0:.1f} CPU-s (0 when cached); held-out IoU "
          + ", ".join(f"{c} {v:.3f}" for c, v in seg.heldout_iou.items())
          + "; with noise: mean " + f"{seg.heldout_iou_noisy['mean']:.3f}")

    options = {"n": args.n, "n_ace": args.n_ace, "ablate_k": args.k, "random_draws": args.draws,
               "insert": args.insert}
    if args.layer:
        options["layer"] = args.layer
    t0, w0 = time.process_time(), time.time()
    out = explore(run, "dissect", options, seed=args.dissect_seed, progress=False)
    cpu, wall = time.process_time() - t0, time.time() - w0
    res = json.loads((out / "result.json").read_text())["results"]
    print(f"dissect: layer {res['layer']} {tuple(res['layer_shape'])}, {res['units']} units, n {res['n']}; "
          f"{cpu:.1f} CPU-s, {wall:.1f} s wall; matched units (IoU >= 0.05): {res['matched_units']}")
    print("units per concept: " + ", ".join(f"{c} {v}" for c, v in res["units_per_concept"].items()))
    print("top units: " + ", ".join(f"{u['unit']}:{u['concept']} {u['iou']:.2f}" for u in res["top_units"]))
    ace = res["ace"]
    print(f"\nACE (drop of the mean concept probability), k = {ace['k']}, {ace['n']} samples, "
          f"{ace['random_draws']} random draws")
    print("| concept | base prob | top-k unit IoU | ACE top-k | ACE random (mean ± std) | relative drop top / random "
          "| other concepts' relative drop (top-k) |" + (" insertion top-k / random |" if args.insert else ""))
    print("|---|---|---|---|---|---|---|" + ("---|" if args.insert else ""))
    for c, r in ace["concepts"].items():
        ious = "/".join(f"{v:.2f}" for v in r["unit_iou"])
        others = r["others_relative_drop_mean"]
        line = (f"| {c} | {r['base_prob']:.3f} | {ious} | {r['ace_top']:.4f} | {r['ace_random_mean']:.4f} ± "
                f"{r['ace_random_std']:.4f} | {r['relative_drop_top']:.2f} / {r['relative_drop_random']:.2f} | "
                f"{'' if others is None else f'{others:.2f}'} |")
        if args.insert:
            line += f" {r['insert_top']:.4f} / {r['insert_random_mean']:.4f} ± {r['insert_random_std']:.4f} |"
        print(line)
    if "mean_ace_top" in ace:
        print(f"| mean | | | {ace['mean_ace_top']:.4f} | {ace['mean_ace_random']:.4f} | "
              f"{ace['mean_relative_drop_top']:.2f} / {ace['mean_relative_drop_random']:.2f} | |")
    print(f"\nabsent concepts: {', '.join(ace['absent']) or 'none'}; page: {out / 'index.html'}")
    print(json.dumps({"train_cpu_min": train_cpu, "dissect_cpu_s": cpu, "dissect_wall_s": wall,
                      "layer": res["layer"], "mean_ace_top": ace.get("mean_ace_top"),
                      "mean_ace_random": ace.get("mean_ace_random"), "machine_threads": os.cpu_count()}))


if __name__ == "__main__":
    main()

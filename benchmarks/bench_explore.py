"""Explore benchmark (issue 11): do the latent tools find what they claim on generators trained on bundled data, and
what does each cost on a CPU?

Two unconditional DCGANs on scikit-learn's digits at 16 px (`--steps` G steps, one thread, seed 0): one on the full
training split (1,437 images), one on 100 of them (`data.n=100`, a generator that can memorise). Then, on G_ema of
the full-set run, each explorer with the digits classifier as the attribute classifier:

- SeFa / GANSpace / Householder (unsupervised): each top direction's change of the class distribution (total
  variation per unit latent step) against random unit directions (mean +- std over 8);
- InterFaceGAN: the class-1 boundary n and the conditional direction n' (class 7 removed): change of P(1) and P(7);
- GradCtrl: masked (class 7's top-k saliency channels zeroed) vs unmasked gradient paths: change of P(1) and P(7);
- latent recovery on both runs: median recovery error train vs held out, gap and KS p-value;
- every other explorer once, for its CPU time.

    python benchmarks/bench_explore.py [--steps 2000] [--out runs/bench-explore]

Process CPU seconds per method (one thread) and the numbers go to OUT/results.json and a table on stdout.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

BASE = {
    "seed": 0,
    "data": {"name": "digits", "resolution": 16},
    "model": {"name": "dcgan", "z_dim": 32, "g_ch": 16, "d_ch": 16},
    "loss": {"name": "hinge"},
    "optim": {"g_lr": 2e-4, "d_lr": 2e-4, "betas": [0.5, 0.999]},
    "train": {"batch_size": 32, "ema_decay": 0.999, "log_every": 100, "sample_every": 0, "ckpt_every": 0,
              "tensorboard": False, "threads": 1},
}
RUNS = {"full": {}, "n100": {"n": 100}}

# method -> options (the digits classifier scores every image; "runs" = which trained run it explores)
METHODS = {
    "sefa": {"k": 5, "classifier": "digits", "measure_n": 128},
    "ganspace": {"k": 5, "classifier": "digits", "measure_n": 128},
    "householder": {"k": 5, "rank": 10, "finetune_steps": 200, "classifier": "digits", "measure_n": 128},
    "interfacegan": {"target": "class:1", "conditions": ["class:7"], "n": 5000, "samples": 64},
    "gradctrl": {"target": "class:1", "exclude": ["class:7"], "n": 5000, "samples": 64, "k": [8]},
    "recovery": {"n": 100, "steps": 50, "restarts": 4},
    "interpolate": {}, "spectrum": {}, "truncation": {"n": 2000}, "neighbours": {}, "tsne": {}, "ppl": {},
    "invert": {"n": 8, "steps": 200},
}


def train_runs(out: Path, steps: int) -> dict[str, Path]:
    from ganforge.config import from_dict
    from ganforge.training.trainer import train

    paths = {}
    for name, data in RUNS.items():
        path = out / name
        if not (path / "export").is_dir():
            raw = json.loads(json.dumps(BASE))
            raw["data"].update(data)
            raw["train"]["steps"] = steps
            t0 = time.process_time()
            train(from_dict(raw), path, progress=False)
            print(f"trained {name}: {(time.process_time() - t0) / 60:.1f} CPU-min", flush=True)
        paths[name] = path
    return paths


def run_method(method: str, run: Path, options: dict) -> tuple[dict, float]:
    from ganforge.explore import explore

    t0 = time.process_time()
    out = explore(run, method, options, progress=False)
    return json.loads((out / "result.json").read_text())["results"], time.process_time() - t0


def summary(method: str, res: dict) -> str:
    """One line of the numbers that answer the benchmark's question for this method."""
    if "attribute_change" in res:
        a = res["attribute_change"]
        return (f"class TV/unit: top-{len(a['directions'])} mean {a['best_change_mean']:.3f}, random "
                f"{a['random_best_change_mean']:.3f} +- {a['random_best_change_std']:.3f}")
    if method == "interfacegan":
        c = res["change_per_unit_step"]
        return "; ".join(f"{k}: dP(1) {v['class:1']:+.3f}, dP(7) {v['class:7']:+.3f}" for k, v in c.items())
    if method == "gradctrl":
        return "; ".join(f"{k}: dP(1) {res[f'change_per_unit_{k}']['class:1']:+.3f}, dP(7) "
                         f"{res[f'change_per_unit_{k}']['class:7']:+.3f}" for k in ("masked", "unmasked"))
    if method == "recovery":
        return (f"median err train {res['median_train']:.4f} / held-out {res['median_test']:.4f}, gap "
                f"{res['gap']:.3f}, KS p {res['ks_pvalue']:.2g}")
    return ""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--out", default="runs/bench-explore")
    p.add_argument("--methods", default=",".join(METHODS))
    a = p.parse_args()
    torch.set_num_threads(1)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = train_runs(out, a.steps)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    for method in a.methods.split(","):
        for name in (("full", "n100") if method == "recovery" else ("full",)):
            key = f"{method}@{name}"
            if key not in results:
                res, cpu = run_method(method, runs[name], METHODS[method])
                results[key] = {"cpu_s": cpu, "results": res}
                results_path.write_text(json.dumps(results, indent=1))
            r = results[key]
            print(f"{key:<18} {r['cpu_s']:7.1f} CPU-s  {summary(method, r['results'])}", flush=True)


if __name__ == "__main__":
    sys.exit(main())

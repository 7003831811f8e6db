"""Training throughput (img/s) and peak memory per architecture at batch 64, per numeric mode.

Each (architecture, mode) runs in its own subprocess (so peak RSS is its own): a few warm-up steps, then timed steps
of the full training step (D phase + G phase + EMA). Modes: fp32, cl (channels-last), bf16 (autocast), bf16+cl, and
fp16 on CUDA; any mode with a "+compile" suffix (e.g. bf16+cl+compile) also sets `train.compile` (the warm-up steps
then include the compilation: give at least 2). The families of PRESET_CASES run with their CIFAR-10 preset's model
section (hinge loss, no conditioning, 32 px). `--rounds R` repeats the whole table R times, interleaving the modes, and reports the median of
each cell and its ratio to fp32 in the same round (the machine is shared and noisy: ratios are the reliable figure).

    python benchmarks/bench_throughput.py [--steps 20] [--rounds 3] [--device cpu|cuda]
                                          [--archs mlp,dcgan,resnet,sagan,biggan,...]
                                          [--modes fp32,cl,bf16,bf16+cl,bf16+cl+compile] [--threads N]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

CASES = {
    # architecture -> (data section, model section)
    "mlp": ({"name": "ring8"}, {"name": "mlp"}),
    "dcgan": ({"name": "stacked-digits", "resolution": 32}, {"name": "dcgan"}),
    "resnet": ({"name": "stacked-digits", "resolution": 32}, {"name": "resnet"}),  # SNGAN CIFAR widths
    "sagan": ({"name": "stacked-digits", "resolution": 32}, {"name": "sagan"}),  # the same + attention, SN in G
    "dcgan-8px": ({"name": "stacked-digits", "resolution": 8},  # the stacked-digits preset's model
                  {"name": "dcgan", "z_dim": 64, "g_ch": 64, "d_ch": 64, "d_sn": True}),
}
# families timed with the model section of their CIFAR-10 preset (configs/<preset>.yaml), on 32 px stacked digits
PRESET_CASES = {"biggan": "cifar10-biggan", "biggan-deep": "cifar10-biggan-deep", "stylegan2": "cifar10-stylegan2",
                "r3gan": "cifar10-r3gan", "fastgan": "cifar10-fastgan", "projected-gan": "cifar10-projected",
                "vitgan": "cifar10-vitgan"}


def case(arch: str) -> tuple[dict, dict]:
    """(data section, model section) of a timed case."""
    if arch in CASES:
        return CASES[arch]
    from ganforge.config_files import load_raw, presets_dir

    model = load_raw(presets_dir() / f"{PRESET_CASES[arch]}.yaml")["model"]
    if "backbone" in model:  # a frozen pretrained D network (projected): seeded weights time the same, offline
        model = {**model, "backbone_weights": "random"}
    return {"name": "stacked-digits", "resolution": 32}, model


MODES = {"fp32": ("none", False), "cl": ("none", True), "bf16": ("bf16", False), "bf16+cl": ("bf16", True),
         "fp16": ("fp16", False), "fp16+cl": ("fp16", True)}
COMPILE = "+compile"  # mode suffix: train.compile on


def run_one(arch: str, steps: int, device: str, mode: str, warmup: int, threads: int) -> dict:
    import torch

    from ganforge.config import from_dict
    from ganforge.training.trainer import Trainer
    from ganforge.training.distributed import DistInfo
    import tempfile

    data, model = case(arch)
    compiled = mode.endswith(COMPILE)
    amp, channels_last = MODES[mode.removesuffix(COMPILE)]
    cfg = from_dict({"data": data, "model": model, "loss": {"name": "hinge"},
                     "train": {"batch_size": 64, "amp": amp, "channels_last": channels_last, "device": device,
                               "tensorboard": False, "threads": threads, "compile": compiled}})
    with tempfile.TemporaryDirectory() as d:
        tr = Trainer(cfg, d, progress=False, dist=DistInfo(), device=torch.device(device))
        for _ in range(warmup):
            tr.train_step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for _ in range(steps):
            tr.train_step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
    out = {"arch": arch, "mode": mode, "device": device, "img_per_s": steps * 64 / dt,
           "threads": torch.get_num_threads(),
           "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "G_params": sum(p.numel() for p in tr.G.parameters()), "D_params": sum(p.numel() for p in tr.D.parameters())}
    if device.startswith("cuda"):
        out["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--archs", default=",".join([*CASES, *PRESET_CASES]))
    p.add_argument("--modes", default=None, help="comma list of " + ", ".join(MODES) +
                   " (each optionally +compile); default fp32,cl,bf16,bf16+cl (plus fp16 on CUDA)")
    p.add_argument("--one", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        arch, mode = a.one.split(":")
        print(json.dumps(run_one(arch, a.steps, a.device, mode, a.warmup, a.threads)))
        return
    default = "fp32,cl,bf16,bf16+cl" + (",fp16" if a.device.startswith("cuda") else "")
    modes = (a.modes or default).split(",")
    unknown = [m for m in modes if m.removesuffix(COMPILE) not in MODES]
    if unknown:
        p.error(f"--modes: unknown {unknown}; choose from {', '.join(MODES)}, each optionally with {COMPILE}")
    results: dict[tuple[str, str], list[dict]] = {}
    for _ in range(a.rounds):
        for arch in a.archs.split(","):
            for mode in modes:
                r = subprocess.run([sys.executable, __file__, "--one", f"{arch}:{mode}", "--steps", str(a.steps),
                                    "--warmup", str(a.warmup), "--device", a.device, "--threads", str(a.threads)],
                                   capture_output=True, text=True, env=os.environ)
                if r.returncode != 0:
                    print(f"{arch:8s} {mode:8s} failed: {r.stderr.strip().splitlines()[-1]}")
                    continue
                results.setdefault((arch, mode), []).append(json.loads(r.stdout.strip().splitlines()[-1]))
    print(f"| arch | mode | img/s (median of {a.rounds}) | x fp32 | peak RSS MiB | peak GPU MiB | G params | D params |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for (arch, mode), runs in results.items():
        ips = statistics.median(r["img_per_s"] for r in runs)
        base = results.get((arch, modes[0]))
        ratio = (statistics.median(r["img_per_s"] / b["img_per_s"] for r, b in zip(runs, base)) if base else
                 float("nan"))
        gpu = f"{max(r.get('peak_gpu_mib', 0) for r in runs):.0f}" if "peak_gpu_mib" in runs[0] else "-"
        print(f"| {arch} | {mode} | {ips:.1f} | {ratio:.2f} | {max(r['peak_rss_mib'] for r in runs):.0f} | {gpu} | "
              f"{runs[0]['G_params']:,} | {runs[0]['D_params']:,} |")


if __name__ == "__main__":
    main()

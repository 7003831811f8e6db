"""Training throughput (img/s) and peak memory per architecture at batch 64.

Each architecture runs in its own subprocess (so peak RSS is its own): a few warm-up steps, then timed steps of the
full training step (D phase + G phase + EMA). On CUDA, also with bf16 / fp16 autocast.

    python benchmarks/bench_throughput.py [--steps 20] [--device cpu|cuda] [--archs mlp,dcgan,resnet]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

CASES = {
    # architecture -> (data section, model section)
    "mlp": ({"name": "ring8"}, {"name": "mlp"}),
    "dcgan": ({"name": "stacked-digits", "resolution": 32}, {"name": "dcgan"}),
    "resnet": ({"name": "stacked-digits", "resolution": 32}, {"name": "resnet"}),  # SNGAN CIFAR widths
}


def run_one(arch: str, steps: int, device: str, amp: str, warmup: int) -> dict:
    import torch

    from ganforge.config import from_dict
    from ganforge.training.trainer import Trainer
    from ganforge.training.distributed import DistInfo
    import tempfile

    data, model = CASES[arch]
    cfg = from_dict({"data": data, "model": model, "loss": {"name": "hinge"},
                     "train": {"batch_size": 64, "amp": amp, "device": device, "tensorboard": False}})
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
    out = {"arch": arch, "amp": amp, "device": device, "img_per_s": steps * 64 / dt, "threads": torch.get_num_threads(),
           "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "G_params": sum(p.numel() for p in tr.G.parameters()), "D_params": sum(p.numel() for p in tr.D.parameters())}
    if device.startswith("cuda"):
        out["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--archs", default=",".join(CASES))
    p.add_argument("--amp", default=None, help="comma list; default none on CPU, none,bf16,fp16 on CUDA")
    p.add_argument("--one", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        arch, amp = a.one.split(":")
        print(json.dumps(run_one(arch, a.steps, a.device, amp, a.warmup)))
        return
    amps = (a.amp or ("none,bf16,fp16" if a.device.startswith("cuda") else "none")).split(",")
    print(f"{'arch':8s} {'amp':5s} {'img/s':>9s} {'peak RSS MiB':>13s} {'peak GPU MiB':>13s} {'G params':>10s} {'D params':>10s}")
    for arch in a.archs.split(","):
        for amp in amps:
            r = subprocess.run([sys.executable, __file__, "--one", f"{arch}:{amp}", "--steps", str(a.steps),
                                "--warmup", str(a.warmup), "--device", a.device], capture_output=True, text=True,
                               env=os.environ)
            if r.returncode != 0:
                print(f"{arch:8s} {amp:5s} failed: {r.stderr.strip().splitlines()[-1]}")
                continue
            res = json.loads(r.stdout.strip().splitlines()[-1])
            gpu = f"{res['peak_gpu_mib']:13.0f}" if "peak_gpu_mib" in res else f"{'-':>13s}"
            print(f"{arch:8s} {amp:5s} {res['img_per_s']:9.1f} {res['peak_rss_mib']:13.0f} {gpu} "
                  f"{res['G_params']:10d} {res['D_params']:10d}")


if __name__ == "__main__":
    main()

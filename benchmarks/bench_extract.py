"""Inception feature-extraction throughput (img/s) by batch size on this machine.

Uses the exact FID Inception architecture with seeded random weights (throughput does not depend on the weight
values; pass --weights PATH to use the real file). Inputs are 32x32 uint8 images resized to 299 with tf-bilinear.

    python benchmarks/bench_extract.py [--batches 1,8,32,64,128] [--images 256] [--device cpu|cuda]
                                       [--channels-last] [--autocast]
"""
from __future__ import annotations

import argparse
import time

import torch

from ganforge.metrics import build_backbone


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--batches", default="1,8,32,64,128")
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--device", default="cpu")
    p.add_argument("--weights", default="random")
    p.add_argument("--resize", default="tf-bilinear")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--autocast", action="store_true")
    a = p.parse_args()
    bb = build_backbone("inception-fid", weights=a.weights, device=a.device, resize=a.resize,
                        channels_last=a.channels_last, autocast=a.autocast)
    images = torch.randint(0, 256, (a.images, 3, 32, 32), dtype=torch.uint8)
    ref = bb(images[:8].to(a.device))["pool"].float().cpu()
    print(f"device {a.device}, threads {torch.get_num_threads()}, resize {a.resize}, channels_last {a.channels_last}, "
          f"autocast {a.autocast}")
    for b in [int(v) for v in a.batches.split(",")]:
        bb(images[:b].to(a.device))  # warm-up
        if a.device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for i in range(0, a.images, b):
            bb(images[i: i + b].to(a.device))
        if a.device.startswith("cuda"):
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        print(f"batch {b:4d}: {a.images / dt:8.1f} img/s")
    out = bb(images[:8].to(a.device))["pool"].float().cpu()
    print(f"max |pool - first run| over 8 images: {(out - ref).abs().max().item():.2e}")


if __name__ == "__main__":
    main()

"""CPU cost of every registered augmentation on one image batch, all timed in one process, interleaved by round.

    python benchmarks/bench_augment.py [--batch 64] [--size 32] [--rounds 5] [--reps 20] [--threads 1]

Each augmentation is built with p = 1 where it has a `p` option (the most work it does) and default options
otherwise (ADA also with antialias=false, the single resampling); per round each is timed forward and forward + backward, and the median over rounds is printed in ms
with its ratio to diffaugment. Output: a markdown table, then the machine.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from ganforge.registries import AUGMENTATIONS, load_all
from ganforge.training.rng import SampleRNG


def _time(fn, reps: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load_all()
    # (row name, registered name, options): each at p = 1 where it has a p, plus the variants worth comparing
    rows = [(n, n, {"p": 1.0} if AUGMENTATIONS.get(n).accepts("p") else {})
            for n in AUGMENTATIONS.names() if n != "none"]
    rows += [(f"{n} (antialias=false)", n, {"p": 1.0, "antialias": False})
             for n in AUGMENTATIONS.names() if AUGMENTATIONS.get(n).accepts("antialias")]
    names = [r[0] for r in rows]
    augs = {row: AUGMENTATIONS.build(n, opts, img_shape=(3, args.size, args.size)) for row, n, opts in rows}
    x = torch.rand(args.batch, 3, args.size, args.size) * 2 - 1
    rng = lambda: SampleRNG(("bench",), slice(0, args.batch), args.batch)  # noqa: E731
    fwd: dict[str, list[float]] = {n: [] for n in names}
    bwd: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(args.rounds):
        for n, aug in augs.items():
            fwd[n].append(_time(lambda: aug(x, rng=rng()), args.reps))
            xr = x.clone().requires_grad_(True)
            bwd[n].append(_time(lambda: aug(xr, rng=rng()).sum().backward(), args.reps))
    ref_f, ref_b = statistics.median(fwd["diffaugment"]), statistics.median(bwd["diffaugment"])
    print("| augmentation | forward ms | forward+backward ms | vs diffaugment (fwd / fwd+bwd) |")
    print("| --- | --- | --- | --- |")
    for n in names:
        f, b = statistics.median(fwd[n]), statistics.median(bwd[n])
        print(f"| {n} | {f:.2f} | {b:.2f} | {f / ref_f:.2f} / {b / ref_b:.2f} |")
    print(f"\nbatch {args.batch}x3x{args.size}x{args.size}, {args.threads} thread(s), median of {args.rounds} rounds x "
          f"{args.reps} reps; {platform.processor() or platform.machine()}, torch {torch.__version__}")


if __name__ == "__main__":
    main()

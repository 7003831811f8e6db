"""Forward + backward time of nn/fused_resample.py's fused convs against the pairs they replace, on CPU.

    python benchmarks/bench_fused_resample.py [--channels 384] [--sizes 8,16] [--batch 64] [--rounds 5] [--threads N]

Per (op, input size, mode): up x2 then 3x3 conv vs `up_conv`, 3x3 conv then 2x2 mean vs `conv_pool`, both in
fp32 and bf16 autocast + channels-last; one forward and one backward (input and weight gradients) per call, the two
sides alternating call by call, reported as the median time of each and the median per-round ratio pair / fused.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from ganforge.nn.fused_resample import conv_pool, up_conv

OPS = {
    "up+conv3x3": (lambda x, c: c(F.interpolate(x, scale_factor=2, mode="nearest")), up_conv, 1),
    "conv3x3+pool": (lambda x, c: F.avg_pool2d(c(x), 2), conv_pool, 2),  # its input is at twice the size
}


def once(f, x: torch.Tensor, conv: nn.Conv2d, bf16: bool) -> float:
    x = x.detach().requires_grad_()
    t0 = time.perf_counter()
    with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        y = f(x, conv)
    y.float().sum().backward()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--channels", type=int, default=384)
    p.add_argument("--sizes", default="8,16", help="the low-resolution side's H = W")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    c = a.channels
    conv = nn.Conv2d(c, c, 3, padding=1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {a.batch}, {c} -> {c} channels\n")
    print("| op | low-res size | mode | pair ms | fused ms | pair / fused |")
    print("|---|---|---|---|---|---|")
    for name, (pair, fused, scale) in OPS.items():
        for n in (int(s) for s in a.sizes.split(",")):
            for mode, bf16, fmt in (("fp32", False, torch.contiguous_format), ("bf16+cl", True, torch.channels_last)):
                x = torch.randn(a.batch, c, n * scale, n * scale).contiguous(memory_format=fmt)
                layer = conv.to(memory_format=fmt)
                once(pair, x, layer, bf16), once(fused, x, layer, bf16)  # warm-up (oneDNN primitive caches)
                tp, tf = [], []
                for r in range(a.rounds):
                    order = ((pair, tp), (fused, tf)) if r % 2 == 0 else ((fused, tf), (pair, tp))
                    for f, sink in order:
                        sink.append(once(f, x, layer, bf16))
                ratio = statistics.median(u / v for u, v in zip(tp, tf))
                print(f"| {name} | {n} | {mode} | {1e3 * statistics.median(tp):.0f} | "
                      f"{1e3 * statistics.median(tf):.0f} | {ratio:.2f} |", flush=True)


if __name__ == "__main__":
    main()

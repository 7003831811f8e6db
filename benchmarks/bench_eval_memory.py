"""Peak memory of an evaluation as N grows: streaming statistics keep it flat for FID.

Runs `ganforge.evaluate` in a fresh subprocess per (N, metrics) and reports the peak RSS. The generator is a random
32px DCGAN; the backbone is the bundled digits classifier (cheap on CPU, so 50k images take a minute) — the pipeline
(generation, uint8 rounding, streaming float64 statistics, optional raw features) is the same for every backbone.

    python benchmarks/bench_eval_memory.py [--ns 5000,50000] [--metrics fid fid,prdc]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def one(n: int, metrics: str) -> dict:
    import torch

    import ganforge
    from ganforge.registries import ARCHITECTURES, G_CONDITIONING, load_all

    load_all()
    torch.manual_seed(0)
    G = ARCHITECTURES.build("dcgan", {"g_ch": 16, "d_ch": 16}, img_shape=(3, 32, 32), num_classes=0,
                            g_cond=G_CONDITIONING.build("none", {}, num_classes=0)).G.eval()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    res = ganforge.evaluate(G, "digits", metrics=metrics.split(","), backbone="digits-classifier", n=n,
                            batch_size=500, progress=False)
    return {"n": n, "metrics": metrics, "seconds": time.perf_counter() - t0, "rss_before_mib": base,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **res}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--ns", default="5000,50000")
    p.add_argument("--metrics", nargs="+", default=["fid", "fid,prdc"])
    p.add_argument("--one", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        n, metrics = a.one.split(":")
        print(json.dumps(one(int(n), metrics)))
        return
    for metrics in a.metrics:
        for n in [int(v) for v in a.ns.split(",")]:
            r = subprocess.run([sys.executable, __file__, "--one", f"{n}:{metrics}"], capture_output=True, text=True)
            if r.returncode:
                print(f"n={n} metrics={metrics} failed: {r.stderr.strip().splitlines()[-1]}")
                continue
            d = json.loads(r.stdout.strip().splitlines()[-1])
            print(f"metrics {metrics:9s} n {n:6d}: peak RSS {d['peak_rss_mib']:7.0f} MiB (after imports "
                  f"{d['rss_before_mib']:5.0f}), {d['seconds']:6.1f} s")


if __name__ == "__main__":
    main()

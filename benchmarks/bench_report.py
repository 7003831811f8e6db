"""Time and size of `ganforge report` on real 12k-step runs: one run, and five runs together.

    python benchmarks/bench_report.py [--root runs/bench-report] [--runs 5] [--steps 12000] [--repeats 5] [--retrain]

The runs are real trainings (nothing is synthesised): the ring8 preset (configs/ring8.yaml) on a narrower MLP
(model.hidden=32, model.layers=2, train.batch_size=64, so a run costs about a CPU-minute), seeds 0..N-1, with the
default logging intervals log_every=50 and sample_every=500 and mode_every=500: per run 240 train rows, 24 sample
grids (2,500-point scatter PNGs) and 24 mode evaluations (metrics.jsonl "modes" rows + modes.jsonl lines). Runs
already complete under --root are reused (--retrain trains them again).

Timed, each `--repeats` times, interleaved: `write_report` in this process (imports done: the page itself) and the
command `python -m ganforge report ...` in a fresh process (what a user waits for: Python, torch and Plotly imports
included), and a fresh process that only imports the report package. Printed: median, min and max seconds, and the
file size, as a markdown table; then the import floor, the share of the file that is plotly.js, and the machine.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

OVERRIDES = ["model.hidden=32", "model.layers=2", "train.batch_size=64", "train.log_every=50",
             "train.sample_every=500", "train.mode_every=500", "train.ckpt_every=4000", "train.tensorboard=false"]


def train_runs(root: Path, n: int, steps: int, retrain: bool) -> list[Path]:
    """Seeds 0..n-1 of the bench config under root/seedI; a run whose summary.json is at `steps` is reused."""
    from ganforge.config import load_config
    from ganforge.training.trainer import train

    runs = []
    for seed in range(n):
        run = root / f"seed{seed}"
        summary = run / "summary.json"
        done = summary.is_file() and json.loads(summary.read_text()).get("step") == steps
        if retrain or not done:
            shutil.rmtree(run, ignore_errors=True)
            cfg = load_config("ring8", [*OVERRIDES, f"train.steps={steps}", f"seed={seed}"])
            t0, c0 = time.perf_counter(), time.process_time()
            train(cfg, run, progress=False)
            print(f"trained {run}: {steps} steps, wall {time.perf_counter() - t0:.0f} s, process CPU "
                  f"{time.process_time() - c0:.0f} s", flush=True)
        runs.append(run)
    return runs


def describe(run: Path) -> str:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    events = {e: sum(r["event"] == e for r in rows) for e in ("train", "modes")}
    grids = len(list((run / "samples").glob("fakes-*.png")))
    return f"{events['train']} train rows, {events['modes']} modes rows, {grids} grids"


def time_in_process(runs: list[Path], out: Path) -> float:
    from ganforge.report import write_report

    t0 = time.perf_counter()
    write_report(runs, out)
    return time.perf_counter() - t0


def time_cli(runs: list[Path], out: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ganforge", "report", *map(str, runs), "--out", str(out)], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def time_imports() -> float:
    """A fresh process that only imports the report package (Python, torch and Plotly start-up): the floor under
    every `ganforge report` call."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import ganforge.report"], check=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default="runs/bench-report")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--steps", type=int, default=12000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--retrain", action="store_true")
    a = ap.parse_args()
    root = Path(a.root)
    runs = train_runs(root, a.runs, a.steps, a.retrain)
    print(f"each run: {describe(runs[0])}")
    cases = {f"1 run, {a.steps} steps": runs[:1], f"{len(runs)} runs together": runs}
    times: dict[str, dict[str, list[float]]] = {c: {"page": [], "cli": []} for c in cases}
    sizes: dict[str, int] = {}
    imports: list[float] = []
    time_in_process(runs[:1], root / "warm-up.html")  # imports (torch, Plotly) happen here, not in the first repeat
    for _ in range(a.repeats):  # interleaved, so a load spike on the shared machine hits every case alike
        for case, chosen in cases.items():
            out = root / f"report-{len(chosen)}.html"
            times[case]["page"].append(time_in_process(chosen, out))
            times[case]["cli"].append(time_cli(chosen, out))
            sizes[case] = out.stat().st_size
        imports.append(time_imports())
    print("\n| case | write_report (in process) | `ganforge report` (fresh process) | file size |")
    print("| --- | --- | --- | --- |")
    for case in cases:
        cells = [_stats(times[case][k]) for k in ("page", "cli")]
        print(f"| {case} | {cells[0]} | {cells[1]} | {sizes[case] / 1e6:.2f} MB |")
    from ganforge.report.figures import plotly_js

    print(f"\nimports alone (`python -c 'import ganforge.report'`): {_stats(imports)}")
    grids = list((runs[0] / "samples").glob("fakes-*.png"))
    print(f"plotly.js, inlined once: {len(plotly_js().encode()) / 1e6:.2f} MB of each file; one run's {len(grids)} "
          f"grids: {sum(g.stat().st_size for g in grids) * 4 / 3 / 1e6:.2f} MB as base64")
    print(f"median (min-max) of {a.repeats} repeats; {_cpu()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}")


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _stats(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s ({min(values):.2f}-{max(values):.2f})"


if __name__ == "__main__":
    main()

"""Shared machinery of the multi-run benchmarks: one child process per run, a resumable results file, tables.

A benchmark lists run specs (dicts with a unique "key"); `run_all` launches the ones not yet in OUT/results.jsonl,
`jobs` at a time, each as `python SCRIPT --child JSON` (so every run has its own process, thread count and memory),
appends each result as it arrives, and returns every result in spec order. `table` prints mean ± std over seeds.
"""
from __future__ import annotations

import concurrent.futures as cf
import json
import statistics
import subprocess
import sys
from pathlib import Path

HIDDEN = ("config", "overrides", "out", "preset")  # spec fields that are not copied into the results


def launch(script: str, spec: dict) -> dict:
    """Run one spec in a child process of `script`; return the JSON its last stdout line holds."""
    proc = subprocess.run([sys.executable, script, "--child", json.dumps(spec)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"run {spec['key']} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def load_results(path: Path) -> dict[str, dict]:
    done = {}
    if path.exists():
        for line in path.read_text().splitlines():
            r = json.loads(line)
            done[r["key"]] = r
    return done


def run_all(script: str, specs: list[dict], out: Path, jobs: int, report_only: bool = False) -> list[dict]:
    """Results of every spec, running those missing from OUT/results.jsonl (failed runs are retried next time)."""
    results_file = out / "results.jsonl"
    done = load_results(results_file)
    todo = [] if report_only else [s for s in specs if s["key"] not in done]
    if not report_only:
        print(f"{len(specs)} runs, {len(specs) - len(todo)} already done; {jobs} at a time", flush=True)
    with cf.ThreadPoolExecutor(jobs) as pool:
        futures = {pool.submit(launch, script, s): s for s in todo}
        for f in cf.as_completed(futures):
            s = futures[f]
            try:
                result = f.result()
            except RuntimeError as e:
                print(e, flush=True)
                continue
            r = {k: v for k, v in s.items() if k not in HIDDEN} | result
            done[s["key"]] = r
            with results_file.open("a") as fh:
                fh.write(json.dumps(r) + "\n")
            print(json.dumps(r), flush=True)
    return [done[s["key"]] for s in specs if s["key"] in done]


def mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    m = statistics.fmean(values)
    s = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{m:.3g} ± {s:.2g}"


def table(rows: list[dict], group: tuple[str, ...], metrics: tuple[str, ...]) -> str:
    """A markdown table: one row per distinct `group` value, mean ± std over its runs (seeds) of each metric."""
    keys = []
    for r in rows:
        k = tuple(r[g] for g in group)
        if k not in keys:
            keys.append(k)
    head = "| " + " | ".join([*group, "seeds", *metrics]) + " |"
    lines = [head, "|" + "---|" * (len(group) + 1 + len(metrics))]
    for k in keys:
        mine = [r for r in rows if tuple(r[g] for g in group) == k]
        cells = [str(v) for v in k] + [",".join(str(r["seed"]) for r in mine)]
        cells += [mean_std([r[m] for r in mine if m in r]) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)

"""The README's screenshots: docs/img/report.png (one run), docs/img/report-compare.png (two seeds), docs/img/lab.png.

Trains the ring8 preset (bundled 2-D data) briefly with two seeds and `train.report=true`, so the trainer itself writes
each RUN/report.html; renders the two-run comparison with `ganforge.report.write_report`; opens both in headless
Chromium through the browser tests' helper (tests/browser.py: Debian's chromium driven by Playwright, `make browser`)
and saves viewport screenshots, checked the same way as in the tests (decodes, expected size, not blank). The lab:
`ganforge lab`'s server in a thread (tests/browser.py's LabServer), its page trained live on ring8 for --lab-steps
steps with the page's default settings, then paused and screenshotted.

    python scripts/screenshots.py [--steps 1200] [--lab-steps 1500] [--pages report,lab] [--out docs/img] [--work DIR]
                                                                                        # or: make screenshots

About a minute on 2 CPU cores. The runs go to a temporary folder unless --work is given.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from browser import VIEWPORT, Browser, LabServer, check_screenshot  # noqa: E402
from ganforge.config import load_config  # noqa: E402
from ganforge.report import write_report  # noqa: E402
from ganforge.training.trainer import train  # noqa: E402

SEEDS = (0, 1)
# where each screenshot starts: the section heading scrolled to the top of the viewport (one run: the evaluation
# metrics; two: the comparison table and the overlaid curves)
VIEWS = {"report.png": "h2:has(+ .gf-figures[data-group='metric'])", "report-compare.png": "h2:has(+ p + #gf-compare)"}


def train_runs(work: Path, steps: int) -> list[Path]:
    """ring8 for `steps` steps per seed, logging often enough for curves, six grids and six mode evaluations."""
    every = max(steps // 6, 1)
    runs = []
    for seed in SEEDS:
        run = work / f"ring8-seed{seed}"
        shutil.rmtree(run, ignore_errors=True)
        cfg = load_config("ring8", [f"seed={seed}", f"train.steps={steps}", "train.log_every=25",
                                    f"train.sample_every={every}", f"train.mode_every={every}",
                                    f"train.ckpt_every={steps}", "train.tensorboard=false", "train.report=true"])
        t0 = time.perf_counter()
        train(cfg, run, progress=False)
        print(f"trained {run} ({steps} steps, {time.perf_counter() - t0:.0f} s)")
        runs.append(run)
    return runs


def _checked(rec, out: Path) -> None:
    """Stop on the page's console errors or a blank / wrong-sized picture; else say where it went."""
    problems = rec.errors + check_screenshot(out, (VIEWPORT["width"], VIEWPORT["height"]))
    if problems:
        raise SystemExit(f"{out}: " + "; ".join(problems))
    print(f"wrote {out}")


def shoot(browser: Browser, page_file: Path, selector: str, out: Path) -> None:
    """Open `page_file`, wait for the charts, scroll `selector` to the top and save the viewport to `out`."""
    rec = browser.page()
    rec.open(page_file)
    rec.page.wait_for_function("() => Array.from(document.querySelectorAll('.gf-figure .plotly-graph-div'))"
                               ".every(d => d.querySelector('.scatterlayer'))", timeout=30_000)
    rec.page.eval_on_selector(selector, "e => { e.scrollIntoView(); window.scrollTo(0, window.scrollY); }")
    rec.screenshot(out)
    rec.page.context.close()
    _checked(rec, out)


def shoot_lab(browser: Browser, work: Path, steps: int, out: Path) -> None:
    """The lab page after `steps` live training steps on ring8 (the page's defaults, 25 steps per frame), paused."""
    import torch

    torch.set_num_threads(1)  # the lab's tiny MLPs train fastest on one thread (docs/benchmarks.md, GAN Lab)
    with LabServer(work / "lab-runs") as lab:
        rec = browser.page()
        page = rec.page
        page.goto(lab.url, wait_until="load")
        page.wait_for_function("() => window.ganforgeLab.frames >= 1", timeout=60_000)
        page.fill("#steps-per-frame", "25")
        page.click("#btn-apply")
        page.wait_for_function("() => window.ganforgeLab.frame.action === 'config'", timeout=60_000)
        t0 = time.perf_counter()
        page.click("#btn-play")
        page.wait_for_function("n => window.ganforgeLab.frame.step >= n", arg=steps, timeout=600_000, polling=500)
        page.click("#btn-pause")
        page.wait_for_function("() => document.getElementById('status').textContent === 'paused'", timeout=60_000)
        step = page.evaluate("window.ganforgeLab.frame.step")
        print(f"lab: trained ring8 live to step {step} ({time.perf_counter() - t0:.0f} s)")
        rec.screenshot(out)
        rec.page.context.close()
    _checked(rec, out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--lab-steps", type=int, default=1500, help="live training steps before the lab screenshot")
    p.add_argument("--pages", default="report,lab", help="which screenshots: report (both report pages), lab")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    p.add_argument("--work", type=Path, default=None, help="keep the runs and pages here (default: a temporary dir)")
    a = p.parse_args()
    pages = set(a.pages.split(","))
    if pages - {"report", "lab"}:
        raise SystemExit(f"--pages: expected report and/or lab, got {a.pages}")
    with tempfile.TemporaryDirectory() as tmp:
        work = a.work or Path(tmp)
        a.out.mkdir(parents=True, exist_ok=True)
        if "report" in pages:
            runs = train_runs(work, a.steps)
            compare = write_report(runs, work / "compare.html")
        with Browser() as browser:
            if "report" in pages:
                shoot(browser, runs[0] / "report.html", VIEWS["report.png"], a.out / "report.png")
                shoot(browser, compare, VIEWS["report-compare.png"], a.out / "report-compare.png")
            if "lab" in pages:
                shoot_lab(browser, work, a.lab_steps, a.out / "lab.png")


if __name__ == "__main__":
    main()

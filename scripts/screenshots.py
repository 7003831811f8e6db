"""The README's report screenshots: docs/img/report.png (one run) and docs/img/report-compare.png (two seeds).

Trains the ring8 preset (bundled 2-D data) briefly with two seeds and `train.report=true`, so the trainer itself writes
each RUN/report.html; renders the two-run comparison with `ganforge.report.write_report`; opens both in headless
Chromium through the browser tests' helper (tests/browser.py: Debian's chromium driven by Playwright, `make browser`)
and saves viewport screenshots, checked the same way as in the tests (decodes, expected size, not blank).

    python scripts/screenshots.py [--steps 1200] [--out docs/img] [--work DIR]     # or: make screenshots

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

from browser import VIEWPORT, Browser, check_screenshot  # noqa: E402
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


def shoot(browser: Browser, page_file: Path, selector: str, out: Path) -> None:
    """Open `page_file`, wait for the charts, scroll `selector` to the top and save the viewport to `out`."""
    rec = browser.page()
    rec.open(page_file)
    rec.page.wait_for_function("() => Array.from(document.querySelectorAll('.gf-figure .plotly-graph-div'))"
                               ".every(d => d.querySelector('.scatterlayer'))", timeout=30_000)
    rec.page.eval_on_selector(selector, "e => { e.scrollIntoView(); window.scrollTo(0, window.scrollY); }")
    rec.screenshot(out)
    rec.page.context.close()
    problems = rec.errors + check_screenshot(out, (VIEWPORT["width"], VIEWPORT["height"]))
    if problems:
        raise SystemExit(f"{out}: " + "; ".join(problems))
    print(f"wrote {out}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    p.add_argument("--work", type=Path, default=None, help="keep the runs and pages here (default: a temporary dir)")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = a.work or Path(tmp)
        runs = train_runs(work, a.steps)
        compare = write_report(runs, work / "compare.html")
        a.out.mkdir(parents=True, exist_ok=True)
        with Browser() as browser:
            shoot(browser, runs[0] / "report.html", VIEWS["report.png"], a.out / "report.png")
            shoot(browser, compare, VIEWS["report-compare.png"], a.out / "report-compare.png")


if __name__ == "__main__":
    main()

"""`ganforge report` pages opened in headless Chromium: what a reader sees, not only what the HTML says.

Tiny run directories with hand-picked numbers (tests/report_runs.py) are rendered with `write_report` and loaded from
file://. Every browser test fails at teardown on any console error or uncaught exception (the `browser_page` fixture).
Checked: the page fetches nothing but itself; Plotly draws, in each chart, as many lines as the chart's data-traces
says and as the runs hold the key; moving the slider shows the chosen step's grid (its pixels, read back from the
page); the comparison table shows the values of metrics.jsonl; a screenshot decodes, has the viewport's size and is
not blank. Also `train.report: true`: `ganforge train` ends by writing RUN/report.html.
"""
from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from browser import VIEWPORT, check_screenshot
from ganforge.config import from_dict
from ganforge.report import write_report
from ganforge.training.trainer import train
from helpers import TINY_POINTS
from report_runs import LOSS_KEYS, LOSSES, config, make_run

FID = {"s0": [30.0, 12.0, 15.0, 14.0], "s1": [28.0, 20.0, 11.0, 13.0], "s2": [25.0, 18.0, 16.0, 9.0]}
IS = {"s0": [2.0, 3.0, 7.0, 4.0], "s1": [1.0, 2.5, 3.0, 3.5], "s2": [2.0, 2.0, 2.0, 6.0]}
COLOURS = [(100, (255, 0, 0)), (200, (0, 255, 0)), (300, (0, 0, 255))]
# every chart of a run with LOSSES, fid/is eval rows and aug_p / img_per_s train columns
FIGURES = (*LOSS_KEYS, "aug_p", "fid", "is", "img_per_s")

# data-key, data-traces, the Plotly data's length and the drawn scatter traces of every chart
_DRAWN = """() => Array.from(document.querySelectorAll('.gf-figure')).map(f => {
  const plot = f.querySelector('.plotly-graph-div');
  const drawn = plot.querySelectorAll('.scatterlayer .trace').length;
  return [f.dataset.key, Number(f.dataset.traces), plot.data.length, drawn];
})"""
# the RGB of the centre pixel of #gf-grid as displayed, after the image has decoded
_GRID_PIXEL = """async () => {
  const img = document.getElementById('gf-grid'); await img.decode();
  const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
  const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
  return [img.naturalWidth, img.naturalHeight, Array.from(ctx.getImageData(c.width >> 1, c.height >> 1, 1, 1).data)];
}"""


def seed_runs(root: Path, names=tuple(FID)) -> list[Path]:
    """Runs that differ only by seed, with FID / IS eval rows and (the first) three single-colour grids."""
    return [make_run(root, n, config(seed=i), LOSSES, {"fid": FID[n], "is": IS[n]}, grids=COLOURS if i == 0 else ())
            for i, n in enumerate(names)]


def open_report(rec, runs: list[Path], out: Path) -> None:
    """Render `runs` to `out`, load it and wait until Plotly has drawn every chart."""
    write_report(runs, out)
    rec.open(out)
    rec.page.wait_for_function("() => Array.from(document.querySelectorAll('.gf-figure .plotly-graph-div'))"
                               ".every(d => d.querySelector('.scatterlayer'))", timeout=20_000)


def logged(run: Path, event: str, key: str) -> list[tuple[int, float]]:
    """(step, value) of `key` in the `event` rows of RUN/metrics.jsonl, read here independently of the report."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [(r["step"], r[key]) for r in rows if r.get("event") == event and key in r]


# ------------------------------------------------------------------------------------------------------ curves
@pytest.mark.browser
@pytest.mark.parametrize("n_runs", [1, 2])
def test_every_chart_draws_one_line_per_run_and_nothing_is_fetched(browser_page, tmp_path, n_runs):
    out = tmp_path / "report.html"
    open_report(browser_page, seed_runs(tmp_path, tuple(FID)[:n_runs]), out)
    drawn = browser_page.page.evaluate(_DRAWN)
    assert sorted(key for key, *_ in drawn) == sorted(FIGURES)  # one chart per key, each drawn
    for key, declared, data, lines in drawn:
        assert declared == data == lines == n_runs, key
    first = browser_page.page.evaluate("document.querySelector('.gf-figure .plotly-graph-div').data[0].y")
    assert first == LOSSES["d_loss"]  # the first chart is d_loss, as logged
    # self-contained: the only request is the file itself (images are data: URIs, plotly.js is inline)
    assert [u for u in browser_page.requests if not u.startswith("data:")] == [out.resolve().as_uri()]


# ----------------------------------------------------------------------------------------------------- samples
@pytest.mark.browser
def test_the_slider_shows_the_chosen_steps_grid(browser_page, tmp_path):
    run, = seed_runs(tmp_path, ("s0",))
    open_report(browser_page, [run], tmp_path / "report.html")
    page = browser_page.page
    assert page.evaluate(_GRID_PIXEL) == [12, 8, [0, 0, 255, 255]]  # the last step (300, blue) is shown first
    for position, (step, rgb) in enumerate(COLOURS):
        page.eval_on_selector("#gf-slider", "(s, v) => { s.value = v; s.dispatchEvent(new Event('input')); }",
                              str(position))
        png = (run / "samples" / f"fakes-{step:08d}.png").read_bytes()
        assert page.get_attribute("#gf-grid", "src") == "data:image/png;base64," + base64.b64encode(png).decode()
        assert page.evaluate(_GRID_PIXEL) == [12, 8, [*rgb, 255]]
        assert page.inner_text(".gf-grids .gf-step") == f"step {step}"


# -------------------------------------------------------------------------------------------------- comparison
@pytest.mark.browser
def test_the_comparison_table_shows_the_values_of_metrics_jsonl(browser_page, tmp_path):
    runs = seed_runs(tmp_path)
    open_report(browser_page, runs, tmp_path / "cmp.html")
    page = browser_page.page
    rows = page.eval_on_selector_all("#gf-compare tr[data-run]", """rows => rows.map(r => [r.dataset.run,
        Object.fromEntries(Array.from(r.querySelectorAll('td[data-col]')).map(c => [c.dataset.col, c.innerText]))])""")
    assert [name for name, _ in rows] == [r.name for r in runs]
    finals: dict[str, list[float]] = {}
    for run, (_, cells) in zip(runs, rows):
        for key, lower in (("fid", True), ("is", False)):
            values = logged(run, "eval", key)
            best_step, best_value = min(values, key=lambda sv: (sv[1] if lower else -sv[1], sv[0]))  # first on ties
            assert float(cells[f"{key}/final"]) == values[-1][1]
            assert float(cells[f"{key}/best"]) == best_value and int(cells[f"{key}/best_step"]) == best_step
            finals.setdefault(key, []).append(values[-1][1])
        img_s = [v for _, v in logged(run, "train", "img_per_s")]
        assert float(cells["img_per_s"]) == pytest.approx(np.mean(img_s), rel=1e-5)  # shown to 6 digits
    mean = page.inner_text('#gf-compare tr.gf-mean td[data-col="fid/final"]')
    m, s = (float(x) for x in mean.split(" ± "))
    assert m == pytest.approx(np.mean(finals["fid"]), rel=1e-5) and s == pytest.approx(np.std(finals["fid"], ddof=1),
                                                                                       rel=1e-2)


# ------------------------------------------------------------------------------------------------- screenshots
@pytest.mark.browser
def test_screenshots_are_the_viewport_size_and_not_blank(browser_page, tmp_path):
    open_report(browser_page, seed_runs(tmp_path, ("s0", "s1")), tmp_path / "report.html")
    size = (VIEWPORT["width"], VIEWPORT["height"])
    top = browser_page.screenshot(tmp_path / "shots" / "top.png")
    browser_page.page.eval_on_selector(".gf-figure", "f => f.scrollIntoView()")
    curves = browser_page.screenshot(tmp_path / "shots" / "curves.png")
    for shot in (top, curves):
        assert check_screenshot(shot, size) == []
    rgb = np.asarray(Image.open(curves).convert("RGB")).astype(int)
    coloured = (rgb.max(axis=2) - rgb.min(axis=2) > 80).mean()
    assert coloured > 1e-3  # the charts' coloured lines are on screen, not only black text on white

    blank = tmp_path / "shots" / "blank.png"
    Image.new("RGB", size, "white").save(blank)
    assert check_screenshot(blank, size) == [f"{blank}: blank (grey-level std 0.00 <= 8.0)"]
    assert re.search(r"1280x900 pixels, expected 640x480", check_screenshot(top, (640, 480))[0])


# ---------------------------------------------------------------------------------------------- train.report
def test_train_report_true_writes_the_runs_report_at_the_end(tmp_path):
    raw = {**TINY_POINTS, "train": {**TINY_POINTS["train"], "steps": 2, "log_every": 1, "ckpt_every": 2,
                                     "report": True}}
    run = tmp_path / "ring"
    train(from_dict(raw), run, progress=False)
    page = (run / "report.html").read_text()
    assert re.findall(r'<div class="gf-run" data-run="([^"]+)"', page) == ["ring"]
    shown = re.search(r'<pre id="gf-config">(.*?)</pre>', page, re.S)[1]
    assert yaml.safe_load(html.unescape(shown)) == yaml.safe_load((run / "config.yaml").read_text())
    assert yaml.safe_load(html.unescape(shown))["train"]["report"] is True
    assert re.search(r'data-key="d_loss" data-traces="1"', page)

    # off by default; turning it on for a finished run is an output-only change (no refusal), and writes the report
    off = tmp_path / "off"
    default = {k: v for k, v in raw["train"].items() if k != "report"}
    train(from_dict({**TINY_POINTS, "train": default}), off, progress=False)
    assert not (off / "report.html").exists()
    train(from_dict(raw), off, progress=False)
    assert (off / "report.html").is_file()

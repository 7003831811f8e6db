"""Mode coverage in runs and reports: the trainer's RUN/modes.jsonl (samples per mode at each mode evaluation) and the
report's "Mode coverage" figures drawn from it.

Hand-made modes.jsonl files check that the figures hold exactly the logged counts (heatmap rows, last bars, the
uniform line total / K, the ring's centres); real ring8 / two-gaussians trainings check that the file holds the
counts of G_ema's samples (recomputed here from the export), that they agree with the scalar "modes" rows, and that a
resumed run's file reads like an uninterrupted run's.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ganforge.config import from_dict
from ganforge.registries import DATASETS
from ganforge.report import collect_run, write_report
from ganforge.sampling import generate
from ganforge.training.export import load_generator
from ganforge.training.trainer import train
from helpers import TINY_POINTS
from report_runs import LOSSES, Page, config, make_run, page_of

RING = {**config(), "data": {"name": "ring8", "n": 2000}}
STACKED = {**config(), "data": {"name": "stacked-digits", "n": 100, "resolution": 8}}
COUNTS = [(100, [5, 0, 1, 2, 0, 0, 0, 0]), (200, [4, 3, 2, 1, 0, 0, 0, 0]), (300, [3, 3, 3, 3, 2, 2, 2, 0])]
KIMG_PER_STEP = 64 / 1000  # report_runs.BATCH images per step, d_steps 1


def mode_figures(page: Page, run: str) -> dict[str, int]:
    """data-key -> data-traces of the figures marked data-run=RUN."""
    return {a["data-key"]: int(a["data-traces"]) for a in page.find("div", class_="gf-figure", data_run=run)}


def modes_lines(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "modes.jsonl").read_text().splitlines()]


def metric_rows(run: Path, event: str) -> dict[int, dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r for r in rows if r["event"] == event}


def points_run(data: dict, **train_opts) -> dict:
    return {**TINY_POINTS, "data": data, "train": {**TINY_POINTS["train"], **train_opts}}


# -------------------------------------------------------------------------------------------------- figures
def test_mode_figures_hold_the_logged_counts(tmp_path):
    page = page_of(make_run(tmp_path, "a", RING, LOSSES, mode_counts=COUNTS))
    assert "Mode coverage" in page.texts and page.find("div", class_="gf-modes", data_run="a")
    # heatmap 1 trace; last counts 2 (bars + uniform line); 2-D set: the centres, 1 trace
    assert mode_figures(page, "a") == {"mode_counts": 1, "mode_last": 2, "mode_centers": 1}
    ids = page.figure_ids(run="a")
    heat, = page.plot_data(ids["mode_counts"])
    assert heat["type"] == "heatmap" and heat["z"] == [c for _, c in COUNTS] and heat["x"] == list(range(8))
    assert heat["y"] == pytest.approx([s * KIMG_PER_STEP for s, _ in COUNTS])  # y = kimg of each evaluation
    bars, uniform = page.plot_data(ids["mode_last"])
    assert bars["type"] == "bar" and bars["y"] == COUNTS[-1][1] and bars["x"] == list(range(8))
    assert uniform["x"] == [-0.5, 7.5] and uniform["y"] == [18 / 8, 18 / 8]  # 18 samples spread over 8 modes
    centres, = page.plot_data(ids["mode_centers"])
    angles = [i * math.pi / 4 for i in range(8)]  # ring8: 8 modes on the unit circle from angle 0
    assert centres["x"] == pytest.approx([math.cos(a) for a in angles], abs=1e-6)
    assert centres["y"] == pytest.approx([math.sin(a) for a in angles], abs=1e-6)
    assert centres["marker"]["color"] == COUNTS[-1][1]
    assert centres["marker"]["symbol"] == ["circle"] * 7 + ["x"]  # the empty mode is a cross


def test_stacked_digits_runs_get_the_heatmap_and_bars_without_centres(tmp_path):
    counts = [(100, [1] * 500 + [0] * 500), (200, [2] * 1000)]
    page = page_of(make_run(tmp_path, "s", STACKED, LOSSES, mode_counts=counts))
    assert mode_figures(page, "s") == {"mode_counts": 1, "mode_last": 2}  # 1000 classes, no plane to draw
    bars, uniform = page.plot_data(page.figure_ids(run="s")["mode_last"])
    assert bars["y"] == [2] * 1000 and uniform["y"] == [2.0, 2.0]


def test_several_runs_get_one_block_each_and_runs_without_modes_none(tmp_path):
    a = make_run(tmp_path, "a", RING, LOSSES, mode_counts=COUNTS)
    b = make_run(tmp_path, "b", {**RING, "seed": 1}, LOSSES, mode_counts=COUNTS[:1])
    c = make_run(tmp_path, "c", config(2), LOSSES)
    page = page_of(a, b, c)
    blocks = page.find("div", class_="gf-modes")
    assert [(x["data-run"], x["data-evaluations"]) for x in blocks] == [("a", "3"), ("b", "1")]
    assert mode_figures(page, "c") == {}
    assert "Mode coverage" not in page_of(c).texts


def test_torn_or_malformed_modes_lines_are_skipped_and_counted(tmp_path):
    bad = ('{"step": 400, "counts": [1, -1, 0, 0, 0, 0, 0, 0]}\n',  # a negative count
           '{"counts": [1, 1, 1, 1, 1, 1, 1, 1]}\n',  # no step
           '{"step": 500, "counts": [1, 2]}\n',  # another number of modes
           '{"step": 600, "cou')  # torn by a kill
    run = make_run(tmp_path, "a", RING, LOSSES, mode_counts=COUNTS, mode_lines=bad)
    data = collect_run(run)
    assert data.skipped_modes == 4 and [m.step for m in data.modes] == [100, 200, 300]
    page = page_of(run)
    assert "4 unreadable lines skipped in modes.jsonl" in page.texts
    heat, = page.plot_data(page.figure_ids(run="a")["mode_counts"])
    assert heat["z"] == [c for _, c in COUNTS]  # every good line still drawn


# ------------------------------------------------------------------------------------------------ training
def test_training_logs_the_counts_of_g_ema_samples_behind_the_scalars(tmp_path):
    run = tmp_path / "ring"
    raw = points_run({"name": "ring8", "n": 2000}, steps=100, mode_every=50, ckpt_every=100)
    cfg = from_dict(raw)
    train(cfg, run, progress=False)
    lines = modes_lines(run)
    assert [line["step"] for line in lines] == [50, 100]
    ds = DATASETS.build("ring8", {"n": 2000}, split="train", cache_dir=None)
    G = load_generator(run / "export").eval()  # G_ema as exported at the last step
    expected = ds.mode_counts(generate(G, ds.mode_samples, seed=cfg.eval.seed))
    assert lines[-1]["counts"] == expected.tolist() and sum(expected.tolist()) > 0  # a non-empty histogram
    scalars = metric_rows(run, "modes")
    for line in lines:  # the logged scalars are those of the logged counts
        c, row = line["counts"], scalars[line["step"]]
        assert row["modes"] == sum(x > 0 for x in c) and row["hq_frac"] == pytest.approx(sum(c) / ds.mode_samples)
    page = Page(write_report([run]).read_text())
    heat, = page.plot_data(page.figure_ids(run="ring")["mode_counts"])
    assert heat["z"] == [line["counts"] for line in lines]


def test_a_resumed_run_redoes_the_lines_after_its_checkpoint(tmp_path):
    data = {"name": "two-gaussians", "n": 2000}  # wide modes: non-trivial counts after a few steps
    whole = tmp_path / "whole"
    train(from_dict(points_run(data, steps=40, mode_every=10, ckpt_every=20)), whole, progress=False)
    cut = tmp_path / "cut"
    train(from_dict(points_run(data, steps=20, mode_every=10, ckpt_every=20)), cut, progress=False)
    # a kill after step 20's checkpoint: lines of steps the resumed run will redo, then a torn one
    with open(cut / "modes.jsonl", "a") as f:
        f.write('{"step": 30, "counts": [9, 9]}\n{"step": 40, "counts": [9, 9]}\n{"step": 5')
    train(from_dict(points_run(data, steps=40, mode_every=10, ckpt_every=20)), cut, progress=False)
    assert [line["step"] for line in modes_lines(cut)] == [10, 20, 30, 40]
    assert modes_lines(cut) == modes_lines(whole) and any(sum(line["counts"]) for line in modes_lines(whole))
    assert collect_run(cut).skipped_modes == 0


# ------------------------------------------------------------------------------------------------- browser
@pytest.mark.browser
def test_the_mode_figures_are_drawn(browser_page, tmp_path):
    out = write_report([make_run(tmp_path, "a", RING, LOSSES, mode_counts=COUNTS)], tmp_path / "report.html")
    browser_page.open(out)
    page = browser_page.page
    page.wait_for_function("() => Array.from(document.querySelectorAll('.gf-modes .plotly-graph-div'))"
                           ".every(d => d._fullLayout)", timeout=20_000)
    drawn = page.evaluate("""() => Array.from(document.querySelectorAll('.gf-modes .gf-figure')).map(f => {
      const p = f.querySelector('.plotly-graph-div');
      return [f.dataset.key, Number(f.dataset.traces), p.data.length, p.querySelectorAll('.heatmaplayer .hm').length,
              p.querySelectorAll('.barlayer .point').length, p.querySelectorAll('.scatterlayer .point').length,
              p.querySelectorAll('.scatterlayer .js-line').length];
    })""")
    # heatmap: one image; bars: one per mode and the uniform line; centres: a marker per mode
    assert drawn == [["mode_counts", 1, 1, 1, 0, 0, 0], ["mode_last", 2, 2, 0, 8, 0, 1],
                     ["mode_centers", 1, 1, 0, 0, 8, 0]]

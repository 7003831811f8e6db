"""`ganforge report`: the page about run directories holds what metrics.jsonl, config.yaml and samples/ say.

Run directories are written here in the trainer's format (config.yaml as `ganforge train` resolves it, metrics.jsonl
rows `{"step", "event", ...}`, samples/fakes-NNNNNNNN.png) with hand-picked numbers; the page is then read back
through its DOM hooks (gf-figure, gf-compare, gf-config-diff, gf-slider / gf-grid) and the Plotly data of each chart.
"""
from __future__ import annotations

import base64
import html
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from ganforge.cli.main import main
from ganforge.errors import GanforgeError
from ganforge.metrics.evaluate import HIGHER_IS_BETTER
from ganforge.report import collect_run, write_report
from ganforge.report.compare import best, curve_group

from report_runs import LOSS_KEYS, LOSSES, Page, config, make_run, page_of


# ----------------------------------------------------------------------------------------------------- curves
def test_one_loss_figure_per_key_one_trace_per_run(tmp_path):
    one = page_of(make_run(tmp_path, "a", config(0), LOSSES))
    # a chart per loss key, the augmentation p and the throughput; nothing for kimg (it is the x axis of metrics)
    assert one.figures() == {**{k: 1 for k in LOSS_KEYS}, "aug_p": 1, "img_per_s": 1}
    assert [k for k in one.figures() if curve_group(k) == "loss"] == [*LOSS_KEYS, "img_per_s"]
    ids = one.figure_ids()
    traces = one.plot_data(ids["r1"])
    assert len(traces) == 1 and traces[0]["x"] == [100, 200, 300, 400] and traces[0]["y"] == LOSSES["r1"]

    other = {k: [v + 1 for v in vals] for k, vals in LOSSES.items()}
    two = page_of(tmp_path / "a", make_run(tmp_path, "b", config(1), other))
    assert two.figures() == {**{k: 2 for k in LOSS_KEYS}, "aug_p": 2, "img_per_s": 2}
    overlaid = two.plot_data(two.figure_ids()["g_loss"])
    assert [t["name"] for t in overlaid] == ["a/g_loss", "b/g_loss"]
    assert overlaid[1]["y"] == other["g_loss"]


@pytest.mark.parametrize("key", sorted(HIGHER_IS_BETTER) + ["fid", "kid"])
def test_best_follows_the_metric_direction(key):
    steps, values = [100, 200, 300, 400], [3.0, 1.0, 4.0, 1.0]
    assert best(key, steps, values) == ((4.0, 300) if key in HIGHER_IS_BETTER else (1.0, 200))  # ties: first step


def test_eval_metrics_over_kimg_with_best_value_and_step(tmp_path):
    fid, is_ = [30.0, 12.0, 15.0, 14.0], [2.0, 3.0, 7.0, 4.0]
    page = page_of(make_run(tmp_path, "a", config(), LOSSES, {"fid": fid, "is": is_}))
    assert page.figures()["fid"] == 1 and page.figures()["is"] == 1 and "n" not in page.figures()
    trace = page.plot_data(page.figure_ids()["fid"])[0]
    assert trace["x"] == pytest.approx([6.4, 12.8, 19.2, 25.6]) and trace["y"] == fid  # step * 64 / 1000 kimg
    for key, value, step in (("fid", 12.0, 200), ("is", 7.0, 300)):
        block = page.source[page.source.index(f'<table class="gf-best" data-key="{key}"'):]
        shown = re.search(r'gf-best-value" data-value="([^"]+)".*?gf-best-step" data-value="(\d+)"', block)
        assert float(shown[1]) == value and int(shown[2]) == step


# ------------------------------------------------------------------------------------------------ reliability
def test_torn_metrics_jsonl_renders_and_counts_the_skipped_lines(tmp_path):
    run = make_run(tmp_path, "a", config(), LOSSES, extra_lines=("#garbage{\n", '{"step": 500, "event": "tra'))
    page = page_of(run)
    assert "2 unreadable lines skipped in metrics.jsonl" in page.texts
    assert page.plot_data(page.figure_ids()["d_loss"])[0]["y"] == LOSSES["d_loss"]  # every good row still drawn
    (run / "metrics.jsonl").write_text((run / "metrics.jsonl").read_text() + "\n[1, 2]\n7\n")
    assert collect_run(run).skipped_lines == 4  # non-object lines are unreadable too


def test_a_path_that_is_not_a_run_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for bad in (tmp_path / "empty", tmp_path / "missing"):
        with pytest.raises(GanforgeError, match=re.escape(str(bad))) as e:
            collect_run(bad)
        assert "\n" not in str(e.value)
    capsys.readouterr()
    assert main(["report", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path / "empty") in err


def test_history_explore_and_throughput_are_shown(tmp_path):
    run = make_run(tmp_path, "a", config(), LOSSES)
    start = {"time": "2026-01-01T00:00:00+0000", "event": "start", "step": 0, "env": {"device": "cpu", "threads": 1}}
    resume = {"time": "2026-01-02T00:00:00+0000", "event": "resume", "step": 200, "env": {"device": "cuda"},
              "config_changes": {"train.steps": [200, 400]}}
    (run / "history.jsonl").write_text(json.dumps(start) + "\n" + json.dumps(resume) + "\n" + '{"time": "20')
    (run / "explore" / "interp").mkdir(parents=True)
    (run / "explore" / "interp" / "result.json").write_text(json.dumps({"ppl": 12.5, "n": 64}))
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(run / "explore" / "interp" / "path.png")
    page = page_of(run)
    assert "1 unreadable line skipped in history.jsonl" in page.texts
    assert "resume" in page.texts and "train.steps: 200 → 400" in page.texts and "device cuda" in page.texts
    box, = page.find("div", class_="gf-explore")
    assert box["data-name"] == "interp" and "12.5" in page.texts
    assert sum(a.get("alt") == "path.png" for _, a in page.elements) == 1
    # training time: each logged interval's 100 steps x 64 images at its img/s (200, 201, 202, 203)
    t = collect_run(run).throughput()
    assert t["train_s"] == pytest.approx(sum(6400 / s for s in (200, 201, 202, 203)))
    assert t["img_per_s"] == pytest.approx(201.5) and t["kimg"] == pytest.approx(25.6)


# ---------------------------------------------------------------------------------------- comparison and config
def test_compare_table_holds_the_logged_values_and_seed_mean_std(tmp_path):
    fids = {"s0": [30.0, 12.0, 15.0, 14.0], "s1": [28.0, 20.0, 11.0, 13.0], "s2": [25.0, 18.0, 16.0, 9.0]}
    runs = [make_run(tmp_path, name, config(seed=i), LOSSES, {"fid": f, "is": [1.0, 2.0, 3.0, 4.0 + i]})
            for i, (name, f) in enumerate(fids.items())]
    page = page_of(*runs)
    table = page.source[page.source.index('<table id="gf-compare">'):]
    table = table[: table.index("</table>")]
    assert re.findall(r'<tr data-run="([^"]+)"', table) == list(fids)  # one row per run
    for name, f in fids.items():
        row = re.search(rf'<tr data-run="{name}">(.*?)</tr>', table)[1]
        cells = dict(re.findall(r'data-col="([^"]+)" data-value="([^"]+)"', row))
        assert float(cells["fid/final"]) == f[-1] and float(cells["fid/best"]) == min(f)
        assert float(cells["fid/best_step"]) == 100 * (1 + f.index(min(f)))
    mean = re.search(r'<tr class="gf-mean".*?</tr>', table)[0]
    for col, values in (("fid/final", [f[-1] for f in fids.values()]), ("fid/best", [min(f) for f in fids.values()]),
                        ("is/final", [4.0, 5.0, 6.0])):
        m, s = re.search(rf'data-col="{re.escape(col)}" data-mean="([^"]+)" data-std="([^"]+)"', mean).groups()
        assert float(m) == pytest.approx(np.mean(values)) and float(s) == pytest.approx(np.std(values, ddof=1))

    other = make_run(tmp_path, "lr", config(seed=3, d_lr=1e-4), LOSSES, {"fid": [1.0] * 4, "is": [1.0] * 4})
    assert not page_of(runs[0], other).find("tr", class_="gf-mean")  # differs by more than the seed: no mean row


def test_config_diff_lists_exactly_the_differing_keys(tmp_path):
    a = make_run(tmp_path, "a", config(seed=0), LOSSES)
    b = make_run(tmp_path, "b", config(seed=1, d_lr=1e-4, gamma=1.0), LOSSES)
    page = page_of(a, b)
    assert [r["data-key"] for r in page.find("tr", data_key=None)] == ["optim.d_lr", "regularizers.0.gamma", "seed"]
    single = page_of(a)
    shown = re.search(r'<pre id="gf-config">(.*?)</pre>', single.source, re.S)[1]
    assert yaml.safe_load(html.unescape(shown)) == config(0)  # one run: its whole resolved config


# ---------------------------------------------------------------------------------------------------- samples
def test_grids_are_embedded_and_the_slider_has_one_position_per_grid(tmp_path):
    colours = [(100, (255, 0, 0)), (200, (0, 255, 0)), (300, (0, 0, 255))]
    page = page_of(make_run(tmp_path, "a", config(), LOSSES, grids=colours))
    slider, = page.find("input", id="gf-slider")
    assert (slider["type"], slider["min"], slider["max"]) == ("range", "0", str(len(colours) - 1))
    data = json.loads(re.search(r'<script type="application/json" class="gf-grid-data">(.*?)</script>',
                                page.source)[1])
    assert [d["step"] for d in data] == [s for s, _ in colours]
    for d, (_, rgb) in zip(data, colours):
        img = np.asarray(Image.open(io.BytesIO(base64.b64decode(d["src"].split(",", 1)[1]))))
        assert img.shape == (8, 12, 3) and (img == rgb).all()
    grid, = page.find("img", id="gf-grid")
    assert grid["src"] == data[-1]["src"]  # the last saved step is shown first


def test_the_page_is_self_contained(tmp_path):
    page = page_of(make_run(tmp_path, "a", config(), LOSSES, {"fid": [3.0, 2.0, 1.0, 2.0]}, grids=[(100, (9, 9, 9))]))
    for tag, attrs in page.elements:
        for key in ("src", "href"):
            assert not re.match(r"\s*(https?:)?//", attrs.get(key, "")), (tag, attrs)
    assert not page.find("script", src=None) and not page.find("link", href=None)


# -------------------------------------------------------------------------------------------------------- CLI
def test_cli_writes_the_report(tmp_path, capsys, monkeypatch):
    a = make_run(tmp_path, "a", config(0), LOSSES)
    b = make_run(tmp_path, "b", config(1), LOSSES)
    out = tmp_path / "cmp.html"
    capsys.readouterr()
    assert main(["report", str(a), str(b), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"wrote {out} (") and printed.rstrip().endswith("MB)")
    assert Page(out.read_text()).figures()["d_loss"] == 2
    assert main(["report", str(a)]) == 0 and (a / "report.html").is_file()  # one run: RUN/report.html
    monkeypatch.chdir(tmp_path)
    assert write_report([a, b]) == Path("report.html") and (tmp_path / "report.html").is_file()

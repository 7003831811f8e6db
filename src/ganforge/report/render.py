"""`write_report(run_dirs, out)`: one self-contained HTML page about one or several runs.

The page holds, top to bottom: the runs and the commands that reproduce them, the resolved config (a diff table of the
keys that differ when there are several runs), a comparison table of final and best metrics (mean ± std, ddof = 1,
when the runs differ only by seed), the loss curves (one chart per key, one line per run), learning-rate and
augmentation-p curves, every evaluation metric over kimg with its best value and step, the samples per mode of 2-D and
stacked-digits runs (modes.py), the sample grid at every saved step behind a slider, explore outputs, throughput and
time, and each run's start / resume history.

Self-contained: plotly.js is inlined once, images are base64 data URIs, the slider is a few lines of plain JS; nothing
is fetched when the page opens. DOM hooks for tests: `div.gf-figure[data-key][data-traces]`, `table#gf-compare` with
one `tr[data-run]` per run (and `tr.gf-mean`), `table#gf-config-diff` with one `tr[data-key]` per differing key,
`input#gf-slider` / `img#gf-grid` (the first run's; every run's are `.gf-slider` / `.gf-grid`), `div.gf-modes[data-run]`
with the mode figures (modes.py).
"""
from __future__ import annotations

import base64
import html
import json
import shlex
import time
from pathlib import Path
from typing import Any, Iterable

from .. import __version__
from ..errors import GanforgeError
from . import compare
from .collect import RunData, collect_run
from .figures import Marker, Trace, figure_html, plotly_js
from .modes import modes_section

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1280px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
code, pre { background: #f6f6f6; border-radius: 4px; } code { padding: 0 .3em; }
pre { padding: .6em; overflow-x: auto; max-height: 32em; }
table { border-collapse: collapse; margin: .5em 0; font-size: .9em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; } tr.gf-mean td { font-weight: 600; background: #fafae8; }
.gf-figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 1em; }
.gf-figure { border: 1px solid #eee; border-radius: 4px; }
.gf-warning { color: #a04000; } .gf-grid { max-width: 100%; image-rendering: pixelated; border: 1px solid #ddd; }
.gf-grids { margin-bottom: 1.5em; } .gf-slider { width: 40em; max-width: 100%; }
.gf-explore img { max-width: 480px; margin: .3em; border: 1px solid #ddd; }
"""

# swap the shown grid when a slider moves; each .gf-grids block carries its grids as JSON
_SLIDER_JS = """
document.querySelectorAll('.gf-grids').forEach(function (box) {
  var grids = JSON.parse(box.querySelector('script.gf-grid-data').textContent);
  var slider = box.querySelector('input.gf-slider'), img = box.querySelector('img.gf-grid');
  var label = box.querySelector('.gf-step');
  slider.addEventListener('input', function () {
    var g = grids[Number(slider.value)];
    img.src = g.src; label.textContent = 'step ' + g.step;
  });
});
"""


# ------------------------------------------------------------------------------------------------------- public
def write_report(run_dirs: Iterable[str | Path], out: str | Path | None = None) -> Path:
    """Write the report on `run_dirs` to `out` (default: RUN/report.html for one run, ./report.html for several)
    and return its path. The trainer calls `write_report([run_dir], run_dir / "report.html")` at the end of a run."""
    dirs = [Path(d) for d in run_dirs]
    if not dirs:
        raise GanforgeError("report: give at least one run directory")
    runs = [collect_run(d) for d in dirs]
    out = Path(out) if out is not None else default_out(dirs)
    if out.is_dir():
        raise GanforgeError(f"report --out {out}: is a directory; give a file name such as {out / 'report.html'}")
    page = render_html(runs)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return out


def default_out(run_dirs: list[Path]) -> Path:
    return run_dirs[0] / "report.html" if len(run_dirs) == 1 else Path("report.html")


def render_html(runs: list[RunData]) -> str:
    """The whole page as a string."""
    _unique_names(runs)
    names = ", ".join(r.name for r in runs)
    body = [_header(runs), _config(runs), _comparison(runs), _train_curves(runs), _metrics(runs),
            modes_section(runs), _samples(runs), _explore(runs), _throughput(runs), _history(runs)]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>ganforge report: {_e(names)}</title>\n<style>{_CSS}</style>\n"
            f"<script>{plotly_js()}</script>\n</head>\n<body>\n" + "\n".join(b for b in body if b)
            + f"\n<script>{_SLIDER_JS}</script>\n</body>\n</html>\n")


# ------------------------------------------------------------------------------------------------------ sections
def _header(runs: list[RunData]) -> str:
    out = [f"<h1>ganforge report: {_e(', '.join(r.name for r in runs))}</h1>",
           f"<p>Written {_e(time.strftime('%Y-%m-%d %H:%M'))} by ganforge {_e(__version__)}.</p>"]
    for r in runs:
        info = r.info()
        params = ", ".join(f"{k} {int(v):,}" for k, v in info.items() if isinstance(v, (int, float)))
        cfg = shlex.quote(str(r.path / "config.yaml"))
        out.append(f'<div class="gf-run" data-run="{_e(r.name)}"><h3>{_e(r.name)}</h3>'
                   f"<p><code>{_e(str(r.path))}</code>: step {r.last_step()}"
                   + (f", {_e(params)}" if params else "") + "</p>"
                   f"<p>Reproduce (a fresh run): <code class=\"gf-command\">ganforge train {_e(cfg)} --out "
                   f"{_e(shlex.quote(str(r.path) + '-rerun'))}</code><br>"
                   f"Continue this run (resumes from its latest checkpoint; raise <code>train.steps=N</code> to "
                   f"train longer): <code>ganforge train {_e(cfg)} --out {_e(shlex.quote(str(r.path)))}</code></p>")
        for line in _warnings(r):
            out.append(f'<p class="gf-warning" data-run="{_e(r.name)}">{_e(line)}</p>')
        out.append("</div>")
    return "\n".join(out)


def _warnings(r: RunData) -> list[str]:
    out = []
    for count, file in ((r.skipped_lines, "metrics.jsonl"), (r.skipped_history, "history.jsonl"),
                        (r.skipped_modes, "modes.jsonl")):
        if count:
            out.append(f"{count} unreadable line{'s' if count != 1 else ''} skipped in {file}")
    return out + r.notes


def _config(runs: list[RunData]) -> str:
    out = ["<h2>Configuration</h2>"]
    if len(runs) == 1:
        text = runs[0].config_text or "(no config.yaml)"
        return "\n".join(out + [f'<pre id="gf-config">{_e(text)}</pre>'])
    diff = compare.config_diff(runs)
    if diff:
        head = "".join(f"<th>{_e(r.name)}</th>" for r in runs)
        rows = "".join(f'<tr data-key="{_e(k)}"><td>{_e(k)}</td>'
                       + "".join(f"<td>{_e(_value(v))}</td>" for v in values) + "</tr>" for k, values in diff.items())
        out.append(f'<p>Keys that differ between the runs:</p><table id="gf-config-diff"><tr><th>key</th>{head}</tr>'
                   f"{rows}</table>")
    else:
        out.append('<p>The runs have the same config.</p><table id="gf-config-diff"></table>')
    for r in runs:
        out.append(f"<details><summary>{_e(r.name)}: config.yaml</summary><pre>{_e(r.config_text)}</pre></details>")
    return "\n".join(out)


def _comparison(runs: list[RunData]) -> str:
    columns, rows = compare.comparison(runs)
    head = "<tr><th>run</th>" + "".join(f"<th>{_e(c)}</th>" for c in columns) + "</tr>"
    body = []
    for r, row in zip(runs, rows):
        cells = "".join(f'<td data-col="{_e(c)}" data-value="{_e(repr(row.get(c)))}">{_e(_value(row.get(c)))}</td>'
                        for c in columns)
        body.append(f'<tr data-run="{_e(r.name)}"><td>{_e(r.name)}</td>{cells}</tr>')
    seeds = compare.differ_only_by_seed(runs)
    if seeds:
        body.append(_mean_row(columns, rows))
    note = " The runs differ only by seed: the last row is mean ± std (ddof = 1)." if seeds else ""
    return (f"<h2>Comparison</h2><p>Final and best value of each metric (best: lowest, or highest for "
            f"IS/precision/recall/...).{note}</p>"
            f'<div style="overflow-x:auto"><table id="gf-compare">{head}{"".join(body)}</table></div>')


def _mean_row(columns: list[str], rows: list[dict[str, Any]]) -> str:
    cells = []
    for c in columns:
        values = [row.get(c) for row in rows]
        stats = None if c.endswith("/best_step") or None in values else compare.mean_std(values)
        if stats is None:
            cells.append(f'<td data-col="{_e(c)}">—</td>')
        else:
            m, s = stats
            cells.append(f'<td data-col="{_e(c)}" data-mean="{m!r}" data-std="{s!r}">{m:.6g} ± {s:.3g}</td>')
    return f'<tr class="gf-mean" data-stat="mean-std"><td>mean ± std</td>{"".join(cells)}</tr>'


def _train_curves(runs: list[RunData]) -> str:
    keys = compare.union(r.train_keys() for r in runs)
    out = []
    for group, title in (("loss", "Losses and loss terms"), ("lr", "Learning rates"),
                         ("p", "Augmentation probability")):
        figures = [_curve(runs, k, f"gf-fig-{group}-{i}") for i, k in enumerate(keys)
                   if compare.curve_group(k) == group]
        if figures:
            out.append(f'<h2>{title}</h2><div class="gf-figures" data-group="{group}">{"".join(figures)}</div>')
    return "\n".join(out) if out else "<h2>Losses</h2><p>No train rows in metrics.jsonl.</p>"


def _curve(runs: list[RunData], key: str, div_id: str) -> str:
    traces = []
    for r in runs:
        steps, values = r.series(key)
        if steps:
            traces.append(Trace(_trace_name(runs, r, key), steps, values))
    return figure_html(key, traces, "step", key, div_id)


def _metrics(runs: list[RunData]) -> str:
    keys = compare.union(r.metric_keys() for r in runs)
    if not keys:
        return "<h2>Evaluation metrics</h2><p>No eval or modes rows in metrics.jsonl (eval.every: 0).</p>"
    blocks = []
    for i, key in enumerate(keys):
        traces, markers, rows = [], [], []
        for r in runs:
            steps, values = r.metric_series(key)
            if not steps:
                continue
            per_step = r.kimg_per_step()
            x = [s * per_step for s in steps] if per_step is not None else steps
            traces.append(Trace(_trace_name(runs, r, key), x, values, [f"step {s}" for s in steps]))
            b = compare.best(key, steps, values)
            bx = b[1] * per_step if per_step is not None else b[1]
            markers.append(Marker(bx, b[0], f"best {b[0]:.4g} @ {b[1]}"))
            rows.append(f'<tr data-run="{_e(r.name)}"><td>{_e(r.name)}</td>'
                        f'<td class="gf-best-value" data-value="{b[0]!r}">{b[0]:.6g}</td>'
                        f'<td class="gf-best-step" data-value="{b[1]}">{b[1]}</td>'
                        f"<td>{_e(_value(bx))}</td><td>{values[-1]:.6g}</td></tr>")
        x_title = "kimg" if all(r.kimg_per_step() is not None for r in runs) else "step"
        direction = "higher" if compare.higher_is_better(key) else "lower"
        table = (f'<table class="gf-best" data-key="{_e(key)}"><tr><th>run</th><th>best ({direction} is better)'
                 f"</th><th>step</th><th>kimg</th><th>final</th></tr>{''.join(rows)}</table>")
        blocks.append(f"<div>{figure_html(key, traces, x_title, key, f'gf-fig-metric-{i}', markers)}{table}</div>")
    return f'<h2>Evaluation metrics</h2><div class="gf-figures" data-group="metric">{"".join(blocks)}</div>'


def _samples(runs: list[RunData]) -> str:
    out = ["<h2>Samples</h2>"]
    for i, r in enumerate(runs):
        if not r.grids:
            out.append(f"<p>{_e(r.name)}: no sample grids saved.</p>")
            continue
        grids = [{"step": g.step, "src": _data_uri(g.path)} for g in r.grids]
        ids = ('id="gf-slider" ', 'id="gf-grid" ') if i == 0 else ("", "")
        last = grids[-1]
        data = json.dumps(grids).replace("</", "<\\/")
        out.append(f'<div class="gf-grids" data-run="{_e(r.name)}" data-count="{len(grids)}"><h3>{_e(r.name)}</h3>'
                   f'<input type="range" {ids[0]}class="gf-slider" min="0" max="{len(grids) - 1}" step="1" '
                   f'value="{len(grids) - 1}" aria-label="step of the sample grid"> '
                   f'<span class="gf-step">step {last["step"]}</span><br>'
                   f'<img {ids[1]}class="gf-grid" src="{last["src"]}" alt="samples of {_e(r.name)}">'
                   f'<script type="application/json" class="gf-grid-data">{data}</script></div>')
    return "\n".join(out)


def _explore(runs: list[RunData]) -> str:
    items = [(r, e) for r in runs for e in r.explore]
    if not items:
        return ""
    out = ["<h2>Explore</h2>"]
    for r, e in items:
        values = "".join(f"<tr><td>{_e(k)}</td><td>{_e(_value(v))}</td></tr>"
                         for k, v in _flat(e.values).items())
        images = "".join(f'<img src="{_data_uri(p)}" alt="{_e(p.name)}" title="{_e(p.name)}">' for p in e.images)
        error = f'<p class="gf-warning">{_e(e.error)}</p>' if e.error else ""
        out.append(f'<div class="gf-explore" data-run="{_e(r.name)}" data-name="{_e(e.name)}">'
                   f"<h3>{_e(r.name)}: {_e(e.name)}</h3>{error}<table>{values}</table>{images}</div>")
    return "\n".join(out)


def _throughput(runs: list[RunData]) -> str:
    head = ("<tr><th>run</th><th>img/s (mean)</th><th>training time (from img/s)</th><th>kimg</th>"
            "<th>CPU time</th><th>GPU time</th></tr>")
    rows = []
    for r in runs:
        t = r.throughput()
        cpu = t.get("cpu_s", t.get("cpu_time_s"))
        gpu = t.get("gpu_s", t.get("gpu_time_s"))
        rows.append(f'<tr data-run="{_e(r.name)}"><td>{_e(r.name)}</td><td>{_e(_value(t.get("img_per_s")))}</td>'
                    f"<td>{_duration(t.get('train_s'))}</td><td>{_e(_value(t.get('kimg')))}</td>"
                    f"<td>{_duration(cpu, 'not recorded')}</td><td>{_duration(gpu, 'not recorded')}</td></tr>")
    traces = [Trace(_trace_name(runs, r, "img_per_s"), *r.series("img_per_s")) for r in runs
              if r.series("img_per_s")[0]]
    fig = figure_html("img_per_s", traces, "step", "images / s", "gf-fig-throughput") if traces else ""
    return f'<h2>Throughput and time</h2><table id="gf-throughput">{head}{"".join(rows)}</table>{fig}'


def _history(runs: list[RunData]) -> str:
    rows = []
    for r in runs:
        for h in r.history:
            env = h.get("env", {}) if isinstance(h.get("env"), dict) else {}
            shown = ", ".join(f"{k} {v}" for k, v in env.items())
            changes = h.get("config_changes", {})
            changed = "; ".join(f"{k}: {_change(v)}" for k, v in changes.items()) if isinstance(changes, dict) else ""
            rows.append(f"<tr><td>{_e(r.name)}</td><td>{_e(str(h.get('time', '')))}</td>"
                        f"<td>{_e(str(h.get('event', '')))}</td><td>{_e(str(h.get('step', '')))}</td>"
                        f"<td>{_e(shown)}</td><td>{_e(changed)}</td></tr>")
    if not rows:
        return ""
    return ("<h2>History (starts and resumes)</h2><table id=\"gf-history\"><tr><th>run</th><th>time</th><th>event"
            "</th><th>step</th><th>environment</th><th>config changes</th></tr>" + "".join(rows) + "</table>")


# ------------------------------------------------------------------------------------------------------ helpers
def _unique_names(runs: list[RunData]) -> None:
    """Runs with the same folder name (a/seed0, b/seed0) are named parent/name."""
    names = [r.name for r in runs]
    for r in runs:
        if names.count(r.name) > 1:
            r.name = f"{r.path.resolve().parent.name}/{r.path.resolve().name}"


def _trace_name(runs: list[RunData], r: RunData, key: str) -> str:
    return key if len(runs) == 1 else f"{r.name}/{key}"


def _data_uri(path: Path) -> str:
    """The picture as a data: URI (PNG, or GIF for an explore animation), so the page needs no other file."""
    mime = "image/gif" if path.suffix.lower() == ".gif" else "image/png"
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in values.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _value(v: Any) -> str:
    if v is compare.MISSING or v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    return str(v)


def _change(v: Any) -> str:
    """A recorded config change [before, after] as 'before → after'."""
    return f"{_value(v[0])} → {_value(v[1])}" if isinstance(v, list) and len(v) == 2 else _value(v)


def _duration(seconds: float | None, missing: str = "—") -> str:
    if seconds is None:
        return missing
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _e(text: str) -> str:
    return html.escape(text, quote=True)

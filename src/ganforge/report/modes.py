"""The report's "Mode coverage" section: how a run's samples spread over the modes of a 2-D mixture or of stacked
digits, from RUN/modes.jsonl (one histogram of samples per mode per mode evaluation).

Per run: a heatmap of the counts (x = mode, y = kimg, or step when kimg is unknown: how coverage evolved, a mode
dropping out shows as a dark column), a bar chart of the last evaluation's counts with the uniform expectation
(the same samples spread evenly: total / K per mode) as a dashed line, and for 2-D sets a scatter of the mode centres
sized and coloured by that last count (empty modes drawn as crosses). The numbers are those the PacGAN scalars of
metrics.jsonl are computed from ("Unrolled GANs", Metz et al., 2017; "PacGAN", Lin et al., 2018): for ring8 /
grid25 the high-quality samples (within 3 sigma) nearest to each mode, for stacked digits the samples per predicted
3-digit class.

DOM hooks: `div.gf-modes[data-run]` per run, holding `div.gf-figure[data-run]` with data-key `mode_counts`
(1 trace: the heatmap), `mode_last` (2 traces: bars and the uniform line) and, for 2-D sets, `mode_centers`
(1 trace).
"""
from __future__ import annotations

import html

from .collect import RunData
from .figures import go, layout, plot_div

HEATMAP_KEY, LAST_KEY, CENTERS_KEY = "mode_counts", "mode_last", "mode_centers"
TICK_EVERY_MODE = 32  # up to this many modes, every mode gets its own tick


def modes_section(runs: list[RunData]) -> str:
    """The section's HTML; empty when no run has a modes.jsonl."""
    shown = [(i, r) for i, r in enumerate(runs) if r.modes]
    if not shown:
        return ""
    out = ["<h2>Mode coverage</h2><p>Samples per mode at each mode evaluation (<code>modes.jsonl</code>): for the "
           "2-D mixtures the high-quality samples (within 3&sigma;) nearest to each mode, for stacked digits the "
           "samples per predicted 3-digit class. These counts give the <code>modes</code> and <code>kl</code> "
           "curves above; the dashed line is what each mode would get if the same samples were spread "
           "uniformly.</p>"]
    for i, r in shown:
        figures = [heatmap(r, f"gf-fig-modes-{i}-counts"), last_counts(r, f"gf-fig-modes-{i}-last")]
        if r.mode_centers is not None:
            figures.append(centers(r, f"gf-fig-modes-{i}-centers"))
        out.append(f'<div class="gf-modes" data-run="{_e(r.name)}" data-evaluations="{len(r.modes)}">'
                   f'<h3>{_e(r.name)}</h3><div class="gf-figures">{"".join(figures)}</div></div>')
    return "\n".join(out)


def heatmap(r: RunData, div_id: str) -> str:
    """Counts over training: one row per mode evaluation (y = kimg or step), one column per mode."""
    per_step = r.kimg_per_step()
    y = [m.step * per_step for m in r.modes] if per_step is not None else [m.step for m in r.modes]
    y_title = "kimg" if per_step is not None else "step"
    k = len(r.modes[-1].counts)
    fig = go.Figure(layout=layout(f"{r.name}: samples per mode over training", "mode", y_title, height=360))
    fig.add_trace(go.Heatmap(z=[m.counts for m in r.modes], x=list(range(k)), y=y, colorscale="Viridis",
                             colorbar={"title": {"text": "samples"}}, name="samples per mode",
                             hovertemplate=f"mode %{{x}}<br>{y_title} %{{y}}<br>%{{z}} samples<extra></extra>"))
    _mode_ticks(fig, k)
    return plot_div(fig, HEATMAP_KEY, div_id, {"data-run": r.name})


def last_counts(r: RunData, div_id: str) -> str:
    """The last evaluation's counts as bars, and the uniform expectation total / K as a dashed line."""
    last = r.modes[-1]
    k, total = len(last.counts), sum(last.counts)
    uniform = total / k
    hit = sum(c > 0 for c in last.counts)
    fig = go.Figure(layout=layout(f"{r.name}: step {last.step}, {hit} of {k} modes hit", "mode", "samples",
                                  height=360, legend={"orientation": "h", "y": -0.25}, bargap=0.1))
    fig.add_trace(go.Bar(x=list(range(k)), y=last.counts, name=f"samples per mode (step {last.step})",
                         hovertemplate="mode %{x}: %{y} samples<extra></extra>"))
    fig.add_trace(go.Scatter(x=[-0.5, k - 0.5], y=[uniform, uniform], mode="lines", line={"dash": "dash"},
                             name=f"uniform: {total} / {k} = {uniform:.4g} per mode", hoverinfo="name"))
    _mode_ticks(fig, k)
    return plot_div(fig, LAST_KEY, div_id, {"data-run": r.name, "data-step": str(last.step)})


def centers(r: RunData, div_id: str) -> str:
    """The 2-D mode centres, marker area growing with the last count; modes with no sample are crosses."""
    counts = r.modes[-1].counts
    top = max(max(counts), 1)
    xs, ys = [c[0] for c in r.mode_centers], [c[1] for c in r.mode_centers]
    fig = go.Figure(layout=layout(f"{r.name}: mode centres at step {r.modes[-1].step}", "x", "y", height=360))
    fig.update_yaxes(scaleanchor="x", scaleratio=1)  # the plane undistorted
    fig.add_trace(go.Scatter(
        x=xs, y=ys, mode="markers", name="mode centres", customdata=list(zip(range(len(counts)), counts)),
        marker={"size": [8 + 28 * (c / top) ** 0.5 for c in counts], "color": counts, "colorscale": "Viridis",
                "cmin": 0, "cmax": top, "symbol": ["circle" if c > 0 else "x" for c in counts],
                "line": {"width": 1, "color": "#333"}, "colorbar": {"title": {"text": "samples"}}},
        hovertemplate="mode %{customdata[0]} (%{x:.3g}, %{y:.3g}): %{customdata[1]} samples<extra></extra>"))
    return plot_div(fig, CENTERS_KEY, div_id, {"data-run": r.name})


def _mode_ticks(fig: "go.Figure", k: int) -> None:
    if k <= TICK_EVERY_MODE:
        fig.update_xaxes(dtick=1)


def _e(text: str) -> str:
    return html.escape(text, quote=True)

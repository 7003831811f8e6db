"""Interactive line charts for the report, drawn with Plotly.

Why Plotly: a researcher reading a report wants to zoom into a stretch of training, hover a point to read its exact
value and step, and hide a run by clicking its legend entry; Plotly gives all of that with no code of ours, renders
from a JSON description into a self-contained HTML page (plotly.js ships inside the Python wheel, so the page opens
offline, no CDN), and is a widely used, actively maintained library. The page embeds plotly.js once (`plotly_js`);
each figure is a `<div>` plus the small script that draws it.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field

from ..errors import GanforgeError

try:
    import plotly.graph_objects as go
    import plotly.offline
except ImportError as exc:  # an install without the `report` extra
    raise GanforgeError("ganforge report needs Plotly: pip install 'ganforge[report]' (or pip install plotly)") from exc

_CONFIG = {"displaylogo": False, "responsive": True}
_AXIS = {"showgrid": True, "gridcolor": "#e6e6e6", "zeroline": False, "linecolor": "#999", "showline": True}


@dataclass
class Trace:
    """One curve: its legend name and points."""
    name: str
    x: list[float]
    y: list[float]
    hover: list[str] = field(default_factory=list)  # extra text per point (e.g. "step 400")


@dataclass
class Marker:
    """A labelled point on a figure (a best value), drawn as an annotation, not a trace."""
    x: float
    y: float
    text: str


def plotly_js() -> str:
    """The plotly.js bundle (from the installed wheel), for one inline <script> per page."""
    return plotly.offline.get_plotlyjs()


def figure_html(key: str, traces: list[Trace], x_title: str, y_title: str, div_id: str,
                markers: list[Marker] | None = None, title: str | None = None) -> str:
    """A `<div class="gf-figure" data-key=KEY data-traces=N>` holding one chart with one line per trace."""
    fig = go.Figure(layout=layout(title or key, x_title, y_title, legend={"orientation": "h", "y": -0.25},
                                  showlegend=len(traces) > 1))
    for t in traces:
        mode = "lines+markers" if len(t.x) <= 60 else "lines"
        fig.add_trace(go.Scatter(x=t.x, y=t.y, name=t.name, mode=mode, text=t.hover or None,
                                 hovertemplate=f"{html.escape(t.name)}<br>%{{x}}: %{{y:.6g}}"
                                               + ("<br>%{text}" if t.hover else "") + "<extra></extra>"))
    for m in markers or []:
        fig.add_annotation(x=m.x, y=m.y, text=html.escape(m.text), showarrow=True, arrowhead=2, ax=0, ay=-30,
                           font={"size": 11})
    return plot_div(fig, key, div_id)


def layout(title: str, x_title: str, y_title: str, height: int = 320, **extra) -> dict:
    """The report's Plotly layout: no template clutter, light grid, titled axes (extra keys override)."""
    return {"template": "none", "height": height, "margin": {"l": 60, "r": 20, "t": 40, "b": 45},
            "title": {"text": html.escape(title), "font": {"size": 14}},
            "xaxis": {**_AXIS, "title": {"text": x_title}}, "yaxis": {**_AXIS, "title": {"text": y_title}},
            "hovermode": "closest", **extra}


def plot_div(fig: "go.Figure", key: str, div_id: str, attrs: dict[str, str] | None = None) -> str:
    """`<div class="gf-figure" data-key=KEY data-traces=N ...attrs>` around the figure's plot div (N: its traces)."""
    height = fig.layout.height or 320
    plot = fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=_CONFIG,
                       default_height=f"{height}px")
    extra = "".join(f' {html.escape(k)}="{html.escape(v)}"' for k, v in (attrs or {}).items())
    return (f'<div class="gf-figure" data-key="{html.escape(key)}" data-traces="{len(fig.data)}"{extra}>'
            f"{plot}</div>")

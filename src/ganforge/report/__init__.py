"""`ganforge report`: a self-contained HTML page about one or several run directories (curves, metrics, samples,
config diff, comparison, mode coverage). `collect_run` reads a run, `render_html` draws the page, `write_report` does
both."""
from .collect import ModeCounts, RunData, collect_run
from .render import default_out, render_html, write_report

__all__ = ["ModeCounts", "RunData", "collect_run", "default_out", "render_html", "write_report"]

"""`ganforge report RUN [RUN ...] [--out FILE.html]`: one self-contained HTML page about the runs (see
ganforge.report): curves, metrics with their best step, sample grids, config diff, comparison table."""
from __future__ import annotations

from pathlib import Path


def add_report(sub) -> None:
    p = sub.add_parser("report", help="write a self-contained HTML report on one or several runs",
                       description="Write one HTML file (opens offline) with the config (a diff for several runs), "
                                   "loss / lr / augmentation-p curves, every eval metric over kimg with its best "
                                   "value and step, the sample grid at every saved step, throughput and the "
                                   "command that reproduces each run. Several runs: overlaid curves and a "
                                   "comparison table (mean ± std when they differ only by seed).")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories (written by `ganforge train`)")
    p.add_argument("--out", help="HTML file to write (default: RUN/report.html for one run, ./report.html for "
                                 "several)")
    p.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    from ..report import write_report

    out = write_report([Path(r) for r in args.runs], args.out)
    print(f"wrote {out} ({_size(out.stat().st_size)})")
    return 0


def _size(n: int) -> str:
    """1234567 -> '1.2 MB'."""
    if n < 1024:
        return f"{n} B"
    return f"{n / 1024:.1f} KB" if n < 1024 ** 2 else f"{n / 1024 ** 2:.1f} MB"

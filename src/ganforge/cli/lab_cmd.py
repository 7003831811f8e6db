"""`ganforge lab [--port P] [--host 127.0.0.1]`: GAN Lab in the browser, trained live by ganforge's own Trainer.

Serves the page and its websocket with uvicorn (the `lab` extra: starlette, uvicorn, websockets) on 127.0.0.1 by
default, so only this machine can reach it; saved sessions go to --runs (docs/lab.md).
"""
from __future__ import annotations

from pathlib import Path

from ..errors import GanforgeError


def add_lab(sub) -> None:
    p = sub.add_parser("lab", help="train a 2-D GAN live in the browser (GAN Lab for every registered component)",
                       description="Start the lab's web server and open http://HOST:PORT/ in a browser: choose data "
                                   "(built-in 2-D sets, or points you draw or upload), architecture, loss, "
                                   "regularizers, augmentation and optimizer; play, pause or step D and G one at a "
                                   "time; save the session as a run directory that `ganforge train` resumes.")
    p.add_argument("--port", type=int, default=8765, help="TCP port (default 8765)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 exposes the lab to the "
                        "network, with no authentication)")
    p.add_argument("--runs", default="runs/lab", help="folder where saved sessions go, one run directory per name "
                                                      "(default runs/lab)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads (default 1: a 2-D MLP is too small to split, and more threads made "
                        "the lab 10x slower on a busy machine, docs/benchmarks.md; 0: torch's default)")
    p.set_defaults(func=cmd_lab)


def cmd_lab(args) -> int:
    if not 0 < args.port < 65536:
        raise GanforgeError(f"--port: expected a TCP port in 1..65535, got {args.port}")
    if args.threads < 0:
        raise GanforgeError(f"--threads: expected a thread count >= 0 (0: torch's default), got {args.threads}")
    try:
        from ..lab.server import serve
    except ImportError as e:
        raise GanforgeError(f"ganforge lab needs the lab extra ({e.name} is missing): pip install 'ganforge[lab]'"
                            ) from e
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    print(f"ganforge lab: open http://{args.host}:{args.port}/ (saved sessions go to {Path(args.runs)}; Ctrl-C to "
          f"stop)")
    serve(host=args.host, port=args.port, runs_dir=args.runs)
    return 0

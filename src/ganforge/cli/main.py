"""`ganforge` command line: thin wrappers that parse, load the config and call the API.

Errors in user input (`GanforgeError`, unreadable/unwritable files) print one line and exit with status 2; `--debug`
shows the full traceback instead.
"""
from __future__ import annotations

import argparse
import sys

from ..errors import GanforgeError
from . import commands


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ganforge", description="Train, evaluate and inspect GANs.")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for register in commands.REGISTER:
        register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if debug:
        argv.remove("--debug")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # KEY=VALUE overrides may follow options: `train CFG --out DIR train.steps=10`
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides += extra
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.debug = debug
    try:
        return int(args.func(args) or 0)
    except GanforgeError as e:
        if debug:
            raise
        print(f"ganforge: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if debug:
            raise
        where = f"{e.filename}: " if e.filename else ""
        print(f"ganforge: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ganforge: interrupted (the last checkpoint is intact; run the same command to resume)", file=sys.stderr)
        return 130


def exit_process(rc: int) -> None:
    """End the process with `rc`. A torchrun worker ends with os._exit once its output is flushed: its process group
    is already destroyed and every file closed, and skipping the interpreter's teardown avoids an abort in the C++
    destructors of torch's distributed threads ("terminate called without an active exception"), which in about 1
    of 20 two-rank gloo runs turned a finished run into a SIGABRT exit."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    raise SystemExit(rc)


def console() -> None:
    """The `ganforge` console script."""
    exit_process(main())


if __name__ == "__main__":
    exit_process(main())

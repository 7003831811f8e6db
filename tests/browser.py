"""Headless Chromium for the browser tests and for scripts/screenshots.py: Debian's `chromium` package (installed by
`make browser`) driven by Playwright, whose own browser download is never used (`executable_path` points at the
system binary), so a fresh machine needs no CDN.

`Browser` launches one Chromium; `Browser.page()` opens a tab that records every console error, uncaught page error
and request the page makes, so a test can fail on any of them. `check_screenshot` reads a saved PNG back and says
whether it is the expected size and not blank. The pytest fixture `browser_page` (tests/conftest.py) wraps these.
`LabServer` runs `ganforge lab`'s app in a thread on a free port, for the lab's browser tests and screenshot.
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

VIEWPORT = {"width": 1280, "height": 900}
INSTALL_HINT = "run `make browser` (Debian's chromium package) and `make setup` (Playwright, the `browser` extra)"
# where Debian puts the real binary behind its /usr/bin/chromium shell wrapper (the wrapper also works, but prints
# shell noise on every start)
_DEBIAN_BINARY = "/usr/lib/chromium/chromium"
_NAMES = ("chromium", "chromium-browser", "google-chrome")


class BrowserMissing(RuntimeError):
    """No Chromium executable or no Playwright: the message says how to install them."""


def find_chromium() -> str | None:
    """The Chromium to drive: $GANFORGE_CHROMIUM, else Debian's binary, else the first of chromium /
    chromium-browser / google-chrome on PATH; None when there is none."""
    env = os.environ.get("GANFORGE_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    if Path(_DEBIAN_BINARY).is_file() and shutil.which("chromium"):
        return _DEBIAN_BINARY
    for name in _NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class RecordedPage:
    """A Playwright page plus what went wrong on it: console errors, uncaught exceptions, and every request URL."""
    page: Any  # playwright.sync_api.Page
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def open(self, path: str | Path) -> None:
        """Load a local file and wait until its scripts have run."""
        self.page.goto(Path(path).resolve().as_uri(), wait_until="load")

    def screenshot(self, path: str | Path) -> Path:
        """A screenshot of the viewport, saved to `path`."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path))
        return path


class Browser:
    """One headless Chromium process (`with Browser() as b: rec = b.page()`)."""

    def __init__(self, executable: str | None = None):
        self.executable = executable or find_chromium()
        if self.executable is None:
            raise BrowserMissing(f"no Chromium found (chromium, chromium-browser, $GANFORGE_CHROMIUM): {INSTALL_HINT}")
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            raise BrowserMissing(f"Playwright for Python is not installed: {INSTALL_HINT}") from None
        self._manager = sync_playwright()
        self._playwright = self._manager.start()
        try:
            self._browser = self._playwright.chromium.launch(
                executable_path=self.executable, headless=True, args=["--no-sandbox", "--disable-gpu"])
        except Exception:
            self._manager.__exit__(None, None, None)
            raise

    def page(self, viewport: dict[str, int] | None = None) -> RecordedPage:
        """A fresh tab (its own context: no shared storage) of `viewport` size at device scale 1."""
        context = self._browser.new_context(viewport=viewport or VIEWPORT, device_scale_factor=1)
        rec = RecordedPage(context.new_page())
        rec.page.on("console", lambda msg: rec.errors.append(f"console.{msg.type}: {msg.text}")
                    if msg.type == "error" else None)
        rec.page.on("pageerror", lambda exc: rec.errors.append(f"uncaught: {exc}"))
        rec.page.on("request", lambda req: rec.requests.append(req.url))
        return rec

    def close(self) -> None:
        self._browser.close()
        self._manager.__exit__(None, None, None)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_screenshot(path: str | Path, size: tuple[int, int], min_std: float = 8.0) -> list[str]:
    """What is wrong with the PNG at `path` (empty when nothing): it must decode, be `size` (width, height) and not be
    blank (the standard deviation of its grey levels, 0..255, above `min_std`; a white page is 0)."""
    try:
        with Image.open(path) as im:
            im.load()
            fmt, shape, pixels = im.format, im.size, np.asarray(im.convert("L"), dtype=np.float64)
    except (OSError, ValueError) as e:
        return [f"{path}: does not decode as an image ({e})"]
    problems = []
    if fmt != "PNG":
        problems.append(f"{path}: {fmt}, not PNG")
    if shape != tuple(size):
        problems.append(f"{path}: {shape[0]}x{shape[1]} pixels, expected {size[0]}x{size[1]}")
    if pixels.std() <= min_std:
        problems.append(f"{path}: blank (grey-level std {pixels.std():.2f} <= {min_std})")
    return problems


class LabServer:
    """`ganforge lab`'s app served by uvicorn in a daemon thread of this process, on a socket bound to a free
    127.0.0.1 port (no race for the port): `with LabServer(runs_dir) as lab: page.goto(lab.url)`. `.app` is the
    Starlette app, whose `state.sessions` holds the live sessions (one per open page)."""

    def __init__(self, runs_dir: str | Path, timeout: float = 20.0):
        import socket
        import threading

        import uvicorn

        from ganforge.lab.server import WS_MAX_SIZE, create_app

        self.app = create_app(runs_dir)
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/"
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off", ws_max_size=WS_MAX_SIZE)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True,
                                        name="ganforge-lab-server")
        self._thread.start()
        deadline = time.time() + timeout
        while not self._server.started and self._thread.is_alive() and time.time() < deadline:
            time.sleep(0.05)
        if not self._server.started:
            self.close()
            raise RuntimeError(f"the lab server did not start within {timeout:.0f} s")

    def close(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=20)
        self._sock.close()

    def __enter__(self) -> "LabServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from ganforge.registries import load_all  # noqa: E402

load_all()  # every component registered before test modules parametrize over the registries


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny convs run ~100x faster on one thread when other processes share the cores (OpenMP spin-waits); a module
    opts in with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """A private ganforge cache shared by the session's tests (nothing leaks into ~/.cache; the digits classifier
    trains once per session). Tests that need an empty cache set GANFORGE_CACHE themselves."""
    from helpers import shared_cache_dir

    monkeypatch.setenv("GANFORGE_CACHE", shared_cache_dir(tmp_path_factory))


def pytest_configure(config):
    """Tiny test models run far faster on one thread than with intra-op parallelism on a loaded 2-core machine."""
    import torch

    torch.set_num_threads(1)


# ------------------------------------------------------------------------------------------- headless Chromium
@pytest.fixture(scope="session")
def chromium():
    """One headless Chromium (Debian's package, driven by Playwright) for the session's browser tests. Missing, it
    fails the test with how to install it: CI must not pass by skipping. GANFORGE_NO_BROWSER=1 skips instead."""
    from browser import Browser, BrowserMissing

    try:
        b, missing = Browser(), None
    except BrowserMissing as e:
        b, missing = None, str(e)
    if missing and os.environ.get("GANFORGE_NO_BROWSER") == "1":
        pytest.skip(f"GANFORGE_NO_BROWSER=1: {missing}")
    if missing:
        pytest.fail(f"{missing} (or set GANFORGE_NO_BROWSER=1 to skip the browser tests)", pytrace=False)
    yield b
    b.close()


@pytest.fixture
def browser_page(chromium):
    """A fresh Chromium tab (`browser.RecordedPage`: .page is Playwright's Page; .open(file), .screenshot(path)).
    The test fails at teardown if the page logged a console error or threw an uncaught exception."""
    rec = chromium.page()
    yield rec
    errors = list(rec.errors)
    rec.page.context.close()
    if errors:
        pytest.fail("the page reported errors:\n" + "\n".join(errors), pytrace=False)

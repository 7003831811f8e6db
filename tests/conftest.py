import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from ganforge.registries import load_all  # noqa: E402

load_all()  # every component registered before test modules parametrize over the registries


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

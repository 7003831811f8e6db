"""Looking inside a trained generator: `ganforge explore RUN METHOD [KEY=VALUE ...]` and `explore(...)` here.

Each method is a registered explorer (`ganforge list explorers`; registry `EXPLORERS`, framework in `base.py`) that
writes its figures, `result.json` and a self-contained `index.html` into `RUN/explore/METHOD/`.
"""
from .base import Explorer, explore, explore_dir, write_page

__all__ = ["Explorer", "explore", "explore_dir", "write_page"]

"""2-D point sets without mixture modes: a line, and the user's own points from a CSV file.

The line is one of the toy distributions of "GAN Lab: Understanding Complex Deep Generative Models using Interactive
Visual Experimentation" (Kahng et al., 2019). `points` reads x,y rows from a CSV file (the points a user draws or
uploads in `ganforge lab`, saved with the run so `ganforge train` can resume it) and, with `n` > 0, draws `n`
training points from them: a uniformly chosen given point plus isotropic Gaussian noise of std `noise`
(x = p_i + noise * eps, i ~ U{1..M}), so a few clicks become a smooth density instead of M memorisable points.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import torch

from ..errors import GanforgeError
from ..registries import DATASETS
from .base import DataInfo, PointModality, TensorDataset
from .common import check_split, fingerprint, split_seed

MAX_POINTS = 100_000  # rows a points file (or a drawn set) may hold
_SEPARATORS = re.compile(r"[,;\t ]+")


def parse_points_csv(text: str, where: str = "points", limit: int = MAX_POINTS) -> torch.Tensor:
    """x,y rows (comma, semicolon, tab or space separated; '#' comments and one header line allowed) -> (M, 2).

    Raises a one-line GanforgeError naming `where` and the line for a row that is not two finite numbers, for more
    than `limit` rows, or for no rows at all.
    """
    rows: list[tuple[float, float]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = [f for f in _SEPARATORS.split(line) if f]
        try:
            values = [float(f) for f in fields]
        except ValueError:
            if not rows and number == _first_content_line(text):
                continue  # a header such as "x,y"
            raise GanforgeError(f"{where}: line {number}: expected two numbers x,y, got {line[:60]!r}") from None
        if len(values) != 2 or not all(math.isfinite(v) for v in values):
            raise GanforgeError(f"{where}: line {number}: expected two finite numbers x,y, got {line[:60]!r}")
        rows.append((values[0], values[1]))
        if len(rows) > limit:
            raise GanforgeError(f"{where}: more than {limit} points; give at most {limit}")
    if not rows:
        raise GanforgeError(f"{where}: no points (expected rows of x,y)")
    return torch.tensor(rows, dtype=torch.float32)


def _first_content_line(text: str) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        if line.split("#", 1)[0].strip():
            return number
    return 0


def points_csv(points: torch.Tensor) -> str:
    """(M, 2) -> 'x,y' rows with a header, read back exactly by `parse_points_csv` (float32 round trip)."""
    rows = "\n".join(f"{float(x)!r},{float(y)!r}" for x, y in points.tolist())
    return f"x,y\n{rows}\n"


@DATASETS.register("line")
class Line2D(TensorDataset):
    """Points on the segment from (-1, -1) to (1, 1) with Gaussian noise of std 0.02 across it (GAN Lab's line)."""

    name = "line"

    def __init__(self, *, split: str = "train", cache_dir: str | None = None, n: int = 100000, seed: int = 0):
        check_split(split, f"data ({self.name})")
        if n < 1:
            raise GanforgeError(f"data.n: expected a positive number of samples, got {n}")
        g = torch.Generator().manual_seed(split_seed(seed, split))
        t = torch.rand(n, 1, generator=g) * 2 - 1  # position along the segment, uniform in [-1, 1]
        x = t * torch.tensor([[1.0, 1.0]]) + 0.02 * torch.randn(n, 2, generator=g)  # (n, 2)
        y = torch.zeros(n, dtype=torch.long)
        super().__init__(x, y, DataInfo((2,), 1, PointModality(1.5)),
                         fingerprint(self.name, {"split": split, "n": n, "seed": seed}, x, y))


@DATASETS.register("points")
class PointsFile(TensorDataset):
    """The x,y rows of a CSV file (drawn or uploaded points); n > 0 draws n noisy samples around them."""

    name = "points"

    def __init__(self, *, path: str, split: str = "train", cache_dir: str | None = None, n: int = 0,
                 noise: float = 0.0, extent: float = 0.0, seed: int = 0):
        """Args:
            path: CSV file of x,y rows (at most 100,000).
            n: training points drawn around the given ones (0: the given points as they are).
            noise: std of the Gaussian noise added to each drawn point (with n > 0).
            extent: half-width of the plotted square (0: 1.2 x the largest |coordinate|).
        """
        check_split(split, f"data ({self.name})")
        if n < 0:
            raise GanforgeError(f"data.n: expected a number of samples >= 0 (0: the points as given), got {n}")
        if not noise >= 0:
            raise GanforgeError(f"data.noise: expected a standard deviation >= 0, got {noise}")
        if not extent >= 0:
            raise GanforgeError(f"data.extent: expected a half-width >= 0 (0: from the points), got {extent}")
        file = Path(path).expanduser()
        try:
            text = file.read_text()
        except OSError as e:
            raise GanforgeError(f"data.path {file}: cannot read the points file ({e.strerror})") from e
        given = parse_points_csv(text, where=f"data.path {file}")
        x = given
        if n > 0:  # x = p_i + noise * eps with i uniform over the given points
            g = torch.Generator().manual_seed(split_seed(seed, split))
            pick = torch.randint(len(given), (n,), generator=g)
            x = given[pick] + noise * torch.randn(n, 2, generator=g)
        y = torch.zeros(len(x), dtype=torch.long)
        half = extent if extent > 0 else max(1.2 * float(x.abs().max()), 0.1)
        # the fingerprint covers the content, not the path: a saved copy of the same points is the same data
        super().__init__(x, y, DataInfo((2,), 1, PointModality(half)),
                         fingerprint(self.name, {"split": split, "n": n, "noise": noise, "seed": seed}, given))

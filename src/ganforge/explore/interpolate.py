"""Interpolation grids: rows are pairs of seeded latents, columns are `steps` points on the path between them.

- lerp: (1 - t) a + t b.
- slerp (Shoemake, "Animating rotation with quaternion curves", SIGGRAPH 1985; used for Gaussian latents by White,
  "Sampling Generative Networks", 2016): with omega = arccos(<a, b> / (|a| |b|)),
  slerp(a, b; t) = sin((1 - t) omega) / sin(omega) a + sin(t omega) / sin(omega) b; lerp where sin(omega) ~ 0.
- space z interpolates G's input latents; space w (style-based generators only, models/style.py) interpolates the
  mapping network's output w and runs the synthesis network on it (StyleGAN, Karras et al. 2019, Sec. 4).
A conditional G keeps one condition per row (a class, or the embedding of one random training caption).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from tqdm import tqdm

from ..checks import check_int
from ..errors import GanforgeError
from ..models.style import is_style_based
from ..registries import EXPLORERS
from .base import Explorer, render_grid, repeat_condition, row_latents, save_gif, save_png

_PARALLEL_EPS = 1e-6  # sin(omega) below this: a and b are (anti)parallel, slerp falls back to lerp


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """(1 - t) a + t b, row-wise for (N, D) a, b and (N, 1) or scalar t."""
    return a + (b - a) * t


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """Spherical interpolation (Shoemake 1985) between rows of a and b; lerp where the angle is ~0 (or ~pi)."""
    t = torch.as_tensor(t, dtype=a.dtype)
    if t.ndim == 0:
        t = t.expand(a.shape[0], 1)
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1, eps=1e-12).clamp(-1, 1).unsqueeze(-1)  # (N, 1)
    omega = torch.arccos(cos)
    sin = torch.sin(omega)
    safe = sin.abs() > _PARALLEL_EPS
    s = torch.where(safe, sin, torch.ones_like(sin))
    out = torch.sin((1 - t) * omega) / s * a + torch.sin(t * omega) / s * b
    return torch.where(safe, out, lerp(a, b, t))


_MODES = {"lerp": lerp, "slerp": slerp}


@EXPLORERS.register("interpolate")
class Interpolate(Explorer):
    """Interpolation grids between seeded latents (lerp / slerp, z or w space); PNG grid + GIF of row 0."""

    def __init__(self, *, rows: int = 4, steps: int = 8, mode: Literal["lerp", "slerp"] = "slerp",
                 space: Literal["z", "w"] = "z", label: int | None = None, frames: int = 24):
        """
        Args:
            rows: number of latent pairs (grid rows).
            steps: points per path, endpoints included (grid columns).
            mode: lerp or slerp.
            space: z (any generator) or w (style-based generators).
            label: the class of every row for a class-conditional G (default: a random class per row).
            frames: frames of the animated GIF along row 0's path.
        """
        self.rows = check_int(rows, "explore interpolate: rows", minimum=1)
        self.steps = check_int(steps, "explore interpolate: steps", minimum=2)
        self.frames = check_int(frames, "explore interpolate: frames", minimum=2)
        self.mode, self.space, self.label = mode, space, label

    def check(self, G: torch.nn.Module) -> None:
        super().check(G)
        if self.space == "w" and not is_style_based(G):
            raise GanforgeError(f"explore interpolate: space 'w' needs a style-based generator (mapping + synthesis, "
                                f"models/style.py); {type(G).__name__} has no w; use space=z")
        if self.label is not None and not 0 <= self.label < max(int(G.num_classes or 0), 0):
            what = "is not class-conditional" if not G.num_classes else f"has classes 0..{G.num_classes - 1}"
            raise GanforgeError(f"explore interpolate: label {self.label}: this generator {what}")

    def path(self, G: torch.nn.Module, a: torch.Tensor, b: torch.Tensor, y: torch.Tensor | None, n: int,
             device: str) -> torch.Tensor:
        """Images at n evenly spaced points of each row's path: (rows * n, C, H, W), row-major."""
        t = torch.linspace(0, 1, n).repeat(a.shape[0]).unsqueeze(1)  # (rows * n, 1)
        a, b = a.repeat_interleave(n, 0), b.repeat_interleave(n, 0)
        yy = repeat_condition(y, n)
        yy = None if yy is None else yy.to(device)
        if self.space == "z":
            return G(_MODES[self.mode](a, b, t).to(device), yy).cpu()
        wa = G.mapping(a.to(device), yy, update_w_avg=False)[:, 0]  # (N, w_dim): w is shared by all layers
        wb = G.mapping(b.to(device), yy, update_w_avg=False)[:, 0]
        w = _MODES[self.mode](wa, wb, t.to(device))
        return G.synthesis(w.unsqueeze(1).repeat(1, G.num_ws, 1)).cpu()

    def run(self, G: torch.nn.Module, out_dir: Path, *, progress: bool, seed: int, device: str) -> dict[str, Any]:
        z, y = row_latents(G, 2 * self.rows, seed, self.label)
        a, b = z[0::2], z[1::2]
        y = None if y is None else y[0::2]  # one condition per row, shared by both endpoints
        rows = []
        for i in tqdm(range(self.rows), desc="interpolate", disable=not progress, leave=False):
            rows.append(self.path(G, a[i: i + 1], b[i: i + 1], None if y is None else y[i: i + 1], self.steps,
                                  device))
        grid = torch.cat(rows)
        save_png(render_grid(G, grid, ncol=self.steps), out_dir / "grid.png")
        film = self.path(G, a[:1], b[:1], None if y is None else y[:1], self.frames, device)
        there_and_back = torch.cat([film, film.flip(0)[1:-1]])  # endpoints once each, so the loop does not pause
        frames = [render_grid(G, f[None], ncol=1) for f in there_and_back]
        save_gif(frames, out_dir / "row0.gif")
        step_l2 = (grid.view(self.rows, self.steps, -1).diff(dim=1).norm(dim=-1)).mean(0)  # (steps - 1,)
        return {"rows": self.rows, "steps": self.steps, "latent_angle_deg": _angles(a, b),
                "mean_image_step_l2": step_l2}


def _angles(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1).clamp(-1, 1)
    return torch.rad2deg(torch.arccos(cos)).tolist()

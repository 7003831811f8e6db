"""`shapes-captions`: procedural images of one or two coloured shapes with captions generated from what was drawn.

A text-to-image toy set in the spirit of Text2FaceGAN ("Text2FaceGAN: Face Generation from Fine Grained Textual
Descriptions", Nasir et al., 2019), which writes several captions per face from its annotated attributes, so every
caption is true of its image: here the attributes are the ones rendered. It ships with the install (numpy only), is
deterministic from `seed`, and the test split is an independent draw (`data/common.py: split_seed`).

Each image (black background, `resolution` 16, 32 or 64 px, RGB) holds one shape, or two with probability
`p_two`; a shape is a circle, square or (upward) triangle, in pure red, green, blue or yellow, small (a box of
round(0.25 R) px) or large (round(0.45 R) px), filled without anti-aliasing (a pixel is inside when its centre
is). Two shapes stand in a relation of the first to the second: left of / right of / above / below. Their boxes
are at least one pixel apart along the relation's axis (so they never overlap) and the centres' offset across that
axis is at most half the offset along it (so the relation is unambiguous); every box lies inside the canvas.

Captions (`captions_per_image` distinct phrasings per image, chosen by the seed) name every attribute: "a small red
circle", "there is a large blue square", "a small red circle above a large blue square", "a large blue square is
below a small red circle", ... `parse_caption` reads any of them back. The attributes of image i are
`attributes(i)`; `canonical(...)` rewrites a two-shape description so that the relation is "left of" or "above"
(swapping the shapes), the form an image classifier can predict (data/shapes_attributes.py).
"""
from __future__ import annotations

import re

import numpy as np
import torch

from ..errors import GanforgeError
from ..registries import DATASETS
from .base import DataInfo, ImageModality
from .captions import CaptionedDataset
from .common import check_split, fingerprint, split_seed

SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0)}
COLOUR_NAMES = tuple(COLOURS)
SIZES = {"small": 0.25, "large": 0.45}  # box side as a fraction of the resolution
SIZE_NAMES = tuple(SIZES)
RELATIONS = ("left of", "right of", "above", "below")  # of the first shape to the second
INVERSE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
CANONICAL_RELATIONS = ("left of", "above")
RELATION_TEXT = {"left of": "to the left of", "right of": "to the right of", "above": "above", "below": "below"}
RESOLUTIONS = (16, 32, 64)
GAP = 1  # free pixels between two boxes along the relation's axis
CROSS_RATIO = 0.5  # |centre offset across the axis| <= CROSS_RATIO * |centre offset along it|

SINGLE_TEMPLATES = ("a {a}", "there is a {a}", "one {a}", "a {a} on a black background", "an image of a {a}")
PAIR_TEMPLATES = ("a {a} {rel} a {b}", "a {a} is {rel} a {b}", "there is a {a} {rel} a {b}")
_NP = re.compile(rf"\b({'|'.join(SIZES)}) ({'|'.join(COLOURS)}) ({'|'.join(SHAPES)})\b")
_REL = re.compile(r"\b(?:to the )?(left|right) of\b|\b(above|below)\b")


def box_side(size: str, resolution: int) -> int:
    """Side in pixels of a `size` shape's box at `resolution`."""
    return int(round(SIZES[size] * resolution))


def shape_mask(shape: str, side: int) -> np.ndarray:
    """bool (side, side): pixels whose centre lies inside the shape inscribed in the box."""
    c = (np.arange(side) + 0.5)[None, :]  # pixel-centre x (u), broadcast over rows
    v = (np.arange(side) + 0.5)[:, None]  # pixel-centre y, downwards
    half = side / 2
    if shape == "square":
        return np.ones((side, side), bool)
    if shape == "circle":
        return (c - half) ** 2 + (v - half) ** 2 <= half ** 2
    if shape == "triangle":  # apex at the top middle, base along the bottom edge
        return np.abs(c - half) <= v / 2
    raise ValueError(f"unknown shape {shape!r}")


def _interval_pick(rng: np.random.Generator, lo: int, hi: int) -> int:
    return int(rng.integers(lo, hi + 1))


def place_pair(s_first: int, s_second: int, resolution: int, rng: np.random.Generator
               ) -> tuple[tuple[int, int], tuple[int, int]]:
    """Top-left corners (x, y) of two boxes with the first left of the second (GAP px apart), centres' vertical
    offset at most CROSS_RATIO times the horizontal one, both inside the canvas."""
    r = resolution
    x0 = _interval_pick(rng, 0, r - s_first - GAP - s_second)
    x1 = _interval_pick(rng, x0 + s_first + GAP, r - s_second)
    dx = (x1 + s_second / 2) - (x0 + s_first / 2)
    y0 = _interval_pick(rng, 0, r - s_first)
    cy0 = y0 + s_first / 2
    ys = [y for y in range(0, r - s_second + 1) if abs(y + s_second / 2 - cy0) <= CROSS_RATIO * dx]
    y1 = ys[int(rng.integers(len(ys)))]  # never empty: dx >= (s_first + s_second) / 2 + GAP
    return (x0, y0), (x1, y1)


def sample_layout(rng: np.random.Generator, resolution: int, p_two: float) -> dict:
    """Random attributes of one image: {"shapes": [{shape, colour, size, box: (x, y, side)}, ...], "relation"}."""
    shapes = []
    for _ in range(2 if rng.random() < p_two else 1):
        size = SIZE_NAMES[int(rng.integers(len(SIZES)))]
        shapes.append({"shape": SHAPES[int(rng.integers(len(SHAPES)))],
                       "colour": COLOUR_NAMES[int(rng.integers(len(COLOURS)))], "size": size})
    sides = [box_side(s["size"], resolution) for s in shapes]
    if len(shapes) == 1:
        xy = [(_interval_pick(rng, 0, resolution - sides[0]), _interval_pick(rng, 0, resolution - sides[0]))]
        relation = None
    else:
        relation = RELATIONS[int(rng.integers(len(RELATIONS)))]
        flip = relation in ("right of", "below")  # place the pair as "left of" / "above", then swap roles
        a, b = (1, 0) if flip else (0, 1)
        pa, pb = place_pair(sides[a], sides[b], resolution, rng)
        if relation in ("above", "below"):  # the same placement transposed: x <-> y
            pa, pb = pa[::-1], pb[::-1]
        xy = [None, None]
        xy[a], xy[b] = pa, pb
    for s, (x, y), side in zip(shapes, xy, sides):
        s["box"] = (int(x), int(y), side)
    return {"shapes": shapes, "relation": relation}


def render(layout: dict, resolution: int) -> np.ndarray:
    """uint8 (3, R, R) image of a layout: each shape's mask in its pure colour on black."""
    img = np.zeros((resolution, resolution, 3), np.uint8)
    for s in layout["shapes"]:
        x, y, side = s["box"]
        m = shape_mask(s["shape"], side)
        img[y:y + side, x:x + side][m] = COLOURS[s["colour"]]
    return img.transpose(2, 0, 1)


def noun_phrase(shape: dict) -> str:
    return f"{shape['size']} {shape['colour']} {shape['shape']}"


def caption_variants(layout: dict) -> list[str]:
    """Every phrasing of a layout (true of it by construction): each template, and for two shapes both orders."""
    shapes, rel = layout["shapes"], layout["relation"]
    if rel is None:
        return [t.format(a=noun_phrase(shapes[0])) for t in SINGLE_TEMPLATES]
    orders = [(shapes[0], rel, shapes[1]), (shapes[1], INVERSE[rel], shapes[0])]
    return [t.format(a=noun_phrase(a), rel=RELATION_TEXT[r], b=noun_phrase(b))
            for t in PAIR_TEMPLATES for a, r, b in orders]


def parse_caption(text: str) -> dict:
    """A caption's attributes {"shapes": [{shape, colour, size}, ...], "relation"} (no boxes); raises ValueError
    on text that does not name one or two shapes (and, for two, a relation between them)."""
    text = text.lower()
    nps = list(_NP.finditer(text))
    shapes = [{"shape": m.group(3), "colour": m.group(2), "size": m.group(1)} for m in nps]
    if len(shapes) == 1:
        return {"shapes": shapes, "relation": None}
    if len(shapes) != 2:
        raise ValueError(f"expected one or two shapes in {text!r}, found {len(shapes)}")
    rel = _REL.search(text, nps[0].end(), nps[1].start())
    if rel is None:
        raise ValueError(f"no relation between the two shapes in {text!r}")
    return {"shapes": shapes, "relation": f"{rel.group(1)} of" if rel.group(1) else rel.group(2)}


def canonical(attrs: dict) -> dict:
    """{"first", "second" (None for one shape), "relation" ("left of" | "above" | None)}: a two-shape description
    with "right of" / "below" is rewritten with the shapes swapped, which describes the same image."""
    shapes = [{k: s[k] for k in ("shape", "colour", "size")} for s in attrs["shapes"]]
    rel = attrs["relation"]
    if rel is None:
        return {"first": shapes[0], "second": None, "relation": None}
    if rel not in CANONICAL_RELATIONS:
        shapes, rel = shapes[::-1], INVERSE[rel]
    return {"first": shapes[0], "second": shapes[1], "relation": rel}


# What an attribute classifier predicts: head name -> class names ("none" where a second shape may be absent).
HEADS = {
    "first_shape": SHAPES, "first_colour": COLOUR_NAMES, "first_size": SIZE_NAMES,
    "second_shape": ("none", *SHAPES), "second_colour": ("none", *COLOUR_NAMES), "second_size": ("none", *SIZE_NAMES),
    "relation": ("none", *CANONICAL_RELATIONS),
}


def targets(attrs: dict) -> list[int]:
    """Class index per head (HEADS order) of a description (image attributes or a parsed caption)."""
    c = canonical(attrs)
    first, second = c["first"], c["second"] or {"shape": "none", "colour": "none", "size": "none"}
    values = [first["shape"], first["colour"], first["size"], second["shape"], second["colour"], second["size"],
              c["relation"] or "none"]
    return [names.index(v) for names, v in zip(HEADS.values(), values)]


@DATASETS.register("shapes-captions")
class ShapesCaptions(CaptionedDataset):
    """One or two coloured shapes with true generated captions (text-to-image toy set); procedural, offline."""

    def __init__(self, *, split: str = "train", cache_dir: str | None = None, n: int = 10000, resolution: int = 32,
                 seed: int = 0, p_two: float = 0.5, captions_per_image: int = 5):
        """
        Args:
            n: images in the split.
            resolution: 16, 32 or 64.
            seed: layouts, captions and the split are deterministic from it.
            p_two: probability that an image holds two shapes.
            captions_per_image: distinct phrasings per image (1 to 5).
        """
        check_split(split, "data (shapes-captions)")
        if isinstance(n, bool) or n < 1:
            raise GanforgeError(f"data.n: expected a positive number of images, got {n}")
        if resolution not in RESOLUTIONS:
            raise GanforgeError(f"data.resolution: expected one of {', '.join(map(str, RESOLUTIONS))}, got "
                                f"{resolution}")
        if not 0.0 <= p_two <= 1.0:
            raise GanforgeError(f"data.p_two: expected a probability in [0, 1], got {p_two}")
        most = min(len(SINGLE_TEMPLATES), 2 * len(PAIR_TEMPLATES))
        if not 1 <= captions_per_image <= most:
            raise GanforgeError(f"data.captions_per_image: expected 1 to {most}, got {captions_per_image}")
        rng = np.random.default_rng(split_seed(seed, split))
        self.layouts = [sample_layout(rng, resolution, p_two) for _ in range(n)]
        per_image = []
        for lay in self.layouts:
            variants = caption_variants(lay)
            pick = rng.choice(len(variants), size=captions_per_image, replace=False)
            per_image.append([variants[int(k)] for k in pick])
        self.set_captions(per_image)
        self.x = torch.from_numpy(np.stack([render(lay, resolution) for lay in self.layouts]))  # (N, 3, R, R)
        self.y = torch.zeros(n, dtype=torch.int64)
        self.targets = torch.tensor([targets(lay) for lay in self.layouts], dtype=torch.int64)  # (N, len(HEADS))
        self.resolution = resolution
        self.cache_dir = cache_dir
        self.info = DataInfo((3, resolution, resolution), 0, ImageModality())
        self._fingerprint = fingerprint("shapes-captions", {"split": split, "n": n, "resolution": resolution,
                                                            "seed": seed, "p_two": p_two,
                                                            "captions_per_image": captions_per_image},
                                        self.x, "\n".join(self.caption_texts))

    def __len__(self) -> int:
        return len(self.layouts)

    def get_batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[idx], self.y[idx]

    def attributes(self, i: int) -> dict:
        """What image i shows: {"shapes": [{shape, colour, size, box: (x, y, side)}, ...], "relation"}."""
        lay = self.layouts[i]
        return {"shapes": [dict(s) for s in lay["shapes"]], "relation": lay["relation"]}

    def fingerprint(self) -> str:
        return self._fingerprint

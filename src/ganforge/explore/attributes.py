"""Attribute classifiers for the supervised explorers (InterFaceGAN, GradCtrl): images -> attribute probabilities.

`attribute_scorer(name, G, ...)` returns an `AttributeScorer`: called on model-space images (B, C, H, W) in [-1, 1]
it gives, per attribute, (B, K) class probabilities (softmax of the classifier's logits, K >= 2) or (B,) real scores
(K = 1: a single logit or score, used as it is). Sources:

- `digits`: the bundled 8x8 digits classifier (`data/digits_classifier.py`), attribute `class` with 10 classes;
  for 1-channel images at any resolution (area-averaged to 8x8).
- `shapes`: the attribute classifier of the procedural captioned shapes set (`data/shapes_attributes.py`), one
  attribute per head (first_shape, first_colour, first_size, second_shape, second_colour, second_size, relation);
  RGB images at 16, 32 or 64 px.
- `module`: a user network, an nn.Module (Python) or a factory "package.module:function" returning one, fed images
  in [0, 1] (B, C, H, W); it returns logits (B, K) for one attribute, or a dict attribute -> logits. `attributes`
  declares each attribute's number of outputs K ({"smile": 1, "age": 4}); a network whose outputs differ from the
  declaration is a one-line error naming the attribute.

A binary quantity of an attribute (what an SVM boundary or a latent classifier separates) is named by a spec
"attr" or "attr:class" (`AttributeSpec`): the score of a K = 1 attribute, else the probability of `class`
(one-vs-rest; default class 1, the positive class of a 2-class head).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

import torch
from torch import nn

from ..errors import GanforgeError

CLASSIFIERS = ("digits", "shapes", "module")


class AttributeSpec(NamedTuple):
    """One binary quantity: attribute `attr`, and for a K-class attribute the class `cls` taken one-vs-rest."""

    attr: str
    cls: int | None

    def __str__(self) -> str:
        return self.attr if self.cls is None else f"{self.attr}:{self.cls}"


class AttributeScorer:
    """A classifier with declared attributes; `__call__` checks every output against the declaration."""

    def __init__(self, name: str, net: Callable[[torch.Tensor], Any], attributes: Mapping[str, int],
                 prepare: Callable[[torch.Tensor], torch.Tensor], class_names: Mapping[str, tuple] | None = None):
        self.name, self.net, self.prepare = name, net, prepare
        self.attributes = {str(k): int(v) for k, v in attributes.items()}
        self.class_names = dict(class_names or {})

    def raw(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per attribute of model-space images, checked against the declared output counts."""
        out = self.net(self.prepare(x))
        if not isinstance(out, Mapping):
            if len(self.attributes) != 1:
                raise GanforgeError(f"attribute classifier {self.name}: returned one tensor but declares "
                                    f"{len(self.attributes)} attributes ({', '.join(self.attributes)}); return a "
                                    f"dict attribute -> logits")
            out = {next(iter(self.attributes)): out}
        result = {}
        for attr, k in self.attributes.items():
            if attr not in out:
                raise GanforgeError(f"attribute classifier {self.name}: gives no output for attribute {attr!r} "
                                    f"(it gives: {', '.join(map(str, out))})")
            logits = out[attr].float()
            logits = logits[:, None] if logits.ndim == 1 else logits.flatten(1)
            if logits.shape[1] != k:
                raise GanforgeError(f"attribute classifier {self.name}: attribute {attr!r} has {logits.shape[1]} "
                                    f"outputs, declared {k}")
            result[attr] = logits
        return result

    def __call__(self, x: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
        """attribute -> (B, K) probabilities (K >= 2) or (B,) scores (K = 1) of model-space images."""
        parts: dict[str, list[torch.Tensor]] = {a: [] for a in self.attributes}
        for i in range(0, len(x), batch_size):
            for attr, logits in self.raw(x[i: i + batch_size]).items():
                parts[attr].append(logits[:, 0] if logits.shape[1] == 1 else logits.softmax(dim=1))
        return {a: torch.cat(v) for a, v in parts.items()}

    def spec(self, text: str | AttributeSpec, where: str) -> AttributeSpec:
        """Parse "attr" / "attr:class" against the declared attributes (one-line errors naming `where`)."""
        if isinstance(text, AttributeSpec):
            return text
        attr, sep, cls = str(text).partition(":")
        if attr not in self.attributes:
            raise GanforgeError(f"{where}: unknown attribute {attr!r} of classifier {self.name}; choose one of: "
                                f"{', '.join(self.attributes)}")
        k = self.attributes[attr]
        if k == 1:
            if sep:
                raise GanforgeError(f"{where}: attribute {attr!r} is a single score; it has no class {cls!r}")
            return AttributeSpec(attr, None)
        if not sep:
            return AttributeSpec(attr, 1)
        names = self.class_names.get(attr, ())
        index = names.index(cls) if cls in names else (int(cls) if cls.lstrip("-").isdigit() else -1)
        if not 0 <= index < k:
            raise GanforgeError(f"{where}: attribute {attr!r} has classes 0..{k - 1}"
                                + (f" ({', '.join(names)})" if names else "") + f", got {cls!r}")
        return AttributeSpec(attr, index)

    def binary(self, scores: Mapping[str, torch.Tensor], spec: AttributeSpec) -> torch.Tensor:
        """(B,) the quantity `spec` names: the score of a K = 1 attribute, or the probability of its class."""
        s = scores[spec.attr]
        return s if spec.cls is None else s[:, spec.cls]


def attribute_change(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """(B,) how much one attribute moved: |s' - s| for scores, total variation 0.5 ||p' - p||_1 for probabilities."""
    d = (after - before).abs()
    return d if d.ndim == 1 else 0.5 * d.sum(dim=1)


# -------------------------------------------------------------------------------------------------------- sources
def _digits(G: nn.Module, device: str, cache_dir: str | None) -> AttributeScorer:
    from ..data.digits_classifier import load_digits_classifier, to_classifier_input

    if G.img_shape[0] != 1:
        raise GanforgeError(f"attribute classifier digits: needs 1-channel images, G makes {tuple(G.img_shape)}")
    net = load_digits_classifier(cache_dir).to(device).eval()
    return AttributeScorer("digits", net, {"class": 10}, lambda x: to_classifier_input(x.to(device)),
                           {"class": tuple(str(i) for i in range(10))})


def _shapes(G: nn.Module, device: str, cache_dir: str | None) -> AttributeScorer:
    from ..data.shapes_attributes import load_shapes_classifier, to_classifier_input
    from ..data.shapes_captioned import HEADS, RESOLUTIONS

    c, h, w = G.img_shape
    if c != 3 or h != w or h not in RESOLUTIONS:
        raise GanforgeError(f"attribute classifier shapes: needs RGB square images of {RESOLUTIONS} px, G makes "
                            f"{tuple(G.img_shape)}")
    net = load_shapes_classifier(h, cache_dir).to(device).eval()
    return AttributeScorer("shapes", net, {k: len(v) for k, v in HEADS.items()},
                           lambda x: to_classifier_input(x.to(device)), {k: tuple(v) for k, v in HEADS.items()})


def _user_module(module: Any, attributes: Mapping[str, int] | None, device: str) -> AttributeScorer:
    from .base import user_network

    module = user_network(module, "attribute classifier module", device)
    if not attributes or not isinstance(attributes, Mapping):
        raise GanforgeError("attribute classifier module: declare its outputs, attributes={name: number of outputs}")
    for attr, k in attributes.items():
        if not isinstance(k, int) or k < 1:
            raise GanforgeError(f"attribute classifier module: attribute {attr!r} must declare >= 1 outputs, got {k!r}")
    return AttributeScorer("module", module, attributes,
                           lambda x: ((x.float().to(device) + 1) / 2).clamp(0, 1))


def attribute_scorer(name: str, G: nn.Module, *, module: Any = None, attributes: Mapping[str, int] | None = None,
                     device: str = "cpu", cache_dir: str | None = None) -> AttributeScorer:
    """The attribute classifier `name` (digits, shapes or module) for images of G (see the module docstring)."""
    if name == "module":
        return _user_module(module, attributes, device)
    sources = {"digits": _digits, "shapes": _shapes}
    if name not in sources:
        raise GanforgeError(f"attribute classifier: unknown classifier {name!r}; choose one of: "
                            f"{', '.join(CLASSIFIERS)}")
    return sources[name](G, device, cache_dir)


def check_classifier(name: str, where: str) -> str:
    """`name` when it is a known classifier source, else a one-line error listing them."""
    if name not in CLASSIFIERS:
        raise GanforgeError(f"{where}: unknown classifier {name!r}; choose one of: {', '.join(CLASSIFIERS)}")
    return name

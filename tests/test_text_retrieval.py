"""R-precision in a text encoder's space, and the attribute classifier's descriptions it is built on."""
from __future__ import annotations

import torch

from ganforge.data.shapes_attributes import describe
from ganforge.data.shapes_captioned import HEADS, parse_caption, targets
from ganforge.text.retrieval import r_precision


def test_r_precision_is_one_when_each_query_is_its_own_caption_and_chance_when_unrelated():
    g = torch.Generator().manual_seed(0)
    own = torch.eye(200)[:100]  # orthogonal captions: each query's own caption is the only one with cosine 1
    pool = torch.eye(200)[100:]
    assert r_precision(own.clone(), own, pool, distractors=99, generator=g) == 1.0
    # queries unrelated to everything (random directions): the own caption wins about 1 time in 1 + 9
    q = torch.randn(4000, 16, generator=g)
    score = r_precision(q, torch.randn(4000, 16, generator=g), torch.randn(500, 16, generator=g), 9, g)
    assert abs(score - 0.1) < 0.02


def test_descriptions_parse_back_to_the_predicted_attributes():
    cases = ["a small red circle above a large blue square", "a large green triangle to the left of a small yellow "
             "circle", "a small blue square"]
    for text in cases:
        pred = torch.tensor([targets(parse_caption(text))])
        (desc,) = describe(pred)
        assert targets(parse_caption(desc)) == pred[0].tolist()
    assert len(HEADS) == 7

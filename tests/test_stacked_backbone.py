"""The stacked-digits backbone: the digits classifier per channel, read as one 1,000-class classifier."""
from __future__ import annotations

import torch

from ganforge.metrics.backbones.digits import DigitsClassifierBackbone
from ganforge.metrics.backbones.stacked_digits import StackedDigitsBackbone


def test_triple_logits_are_the_sum_of_per_channel_log_probs():
    torch.manual_seed(0)
    stacked, single = StackedDigitsBackbone(weights="random"), DigitsClassifierBackbone(weights="random")
    x = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    out = stacked(x)
    assert out["logits"].shape == (5, 1000) and out["pool"].shape == (5, 3 * single.feature_dim)
    # a proper distribution over the 1,000 triples
    assert torch.allclose(out["logits"].logsumexp(1), torch.zeros(5), atol=1e-4)
    # label convention 100 a + 10 b + c: entry for (a, b, c) = 3, 1, 4 equals the three channels' log-probs
    per = [torch.log_softmax(single(x[:, i:i + 1].expand(-1, 3, -1, -1))["logits"], 1) for i in range(3)]
    assert torch.allclose(out["logits"][:, 314], per[0][:, 3] + per[1][:, 1] + per[2][:, 4], atol=1e-5)
    # features: the R, G, B channels' features in that order
    g = single(x[:, 1:2].expand(-1, 3, -1, -1))["pool"]
    assert torch.allclose(out["pool"][:, single.feature_dim:2 * single.feature_dim], g, atol=1e-6)

"""The `modes` metric: mode coverage of built-in sets evaluated on a generator's own samples (no backbone)."""
import json
import math

import pytest
import torch
from torch import nn

import ganforge
from ganforge.cli.main import main
from ganforge.data.mixture2d import ring_centers
from ganforge.errors import GanforgeError
from ganforge.registries import DATASETS


class OnModes(nn.Module):
    """A 'generator' that puts every sample exactly on one of the first `k` ring modes (chosen by z)."""

    z_dim, num_classes, img_shape = 8, 0, (2,)

    def __init__(self, k: int):
        super().__init__()
        self.k = k
        self.register_buffer("centers", ring_centers(8))
        self.dummy = nn.Parameter(torch.zeros(1))

    def sample_z(self, n, generator=None, truncation=None, device="cpu"):
        return torch.randn(n, self.z_dim, generator=generator)

    def forward(self, z, y=None):
        return self.centers[z[:, : self.k].argmax(1)] + 0 * self.dummy


def test_perfect_generator_covers_all_modes():
    r = ganforge.evaluate(OnModes(8), "ring8", metrics=["modes"], n=None, progress=False)
    assert r["modes"] == 8 and r["hq_frac"] == 1.0 and r["kl"] < 0.01


def test_collapsed_generator_scores_one_mode_and_log8():
    r = ganforge.evaluate(OnModes(1), "ring8", metrics=["modes"], n=None, progress=False)
    assert r["modes"] == 1 and r["kl"] == pytest.approx(math.log(8))


def test_modes_needs_a_builtin_set_of_the_same_shape():
    with pytest.raises(GanforgeError, match="shape"):
        ganforge.evaluate(OnModes(8), "stacked-digits", metrics=["modes"], n=None, progress=False)
    with pytest.raises(GanforgeError, match="built-in dataset"):
        ganforge.evaluate(OnModes(8), None, metrics=["modes"], n=None, progress=False)


def test_cli_eval_modes_on_a_trained_points_run(tmp_path, capsys):
    from helpers import TINY_POINTS, write_config

    cfg = write_config(tmp_path, TINY_POINTS)
    assert main(["train", str(cfg), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    out = tmp_path / "r.json"
    assert main(["eval", str(tmp_path / "run"), "--ref", "ring8", "--metrics", "modes", "--json", str(out),
                 "--no-progress"]) == 0
    res = json.loads(out.read_text())
    assert {"modes", "hq_frac", "kl"} <= set(res) and res["protocol"]["backbone"] is None
    G = ganforge.load_generator(tmp_path / "run")
    again = ganforge.evaluate(G, "ring8", metrics=["modes"], n=None, progress=False)
    # n: the samples the modes protocol draws (the dataset's mode_samples, whatever --n says); no reference features
    assert again == {k: res[k] for k in ("modes", "hq_frac", "kl", "n")} and "n_ref" not in res
    assert res["n"] == DATASETS.build("ring8", {}, split="train", cache_dir=None).mode_samples

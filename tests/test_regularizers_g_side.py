"""G-side regularizers: StyleGAN2's path-length regularization and Salimans et al.'s feature matching."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from helpers import TINY_POINTS

from ganforge.conditioning.base import DOutput
from ganforge.config import from_dict
from ganforge.errors import GanforgeError
from ganforge.models.style import StyleGenerator
from ganforge.objectives import Context
from ganforge.objectives.path_length import pixels_per_sample
from ganforge.registries import ARCHITECTURES, G_CONDITIONING, REGULARIZERS
from ganforge.training.distributed import DistInfo
from ganforge.training.rng import SampleRNG
from ganforge.training.stats import StatsRecorder
from ganforge.training.trainer import Trainer

A = torch.tensor([[1.0, 4.0], [0.0, 7.0], [5.0, 5.0], [2.0, 0.0]])  # (pixels 4, w_dim 2)


class LinearStyleG(StyleGenerator):
    """w = M z (M a parameter); x = A w_0 (layer 0's w only), as points (4,) or as a 1x2x2 image."""

    def __init__(self, num_ws: int = 1, image: bool = False):
        super().__init__()
        self.w_dim, self.num_ws, self.z_dim, self.image = 2, num_ws, 2, image
        self.M = nn.Parameter(torch.eye(2))
        self.A = nn.Parameter(A.clone())
        self._init_w_avg()

    def map(self, z, y):
        return z @ self.M.t()

    def synthesis(self, ws):
        x = ws[:, 0] @ self.A.t()  # (B, 4)
        return x.view(-1, 1, 2, 2) if self.image else x


class MLPD(nn.Module):
    def __init__(self, n_in: int):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(n_in, 8), nn.Tanh(), nn.Linear(8, 1))

    def forward(self, x, y=None):
        return DOutput(adv=self.net(x).squeeze(1))


class MLPG(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(3, 4)

    def forward(self, z, y=None):
        return self.net(z)


def points_cfg(**changes) -> dict:
    raw = copy.deepcopy(TINY_POINTS)
    for section, value in changes.items():
        raw[section] = {**raw[section], **value} if isinstance(value, dict) else value
    return raw


def style_mlp_G(shape=(2,)):
    g_cond = G_CONDITIONING.build("none", {}, num_classes=0)
    return ARCHITECTURES.build("style-mlp", {"hidden": 16, "w_dim": 8, "layers": 2, "mapping_layers": 2},
                               img_shape=shape, num_classes=0, g_cond=g_cond).G


# ---- path length ---------------------------------------------------------------------------------------------------

def test_path_length_defaults_and_bad_options_name_their_key():
    pl = REGULARIZERS.build("path-length")
    assert (pl.weight, pl.decay, pl.batch_shrink, pl.every, pl.pl_mean) == (2.0, 0.01, 2, 4, 0.0)
    assert pl.decomposable and pl.log_values() == {"pl_mean": 0.0}
    for key, bad in (("weight", -1.0), ("decay", 0.0), ("decay", 1.5), ("batch_shrink", 0), ("every", 0)):
        with pytest.raises(GanforgeError, match=f"path-length.{key}"):
            REGULARIZERS.build("path-length", {key: bad})


def test_pixels_are_height_times_width_for_images_and_coordinates_otherwise():
    assert pixels_per_sample(torch.zeros(2, 3, 4, 5)) == 20
    assert pixels_per_sample(torch.zeros(2, 7)) == 7


@pytest.mark.parametrize("image", [False, True])
def test_path_length_of_a_linear_synthesis_is_the_norm_of_A_transpose_y(image):
    """x = A w: J^T y = A^T y, y = noise / sqrt(4): noise (2, 0, 0, 2) -> A^T (1, 0, 0, 1) = (3, 4), length 5;
    noise (0, 2, 0, 0) -> A^T (0, 1, 0, 0) = (0, 7), length 7. A second, unused layer halves the mean square."""
    pl = REGULARIZERS.build("path-length")
    noise = torch.tensor([[2.0, 0.0, 0.0, 2.0], [0.0, 2.0, 0.0, 0.0]])
    for num_ws, expected in ((1, [5.0, 7.0]), (2, [math.sqrt(25 / 2), math.sqrt(49 / 2)])):
        G = LinearStyleG(num_ws, image)
        ws = G.mapping(torch.randn(2, 2))
        x = G.synthesis(ws)
        lengths = pl.path_lengths(x, ws, noise.view_as(x))
        assert lengths.tolist() == pytest.approx(expected, rel=1e-6)


def test_path_length_ema_and_penalty_by_hand():
    """METHODS.md: J rows (3, 4) and (0, 0) give l = sqrt(12.5) = 3.5355; from a = 0, a becomes 0.035355 and the
    penalty is 2 * (3.5355 - 0.035355)^2 = 24.50."""
    pl = REGULARIZERS.build("path-length")
    length = torch.tensor([math.sqrt(12.5)])
    assert pl.ema_with(length) == pytest.approx(0.035355, abs=1e-6)
    assert pl.penalty(length).item() == pytest.approx(2 * 12.2513, abs=1e-3)
    pl.update({"pl_length": math.sqrt(12.5)})
    assert pl.pl_mean == pytest.approx(0.035355, abs=1e-6)
    fast = REGULARIZERS.build("path-length", {"decay": 0.5, "weight": 1.0})
    fast.update({"pl_length": 2.0})  # a = 0 + 0.5 (2 - 0) = 1
    fast.update({"pl_length": 5.0})  # a = 1 + 0.5 (5 - 1) = 3
    fast.update({"d_real": 9.0})  # a phase without lengths leaves a alone
    assert fast.pl_mean == pytest.approx(3.0)
    # a' = 3 + 0.5 (mean(2, 6) - 3) = 3.5; penalty mean((2 - 3.5)^2, (6 - 3.5)^2) = (2.25 + 6.25) / 2
    assert fast.penalty(torch.tensor([2.0, 6.0])).item() == pytest.approx(4.25)
    assert fast.log_values() == {"pl_mean": 3.0}


def test_path_length_term_uses_the_shrunk_batch_and_records_its_lengths():
    """Batch 4, shrink 2: the first 2 rows; lengths ||A^T noise_i / 2|| with the context's per-sample noise."""
    torch.manual_seed(0)
    G = LinearStyleG()
    pl = REGULARIZERS.build("path-length", {"weight": 1.0, "decay": 0.5})
    pl.pl_mean = 1.0
    stats = StatsRecorder()
    z = torch.randn(4, 2)
    ctx = Context(G=G, D=MLPD(4), real=torch.randn(4, 4), y_real=None, z=z, y_fake=None, phase="G",
                  rng_key=(7, "phase", "Greg4", 0), stats=stats)
    out = pl.g_terms(ctx)["pl"]
    noise = SampleRNG((7, "phase", "Greg4", 0, 1), slice(0, 4), 4).randn(4, 4)[:2]
    lengths = (noise / 2 @ A).norm(dim=1)  # (A^T y_i) for each of the two rows
    a = 1.0 + 0.5 * (lengths.mean().item() - 1.0)
    assert out.item() == pytest.approx((lengths - a).pow(2).mean().item(), rel=1e-5)
    assert stats.counts["pl_length"] == 2
    assert stats.sums["pl_length"].item() == pytest.approx(lengths.sum().item(), rel=1e-5)


def test_path_length_gradient_reaches_mapping_and_synthesis_only_and_leaves_w_avg():
    torch.manual_seed(0)
    G, D = style_mlp_G(), MLPD(2)
    pl = REGULARIZERS.build("path-length")
    ctx = Context(G=G, D=D, real=torch.randn(6, 2), y_real=None, z=torch.randn(6, G.z_dim), y_fake=None, phase="G")
    w_avg = G.w_avg.clone()
    out = pl.g_terms(ctx)["pl"]
    assert out.dim() == 0 and out.item() > 0
    out.backward()
    assert all(p.grad is None for p in D.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in G.mapping_net.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in G.layers.parameters())
    assert torch.equal(G.w_avg, w_avg)


def test_path_length_state_round_trip():
    pl = REGULARIZERS.build("path-length")
    pl.update({"pl_length": 3.0})
    state = pl.state_dict()
    assert state == {"pl_mean": pytest.approx(0.03)}
    fresh = REGULARIZERS.build("path-length")
    fresh.load_state_dict(state)
    assert fresh.pl_mean == pl.pl_mean
    lengths = torch.tensor([1.0, 2.0])
    assert fresh.penalty(lengths).item() == pl.penalty(lengths).item()
    with pytest.raises(GanforgeError, match="pl_mean"):
        fresh.load_state_dict({})


def test_path_length_refuses_a_generator_that_is_not_style_based(tmp_path):
    pl = REGULARIZERS.build("path-length")
    ctx = Context(G=MLPG(), D=MLPD(4), real=torch.randn(4, 4), y_real=None, z=torch.randn(4, 3), y_fake=None,
                  phase="G")
    with pytest.raises(GanforgeError, match="regularizer 'path-length' needs a style-based generator"):
        pl.g_terms(ctx)
    raw = points_cfg(regularizers=[{"name": "path-length"}])  # model mlp: refused when the config is read
    with pytest.raises(GanforgeError, match=r"regularizers.0: 'path-length' needs a style-based generator.*"
                                            r"architecture 'mlp' is not one"):
        from_dict(raw)


def test_path_length_in_training_moves_and_checkpoints_its_mean(tmp_path):
    raw = points_cfg(model={"name": "style-mlp", "z_dim": 4, "w_dim": 8, "hidden": 16, "layers": 2,
                            "mapping_layers": 2}, regularizers=[{"name": "path-length", "decay": 0.5}])
    tr = Trainer(from_dict(raw), tmp_path / "run", progress=False, dist=DistInfo(), device=torch.device("cpu"))
    term = tr.terms["regularizers.0:path-length"]
    tr.train_step()  # G step 0: the lazy phase runs once
    first = term.pl_mean
    assert first > 0 and math.isfinite(first)
    for _ in range(3):  # steps 1-3: not due
        tr.train_step()
    assert term.pl_mean == first
    tr.train_step()  # step 4
    assert term.pl_mean != first and "pl_mean" in tr.log_values()


# ---- feature matching ----------------------------------------------------------------------------------------------

class FeatureD(nn.Module):
    """h(x) = c * x (c a parameter), adv = sum(h)."""

    def __init__(self, c: float = 2.0, with_h: bool = True):
        super().__init__()
        self.c = nn.Parameter(torch.tensor(c))
        self.with_h = with_h

    def forward(self, x, y=None):
        h = self.c * x
        return DOutput(adv=h.sum(1), h=h) if self.with_h else DOutput(adv=h.sum(1))


class ScaleG(nn.Module):
    def __init__(self, g: float = 1.0):
        super().__init__()
        self.g = nn.Parameter(torch.tensor(g))

    def forward(self, z, y=None):
        return self.g * z


REAL = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # mean (2, 3)
Z = torch.tensor([[0.0, 0.0], [2.0, 2.0]])  # mean (1, 1)


def fm_ctx(real=REAL, z=Z, D=None, G=None) -> Context:
    return Context(G=G or ScaleG(), D=D or FeatureD(), real=real, y_real=None, z=z, y_fake=None, phase="G")


def test_feature_matching_by_hand_and_its_gradient_reaches_G_only():
    """c = 2, g = 1: mean h(real) = (4, 6), mean h(fake) = (2, 2); ||(2, 4)||^2 = 20, weight 0.5 -> 10.
    dL/dg = 0.5 * sum 2 gap_k (-c mean z_k) = 0.5 * 2 * (2 * -2 + 4 * -2) = -12."""
    fm = REGULARIZERS.build("feature-matching", {"weight": 0.5})
    assert fm.weight == 0.5 and REGULARIZERS.build("feature-matching").weight == 1.0
    G, D = ScaleG(), FeatureD()
    out = fm.g_terms(fm_ctx(D=D, G=G))["fm"]
    assert out.item() == pytest.approx(10.0)
    out.backward()
    assert G.g.grad.item() == pytest.approx(-12.0)
    assert D.c.grad is None and D.c.requires_grad  # D left out of the graph, and its flag restored
    assert fm.d_terms(fm_ctx()) == {}


def test_feature_matching_l1_is_studiogans_mean_absolute_gap():
    """METHODS.md: h_r = [[1, 2], [3, 4]], h_f = [[0, 0], [2, 2]] give mean(|2 - 1|, |3 - 1|) = 1.5 (c = 1)."""
    fm = REGULARIZERS.build("feature-matching", {"distance": "l1"})
    assert fm.g_terms(fm_ctx(D=FeatureD(1.0)))["fm"].item() == pytest.approx(1.5)
    with pytest.raises(GanforgeError, match="feature-matching.distance"):
        REGULARIZERS.build("feature-matching", {"distance": "l2"})


def test_feature_matching_is_zero_when_the_means_agree_whatever_the_samples():
    fm = REGULARIZERS.build("feature-matching")
    z = torch.tensor([[4.0, 1.0], [0.0, 5.0]])  # other samples, the same mean (2, 3) as REAL
    assert fm.g_terms(fm_ctx(z=z))["fm"].item() == pytest.approx(0.0)


def test_feature_matching_is_not_decomposable_and_refuses_accumulation():
    """c = 2, g = 1, reals (1, 2), (3, 4) against fakes (2, 2), (0, 0): the whole batch gives ||2 ((2, 3) - (1, 1))||^2
    = 20, but its halves give ||2 ((1, 2) - (2, 2))||^2 = 4 and ||2 ((3, 4) - (0, 0))||^2 = 100 (mean 52)."""
    fm = REGULARIZERS.build("feature-matching")
    assert fm.decomposable is False
    whole = fm.g_terms(fm_ctx(z=Z.flip(0)))["fm"].item()
    parts = [fm.g_terms(fm_ctx(real=REAL[i:i + 1], z=Z.flip(0)[i:i + 1]))["fm"].item() for i in range(2)]
    assert whole == pytest.approx(20.0) and parts == pytest.approx([4.0, 100.0])
    with pytest.raises(GanforgeError, match="regularizers.0: 'feature-matching' .* set train.accumulate=1"):
        from_dict(points_cfg(regularizers=[{"name": "feature-matching"}], train={"accumulate": 2}))
    with pytest.raises(GanforgeError, match="feature-matching.weight"):
        REGULARIZERS.build("feature-matching", {"weight": -1.0})


def test_feature_matching_on_a_D_without_h_is_a_one_line_error():
    fm = REGULARIZERS.build("feature-matching")
    with pytest.raises(GanforgeError, match=r"feature-matching: this D returns no penultimate features"):
        fm.g_terms(fm_ctx(D=FeatureD(with_h=False)))


def test_feature_matching_in_training_is_logged_and_finite(tmp_path):
    raw = points_cfg(regularizers=[{"name": "feature-matching", "weight": 0.1}], train={"steps": 4})
    tr = Trainer(from_dict(raw), tmp_path / "run", progress=False, dist=DistInfo(), device=torch.device("cpu"))
    for _ in range(4):
        logs = tr.train_step()
        assert "fm" in logs and math.isfinite(logs["fm"]) and logs["fm"] >= 0


def test_feature_matching_on_two_ranks_equals_one_process(tmp_path):
    """The batch means are over the global batch (features gathered from both ranks), so G ends up the same."""
    from safetensors.torch import load_file

    from helpers import torchrun, write_config
    from ganforge.training.trainer import train

    raw = points_cfg(regularizers=[{"name": "feature-matching"}], train={"steps": 6, "ckpt_every": 6})
    train(from_dict(raw), tmp_path / "single", progress=False)
    torchrun(write_config(tmp_path, raw), tmp_path / "ddp")
    a, b = (load_file(str(tmp_path / run / "export" / "generator.safetensors")) for run in ("single", "ddp"))
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5)

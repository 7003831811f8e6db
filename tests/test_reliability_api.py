"""Reliability of the Python API and of evaluation's sample counts.

- Evaluation says what N it used: results (and `--json`) carry `n` / `n_ref`, the CLI prints them, a set smaller
  than requested is named in a one-line warning, and each metric warns below the N it needs and fails where it is
  undefined; the training hook logs the counts and never picks the best checkpoint by them.
- Arguments of `ganforge.evaluate`, `ganforge.load_generator`, `G(z, y)`, `G.sample_z` and
  `ganforge.sampling.generate` fail with one-line GanforgeErrors that name the argument and what is allowed.
- Cached feature files follow the umask like every other file ganforge writes.

Backbone: `digits-classifier` (128 pool features, 10 classes; no downloads).
"""
import copy
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import TINY_DIGITS, shared_cache

import ganforge
from ganforge.cli.main import main
from ganforge.config import from_dict
from ganforge.errors import GanforgeError
from ganforge.metrics.base import Features
from ganforge.metrics.cache import save_features
from ganforge.metrics.evaluate import evaluate
from ganforge.metrics.intra_fid import IntraFID
from ganforge.metrics.stats import RunningStats
from ganforge.metrics.train_hook import EvalHook
from ganforge.models.base import Generator
from ganforge.registries import ARCHITECTURES, DATASETS, G_CONDITIONING, METRICS, load_all
from ganforge.sampling import generate
from ganforge.training.trainer import train

N = 200  # generated images per evaluation in the training run (> 128 feature dims)
HOOK_RUN = {
    **TINY_DIGITS,
    "train": {**TINY_DIGITS["train"], "steps": 2, "ckpt_every": 2, "grid_size": 4},
    "eval": {"every": 2, "metrics": ["fid"], "n": N, "backbone": "digits-classifier"},
}
DIGITS = dict(reference="digits", backbone="digits-classifier", progress=False)


def _digits_train_size() -> int:
    load_all()
    return len(DATASETS.build("digits", {}, split="train", cache_dir=None))


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


def _messages(record) -> list[str]:
    return [str(w.message) for w in record]


@pytest.fixture(scope="module")
def digits_images() -> torch.Tensor:
    load_all()
    ds = DATASETS.build("digits", {}, split="test", cache_dir=None)
    return ds.get_batch(torch.arange(len(ds)))[0]  # uint8 (355, 1, 8, 8)


@pytest.fixture(scope="module")
def hook_run(tmp_path_factory) -> Path:
    """A tiny conditional digits run (cBN G, 10 classes, z_dim 8) evaluated once by the training hook."""
    run = tmp_path_factory.mktemp("hook") / "run"
    with shared_cache(tmp_path_factory):
        train(from_dict(HOOK_RUN), run, progress=False)
    return run


def _mlp(num_classes: int = 0, z_dim: int = 8) -> Generator:
    load_all()
    cond = G_CONDITIONING.build("cbn" if num_classes else "none", {}, num_classes=num_classes)
    G, _ = ARCHITECTURES.build("mlp", {"z_dim": z_dim, "hidden": 16, "layers": 1}, img_shape=(1, 8, 8),
                               num_classes=num_classes, g_cond=cond)
    return G


class PluginG(Generator):
    """A generator as a plugin would write one: its own forward, nothing about input checks."""

    def __init__(self):
        super().__init__()
        self.z_dim, self.num_classes, self.img_shape = 3, 4, (2,)
        self.emb = torch.nn.Embedding(4, 3)
        self.lin = torch.nn.Linear(3, 2)

    def forward(self, z, y=None):
        return self.lin(z + self.emb(y))


# ---------------------------------------------------------------------------------------- 1. sample counts
def test_folder_smaller_than_n_is_evaluated_on_all_and_every_output_says_so(tmp_path, capsys, digits_images):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(40):
        Image.fromarray(digits_images[i, 0].numpy()).save(folder / f"{i:02d}.png")
    out = tmp_path / "r.json"
    capsys.readouterr()
    with pytest.warns(UserWarning) as record:
        rc = main(["eval", str(folder), "--ref", "digits", "--metrics", "fid,kid:subset_size=20", "--backbone",
                   "digits-classifier", "--n", "500", "--json", str(out), "--no-progress"])
    assert rc == 0
    n_ref = _digits_train_size()
    messages = _messages(record)
    assert f"source folder {folder}: 40 images, fewer than the 500 requested by n (--n); evaluated on 40" in messages
    assert all("\n" not in m for m in messages)
    result = json.loads(out.read_text())
    assert (result["n"], result["n_ref"]) == (40, n_ref)
    assert result["protocol"]["n"] == 500 and result["protocol"]["n_ref"] is None  # what was asked, beside
    lines = capsys.readouterr().out.splitlines()
    assert "n          40" in lines and f"n_ref      {n_ref}" in lines
    api = evaluate(folder, metrics="fid,kid:subset_size=20", n=500, **DIGITS)  # a comma string still works
    assert (api["n"], api["n_ref"]) == (40, n_ref) and set(api) == {"fid", "kid", "kid_std", "n", "n_ref"}
    assert api["fid"] == pytest.approx(result["fid"], rel=1e-12)


def test_a_fixed_set_without_n_uses_all_of_it_silently_and_a_generator_gets_the_protocol_n(digits_images):
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*fewer than the")
        r = evaluate(digits_images[:300], None, metrics="is", backbone="digits-classifier", progress=False)
    assert r["n"] == 300
    from ganforge.metrics.sources import DEFAULT_GENERATED, resolve

    assert resolve(_mlp(), None).n == DEFAULT_GENERATED == 50000


def test_n_ref_is_absent_without_a_reference(digits_images):
    r = evaluate(digits_images[:100], None, metrics="is", backbone="digits-classifier", n=None, progress=False)
    assert set(r) == {"is", "is_std", "n"} and r["n"] == 100


def test_every_builtin_metric_declares_its_minimum_n_and_why():
    load_all()
    for name in ("fid", "kid", "prdc", "is", "ifid", "fid_inf"):
        cls = METRICS.get(name).obj
        assert cls.name == name
        assert isinstance(cls.min_samples, int) and cls.min_samples >= cls.min_defined >= 1, name
        assert isinstance(cls.min_samples_reason, str) and cls.min_samples_reason, name
    assert METRICS.get("fid").obj.min_samples == 2048  # Inception's feature dimension


@pytest.mark.parametrize("metrics, n, expected", [
    ("fid", 48, "metric fid: n=48 source samples, fewer than the 128 it needs: below the feature dimension the "
                "covariance is rank-deficient and FID strongly biased (FID is biased at any N: compare values only "
                "at equal N)"),
    ("kid", 2, "metric kid: n=2 source samples, fewer than the 1000 it needs: subsets of subset_size=1000 shrink to "
               "the whole set, so kid is noisy and kid_std understates it (use more samples or a smaller "
               "kid:subset_size)"),
    ("is", 50, "metric is: n=50 source samples, fewer than the 100 it needs: a split's IS is at most its image "
               "count, so each of the 10 splits needs >= 10 images (one per class)"),
])
def test_a_metric_below_its_minimum_n_warns_once_naming_n_and_the_need(digits_images, metrics, n, expected):
    with pytest.warns(UserWarning) as record:
        r = evaluate(digits_images[:n], metrics=metrics, n=None, **DIGITS)
    assert [m for m in _messages(record) if m.startswith("metric ")] == [expected]
    assert r["n"] == n and all(np.isfinite(v) for v in r.values())


def test_enough_samples_warn_nothing(digits_images):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = evaluate(digits_images[:300], metrics="fid,kid:subset_size=100,prdc,is:splits=2", n=None, **DIGITS)
    assert r["n"] == 300 and r["n_ref"] == _digits_train_size()


@pytest.mark.parametrize("metrics, n, expected", [
    ("kid", 1, "metric kid: undefined with n=1 source samples; needs at least 2 (the unbiased MMD estimate needs 2 "
               "samples per set)"),
    ("prdc", 5, "metric prdc: undefined with n=5 source samples; needs at least 6 (k-NN radii with k = max(k_pr, "
                "k_dc) = 5 need more than k samples)"),
    ("prdc:k_dc=9", 9, "metric prdc: undefined with n=9 source samples; needs at least 10"),
    ("fid", 1, "metric fid: undefined with n=1 source samples; needs at least 2 (a covariance needs at least 2 "
               "samples)"),
    ("is", 5, "metric is: undefined with n=5 source samples; needs at least 10 (one image per split, is.splits=10)"),
    ("fid_inf", 3, "metric fid_inf: undefined with n=3 source samples; needs at least 4"),
])
def test_a_metric_undefined_at_this_n_is_a_one_line_error(digits_images, metrics, n, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the below-minimum warnings of the other checks
        with pytest.raises(GanforgeError) as e:
            evaluate(digits_images[:n], metrics=metrics, n=None, **DIGITS)
    assert _one_line(e).startswith(expected)


def test_prdc_is_defined_from_k_plus_one_samples(digits_images):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = evaluate(digits_images[:6], metrics="prdc", n=None, **DIGITS)
    assert r["n"] == 6 and 0 <= r["precision"] <= 1


def test_reference_below_the_minimum_is_named_as_n_ref(digits_images):
    with pytest.warns(UserWarning) as record:
        evaluate(digits_images[:200], digits_images[:50], metrics="fid", backbone="digits-classifier", n=None,
                 progress=False)
    assert [m for m in _messages(record) if m.startswith("metric ")] == [
        "metric fid: n_ref=50 reference samples, fewer than the 128 it needs: below the feature dimension the "
        "covariance is rank-deficient and FID strongly biased (FID is biased at any N: compare values only at "
        "equal N)"]


def test_intra_fid_warns_about_its_smallest_class():
    g = torch.Generator().manual_seed(0)

    def stats(n: int) -> RunningStats:
        return RunningStats().update(torch.randn(n, 8, generator=g, dtype=torch.float64))

    fake = Features(n=35, class_stats={0: stats(30), 1: stats(5)})
    real = Features(n=80, class_stats={0: stats(40), 1: stats(40)})
    with pytest.warns(UserWarning) as record:
        IntraFID().check_samples(fake, real)
    assert _messages(record) == [
        "metric ifid: n=5 source samples of class 1 (the smallest of 2), fewer than the 8 it needs per class: its "
        "covariance is rank-deficient and its FID strongly biased (compare values only at equal N per class)"]


def test_training_hook_logs_the_counts_and_never_picks_best_by_them(hook_run):
    events = [json.loads(line) for line in (hook_run / "metrics.jsonl").read_text().splitlines()]
    (ev,) = [e for e in events if e["event"] == "eval"]
    assert (ev["n"], ev["n_ref"]) == (N, _digits_train_size()) and ev["fid"] > 0
    load_all()
    ds = DATASETS.build("digits", {}, split="train", cache_dir=None)
    hook = EvalHook(from_dict(HOOK_RUN), ds, torch.device("cpu"))
    assert hook.best_key == "fid"
    assert hook.is_best({"n": 10, "n_ref": 10, "fid": 5.0}) and hook.best == 5.0
    assert not hook.is_best({"n": 1, "n_ref": 1, "fid": 6.0}) and hook.best == 5.0  # a smaller n is no better
    assert not hook.is_best({"n": 0, "n_ref": 0})
    for key in ("n", "n_ref"):
        raw = copy.deepcopy(HOOK_RUN)
        raw["eval"]["best"] = key
        with pytest.raises(GanforgeError) as e:
            EvalHook(from_dict(raw), ds, torch.device("cpu"))
        assert _one_line(e) == f"eval.best: {key!r} is a sample count, not a metric result; choose one of: fid"


# ------------------------------------------------------------------------------------ 2. argument validation
@pytest.mark.parametrize("kwargs, expected", [
    ({"n": "100"}, "n: expected an integer >= 1 (or None), got str '100'"),
    ({"n": 1.5}, "n: expected an integer >= 1 (or None), got float 1.5"),
    ({"n": -5}, "n: expected an integer >= 1 (or None), got int -5"),
    ({"n": 0}, "n: expected an integer >= 1 (or None), got int 0"),
    ({"n": True}, "n: expected an integer >= 1 (or None), got bool True"),
    ({"n_ref": 0}, "n_ref: expected an integer >= 1 (or None), got int 0"),
    ({"batch_size": "100"}, "batch_size: expected an integer >= 1, got str '100'"),
    ({"batch_size": 2.5}, "batch_size: expected an integer >= 1, got float 2.5"),
    ({"batch_size": 0}, "batch_size: expected an integer >= 1, got int 0"),
    ({"seed": "0"}, "seed: expected an integer, got str '0'"),
    ({"seed": 0.5}, "seed: expected an integer, got float 0.5"),
    ({"device": "cudaX"}, "device: expected a torch device such as cpu, cuda or cuda:0, got str 'cudaX'"),
])
def test_evaluate_arguments_are_one_line_errors_naming_them(kwargs, expected):
    with pytest.raises(GanforgeError) as e:
        ganforge.evaluate(_mlp(), **{"metrics": "fid", "n": 8, **DIGITS, **kwargs})
    assert _one_line(e) == expected


def test_load_generator_checks_path_and_device(hook_run):
    with pytest.raises(GanforgeError) as e:
        ganforge.load_generator(123)
    assert _one_line(e) == ("path: expected a run directory, export directory or generator.safetensors path, "
                            "got int 123")
    with pytest.raises(GanforgeError) as e:
        ganforge.load_generator(hook_run, device="cudaX")
    assert _one_line(e) == "device: expected a torch device such as cpu, cuda or cuda:0, got str 'cudaX'"
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(GanforgeError) as e:
        ganforge.load_generator(hook_run, device=f"cuda:{count}")
    assert _one_line(e) == f"device: 'cuda:{count}' is not available here ({count} CUDA devices); use cpu"
    assert ganforge.load_generator(hook_run, device="cpu").num_classes == 10


@pytest.mark.parametrize("make, z, y, expected", [
    (lambda: _mlp(3), "ok", torch.tensor([0, 3]), "y: class labels must lie in [0, 2], got values in [0, 3]"),
    (lambda: _mlp(3), "ok", torch.tensor([-1, 2]), "y: class labels must lie in [0, 2], got values in [-1, 2]"),
    (lambda: _mlp(3), "ok", None, "y: this generator is class-conditional; pass class labels of shape (N,) in "
                                  "[0, 2], got None"),
    (lambda: _mlp(3), "ok", torch.tensor([0.0, 1.0]), "y: expected an integer tensor of class labels in [0, 2], "
                                                      "got Tensor of shape (2,) float32"),
    (lambda: _mlp(3), "ok", torch.tensor([0, 1, 2]), "y: expected shape (2,), one label per latent, got (3,)"),
    (lambda: _mlp(0), "ok", torch.tensor([0, 1]), "y: this generator is unconditional (num_classes=0); pass "
                                                  "y=None, got Tensor of shape (2,) int64"),
    (lambda: _mlp(0), torch.zeros(2, 5), None, "z: expected shape (N, z_dim=8), got (2, 5)"),
    (lambda: _mlp(0), torch.zeros(8), None, "z: expected shape (N, z_dim=8), got (8,)"),
    (lambda: _mlp(0), torch.zeros(2, 8, dtype=torch.long), None, "z: expected a floating-point tensor of shape "
                                                                 "(N, z_dim=8), got dtype torch.int64"),
    (lambda: _mlp(0), [[0.0] * 8], None, "z: expected a float tensor of shape (N, z_dim=8), got list "),
    (PluginG, "ok", torch.tensor([4, 0]), "y: class labels must lie in [0, 3], got values in [0, 4]"),
    (PluginG, torch.zeros(2, 4), torch.tensor([0, 1]), "z: expected shape (N, z_dim=3), got (2, 4)"),
])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_generator_inputs_are_checked_for_every_subclass(make, z, y, expected, mode):
    G = make()
    G.train(mode == "train")  # CPU labels are range-checked in both modes (no device sync to avoid)
    z = G.sample_z(2) if isinstance(z, str) else z
    with pytest.raises(GanforgeError) as e:
        G(z, y)
    assert _one_line(e).startswith(expected)


def test_valid_inputs_pass_through_unchanged_by_keyword_too():
    G = _mlp(3).eval()
    z, y = G.sample_z(4), torch.tensor([0, 1, 2, 0])
    assert torch.equal(G(z, y), G.forward(z, y)) and torch.equal(G(z=z, y=y), G.forward(z, y))
    P = PluginG()
    assert P(P.sample_z(2), torch.tensor([3, 0])).shape == (2, 2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_label_range_is_checked_on_gpu_only_outside_training_mode_without_a_sync():
    G = _mlp(3).cuda()
    z, bad = G.sample_z(4, device="cuda"), torch.tensor([0, 1, 2, 3], device="cuda")
    ok = torch.tensor([0, 1, 2, 0], device="cuda")
    G.train()
    torch.cuda.set_sync_debug_mode("error")  # any host sync in the training-mode forward raises
    try:
        G(z, ok)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    G.eval()
    with pytest.raises(GanforgeError) as e:
        G(z, bad)
    assert _one_line(e) == "y: class labels must lie in [0, 2], got values in [0, 3]"


@pytest.mark.parametrize("args, kwargs, expected", [
    ((-1,), {}, "n: expected an integer >= 0, got int -1"),
    ((1.5,), {}, "n: expected an integer >= 0, got float 1.5"),
    (("4",), {}, "n: expected an integer >= 0, got str '4'"),
    ((4,), {"truncation": 0}, "truncation: expected a number > 0 (or None), got int 0"),
    ((4,), {"truncation": -0.5}, "truncation: expected a number > 0 (or None), got float -0.5"),
    ((4,), {"truncation": "1"}, "truncation: expected a number > 0 (or None), got str '1'"),
])
def test_sample_z_arguments(args, kwargs, expected):
    with pytest.raises(GanforgeError) as e:
        _mlp().sample_z(*args, **kwargs)
    assert _one_line(e) == expected


def test_sample_z_still_truncates():
    z = _mlp().sample_z(256, generator=torch.Generator().manual_seed(0), truncation=0.5)
    assert z.shape == (256, 8) and z.abs().max() <= 0.5


@pytest.mark.parametrize("classes, n, kwargs, expected", [
    (0, 0, {}, "n: expected an integer >= 1, got int 0"),
    (0, "4", {}, "n: expected an integer >= 1, got str '4'"),
    (0, 4.0, {}, "n: expected an integer >= 1, got float 4.0"),
    (0, 4, {"batch_size": 0}, "batch_size: expected an integer >= 1, got int 0"),
    (0, 4, {"seed": "x"}, "seed: expected an integer, got str 'x'"),
    (0, 4, {"labels": 1}, "labels: this generator is unconditional (num_classes=0); pass labels=None, got int 1"),
    (3, 4, {"labels": 5}, "labels: class labels must lie in [0, 2], got 5"),
    (3, 4, {"labels": -1}, "labels: class labels must lie in [0, 2], got -1"),
    (3, 2, {"labels": torch.tensor([0, 7])}, "labels: class labels must lie in [0, 2], got values in [0, 7]"),
    (3, 3, {"labels": torch.tensor([0, 1])}, "labels: expected one label per sample, shape (3,), got (2,)"),
    (3, 2, {"labels": torch.tensor([0.0, 1.0])}, "labels: expected an int or an integer tensor of class labels in "
                                                 "[0, 2], got Tensor of shape (2,) float32"),
    (3, 2, {"truncation": -1}, "truncation: expected a number > 0 (or None), got int -1"),
])
def test_generate_arguments(classes, n, kwargs, expected):
    with pytest.raises(GanforgeError) as e:
        generate(_mlp(classes), n, **kwargs)
    assert _one_line(e) == expected


def test_generate_with_valid_labels_matches_direct_calls():
    G = _mlp(3).eval()
    x = generate(G, 5, labels=2, seed=1, batch_size=2)
    again = generate(G, 5, labels=torch.full((5,), 2), seed=1, batch_size=2)
    assert x.shape == (5, 1, 8, 8) and torch.equal(x, again)


# ---------------------------------------------------------------------------------------- 3. file modes
@pytest.mark.parametrize("umask", [0o027, 0o002])
def test_cached_and_saved_feature_files_follow_the_umask(tmp_path, monkeypatch, digits_images, umask):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    old = os.umask(umask)
    try:
        evaluate(digits_images[:150], metrics="fid", n=None, n_ref=150, **DIGITS)
        (entry,) = (tmp_path / "cache" / "stats").glob("features-*.safetensors")
        saved = save_features(Features(n=1, pool=torch.zeros(1, 2)), tmp_path / "refs" / "saved.safetensors")
    finally:
        os.umask(old)
    for path in (entry, saved):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, (path, oct(path.stat().st_mode))
    assert not list(saved.parent.glob(".*tmp*"))  # the atomic write left no temp file

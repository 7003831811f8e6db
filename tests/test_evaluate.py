"""Evaluation end to end: one protocol through the API, the CLI and the training hook; best/ exports; result keys;
the reference-feature cache (hit, new entries, corrupt and stale files); saved reference statistics; image folders
vs tensors; too few reference images; uint8 rounding of generated images.

Backbones are the fast ones: `digits-classifier` (8x8 digit features) and a `module` backbone around nn.Flatten.
"""
import copy
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from helpers import TINY_DIGITS, shared_cache

import ganforge
import ganforge.metrics.cache  # noqa: F401  (modules looked up in sys.modules below: their package attributes
import ganforge.metrics.evaluate  # noqa: F401  named `evaluate`/... may be functions)
from ganforge.cli.main import main
from ganforge.config import from_dict
from ganforge.metrics.cache import load_features, save_features
from ganforge.metrics.evaluate import Evaluator, build_backbone, evaluate
from ganforge.models.base import Generator
from ganforge.registries import DATASETS, load_all
from ganforge.training.trainer import train

cache_mod = sys.modules["ganforge.metrics.cache"]

N = 200  # generated images per evaluation (> the classifier's 128 feature dims: full-rank covariances)
EVAL_RUN = {
    **TINY_DIGITS,
    "optim": {"g_lr": 0.05, "d_lr": 0.05},
    "train": {**TINY_DIGITS["train"], "steps": 6, "log_every": 2, "ckpt_every": 2, "ema_decay": 0.0, "grid_size": 4},
    "eval": {"every": 2, "metrics": ["fid"], "n": N, "backbone": "digits-classifier", "best": "fid"},
}
ALL_KEYS = {"fid", "kid", "kid_std", "is", "is_std", "precision", "recall", "density", "coverage", "ifid", "fid_inf"}


def _evals(run: Path) -> list[dict]:
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [e for e in events if e["event"] == "eval"]


def _api_fid(source, **kw) -> float:
    return evaluate(source, "digits", metrics=["fid"], backbone="digits-classifier", n=N, seed=0, progress=False,
                    **kw)["fid"]


def _cli_json(tmp_path: Path, *args) -> dict:
    out = tmp_path / f"result-{len(list(tmp_path.glob('result-*')))}.json"
    assert main([str(a) for a in ("eval", *args, "--json", out, "--no-progress")]) == 0
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def eval_run(tmp_path_factory) -> Path:
    """A tiny conditional digits run evaluated by the training hook at steps 2, 4 and 6 (the last one final)."""
    run = tmp_path_factory.mktemp("eval") / "run"
    with shared_cache(tmp_path_factory):
        train(from_dict(EVAL_RUN), run, progress=False)
    return run


@pytest.fixture(scope="module")
def digits_test_images() -> torch.Tensor:
    load_all()
    ds = DATASETS.build("digits", {}, split="test", cache_dir=None)
    return ds.get_batch(torch.arange(len(ds)))[0]  # uint8 (355, 1, 8, 8)


# ------------------------------------------------------------------------------------ one protocol, three ways in
def test_api_cli_and_training_hook_give_the_same_fid(eval_run, tmp_path):
    evals = _evals(eval_run)
    assert [e["step"] for e in evals] == [2, 4, 6]
    hook = evals[-1]["fid"]  # the final step: export == G_ema at that eval
    assert json.loads((eval_run / "summary.json").read_text())["fid"] == hook
    api_dir = _api_fid(eval_run)
    api_module = _api_fid(ganforge.load_generator(eval_run))
    api_config_ref = evaluate(eval_run, eval_run / "config.yaml", metrics=["fid"], backbone="digits-classifier", n=N,
                              progress=False)["fid"]  # the run's config names its training set
    cli = _cli_json(tmp_path, eval_run, "--ref", "digits", "--metrics", "fid", "--backbone", "digits-classifier",
                    "--n", N)
    assert cli["protocol"]["n"] == N and cli["protocol"]["backbone"].startswith("digits-classifier_")
    assert hook > 0
    for value in (api_dir, api_module, api_config_ref, cli["fid"]):
        assert value == pytest.approx(hook, rel=1e-9)


def test_best_export_holds_the_generator_with_the_best_logged_value(eval_run):
    evals = _evals(eval_run)
    best = min(evals, key=lambda e: e["fid"])
    meta = json.loads((eval_run / "best" / "config.json").read_text())
    assert meta["step"] == best["step"]
    assert _api_fid(eval_run / "best") == pytest.approx(best["fid"], rel=1e-9)
    state = torch.load(eval_run / "best" / "checkpoint.pt", weights_only=True)  # the full training state too
    assert state["step"] == best["step"] and state["eval_best"] == pytest.approx(best["fid"])


def test_best_export_survives_a_resume(tmp_path):
    raw = copy.deepcopy(EVAL_RUN)
    raw["train"]["steps"] = 4
    run = tmp_path / "run"
    train(from_dict(raw), run, progress=False)
    raw["train"]["steps"] = 6
    train(from_dict(raw), run, progress=False)  # resumes at step 4
    evals = _evals(run)
    assert [e["step"] for e in evals] == [2, 4, 6]
    assert json.loads((run / "best" / "config.json").read_text())["step"] == min(evals, key=lambda e: e["fid"])["step"]


@pytest.mark.filterwarnings("ignore:metric ifid:UserWarning", "ignore:metric fid_inf:UserWarning")  # N=200: biased
@pytest.mark.parametrize("metrics,keys", [
    ("fid,kid,is,prdc,ifid,fid_inf", ALL_KEYS),
    ("kid,is", {"kid", "kid_std", "is", "is_std"}),
    ("prdc", {"precision", "recall", "density", "coverage"}),
])
def test_json_has_exactly_the_requested_result_names(eval_run, tmp_path, metrics, keys):
    result = _cli_json(tmp_path, eval_run, "--ref", "digits", "--metrics", metrics, "--backbone",
                       "digits-classifier", "--n", N)
    assert set(result) == keys | {"protocol", "n", "n_ref"}  # + the sample counts actually used
    assert all(isinstance(result[k], float) and np.isfinite(result[k]) for k in keys)
    assert (result["n"], result["n_ref"]) == (N, len(DATASETS.build("digits", {}, split="train", cache_dir=None)))
    assert result["protocol"]["metrics"] == metrics.split(",")


# --------------------------------------------------------------------------------------------- reference cache
def test_reference_cache_hit_new_entries_corrupt_and_stale(tmp_path, monkeypatch, digits_test_images):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    calls = []
    extract = cache_mod.extract_features

    def counting(source, *args, **kwargs):
        calls.append(source.n)
        return extract(source, *args, **kwargs)

    monkeypatch.setattr(cache_mod, "extract_features", counting)
    fake = digits_test_images

    def fid(n_ref: int = 300, backbone="digits-classifier", weights=None) -> float:
        return evaluate(fake, "digits", metrics=["fid"], backbone=backbone, weights=weights, n_ref=n_ref,
                        progress=False)["fid"]

    def entries() -> list[Path]:
        return sorted((tmp_path / "cache" / "stats").glob("features-*.safetensors"))

    first = fid()
    assert calls == [300] and len(entries()) == 1
    path, stamp = entries()[0], entries()[0].stat().st_mtime_ns
    assert fid() == first and calls == [300]  # read from the cache: no extraction, file untouched
    assert path.stat().st_mtime_ns == stamp

    fid(n_ref=400)  # another N: another entry
    assert calls == [300, 400] and len(entries()) == 2
    fid(weights="random")  # another backbone protocol (weights id): another entry
    assert calls == [300, 400, 300] and len(entries()) == 3
    flat = [build_backbone("module", factory="torch.nn:Flatten", size=4, resize=r) for r in ("clean", "torch-bilinear")]
    for backbone in flat:  # another resize: another entry
        fid(backbone=backbone)
    assert len(calls) == 5 and len(entries()) == 5

    path.write_bytes(path.read_bytes()[:100])  # torn write
    with pytest.warns(UserWarning, match=f"{path.name}.*rebuilding"):
        assert fid() == pytest.approx(first, rel=1e-12)
    assert len(calls) == 6 and len(entries()) == 5
    feats, key = load_features(path)  # rebuilt in place, readable again
    assert key["n"] == 300 and key["backbone"].startswith("digits-classifier_")

    save_features(feats, path, key={**key, "data": "something else"})  # same path, stale key
    with pytest.warns(UserWarning, match="stale"):
        assert fid() == pytest.approx(first, rel=1e-12)
    assert len(calls) == 7 and load_features(path)[1] == key
    assert fid() == pytest.approx(first, rel=1e-12) and len(calls) == 7  # and that is a hit again


def test_save_ref_file_given_back_as_ref_gives_the_same_values(eval_run, tmp_path):
    ref_file = tmp_path / "refs" / "digits.safetensors"
    args = ("--metrics", "fid,kid", "--backbone", "digits-classifier", "--n", N)
    direct = _cli_json(tmp_path, eval_run, "--ref", "digits", "--save-ref", ref_file, *args)
    assert ref_file.is_file()
    again = _cli_json(tmp_path, eval_run, "--ref", ref_file, *args)
    for k in ("fid", "kid", "kid_std"):
        assert again[k] == pytest.approx(direct[k], rel=1e-12)


# ------------------------------------------------------------------------------------------------- image sources
def test_folder_of_pngs_equals_the_uint8_tensor_it_was_written_from(tmp_path):
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (48, 3, 8, 8), dtype=np.uint8))
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, img in enumerate(images):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(folder / f"{i:04d}.png")
    ev = Evaluator("digits", ["fid", "kid"], backbone="digits-classifier", progress=False)
    from_folder, from_tensor = ev.features(folder, None), ev.features(images, None)
    assert torch.equal(from_folder.pool, from_tensor.pool)
    with pytest.warns(UserWarning, match="rank-deficient"):  # 48 images < 128 dims: warned, still comparable
        assert ev(folder) == ev(images)


def test_fewer_reference_images_than_requested_warns(tmp_path, digits_test_images):
    folder = tmp_path / "ref"
    folder.mkdir()
    for i in range(10):
        Image.fromarray(digits_test_images[i, 0].numpy()).save(folder / f"{i}.png")
    with pytest.warns(UserWarning, match=r": 10 images, fewer than the 50 requested by n_ref \(--n-ref\); "
                                         r"evaluated on 10$"):
        ev = Evaluator(folder, ["kid"], backbone="digits-classifier", n_ref=50, progress=False)
    assert ev.real.n == 10


class _ReplayGenerator(Generator):
    """Outputs stored model-space images in order: latent i (a 1-d 'z' holding i) -> image i."""

    def __init__(self, images: torch.Tensor):
        super().__init__()
        self.z_dim, self.num_classes, self.img_shape = 1, 0, tuple(images.shape[1:])
        self.images = images
        self.dummy = nn.Parameter(torch.zeros(()))

    def sample_z(self, n, generator=None, truncation=None, device="cpu"):
        return torch.arange(n, dtype=torch.float32)[:, None].to(device)

    def forward(self, z, y=None):
        return self.images[z[:, 0].long()]


@pytest.mark.parametrize("offset", [0.49, -0.49])
def test_generated_images_are_rounded_to_uint8_not_truncated(digits_test_images, offset):
    exact = digits_test_images[:64].expand(-1, 3, -1, -1).contiguous()  # uint8 (64, 3, 8, 8), k in 0..255
    G = _ReplayGenerator(exact.double().div(127.5).sub(1.0).add(offset / 127.5).float())  # k/127.5 - 1 + off/127.5
    ev = Evaluator(exact, ["fid", "kid"], backbone="digits-classifier", progress=False)
    generated = ev.features(G, 64)
    assert torch.equal(generated.pool, ev.real.pool)  # k +- 0.49 rounds back to k (truncation would give k - 1)
    kw = dict(reference="digits", metrics=["kid"], backbone="digits-classifier", progress=False)
    assert evaluate(G, n=64, **kw) == evaluate(exact, **kw)


# ------------------------------------------------------------------------------------------------- metric options
def test_metric_options_reach_the_metric_from_yaml_the_cli_and_the_api(eval_run, tmp_path):
    from ganforge.metrics.evaluate import build_metrics, parse_metrics

    assert parse_metrics("fid, kid:subsets=3:subset_size=50") == ["fid", {"name": "kid", "subsets": 3,
                                                                         "subset_size": 50}]
    (kid,) = build_metrics("kid:subsets=3:subset_size=50")
    assert (kid.subsets, kid.subset_size) == (3, 50)
    spec = {"name": "kid", "subsets": 3, "subset_size": 50}
    api = evaluate(eval_run, "digits", metrics=[spec], backbone="digits-classifier", n=N, progress=False)
    cli = _cli_json(tmp_path, eval_run, "--ref", "digits", "--metrics", "kid:subsets=3:subset_size=50",
                    "--backbone", "digits-classifier", "--n", N)
    default = evaluate(eval_run, "digits", metrics="kid", backbone="digits-classifier", n=N, progress=False)
    assert cli["kid"] == pytest.approx(api["kid"], rel=1e-12) and cli["kid_std"] == pytest.approx(api["kid_std"])
    assert api["kid"] != default["kid"]  # 3 subsets of 50 are not 100 subsets of 1000
    cfg = from_dict({**EVAL_RUN, "eval": {**EVAL_RUN["eval"], "metrics": ["fid", spec]}})
    assert cfg.eval.metrics == ["fid", spec]  # validated and kept in that form (config.yaml round-trips it)


@pytest.mark.parametrize("spec, needle", [
    ("kid:subsets=0", "kid.subsets: expected an integer >= 1"),
    ("kid:subsetz=3", "metric kid.subsetz: unknown option for metric 'kid'"),
    ("kid:subsets", "metric kid: option 'subsets' is not KEY=VALUE"),
])
def test_bad_metric_options_are_one_line_errors(spec, needle):
    from ganforge.errors import GanforgeError
    from ganforge.metrics.evaluate import build_metrics

    with pytest.raises(GanforgeError) as e:
        build_metrics(spec)
    assert needle in str(e.value) and "\n" not in str(e.value)

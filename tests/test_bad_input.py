"""Bad input on the command line: every case exits with status 2 and ONE stderr line, "ganforge: error: ...", that
names the file or key at fault (no traceback; `--debug` shows one), and a failed command loses nothing.

Commands run in-process through `ganforge.cli.main.main` (which returns the exit code and prints the error line);
two cases run as real processes to check what a user's terminal shows.
"""
import copy
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import TINY_POINTS, cli, shared_cache, write_config

import ganforge.metrics.evaluate  # noqa: F401  (loaded for the monkeypatch below)
from ganforge.cli.main import main
from ganforge.config import from_dict
from ganforge.registries import (ARCHITECTURES, AUGMENTATIONS, D_HEADS, DATASETS, G_CONDITIONING, LOSSES, METRICS,
                                 REGULARIZERS, load_all)
from ganforge.training.trainer import train

# tiny unconditional 8x8 image run (MLP on digits): image commands (sample, eval) need an image generator
TINY_IMAGES = {
    "seed": 0,
    "data": {"name": "digits", "resolution": 8},
    "model": {"name": "mlp", "z_dim": 8, "hidden": 32, "layers": 2},
    "loss": {"name": "hinge"},
    "train": {"steps": 2, "batch_size": 16, "log_every": 1, "sample_every": 1000, "ckpt_every": 2,
              "tensorboard": False, "threads": 1, "grid_size": 4},
}
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
INCEPTION_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"


def run_cli(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc: int, err: str, *needles: str) -> str:
    """Exit status 2, exactly one stderr line starting 'ganforge: error:', no traceback; it contains every needle."""
    assert rc == 2, err
    assert "Traceback" not in err
    assert err.endswith("\n") and err.count("\n") == 1, f"expected one line, got:\n{err}"
    assert err.startswith("ganforge: error: "), err
    for needle in needles:
        assert str(needle) in err, f"{needle!r} not in {err!r}"
    return err


def _images_cfg(tmp_path: Path, **data) -> Path:
    raw = copy.deepcopy(TINY_IMAGES)
    raw["data"] = {"name": "folder", "resolution": 8, **data}
    return write_config(tmp_path, raw)


def _write_pngs(folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(folder / f"{i:02d}.png")


@pytest.fixture(scope="module")
def image_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("images") / "run"
    with shared_cache(tmp_path_factory):
        train(from_dict(TINY_IMAGES), run, progress=False)
    return run


# ------------------------------------------------------------------------------------------------------ the config
UNKNOWN_NAMES = [
    ("model.name", "model", ARCHITECTURES),
    ("data.name", "data", DATASETS),
    ("conditioning.g.name", "conditioning.g", G_CONDITIONING),
    ("conditioning.d.name", "conditioning.d", D_HEADS),
    ("loss.name", "loss", LOSSES),
    ("regularizers.0.name", "regularizers.0", REGULARIZERS),
    ("augment.name", "augment", AUGMENTATIONS),
]


@pytest.mark.parametrize("key,where,registry", UNKNOWN_NAMES, ids=[k for k, _, _ in UNKNOWN_NAMES])
def test_unknown_component_name_lists_the_choices(tmp_path, capsys, key, where, registry):
    load_all()
    rc, _, err = run_cli(capsys, "train", write_config(tmp_path, TINY_POINTS), "--dry-run", f"{key}=nope")
    assert_one_line_error(rc, err, f"{where}: unknown {registry.kind} 'nope'", *registry.names())


def test_unknown_metric_name_lists_the_choices(tmp_path, capsys):
    load_all()
    rc, _, err = run_cli(capsys, "train", write_config(tmp_path, TINY_POINTS), "--dry-run", "eval.metrics=[fid,nope]")
    assert_one_line_error(rc, err, "eval.metrics.1: unknown metric 'nope'", *METRICS.names())


@pytest.mark.parametrize("override,expected", [
    ("train.stepz=3", "train.stepz: unknown key; valid keys: steps, batch_size"),
    ("model.depth=3", "model.depth: unknown option for architecture 'mlp'; valid options:"),
    ("trian.steps=3", "trian: unknown top-level key"),
    ("regularizers.0={name: r1, gama: 1}", "regularizers.0.gama: unknown option for regularizer 'r1'"),
])
def test_unknown_key_names_it_and_the_valid_keys(tmp_path, capsys, override, expected):
    rc, _, err = run_cli(capsys, "train", write_config(tmp_path, TINY_POINTS), "--dry-run", override)
    assert_one_line_error(rc, err, expected)


@pytest.mark.parametrize("override,expected", [
    ("train.steps=abc", "train.steps: expected an integer, got 'abc'"),
    ("optim.g_lr=fast", "optim.g_lr: expected a number, got 'fast'"),
    ("model.hidden=1.5", "model.hidden: expected an integer, got 1.5"),
    ("train.tensorboard=maybe", "train.tensorboard: expected bool, got 'maybe'"),
    ("optim.betas=[0.5]", "optim.betas: expected 2 values"),
    ("train.steps=0", "train.steps: expected a positive integer, got 0"),
    ("train.ckpt_every=-1", "train.ckpt_every: expected a step interval >= 0 (0: at the end only), got -1"),
    ("eval.every=-5", "eval.every: expected a step interval >= 0 (0: no evaluation during training), got -5"),
])
def test_wrong_type_names_the_key_and_the_value(tmp_path, capsys, override, expected):
    rc, _, err = run_cli(capsys, "train", write_config(tmp_path, TINY_POINTS), "--dry-run", override)
    assert_one_line_error(rc, err, expected)


def test_yaml_syntax_error_names_the_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: 0\ndata: {name: ring8\nmodel: {name: mlp}\n")
    rc, _, err = run_cli(capsys, "train", bad, "--dry-run")
    assert_one_line_error(rc, err, str(bad), "line 3", "not valid YAML")


def test_missing_config_file_names_it_and_the_presets(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "train", tmp_path / "nope.yaml", "--dry-run")
    assert_one_line_error(rc, err, str(tmp_path / "nope.yaml"), "no such config file or preset", "ring8")


# ----------------------------------------------------------------------------------------------------------- data
def test_corrupt_image_in_a_folder_dataset_names_that_file(tmp_path, capsys):
    _write_pngs(tmp_path / "imgs", 3)
    (tmp_path / "imgs" / "zz.png").write_bytes(b"\x89PNG garbage, not an image")
    rc, _, err = run_cli(capsys, "train", _images_cfg(tmp_path, root=str(tmp_path / "imgs")), "--out",
                         tmp_path / "run", "--no-progress")
    assert_one_line_error(rc, err, "data.root", str(tmp_path / "imgs" / "zz.png"))


def test_empty_folder_dataset_says_no_images(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    rc, _, err = run_cli(capsys, "train", _images_cfg(tmp_path, root=str(tmp_path / "empty")), "--out",
                         tmp_path / "run", "--no-progress")
    assert_one_line_error(rc, err, "data.root", "no images", str(tmp_path / "empty"))


def test_cifar10_offline_names_the_url_and_data_archive(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GANFORGE_OFFLINE", "1")
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "empty-cache"))
    raw = copy.deepcopy(TINY_IMAGES)
    raw["data"] = {"name": "cifar10"}
    rc, _, err = run_cli(capsys, "train", write_config(tmp_path, raw), "--out", tmp_path / "run", "--no-progress")
    assert_one_line_error(rc, err, CIFAR10_URL, "data.archive")


def test_conditioning_that_needs_labels_on_an_unlabelled_folder(tmp_path, capsys):
    _write_pngs(tmp_path / "flat", 4)  # images directly in the root: 0 classes
    cfg = _images_cfg(tmp_path, root=str(tmp_path / "flat"))
    rc, _, err = run_cli(capsys, "train", cfg, "--out", tmp_path / "run", "--no-progress", "conditioning.g=cbn")
    assert_one_line_error(rc, err, "conditioning.g 'cbn'", "needs class labels", "0 class")


LABEL_HEADS = [n for n in D_HEADS.names() if D_HEADS.get(n).declares("uses_labels", False)]


@pytest.mark.parametrize("head", LABEL_HEADS)
def test_every_label_head_on_an_unlabelled_folder(head, tmp_path, capsys):
    _write_pngs(tmp_path / "flat", 4)
    cfg = _images_cfg(tmp_path, root=str(tmp_path / "flat"))
    rc, _, err = run_cli(capsys, "train", cfg, "--out", tmp_path / "run", "--no-progress", f"conditioning.d={head}")
    assert_one_line_error(rc, err, f"conditioning.d {head!r}", "needs class labels", "0 class")


@pytest.mark.parametrize("lines,needles", [
    (['{"image": "00.png", "captions": ["a red circle"]}', '{"image": "missing.png", "captions": ["a cat"]}'],
     ["captions.jsonl:2", "missing.png"]),
    (['{"image": "00.png", "captions": ["a red circle", "  "]}'], ["captions.jsonl:1", "empty"]),
    (['{"image": "00.png", "captions": ["a red circle"]', ], ["captions.jsonl:1"]),
])
def test_captions_file_errors_name_the_file_and_line(lines, needles, tmp_path, capsys):
    _write_pngs(tmp_path / "imgs", 2)
    (tmp_path / "imgs" / "captions.jsonl").write_text("\n".join(lines) + "\n")
    raw = copy.deepcopy(TINY_IMAGES)
    raw["data"] = {"name": "captions", "root": str(tmp_path / "imgs"), "resolution": 8}
    raw["conditioning"] = {"g": {"name": "text-cbn", "dim": 8}, "d": {"name": "text-projection"},
                           "text": {"name": "learned", "dim": 8, "embed_dim": 4}}
    rc, _, err = run_cli(capsys, "train", write_config(tmp_path, raw), "--out", tmp_path / "run", "--no-progress")
    assert_one_line_error(rc, err, *needles)


def test_sample_with_text_from_a_class_conditional_run(tmp_path, capsys):
    from helpers import TINY_DIGITS

    run = tmp_path / "digits"
    train(from_dict(copy.deepcopy(TINY_DIGITS)), run, progress=False)
    rc, _, err = run_cli(capsys, "sample", run, "--n", 2, "--out", tmp_path / "s.png", "--text", "a red circle")
    assert_one_line_error(rc, err, "--text", "not text-conditional", "--class")


# ------------------------------------------------------------------------------------------------- files and dirs
def test_out_under_a_regular_file_is_not_writable(tmp_path, capsys):
    (tmp_path / "file").write_text("I am a file")
    out = tmp_path / "file" / "run"
    rc, _, err = run_cli(capsys, "train", write_config(tmp_path, TINY_POINTS), "--out", out, "--no-progress")
    assert_one_line_error(rc, err, "--out", str(out), "not writable")


def test_sample_from_a_directory_that_is_not_a_run(tmp_path, capsys):
    (tmp_path / "nothing").mkdir()
    rc, _, err = run_cli(capsys, "sample", tmp_path / "nothing", "--out", tmp_path / "x.png")
    assert_one_line_error(rc, err, str(tmp_path / "nothing"), "no exported generator")


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_sample_from_an_export_with_corrupt_weights(image_run, tmp_path, capsys, damage):
    export = tmp_path / "export"
    shutil.copytree(image_run / "export", export)
    weights = export / "generator.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\x00" * 7 + b"garbage" * 9)
    rc, _, err = run_cli(capsys, "sample", export, "--out", tmp_path / "x.png")
    assert_one_line_error(rc, err, str(weights))
    assert not (tmp_path / "x.png").exists()


def test_export_with_an_incomplete_config_json(image_run, tmp_path, capsys):
    export = tmp_path / "export"
    shutil.copytree(image_run / "export", export)
    (export / "config.json").write_text('{"format": "ganforge-generator", "img_shape": [1, 8, 8]}')
    rc, _, err = run_cli(capsys, "sample", export, "--out", tmp_path / "x.png")
    assert_one_line_error(rc, err, str(export / "config.json"), "missing architecture")


@pytest.mark.parametrize("device", ["bogus", "cuda:7"])
@pytest.mark.parametrize("command", ["sample", "eval"])
def test_unusable_device_flag(image_run, tmp_path, capsys, command, device):
    extra = ["--out", tmp_path / "x.png"] if command == "sample" else ["--ref", "digits", "--no-progress"]
    rc, _, err = run_cli(capsys, command, image_run, "--device", device, *extra)
    assert_one_line_error(rc, err, "--device", device)


def test_unusable_train_device_is_a_one_line_error(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "train", write_config(tmp_path, TINY_POINTS), "--out", tmp_path / "run",
                         "--no-progress", "train.device=bogus")
    assert_one_line_error(rc, err, "train.device")


def test_sample_to_a_non_png_image_path(image_run, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "sample", image_run, "--out", tmp_path / "grid.jpg")
    assert_one_line_error(rc, err, "--out", "grid.jpg", "PNG")
    assert not (tmp_path / "grid.jpg").exists()  # not silently made a directory of PNGs


# ----------------------------------------------------------------------------------------------------------- eval
def test_eval_with_missing_weights_offline_names_the_url_and_weights_flag(image_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GANFORGE_OFFLINE", "1")
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "empty-cache"))
    rc, _, err = run_cli(capsys, "eval", image_run, "--ref", "digits", "--n", 8, "--no-progress")
    assert_one_line_error(rc, err, INCEPTION_URL, "--weights")


@pytest.mark.parametrize("flag", ["--batch-size", "--n-ref", "--n"])
def test_eval_counts_must_be_positive(image_run, capsys, flag):
    args = {"--n": 8, "--n-ref": None, "--batch-size": 100, flag: 0}
    opts = [str(a) for k, v in args.items() if v is not None for a in (k, v)]
    rc, _, err = run_cli(capsys, "eval", image_run, "--ref", "digits", "--no-progress", *opts)
    assert_one_line_error(rc, err, f"{flag}: expected a positive number, got 0")


def test_eval_against_a_broken_config_file_names_it(image_run, tmp_path, capsys):
    bad = tmp_path / "ref.yaml"
    bad.write_text("data: {name: digits\n")
    rc, _, err = run_cli(capsys, "eval", image_run, "--ref", bad, "--backbone", "digits-classifier", "--n", 8,
                         "--no-progress")
    assert_one_line_error(rc, err, str(bad), "not valid YAML")


def test_eval_of_a_folder_without_images(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    rc, _, err = run_cli(capsys, "eval", tmp_path / "empty", "--ref", "digits", "--backbone", "digits-classifier",
                         "--n", 8, "--no-progress")
    assert_one_line_error(rc, err, "no images", str(tmp_path / "empty"))


def test_eval_against_stats_of_another_feature_size_names_the_file(image_run, tmp_path, capsys):
    stats = tmp_path / "ref.npz"
    np.savez(stats, mu=np.zeros(5), sigma=np.eye(5))
    rc, _, err = run_cli(capsys, "eval", image_run, "--ref", stats, "--backbone", "digits-classifier", "--n", 8,
                         "--no-progress")
    assert_one_line_error(rc, err, str(stats), "5 features", "digits-classifier")


def test_eval_of_a_run_without_export_is_not_read_as_an_image_folder(image_run, tmp_path, capsys):
    run = tmp_path / "unfinished"
    shutil.copytree(image_run, run)
    shutil.rmtree(run / "export")
    (run / "samples").mkdir(exist_ok=True)
    _write_pngs(run / "samples", 3)  # sample grids must not be taken for generated images
    rc, _, err = run_cli(capsys, "eval", run, "--ref", "digits", "--backbone", "digits-classifier", "--n", 8,
                         "--no-progress")
    assert_one_line_error(rc, err, str(run), "export/")


def test_eval_json_under_a_regular_file_fails_before_evaluating(image_run, tmp_path, capsys, monkeypatch):
    evaluate = sys.modules["ganforge.metrics.evaluate"]  # (the package attribute of that name is the function)

    def must_not_run(*args, **kwargs):
        raise AssertionError("evaluated before checking --json")

    monkeypatch.setattr(evaluate, "Evaluator", must_not_run)
    (tmp_path / "file").write_text("")
    rc, _, err = run_cli(capsys, "eval", image_run, "--ref", "digits", "--n", 8, "--json", tmp_path / "file" / "o.json")
    assert_one_line_error(rc, err, "--json", str(tmp_path / "file"))


def test_eval_best_that_no_metric_reports(tmp_path, capsys):
    raw = copy.deepcopy(TINY_IMAGES)
    raw["eval"] = {"every": 1, "metrics": ["fid"], "best": "fdi", "n": 8, "backbone": "digits-classifier"}
    rc, _, err = run_cli(capsys, "train", write_config(tmp_path, raw), "--out", tmp_path / "run", "--no-progress")
    assert_one_line_error(rc, err, "eval.best: 'fdi'", "fid")


# -------------------------------------------------------------------------------------------- nothing is lost
def test_mismatched_override_on_an_existing_run_changes_no_file(tmp_path, capsys):
    cfg = write_config(tmp_path, TINY_IMAGES)
    run = tmp_path / "run"
    assert run_cli(capsys, "train", cfg, "--out", run, "--no-progress")[0] == 0
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert any(p.parent.name == "checkpoints" for p in before)
    rc, _, err = run_cli(capsys, "train", cfg, "--out", run, "--no-progress", "model.hidden=16", "train.steps=4")
    assert_one_line_error(rc, err, str(run), "config differs", "model.hidden 32 -> 16", "--allow-config-change")
    rc, _, err = run_cli(capsys, "train", cfg, "--out", run, "--no-progress", "model.hidden=16", "train.steps=4",
                         "--allow-config-change")  # allowed, but the weights cannot load into the new shape
    assert_one_line_error(rc, err, str(run / "checkpoints"), "does not match this config")
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert after.keys() == before.keys()
    assert all(after[p] == before[p] for p in before), [p.name for p in before if after[p] != before[p]]


# ------------------------------------------------------------------------------------------- as a real process
def test_a_real_process_prints_one_line_and_debug_shows_the_traceback(tmp_path):
    cfg = write_config(tmp_path, TINY_POINTS)
    r = cli("train", str(cfg), "--dry-run", "model.name=nope")
    assert r.returncode == 2 and r.stdout == ""
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1
    assert r.stderr.startswith("ganforge: error: model: unknown architecture 'nope'")
    r = cli("--debug", "train", str(cfg), "--dry-run", "model.name=nope")
    assert r.returncode != 0
    assert "Traceback (most recent call last)" in r.stderr and "GanforgeError" in r.stderr
    assert "unknown architecture 'nope'" in r.stderr

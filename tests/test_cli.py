"""The `ganforge` command line: dry-run/overrides, list, train -> sample (grid, per-image, seed, class, truncation),
data pack -> train on the packed file, `python -m ganforge --help`.

Commands run in-process through `ganforge.cli.main.main` (it returns the exit code), except `--help`, which checks the
real entry point.
"""
import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from helpers import TINY_DIGITS, TINY_POINTS, cli, shared_cache, write_config

import ganforge
from ganforge.cli.main import main
from ganforge.config import from_dict
from ganforge.data.base import ImageModality, PointModality
from ganforge.data.pack import read_packed
from ganforge.registries import ALL, load_all
from ganforge.sampling import generate, latents
from ganforge.training.export import export_generator

RED = (220, 30, 30)  # PointModality's colour for generated points
GREY = (170, 170, 170)  # ... and for reference points


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def _train_module_run(tmp_path_factory, raw: dict, name: str) -> Path:
    root = tmp_path_factory.mktemp(name)
    with shared_cache(tmp_path_factory):
        assert main(["train", str(write_config(root, raw)), "--out", str(root / "run"), "--no-progress"]) == 0
    return root / "run"


@pytest.fixture(scope="module")
def points_run(tmp_path_factory) -> Path:
    raw = copy.deepcopy(TINY_POINTS)
    raw["train"].update(steps=6, ckpt_every=6)
    return _train_module_run(tmp_path_factory, raw, "points")


@pytest.fixture(scope="module")
def digits_export(tmp_path_factory) -> Path:
    """A conditional digits export whose cBN class embeddings are made clearly distinct (a 3-step run barely moves
    them), so that the chosen class visibly changes the images."""
    run = _train_module_run(tmp_path_factory, TINY_DIGITS, "digits")
    G = ganforge.load_generator(run)
    tables = [m for m in G.modules() if isinstance(m, torch.nn.Embedding)]  # cBN's per-class gamma/beta
    assert tables, "expected class embeddings in a cBN generator"
    with torch.no_grad():
        gen = torch.Generator().manual_seed(0)
        for table in tables:
            table.weight.copy_(1.0 + 2.0 * torch.randn(table.weight.shape, generator=gen))
    meta = {k: v for k, v in G.export_config.items() if k not in ("format", "version")}
    return export_generator(G, run.parent / "export-distinct", meta)


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _quantized(G, n: int, **kw) -> torch.Tensor:
    return ImageModality().from_model(generate(G, n, **kw))  # uint8 (n, C, H, W)


def _sample_dir(capsys, source: Path, out: Path, n: int, *extra: str) -> np.ndarray:
    """`ganforge sample SOURCE --out DIR`: the N written PNGs as uint8 (N, H, W) (channel 0 of gray-as-RGB)."""
    rc, stdout, _ = run_cli(capsys, "sample", source, "--n", n, "--out", out, *extra)
    assert rc == 0 and f"wrote {n} images" in stdout
    files = sorted(out.glob("*.png"))
    assert [f.name for f in files] == [f"{i:06d}.png" for i in range(n)]
    pics = np.stack([_png(f) for f in files])
    assert (pics == pics[..., :1]).all()  # grayscale digits are written as gray RGB
    return pics[..., 0]


# ------------------------------------------------------------------------------------------------- train --dry-run
def test_dry_run_prints_resolved_yaml_with_overrides_before_and_after_out(tmp_path, capsys):
    cfg = write_config(tmp_path, TINY_POINTS)
    never = tmp_path / "never"
    rc, out, err = run_cli(capsys, "train", cfg, "train.steps=7", "--out", never, "optim.d_lr=4e-4",
                           "regularizers.0.name=r1", "--dry-run", "model.hidden=48")
    assert rc == 0 and err == ""
    resolved = yaml.safe_load(out)
    assert resolved["train"]["steps"] == 7  # placed before --out
    assert resolved["optim"]["d_lr"] == 4e-4 and isinstance(resolved["optim"]["d_lr"], float)  # after --out
    assert resolved["model"] == {**TINY_POINTS["model"], "hidden": 48}  # after --dry-run
    assert resolved["regularizers"] == [{"name": "r1"}]
    # untouched values come from the file, unset ones are the schema defaults: the printed config is complete
    assert resolved["train"]["batch_size"] == TINY_POINTS["train"]["batch_size"]
    assert resolved["data"] == TINY_POINTS["data"] and resolved["eval"]["n"] == 10000
    assert from_dict(resolved).to_dict() == resolved  # what is printed is itself a valid config
    assert not never.exists()  # a dry run creates nothing


# ------------------------------------------------------------------------------------------------------------ list
def _sections(text: str) -> dict[str, list[tuple[str, str]]]:
    sections: dict[str, list[tuple[str, str]]] = {}
    for line in text.splitlines():
        if not line.startswith(" "):
            assert line.endswith(":"), line
            current = sections.setdefault(line[:-1], [])
        else:
            name, _, desc = line.strip().partition(" ")
            current.append((name, desc.strip()))
    return sections


def test_list_prints_every_registered_name_with_its_description(capsys):
    load_all()
    rc, out, _ = run_cli(capsys, "list")
    assert rc == 0
    sections = _sections(out)
    assert list(sections) == [*ALL, "presets"]
    for kind, registry in ALL.items():
        assert sections[kind] == registry.describe() and registry.describe()
        assert all(desc for _, desc in sections[kind]), f"{kind}: every component needs a one-line description"
    presets = dict(sections["presets"])
    assert {"ring8", "digits"} <= set(presets) and all(presets.values())


def test_list_one_kind_prints_only_that_registry(capsys):
    load_all()
    rc, out, _ = run_cli(capsys, "list", "losses")
    assert rc == 0
    assert _sections(out) == {"losses": ALL["losses"].describe()}
    assert {"hinge", "vanilla"} <= {n for n, _ in ALL["losses"].describe()}


def test_list_unknown_kind_is_a_one_line_error(capsys):
    rc, out, err = run_cli(capsys, "list", "nope")
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("ganforge: error: list 'nope': unknown kind")
    assert all(kind in err for kind in [*ALL, "presets"])


# ---------------------------------------------------------------------------------------------------------- sample
def test_sample_points_run_writes_a_scatter_plot_of_the_generated_points(points_run, tmp_path, capsys):
    out = tmp_path / "x.png"
    rc, stdout, _ = run_cli(capsys, "sample", points_run, "--n", 16, "--out", out)
    assert rc == 0 and "16 samples" in stdout
    img = _png(out)
    assert img.shape == (512, 512, 3)
    G = ganforge.load_generator(points_run)
    modality = G.export_config["modality"]
    assert modality["kind"] == "points"
    pts = generate(G, 16, seed=0).numpy()  # what --seed 0 draws
    extent = PointModality(modality["extent"]).extent
    pix = np.round((pts / extent * 0.5 + 0.5) * 511).astype(int)
    inside = ((pix >= 0) & (pix < 512)).all(1)
    assert inside.sum() >= 8, "the tiny generator should put most points in the plotted square"
    for x, y in pix[inside]:
        assert tuple(img[511 - y, x]) == RED  # each generated point is a red dot, y axis up
    red = (img == RED).all(-1)
    white = (img == 255).all(-1)
    assert red.sum() <= 16 * 9 and (red | white).all()  # only dots (3x3 each) on white; no reference points
    assert not (img == GREY).all(-1).any()


def test_sample_to_a_directory_writes_one_png_per_sample(digits_export, tmp_path, capsys):
    pics = _sample_dir(capsys, digits_export, tmp_path / "imgs", 5, "--seed", "3")
    G = ganforge.load_generator(digits_export)
    assert np.array_equal(pics, _quantized(G, 5, seed=3)[:, 0].numpy())  # G's output, rounded to uint8


def test_sample_points_to_a_directory_is_a_clear_error(points_run, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "sample", points_run, "--out", tmp_path / "dir")
    assert rc == 2 and err.count("\n") == 1 and "--out" in err and "points" in err


def test_same_seed_gives_identical_files_and_another_seed_differs(digits_export, tmp_path, capsys):
    paths = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        paths[name] = tmp_path / f"{name}.png"
        assert run_cli(capsys, "sample", digits_export, "--n", 16, "--seed", seed, "--out", paths[name])[0] == 0
    assert paths["a"].read_bytes() == paths["b"].read_bytes()
    assert paths["a"].read_bytes() != paths["c"].read_bytes()


def test_class_flag_fixes_the_label_and_out_of_range_is_a_one_line_error(digits_export, tmp_path, capsys):
    G = ganforge.load_generator(digits_export)
    assert G.num_classes == 10
    threes = _sample_dir(capsys, digits_export, tmp_path / "three", 6, "--class", "3")
    fours = _sample_dir(capsys, digits_export, tmp_path / "four", 6, "--class", "4")
    assert np.array_equal(threes, _quantized(G, 6, seed=0, labels=3)[:, 0].numpy())
    assert not np.array_equal(threes, fours)  # same latents, another class
    rc, out, err = run_cli(capsys, "sample", digits_export, "--class", "99", "--out", tmp_path / "x.png")
    assert rc == 2 and out == "" and not (tmp_path / "x.png").exists()
    assert err == "ganforge: error: --class 99: this generator has classes 0..9\n"


def test_truncation_bounds_the_latents_and_is_what_sample_uses(digits_export, tmp_path, capsys):
    G = ganforge.load_generator(digits_export)
    z, _ = latents(G, 512, seed=0, truncation=0.5)
    assert z.abs().max() <= 0.5 and z.abs().max() > 0.45  # resampled, not clamped or scaled
    z_full, _ = latents(G, 512, seed=0)
    assert z_full.abs().max() > 2.0
    pics = _sample_dir(capsys, digits_export, tmp_path / "trunc", 8, "--truncation", "0.5")
    assert np.array_equal(pics, _quantized(G, 8, seed=0, truncation=0.5)[:, 0].numpy())
    assert not np.array_equal(pics, _quantized(G, 8, seed=0)[:, 0].numpy())
    rc, _, err = run_cli(capsys, "sample", digits_export, "--truncation", "0", "--out", tmp_path / "t.png")
    assert rc == 2 and err.startswith("ganforge: error: --truncation")


# ------------------------------------------------------------------------------------------------------- data pack
def test_data_pack_a_folder_then_train_on_the_packed_file(tmp_path, capsys):
    rng = np.random.default_rng(0)
    folder, arrays = tmp_path / "imgs", []
    for cls in ("cats", "dogs"):
        (folder / cls).mkdir(parents=True)
        for i in range(3):
            a = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(a).save(folder / cls / f"{i}.png")
            arrays.append(a)
    packed = tmp_path / "out" / "digits.safetensors"
    rc, out, _ = run_cli(capsys, "data", "pack", folder, packed)
    assert rc == 0 and "6 images of 3x8x8, 2 classes" in out
    images, labels, meta = read_packed(packed)
    assert torch.equal(images, torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2))  # lossless, in sorted order
    assert labels.tolist() == [0, 0, 0, 1, 1, 1] and meta["class_names"] == ["cats", "dogs"]

    raw = copy.deepcopy(TINY_DIGITS)
    raw["data"] = {"name": "packed", "path": str(packed)}
    raw["train"].update(steps=2, batch_size=4, ckpt_every=2)
    run = tmp_path / "run"
    rc, out, _ = run_cli(capsys, "train", write_config(tmp_path, raw), "--out", run, "--no-progress")
    assert rc == 0 and "done:" in out
    G = ganforge.load_generator(run)
    assert G.export_config["img_shape"] == [3, 8, 8] and G.num_classes == 2
    assert G(G.sample_z(4), torch.tensor([0, 1, 0, 1])).shape == (4, 3, 8, 8)


# ------------------------------------------------------------------------------------------------ the entry point
def test_python_m_ganforge_help():
    r = cli("--help")
    assert r.returncode == 0 and r.stderr == ""
    for command in ("train", "sample", "eval", "list", "data", "demo"):
        assert command in r.stdout

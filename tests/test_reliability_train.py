"""Training reliability: finite divergence stops the run, a resumed run's config and machine changes are refused or
recorded, killed writes leave nothing stale, one trainer per run directory, and early warnings about the data.

Each case checks the message a user sees and that nothing on disk changed where it must not.
"""
import copy
import hashlib
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import TINY_POINTS, cli, write_config

from ganforge.config import from_dict
from ganforge.errors import DivergenceError
from ganforge.fileio import current_umask, recover_dir
from ganforge.objectives.base import Context
from ganforge.training import run_dir as rundir
from ganforge.training.checkpoint import list_checkpoints
from ganforge.training.divergence import DivergenceGuard
from ganforge.training.trainer import train


def raw_of(**sections) -> dict:
    raw = copy.deepcopy(TINY_POINTS)
    for key, value in sections.items():
        raw[key] = {**raw[key], **value} if isinstance(value, dict) and isinstance(raw.get(key), dict) else value
    return raw


def digest(root: Path) -> dict[str, str]:
    """Every file under `root` (hidden ones included, the lock excluded) -> sha256 of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(root).rglob("*")) if p.is_file() and p.name != ".lock"}


def one_error_line(r) -> str:
    lines = [line for line in r.stderr.splitlines() if line.startswith("ganforge: error:")]
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    return lines[0]


# ------------------------------------------------------------------------------------------ finite divergence
def test_finite_blow_up_stops_with_the_last_good_checkpoint(tmp_path):
    run = tmp_path / "run"
    train(from_dict(raw_of(train={"steps": 10, "ckpt_every": 10})), run, progress=False)
    before = digest(run / "checkpoints")
    cfg = write_config(tmp_path, raw_of(optim={"g_lr": 1e3, "d_lr": 1e3}, train={"steps": 300, "ckpt_every": 10}))
    r = cli("train", str(cfg), "--out", str(run), "--no-progress", "--allow-config-change")
    line = one_error_line(r)
    assert "training diverged" in line and "ckpt-00000010.pt" in line, line
    assert "guard_" in line  # names the bound that fired, so the user can relax it
    step = int(line.split(" at step ")[1].split(":")[0])
    assert step < 20, line  # detected within a few steps, not after 300
    kept = {k: v for k, v in digest(run / "checkpoints").items() if k in before}
    assert kept == before  # the last good checkpoint is intact


def test_each_bound_can_be_switched_off(tmp_path):
    """With every guard off the same blow-up runs to the end: the guard, not something else, stopped it above."""
    off = {"guard_value": 0, "guard_output": 0, "guard_collapse": 0}
    raw = raw_of(optim={"g_lr": 1e3, "d_lr": 1e3}, train={"steps": 12, **off})
    summary = train(from_dict(raw), tmp_path / "run", progress=False)
    assert summary["step"] == 12


def _ctx(real, fake, logits_real=None, phase="G"):
    ctx = Context(G=None, D=None, real=real, y_real=None, z=torch.zeros(len(real), 1), y_fake=None, phase=phase)
    ctx._cache["fake"] = fake
    if logits_real is not None:
        from ganforge.conditioning.base import DOutput

        ctx._cache["d_real"] = DOutput(logits_real)
    return ctx


def test_guard_measures_logits_output_ratio_and_spread():
    real = torch.tensor([[1.0, -2.0], [3.0, 0.0], [-1.0, 2.0]])
    fake = 10 * real
    m = DivergenceGuard(1e6, 100.0, 1e-3, 3).measure(_ctx(real, fake, torch.tensor([5.0, -7.0, 1.0])))
    assert m.tolist() == pytest.approx([7.0, 10.0, 10.0])  # max |logit|, max|fake|/max|real|, std ratio


def test_guard_verdicts():
    g = DivergenceGuard(value=100.0, output=10.0, collapse=1e-2, patience=3 * DivergenceGuard.EVERY)
    assert g.verdict("D", {"d_loss": 5.0}, [1.0, 1.0, 1.0]) is None
    assert "loss d_loss=-500" in g.verdict("D", {"d_loss": -500.0}, None)
    assert "D logits reach 200" in g.verdict("D", {}, [200.0, 1.0, 1.0])
    assert "11x the largest real value" in g.verdict("D", {}, [1.0, 11.0, 1.0])
    # collapse: only G phases count, only consecutive checks, only after `patience` G steps of them
    assert [g.verdict("G", {}, [1.0, 1.0, 1e-4]) for _ in range(2)] == [None, None]
    assert g.verdict("G", {}, [1.0, 1.0, 0.5]) is None and g.collapsed_for == 0  # recovered: counter reset
    assert g.verdict("D", {}, [1.0, 1.0, 1e-4]) is None and g.collapsed_for == 0
    verdicts = [g.verdict("G", {}, [1.0, 1.0, 1e-4]) for _ in range(3)]
    assert verdicts[:2] == [None, None] and "collapsed to one point" in verdicts[2]


def test_collapse_of_a_real_generator_is_detected(tmp_path):
    """G's output layer zeroed and frozen by lr ~0: every sample is the same point."""
    raw = raw_of(optim={"g_lr": 1e-30}, train={"steps": 30, "guard_patience": 5})
    from ganforge.training.trainer import Trainer
    from ganforge.training.distributed import DistInfo

    tr = Trainer(from_dict(raw), tmp_path / "run", progress=False, dist=DistInfo(), device=torch.device("cpu"))
    last = [m for m in tr.G.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()
    with pytest.raises(DivergenceError, match=r"collapsed to one point.* for 8 G steps"):
        tr.run()
    assert tr.step == 4  # measured at steps 0 and 4 (every 4th G step): 8 >= 5 G steps, raised in step 4


# ------------------------------------------------------------------------------------------ config on resume
def _two_stage(tmp_path, first: dict, second: dict, *flags: str):
    run = tmp_path / "run"
    train(from_dict(raw_of(**first)), run, progress=False)
    before = digest(run)
    cfg = write_config(tmp_path, raw_of(**second), name="second.yaml")
    return run, before, cli("train", str(cfg), "--out", str(run), "--no-progress", *flags)


def test_changed_config_is_refused_with_the_diff_and_nothing_changes(tmp_path):
    run, before, r = _two_stage(tmp_path, {"train": {"steps": 10}}, {"loss": {"name": "hinge"},
                                                                       "optim": {"g_lr": 5e-4}, "train": {"steps": 10}})
    line = one_error_line(r)
    for needle in ("config differs", "ckpt-00000010.pt", "loss.name 'vanilla' -> 'hinge'",
                   "optim.g_lr 0.001 -> 0.0005", "--allow-config-change"):
        assert needle in line, line
    assert digest(run) == before  # config.yaml, checkpoints, history: untouched


def test_allowed_config_change_is_recorded_with_its_step(tmp_path):
    run, _, r = _two_stage(tmp_path, {"train": {"steps": 10}}, {"optim": {"g_lr": 5e-4}, "train": {"steps": 20}},
                           "--allow-config-change")
    assert r.returncode == 0, r.stderr[-2000:]
    history = rundir.read_history(run)
    assert [h["event"] for h in history] == ["start", "resume"]
    assert history[1]["step"] == 10
    assert history[1]["config_changes"]["optim.g_lr"] == [1e-3, 5e-4]
    assert history[1]["allowed_by_flag"] == ["optim.g_lr"]
    state = torch.load(list_checkpoints(run / "checkpoints")[-1], weights_only=True)
    assert state["opt_G"]["param_groups"][0]["lr"] == 5e-4  # the new lr is the one used, not the checkpoint's
    assert state["opt_D"]["param_groups"][0]["lr"] == 1e-3
    old = (run / "config-until-step-00000010.yaml").read_text()
    assert "g_lr: 0.001" in old and "g_lr: 0.0005" in (run / "config.yaml").read_text()


def test_extending_steps_and_output_keys_need_no_permission(tmp_path):
    run, _, r = _two_stage(tmp_path, {"train": {"steps": 10}}, {"train": {"steps": 20, "log_every": 2}})
    assert r.returncode == 0, r.stderr[-2000:]
    changes = rundir.read_history(run)[1]["config_changes"]
    assert changes == {"train.log_every": [5, 2], "train.steps": [10, 20]}
    assert rundir.read_history(run)[1]["allowed_by_flag"] == []


def test_extending_steps_under_an_lr_schedule_needs_permission(tmp_path):
    decay = {"lr_decay": "linear"}
    _, _, r = _two_stage(tmp_path, {"optim": decay, "train": {"steps": 10}}, {"optim": decay, "train": {"steps": 20}})
    assert "train.steps 10 -> 20 (train.steps sets the optim.lr_decay schedule)" in one_error_line(r)


# -------------------------------------------------------------------------------------------- machine changes
def test_thread_count_is_recorded_and_a_change_warned(tmp_path):
    run = tmp_path / "run"
    train(from_dict(raw_of(train={"steps": 10, "threads": 1})), run, progress=False)
    assert rundir.read_history(run)[0]["env"]["threads"] == 1
    with pytest.warns(UserWarning, match=r"last trained with 1 intra-op threads and now runs with 2.*bit for bit"):
        train(from_dict(raw_of(train={"steps": 12, "threads": 2})), run, progress=False)
    assert rundir.read_history(run)[1]["env"]["threads"] == 2


def test_presets_documented_as_bit_reproducible_pin_their_threads():
    from ganforge.config import load_config

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    listed = readme.split("<!-- reproducible-presets -->")[1].split("<!-- /reproducible-presets -->")[0]
    names = [n.strip(" `*-") for n in listed.split(",")]
    assert names and all(load_config(n).train.threads > 0 for n in names), names


# ------------------------------------------------------------------------------------------ killed writes
def _killed(tmp_path, point: str, raw: dict) -> Path:
    run = tmp_path / "run"
    cfg = write_config(tmp_path, raw)
    r = cli("train", str(cfg), "--out", str(run), "--no-progress", env={"GANFORGE_CRASH_AT": point})
    assert r.returncode == -9, (r.returncode, r.stderr[-2000:])
    return run


def test_kill_during_checkpoint_write_leaves_no_stale_file_after_resume(tmp_path):
    raw = raw_of(train={"steps": 20, "ckpt_every": 10})
    run = _killed(tmp_path, "checkpoint-write", raw)
    stale = list((run / "checkpoints").glob(".ckpt-*.tmp*"))
    assert stale and not list_checkpoints(run / "checkpoints")  # the kill left a temp file and no checkpoint
    train(from_dict(raw), run, progress=False)
    assert not list((run / "checkpoints").glob(".ckpt-*.tmp*"))
    reference = tmp_path / "reference"
    train(from_dict(raw), reference, progress=False)
    a = torch.load(list_checkpoints(run / "checkpoints")[-1], weights_only=True)
    b = torch.load(list_checkpoints(reference / "checkpoints")[-1], weights_only=True)
    for k in a["G"]:
        assert torch.equal(a["G"][k], b["G"][k]), k


def test_kill_during_export_leaves_no_half_export(tmp_path):
    raw = raw_of(train={"steps": 10, "ckpt_every": 10})
    run = _killed(tmp_path, "export-between-files", raw)
    assert not (run / "export").exists()  # not an export with weights but no config.json
    assert list(run.glob(".export.tmp*"))
    train(from_dict(raw), run, progress=False)  # at train.steps already: re-exports
    assert sorted(p.name for p in (run / "export").iterdir()) == ["config.json", "discriminator.safetensors",
                                                                   "generator.safetensors"]
    assert not list(run.glob(".export.*"))


def test_kill_between_the_two_renames_is_recovered(tmp_path):
    """Where renameat2 is missing the export is swapped by two renames; a kill between them leaves both copies."""
    for name, content in (("old", b"old"), ("tmp", b"new")):
        d = tmp_path / f".export.{name}123"
        d.mkdir()
        (d / "config.json").write_bytes(content)
    removed = recover_dir(tmp_path / "export")
    assert (tmp_path / "export" / "config.json").read_bytes() == b"new"
    assert [p.name for p in removed] == [".export.old123"] and not (tmp_path / ".export.old123").exists()


def test_interrupted_first_export_is_discarded_not_promoted(tmp_path):
    d = tmp_path / ".export.tmp5"
    d.mkdir()
    (d / "generator.safetensors").write_bytes(b"half")
    recover_dir(tmp_path / "export")
    assert not (tmp_path / "export").exists() and not d.exists()


def test_export_follows_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        run = tmp_path / "run"
        train(from_dict(raw_of(train={"steps": 2})), run, progress=False)
        for f in ("generator.safetensors", "config.json"):
            assert (run / "export" / f).stat().st_mode & 0o777 == 0o666 & ~current_umask() == 0o640
    finally:
        os.umask(old)


def test_cached_digits_classifier_follows_the_umask(tmp_path):
    from ganforge.data.digits_classifier import classifier_path, load_digits_classifier

    old = os.umask(0o027)
    try:
        load_digits_classifier(cache_dir=str(tmp_path))
        assert classifier_path(str(tmp_path)).stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


# ------------------------------------------------------------------------------------------------------- lock
def test_second_trainer_in_the_same_run_dir_is_refused(tmp_path):
    run = tmp_path / "run"
    lock = rundir.RunLock(run).acquire()
    try:
        cfg = write_config(tmp_path, raw_of())
        line = one_error_line(cli("train", str(cfg), "--out", str(run), "--no-progress"))
        assert f"another ganforge process (pid {os.getpid()}) is training" in line
        assert not (run / "checkpoints").exists()
    finally:
        lock.release()


def test_training_into_a_folder_of_other_files_is_refused(tmp_path):
    mine = tmp_path / "experiment"
    mine.mkdir()
    (mine / "config.yaml").write_text("my notes\n")
    cfg = write_config(tmp_path, raw_of())
    line = one_error_line(cli("train", str(cfg), "--out", str(mine), "--no-progress"))
    assert "not a ganforge run directory and not empty (config.yaml)" in line
    assert sorted(p.name for p in mine.iterdir()) == ["config.yaml"]
    assert (mine / "config.yaml").read_text() == "my notes\n"


# ----------------------------------------------------------------------------------------------------- data
def test_batch_larger_than_the_dataset_is_warned(tmp_path):
    with pytest.warns(UserWarning, match=r"train.batch_size 64 is larger than the dataset \(40 samples\)"):
        train(from_dict(raw_of(data={"n": 40}, train={"steps": 1, "batch_size": 64})), tmp_path / "run",
              progress=False)


def _folder(root: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(root / f"{i:03d}.png")
    return root


def test_resume_on_a_changed_folder_says_so(tmp_path):
    folder = _folder(tmp_path / "images", 12)
    raw = {"seed": 0, "data": {"name": "folder", "root": str(folder), "resolution": 8},
           "model": {"name": "mlp", "z_dim": 4, "hidden": 16, "layers": 2}, "loss": {"name": "hinge"},
           "train": {"steps": 2, "batch_size": 4, "ckpt_every": 2, "sample_every": 1000, "tensorboard": False,
                     "threads": 1, "grid_size": 4}}
    run = tmp_path / "run"
    train(from_dict(raw), run, progress=False)
    (folder / "003.png").unlink()
    raw["train"]["steps"] = 4
    with pytest.warns(UserWarning, match=r"data: the dataset changed since this run last trained"):
        train(from_dict(raw), run, progress=False)
    h = rundir.read_history(run)
    assert h[0]["samples"] == 12 and h[1]["samples"] == 11 and h[0]["data"] != h[1]["data"]


def test_skipped_images_are_listed_in_the_run_directory(tmp_path):
    folder = _folder(tmp_path / "images", 6)
    (folder / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    raw = {"seed": 0, "data": {"name": "folder", "root": str(folder), "resolution": 8, "on_bad_image": "skip"},
           "model": {"name": "mlp", "z_dim": 4, "hidden": 16, "layers": 2}, "loss": {"name": "hinge"},
           "train": {"steps": 1, "batch_size": 4, "sample_every": 1000, "tensorboard": False, "threads": 1,
                     "grid_size": 4}}
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image"):
        train(from_dict(raw), tmp_path / "run", progress=False)
    listed = (tmp_path / "run" / "bad_images.txt").read_text().splitlines()
    assert len(listed) == 1 and listed[0].startswith("zz_broken.png\t")
    assert rundir.read_history(tmp_path / "run")[0]["samples"] == 6


def test_history_survives_a_torn_last_line(tmp_path):
    rundir.append_history(tmp_path, {"event": "start", "step": 0})
    with open(tmp_path / rundir.HISTORY, "a") as f:
        f.write('{"event": "resu')
    assert [h["event"] for h in rundir.read_history(tmp_path)] == ["start"]


def test_config_flattening_indexes_component_lists():
    a = {"regularizers": [{"name": "r1", "gamma": 1.0}], "optim": {"betas": [0.0, 0.99]}}
    b = {"regularizers": [{"name": "r1", "gamma": 2.0}, {"name": "lecam"}], "optim": {"betas": [0.0, 0.99]}}
    assert rundir.config_changes(a, b) == {"regularizers.0.gamma": (1.0, 2.0),
                                           "regularizers.1.name": ("<absent>", "lecam")}


def test_adaptive_values_are_plotted_into_the_run_directory(tmp_path):
    """An annealed instance-noise sigma is drawn falling from left to right in RUN/plots/noise_sigma.png."""
    from ganforge.training.plots import LINE

    raw = raw_of(augment={"name": "instance-noise", "sigma": 0.5}, train={"steps": 20, "log_every": 2,
                                                                          "sample_every": 0})
    train(from_dict(raw), tmp_path / "run", progress=False)
    img = np.asarray(Image.open(tmp_path / "run" / "plots" / "noise_sigma.png").convert("RGB"))
    ys, xs = np.nonzero(np.all(img == LINE, axis=-1))
    assert len(xs) > 50
    left, right = ys[xs == xs.min()].mean(), ys[xs == xs.max()].mean()
    assert left < right  # image rows grow downwards: the line starts high and ends low


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))


def test_a_key_added_to_ganforge_after_a_checkpoint_counts_as_its_default():
    """A saved config written before a key existed (here train.init_from) does not differ from a new one that leaves
    the key at its default; a non-default value still counts as a change."""
    from ganforge.training.run_dir import config_changes

    new = from_dict(copy.deepcopy(TINY_POINTS)).to_dict()
    saved = copy.deepcopy(new)
    del saved["train"]["init_from"]
    assert config_changes(saved, new) == {}
    new["train"]["init_from"] = "elsewhere"
    assert config_changes(saved, new) == {"train.init_from": (None, "elsewhere")}
    saved["train"]["init_from"], new["train"]["init_from"] = None, None
    del saved["train"]["steps"]
    new["train"]["steps"] = 7  # not TrainConfig's default: a change from it
    assert list(config_changes(saved, new)) == ["train.steps"]

"""Components from outside the package: the `plugins:` config key, `ganforge.plugins` entry points, discovery."""
from __future__ import annotations

import copy
import importlib
import json
import re
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from helpers import PLUGIN_ENV, TINY_POINTS, cli, last_state, train_killed_then_resumed, write_config

from ganforge.config import from_dict
from ganforge.registries import COMPONENT_PACKAGES, LOSSES, component_modules
from ganforge.training.trainer import train

PLUGIN_RUN = {
    **copy.deepcopy(TINY_POINTS),
    "plugins": ["ganforge_testplugin"],
    "conditioning": {"d": {"name": "test-aux"}},
    "regularizers": [{"name": "test-aux-loss"}, {"name": "test-latent-q"}],
    "augment": {"name": "test-adaptive-noise", "target": 0.0},
}


def test_plugin_components_train_and_resume_bit_for_bit_after_a_kill(tmp_path):
    raw = copy.deepcopy(PLUGIN_RUN)
    raw["train"].update(steps=400, ckpt_every=40, log_every=20)
    reference = tmp_path / "uninterrupted"
    train(from_dict(raw), reference, progress=False)
    run = tmp_path / "killed"
    train_killed_then_resumed(raw, run, kill_after=80, env=PLUGIN_ENV)  # the subprocess imports the plugin too
    a = load_file(str(reference / "export" / "generator.safetensors"))
    b = load_file(str(run / "export" / "generator.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    sa, sb = last_state(reference), last_state(run)
    assert set(sa["terms"]) == {"regularizers.1:test-latent-q"}  # the Q head's parameters are checkpointed
    for k, v in sa["terms"]["regularizers.1:test-latent-q"].items():
        assert torch.equal(v, sb["terms"]["regularizers.1:test-latent-q"][k])
    assert torch.equal(sa["augment"]["p"], sb["augment"]["p"]) and sa["stats_windows"] == sb["stats_windows"]
    assert all(torch.equal(sa["D"][k], sb["D"][k]) for k in sa["D"])
    noise_p = [json.loads(line).get("noise_p") for line in (run / "metrics.jsonl").read_text().splitlines()]
    noise_p = [p for p in noise_p if p is not None]
    assert len(noise_p) == 20 and len(set(noise_p)) > 1  # the adaptive p moved and was logged at every log step


def test_the_run_directory_records_its_plugins_so_the_export_loads_with_them(tmp_path):
    raw = copy.deepcopy(PLUGIN_RUN)
    raw["train"].update(steps=2)
    train(from_dict(raw), tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "config.yaml").read_text().startswith("plugins:\n- ganforge_testplugin\n")
    meta = json.loads((tmp_path / "run" / "export" / "config.json").read_text())
    assert meta["plugins"] == ["ganforge_testplugin"]
    r = cli("sample", str(tmp_path / "run"), "--n", "8", "--out", str(tmp_path / "s.png"), env=PLUGIN_ENV)
    assert r.returncode == 0, r.stderr


def test_an_unknown_plugin_module_is_a_one_line_error(tmp_path):
    raw = {**copy.deepcopy(TINY_POINTS), "plugins": ["no_such_plugin_module"]}
    r = cli("train", str(write_config(tmp_path, raw)), "--dry-run")
    assert r.returncode == 2
    assert r.stderr.strip() == ("ganforge: error: plugins.0: cannot import plugin module 'no_such_plugin_module' "
                                "(ModuleNotFoundError: No module named 'no_such_plugin_module'); is it installed or "
                                "on PYTHONPATH?")


def _entry_point_package(root: Path, module: str, body: str) -> None:
    """An installed distribution advertising `module` in the ganforge.plugins entry-point group."""
    (root / f"{module}.py").write_text(body)
    info = root / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[ganforge.plugins]\n{module} = {module}\n")


def test_entry_point_plugins_are_discovered_and_a_broken_one_only_warns(tmp_path):
    _entry_point_package(tmp_path, "gf_ep_plugin", (
        "from ganforge.objectives.hinge import HingeLoss\nfrom ganforge.registries import LOSSES\n\n"
        "@LOSSES.register('ep-hinge')\nclass EPHinge(HingeLoss):\n    \"\"\"Hinge from an entry point.\"\"\"\n"))
    _entry_point_package(tmp_path, "gf_broken_plugin", "raise RuntimeError('boom')\n")
    r = cli("list", "losses", env={"PYTHONPATH": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    assert re.search(r"^  ep-hinge +Hinge from an entry point\.$", r.stdout, re.M)
    assert "gf_broken_plugin" in r.stderr and "RuntimeError: boom" in r.stderr
    raw = {**copy.deepcopy(TINY_POINTS), "loss": {"name": "ep-hinge"}}
    r = cli("train", str(write_config(tmp_path, raw)), "--dry-run", env={"PYTHONPATH": str(tmp_path)})
    assert r.returncode == 0 and "name: ep-hinge" in r.stdout


def test_every_module_of_the_component_packages_is_discovered():
    on_disk = set()
    for pkg in COMPONENT_PACKAGES:
        root = Path(importlib.import_module(pkg).__file__).parent
        for f in root.rglob("*.py"):
            rel = f.relative_to(root).with_suffix("").parts
            if rel[-1] == "__init__":  # a sub-package
                rel = rel[:-1]
            if rel and not any(part.startswith("_") for part in rel):
                on_disk.add(".".join([pkg, *rel]))
    assert on_disk == set(component_modules())
    assert on_disk <= set(sys.modules)  # conftest's load_all() imported each one
    assert "hinge" in LOSSES.names()

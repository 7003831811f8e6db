"""Config: YAML + dotted overrides -> validated RunConfig; one-line errors naming the key and the choices."""
import pytest
import yaml

from ganforge.config import apply_overrides, from_dict, load_config, parse_value, presets_dir
from ganforge.errors import GanforgeError
from ganforge.registries import ARCHITECTURES, DATASETS, LOSSES, load_all

load_all()

BASE = {"data": {"name": "ring8"}, "model": {"name": "mlp"}}


def test_defaults_fill_sections():
    cfg = from_dict(BASE)
    assert cfg.loss.name == "hinge" and cfg.g_cond.name == "none" and cfg.d_head.name == "linear"
    assert cfg.train.steps > 0 and cfg.optim.betas == (0.5, 0.999)
    assert not cfg.conditional


def test_overrides_set_nested_values_and_parse_numbers():
    raw = apply_overrides(BASE, ["train.steps=2000", "optim.d_lr=4e-4", "conditioning.g=cbn",
                                 "regularizers.0.name=r1", "regularizers.0.gamma=0.5", "train.amp=bf16"])
    cfg = from_dict(raw)
    assert cfg.train.steps == 2000 and cfg.optim.d_lr == pytest.approx(4e-4)
    assert cfg.g_cond.name == "cbn" and cfg.conditional
    assert cfg.regularizers[0].name == "r1" and cfg.regularizers[0].options["gamma"] == 0.5
    assert cfg.train.amp == "bf16"


def test_parse_value_handles_yaml11_exponents():
    assert parse_value("4e-4") == pytest.approx(4e-4)
    assert parse_value("3") == 3 and isinstance(parse_value("3"), int)
    assert parse_value("[0.0, 0.99]") == [0.0, 0.99]
    assert parse_value("true") is True


@pytest.mark.parametrize("raw, needle", [
    ({**BASE, "trian": {}}, "trian: unknown top-level key"),
    ({**BASE, "train": {"stpes": 3}}, "train.stpes: unknown key; valid keys: steps"),
    ({**BASE, "train": {"steps": "many"}}, "train.steps: expected an integer"),
    ({**BASE, "optim": {"g_lr": "fast"}}, "optim.g_lr: expected a number"),
    ({**BASE, "loss": {"name": "nope"}}, "loss: unknown loss 'nope'; choose one of:"),
    ({**BASE, "model": {"name": "mlp", "widht": 3}}, "model.widht: unknown option for architecture 'mlp'"),
    ({"model": {"name": "mlp"}}, "data: missing section"),
    ({**BASE, "train": {"amp": "fp8"}}, "train.amp: expected one of"),
    ({**BASE, "train": {"batch_size": 10, "accumulate": 3}}, "not divisible"),
    ({**BASE, "eval": {"metrics": ["fdi"]}}, "eval.metrics.0: unknown metric 'fdi'"),
])
def test_bad_configs_give_one_line_errors(raw, needle):
    with pytest.raises(GanforgeError) as e:
        from_dict(raw)
    msg = str(e.value)
    assert needle in msg and "\n" not in msg


def test_unknown_component_lists_every_choice():
    with pytest.raises(GanforgeError) as e:
        from_dict({**BASE, "model": {"name": "nope"}})
    for name in ARCHITECTURES.names():
        assert name in str(e.value)


def test_resolved_config_round_trips_through_yaml():
    cfg = from_dict(apply_overrides(BASE, ["regularizers.0.name=r1", "train.steps=7"]))
    again = from_dict(yaml.safe_load(cfg.to_yaml()))
    assert again.to_dict() == cfg.to_dict()


@pytest.mark.parametrize("preset", sorted(p.stem for p in presets_dir().glob("*.yaml")))
def test_every_preset_validates(preset):
    cfg = load_config(preset)
    assert cfg.data.name in DATASETS and cfg.model.name in ARCHITECTURES and cfg.loss.name in LOSSES


def test_required_presets_exist():
    names = {p.stem for p in presets_dir().glob("*.yaml")}
    assert {"ring8", "grid25", "digits", "stacked-digits", "cifar10-sngan"} <= names


def test_missing_config_file_names_presets(tmp_path):
    with pytest.raises(GanforgeError, match="no such config file or preset; presets:"):
        load_config(tmp_path / "missing.yaml")


def test_invalid_yaml_names_file_and_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("data: {name: ring8\nmodel: [\n")
    with pytest.raises(GanforgeError, match="bad.yaml"):
        load_config(p)


@pytest.mark.parametrize("raw, needle", [
    ({**BASE, "optim": {"g_lr": 0.0}}, "optim.g_lr: expected a number > 0, got 0.0"),
    ({**BASE, "optim": {"d_lr": -1e-4}}, "optim.d_lr: expected a number > 0"),
    ({**BASE, "optim": {"betas": [0.5, 1.0]}}, "optim.betas[1]: expected a number in [0, 1), got 1.0"),
    ({**BASE, "optim": {"betas": [-0.1, 0.9]}}, "optim.betas[0]: expected a number in [0, 1)"),
    ({**BASE, "optim": {"eps": 0}}, "optim.eps: expected a number > 0"),
    ({**BASE, "eval": {"metrics": [{"name": "kid", "subsetz": 3}]}}, "eval.metrics.0.subsetz: unknown option"),
    ({**BASE, "plugins": "my_module"}, "plugins: expected a list of module names"),
    ({**BASE, "train": {"guard_value": -1.0}}, "train.guard_value: expected a bound >= 0 (0: off), got -1.0"),
    ({**BASE, "train": {"guard_patience": 0}}, "train.guard_patience: expected a positive number of G steps"),
    ({**BASE, "train": {"threads": -2}}, "train.threads: expected a thread count >= 0"),
])
def test_optimizer_metric_and_plugin_values_are_checked_at_config_time(raw, needle):
    with pytest.raises(GanforgeError) as e:
        from_dict(raw)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_a_config_that_is_not_utf8_is_a_one_line_error(tmp_path):
    p = tmp_path / "latin1.yaml"
    p.write_bytes("data: {name: ring8}  # caf\xe9\n".encode("latin-1"))
    with pytest.raises(GanforgeError, match="latin1.yaml: not a UTF-8 text file"):
        load_config(p)


def test_presets_are_real_paths_under_the_repository_configs_folder():
    from pathlib import Path

    repo_configs = Path(__file__).parent.parent / "configs"
    for preset in presets_dir().glob("*.yaml"):
        here = repo_configs / preset.name
        assert here.is_file() and here.read_text() == preset.read_text()
        assert load_config(f"configs/{preset.name}" if Path("configs").is_dir() else here).to_dict() \
            == load_config(preset.stem).to_dict()


def test_a_constructor_collecting_context_receives_all_of_it_but_users_cannot_set_it():
    """Wrappers (top-k's base loss, APA's inner augmentation, CR's transform) hand the build context on: a
    `**context` constructor gets every piece the framework injects, and those names stay out of the user options."""
    import torch

    from ganforge.registry import Registry

    reg = Registry("thing", context=("num_classes", "img_shape"))

    @reg.register("wrapper")
    def wrapper(k: int = 1, **context):
        return k, context

    @reg.register("plain")
    def plain(k: int = 1, num_classes: int = 0):
        return k, num_classes

    @reg.register("module")
    class Module(torch.nn.Module):  # inherits nn.Module's __init__(*args, **kwargs): asks for no context
        pass

    assert reg.build("wrapper", {"k": 2}, num_classes=10, img_shape=(1, 8, 8)) == (
        2, {"num_classes": 10, "img_shape": (1, 8, 8)})
    assert reg.build("plain", {}, num_classes=10, img_shape=(1, 8, 8)) == (1, 10)
    with pytest.raises(GanforgeError, match="num_classes: unknown option"):
        reg.build("wrapper", {"num_classes": 3})
    assert reg.get("wrapper").wants_context("img_shape") and not reg.get("plain").wants_context("img_shape")
    assert isinstance(reg.build("module", {}, num_classes=10), Module)

"""`ganforge demo` (the README's main command) runs both presets end to end and prints their mode metrics."""
from ganforge.cli.main import main


def test_demo_runs_both_presets_and_reports_modes(tmp_path, capsys):
    assert main(["demo", "--steps", "2", "--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    for preset in ("ring8", "stacked-digits"):
        line = next(l for l in out.splitlines() if l.strip().startswith(preset + " "))
        assert "modes" in line and "KL" in line and "samples:" in line
        assert (tmp_path / preset / "export" / "generator.safetensors").exists()
        assert list((tmp_path / preset / "samples").glob("fakes-*.png"))

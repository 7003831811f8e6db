"""`ganforge lab` in headless Chromium: the real server (uvicorn, in a thread of this process, on a free 127.0.0.1
port: tests/browser.py's LabServer) driven through its page, checked against the server's own Trainer.

Checked: the page loads without console errors (the `browser_page` fixture fails on any); play advances the step
counter and changes D's heatmap (its values and the plot's pixels with only the heatmap layer shown), pause stops it;
one D step counts one D update and leaves the step, G's weights and the generated points as they were while D's
weights and heatmap change, one G step does the reverse; points clicked on the plot become the session's dataset (the
click's pixel mapped through the plot square, to a tenth of a pixel); a saved session resumes from its step with
the command the page shows; an out-of-range lr typed into the page shows an error and the session keeps training.
Every state is screenshotted under tmp_path and checked (decodes, viewport size, not blank).
"""
from __future__ import annotations

import re
import shlex
import time
import urllib.request
from pathlib import Path

import pytest
import torch

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")

from browser import VIEWPORT, LabServer, check_screenshot  # noqa: E402
from ganforge.cli.main import main as ganforge_cli  # noqa: E402
from ganforge.training.checkpoint import checkpoint_path, load_checkpoint  # noqa: E402
from ganforge.training.run_dir import read_history  # noqa: E402

pytestmark = pytest.mark.browser
SIZE = (VIEWPORT["width"], VIEWPORT["height"])
LAYERS = ("show-real", "show-fake", "show-manifold", "show-arrows")  # all but show-heatmap
# what the page shows, and a 32-bit hash of the plot canvas's RGBA pixels
STATE = """() => {
  const f = window.ganforgeLab.frame, text = (id) => document.getElementById(id).textContent;
  const c = document.getElementById('plot'), px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let hash = 0;
  for (let i = 0; i < px.length; i++) hash = (Math.imul(hash, 31) + px[i]) >>> 0;
  return {step: Number(text('step-counter')), d: Number(text('d-updates')), g: Number(text('g-updates')),
          frames: window.ganforgeLab.frames, pending: f.d_pending, fake: f.fake, heat: f.heatmap.values,
          pixels: hash, extent: f.extent, data: f.data};
}"""

# whether an element is inside the viewport as the page is scrolled now
IN_VIEW = """id => { const r = document.getElementById(id).getBoundingClientRect();
  return r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight; }"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The lab app served by uvicorn on a free 127.0.0.1 port: .url, .app (its live sessions)."""
    with LabServer(tmp_path_factory.mktemp("lab-runs")) as server:
        yield server


def open_lab(rec, lab):
    """Load the page and wait for its first frame (the page sends its settings on connect)."""
    rec.page.goto(lab.url, wait_until="load")
    rec.page.wait_for_function("() => window.ganforgeLab.frames >= 1", timeout=30_000)
    return rec.page


def session(lab):
    """The server's session of the open page (earlier pages' sessions end when their tabs close)."""
    deadline = time.time() + 20
    while time.time() < deadline:
        live = [s for s in list(lab.app.state.sessions) if not s.closed and s.trainer is not None]
        if len(live) == 1:
            return live[0]
        time.sleep(0.05)
    raise AssertionError(f"expected one live lab session, found {len(lab.app.state.sessions)}")


def click_and_wait(page, selector):
    """Click a button and wait for the frame it causes; the page's state after it."""
    frames = page.evaluate("window.ganforgeLab.frames")
    page.click(selector)
    page.wait_for_function("n => window.ganforgeLab.frames > n", arg=frames, timeout=30_000)
    return page.evaluate(STATE)


def heatmap_only(page, show: bool = False):
    """Hide (or show again) every layer but the heatmap, so the plot's pixels are D's heatmap alone."""
    for layer in LAYERS:
        (page.check if show else page.uncheck)(f"#{layer}")


def params(net):
    return [p.detach().clone() for p in net.parameters()]


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


def shot(rec, path: Path) -> None:
    rec.screenshot(path)
    assert check_screenshot(path, SIZE) == []


# ---------------------------------------------------------------------------------------------------- play / pause
def test_play_advances_the_step_and_changes_the_heatmap_and_pause_stops_it(browser_page, lab, tmp_path):
    page = open_lab(browser_page, lab)
    assert browser_page.errors == [] and page.get_attribute("body", "data-state") == "ready"
    shot(browser_page, tmp_path / "loaded.png")
    heatmap_only(page)
    before = page.evaluate(STATE)
    assert before["step"] == 0
    page.click("#btn-play")
    page.wait_for_function("() => Number(document.getElementById('step-counter').textContent) >= 20", timeout=30_000)
    assert page.get_attribute("body", "data-state") == "playing"
    heatmap_only(page, show=True)
    shot(browser_page, tmp_path / "playing.png")
    page.click("#btn-pause")
    page.wait_for_function("() => document.getElementById('status').textContent === 'paused'", timeout=30_000)
    paused = page.evaluate(STATE)
    time.sleep(0.5)
    later = page.evaluate(STATE)
    assert (later["step"], later["frames"]) == (paused["step"], paused["frames"]) and paused["step"] >= 20
    assert session(lab).trainer.step == paused["step"]  # the counter is the server's Trainer step, and it stopped
    heatmap_only(page)
    after = page.evaluate(STATE)
    assert after["heat"] != before["heat"] and after["pixels"] != before["pixels"]
    assert [u for u in browser_page.requests if not u.startswith(lab.url)] == []  # nothing from elsewhere (no CDN)


# ------------------------------------------------------------------------------------------- one D / one G step
def test_one_d_step_moves_only_d_and_one_g_step_moves_only_g(browser_page, lab, tmp_path):
    page = open_lab(browser_page, lab)
    heatmap_only(page)
    t = session(lab).trainer
    a, G0, D0 = page.evaluate(STATE), params(t.G), params(t.D)
    b = click_and_wait(page, "#btn-d-step")
    assert (b["step"], b["d"], b["g"], b["pending"]) == (a["step"], a["d"] + 1, a["g"], 1)  # exactly one D phase
    assert b["fake"] == a["fake"] and same(params(t.G), G0)  # G untouched: the generated points are identical
    assert b["heat"] != a["heat"] and b["pixels"] != a["pixels"] and not same(params(t.D), D0)
    D1 = params(t.D)
    c = click_and_wait(page, "#btn-g-step")
    assert (c["step"], c["d"], c["g"], c["pending"]) == (b["step"] + 1, b["d"], b["g"] + 1, 0)
    assert c["fake"] != b["fake"]
    assert c["heat"] == b["heat"] and c["pixels"] == b["pixels"] and same(params(t.D), D1)  # D untouched
    heatmap_only(page, show=True)
    shot(browser_page, tmp_path / "stepped.png")


# ---------------------------------------------------------------------------------------------------- drawn data
def test_points_clicked_on_the_plot_become_the_training_data(browser_page, lab, tmp_path):
    page = open_lab(browser_page, lab)
    page.select_option("#data-select", "drawn")
    page.fill("#data-n", "0")  # the drawn points as they are, no noise around them
    page.fill("#data-noise", "0")
    page.fill("#batch-size", "4")
    extent = page.evaluate("window.ganforgeLab.frame.extent")
    width = page.evaluate("document.getElementById('plot').clientWidth")
    clicks = [(0.1, 0.1), (0.75, 0.3), (0.5, 0.85), (0.2, 0.7), (0.95, 0.55)]  # fractions of the plot's width
    for fx, fy in clicks:
        page.click("#plot", position={"x": fx * width, "y": fy * width})
    # the plot square's mapping: x from -e (left) to e (right), y from e (top) to -e (bottom)
    expected = torch.tensor([[(fx - 0.5) * 2 * extent, (0.5 - fy) * 2 * extent] for fx, fy in clicks])
    tolerance = 0.1 * 2 * extent / width  # a tenth of a pixel
    assert torch.allclose(torch.tensor(page.evaluate("window.ganforgeLab.drawn")), expected, atol=tolerance)
    shot(browser_page, tmp_path / "drawn.png")
    page.click("#btn-use-points")
    page.wait_for_function("() => window.ganforgeLab.frame.data === 'drawn'", timeout=30_000)
    data = session(lab).trainer.dataset.x
    assert data.shape == (5, 2) and torch.allclose(data, expected, atol=tolerance)  # the session trains on them
    real = sorted(map(tuple, page.evaluate("window.ganforgeLab.frame.real")))
    assert torch.allclose(torch.tensor(real), torch.tensor(sorted(map(tuple, data.tolist()))), atol=1e-4)
    assert click_and_wait(page, "#btn-step")["step"] == 1
    shot(browser_page, tmp_path / "drawn-training.png")


# ---------------------------------------------------------------------------------------------------- saving
def test_a_saved_session_resumes_from_its_step_with_the_command_the_page_shows(browser_page, lab, tmp_path):
    page = open_lab(browser_page, lab)
    for _ in range(3):
        click_and_wait(page, "#btn-step")
    page.fill("#save-name", "browser-session")
    page.click("#btn-save")
    page.wait_for_function("() => document.getElementById('saved-path').textContent.includes('resume:')")
    shown = page.inner_text("#saved-path")
    shot(browser_page, tmp_path / "saved.png")
    run = Path(re.search(r"saved step 3 to (\S+)", shown)[1])
    assert run == (lab.app.state.runs_dir / "browser-session").resolve() and session(lab).trainer.step == 3
    command = shlex.split(re.search(r"resume: (.+)", shown)[1])
    assert command[:2] == ["ganforge", "train"]
    assert ganforge_cli([*command[1:], "--no-progress", "train.steps=5", "train.tensorboard=false"]) == 0
    events = [(h["event"], h["step"]) for h in read_history(run)]
    assert events == [("start", 3), ("resume", 3)]  # continued from the saved step, not from 0
    assert load_checkpoint(checkpoint_path(run / "checkpoints", 5))["step"] == 5  # ... and trained on to step 5


# ---------------------------------------------------------------------------------------------------- bad input
def test_an_out_of_range_lr_shows_an_error_and_the_server_keeps_running(browser_page, lab, tmp_path):
    page = open_lab(browser_page, lab)
    page.fill("#g-lr", "5")
    page.click("#btn-apply")
    page.wait_for_selector("#error:not([hidden])", timeout=30_000)
    assert "config.optim.g_lr" in page.inner_text("#error") and "5" in page.inner_text("#error")
    assert page.evaluate(IN_VIEW, "error"), "the error is off screen where the apply button is"
    shot(browser_page, tmp_path / "error.png")
    page.evaluate("window.ganforgeLab.ws.send('{not json')")  # what a broken client might send
    page.wait_for_function("() => document.getElementById('error').textContent.includes('not valid JSON')")
    assert click_and_wait(page, "#btn-step")["step"] == 1  # the session kept its trainer and still trains
    assert page.is_hidden("#error")
    with urllib.request.urlopen(lab.url + "api/components", timeout=10) as r:
        assert r.status == 200

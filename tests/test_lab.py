"""`ganforge lab` at the HTTP / websocket level (Starlette's TestClient): the page, the component choices, phase-level
stepping, the views, drawn data, message validation, saving a resumable run, and stopping when the page closes.
Browser-level checks live with the Playwright fixture (tests/browser.py)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import warnings

import pytest
import torch

pytest.importorskip("starlette")
pytest.importorskip("httpx")

with warnings.catch_warnings():  # starlette 1.x suggests httpx2 for its test client; httpx still works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

from ganforge.config import from_dict, load_config  # noqa: E402
from ganforge.data.points2d import parse_points_csv, points_csv  # noqa: E402
from ganforge.errors import GanforgeError  # noqa: E402
from ganforge.lab import protocol, views  # noqa: E402
from ganforge.lab.server import create_app  # noqa: E402
from ganforge.lab.stepping import PhaseStepper  # noqa: E402
from ganforge.registries import DATASETS, load_all  # noqa: E402
from ganforge.training.trainer import Trainer, train  # noqa: E402

SMALL = {"model": {"name": "mlp", "z_dim": 2, "hidden": 16, "layers": 2}, "batch_size": 32, "steps_per_frame": 2,
         "optim": {"g_lr": 0.01, "d_lr": 0.01}}
PAGE_IDS = ("plot", "loss-plot", "step-counter", "d-updates", "g-updates", "btn-play", "btn-pause", "btn-step",
            "btn-d-step", "btn-g-step", "btn-reset", "btn-save", "data-select", "arch-select", "loss-select",
            "aug-select", "reg-list", "csv-file", "error", "modes")


@pytest.fixture
def app(tmp_path):
    return create_app(tmp_path / "runs")


@pytest.fixture
def client(app):
    with TestClient(app) as c:
        yield c


def _session(app):
    (session,) = app.state.sessions
    return session


def _ask(ws, msg, want="frame"):
    """Send `msg` (a dict, or raw text) and return the first reply of type `want` (errors fail the test)."""
    ws.send_text(msg if isinstance(msg, str) else json.dumps(msg))
    while True:
        reply = ws.receive_json()
        if reply["type"] == want:
            return reply
        assert reply["type"] != "error", reply["message"]


def _start(ws, **settings):
    assert ws.receive_json()["type"] == "hello"
    return _ask(ws, {"type": "config", "config": {**SMALL, **settings}})


def _params(net):
    return [p.detach().clone() for p in net.parameters()]


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


# ------------------------------------------------------------------------------------------------ HTTP
def test_page_static_and_components(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for dom_id in PAGE_IDS:  # the stable ids browser tests rely on
        assert f'id="{dom_id}"' in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # nothing from a CDN
    assert client.get("/static/lab.js").status_code == 200
    c = client.get("/api/components").json()
    archs = [a["name"] for a in c["architectures"]]
    assert "mlp" in archs and "dcgan" not in archs and "resnet" not in archs  # convolutional families make images
    losses = [x["name"] for x in c["losses"]]
    assert "vanilla" in losses and "multi-hinge" not in losses  # multi-hinge needs labels and a multi-hinge head
    assert "damsm" not in [x["name"] for x in c["regularizers"]]  # reads captions
    assert [d["name"] for d in c["data"]] == ["ring8", "grid25", "line", "two-gaussians", "three-blobs", "drawn"]
    mlp = {o["name"]: o for o in c["architectures"][archs.index("mlp")]["options"]}
    assert mlp["hidden"]["type"] == "int" and mlp["layers"]["default"] == 3


# ------------------------------------------------------------------------------------------------ stepping
def test_step_counts_one_and_one_phase_steps_move_one_network(client, app):
    with client.websocket_connect("/ws") as ws:
        first = _start(ws)
        assert first["step"] == 0
        t = _session(app).trainer
        assert _ask(ws, {"type": "step"})["step"] == 1
        assert _ask(ws, {"type": "step"})["step"] == 2
        g0, d0 = _params(t.G), _params(t.D)
        f = _ask(ws, {"type": "d-step"})
        assert (f["step"], f["d_updates"], f["g_updates"], f["d_pending"]) == (2, 3, 2, 1)
        assert _same(_params(t.G), g0) and not _same(_params(t.D), d0)
        g1, d1 = _params(t.G), _params(t.D)
        f = _ask(ws, {"type": "g-step"})
        assert (f["step"], f["d_updates"], f["g_updates"]) == (3, 3, 3)
        assert _same(_params(t.D), d1) and not _same(_params(t.G), g1)


def test_phase_steps_equal_the_trainers_own_step(tmp_path):
    """d_step then g_step (optim.d_steps 1) is Trainer.train_step: the same weights, bit for bit."""
    s = protocol.check_settings(SMALL)
    cfg = from_dict(protocol.run_config_dict(s, None))
    a, b = Trainer(cfg, tmp_path / "a", progress=False), Trainer(cfg, tmp_path / "b", progress=False)
    stepper = PhaseStepper(a)
    for _ in range(2):
        stepper.d_step()
        stepper.g_step()
        b.train_step()
    assert a.step == b.step == 2
    for net in ("G", "D", "G_ema"):
        assert _same(_params(getattr(a, net)), _params(getattr(b, net)))


# ------------------------------------------------------------------------------------------------ views
def test_heatmap_is_50x50_and_changes_with_training(client):
    with client.websocket_connect("/ws") as ws:
        before = _start(ws)["heatmap"]
        assert before["size"] == 50 and len(before["values"]) == 50 * 50
        for _ in range(3):
            after = _ask(ws, {"type": "step"})["heatmap"]
        assert after["values"] != before["values"]
        assert after["values"] == _ask(ws, {"type": "frame"})["heatmap"]["values"]  # a frame alone trains nothing


def test_cell_centres_and_latent_grid():
    assert views.cell_centres(1.0, 2).tolist() == [[-0.5, 0.5], [0.5, 0.5], [-0.5, -0.5], [0.5, -0.5]]
    z = views.latent_grid(3, size=3)
    assert z.shape == (9, 3) and z[:, 2].abs().sum() == 0 and z[0, :2].tolist() == [-2.0, -2.0]
    assert views.latent_grid(1, size=4)[:, 0].tolist() == pytest.approx([-2.0, -2.0 + 4 / 3, -2.0 + 8 / 3, 2.0])


def test_gradient_arrows_are_minus_dLG_dx(tmp_path):
    """vanilla: l_G(x) = softplus(-D(x)), so -dl_G/dx = sigmoid(-D(x)) * dD/dx at each point."""
    cfg = from_dict(protocol.run_config_dict(protocol.check_settings(SMALL), None))
    t = Trainer(cfg, tmp_path / "run", progress=False)
    x = torch.tensor([[0.3, -0.2], [1.0, 0.5], [-0.7, 0.1]])
    arrows = views.gradients(t, x, views.real_sample(t))
    xr = x.clone().requires_grad_(True)
    d = t.D(xr, None).adv
    (dd,) = torch.autograd.grad(d.sum(), xr)
    expected = torch.sigmoid(-d.detach())[:, None] * dd
    assert torch.allclose(arrows, expected, atol=1e-6)


# ------------------------------------------------------------------------------------------------ drawn data
@pytest.mark.filterwarnings("ignore:train.batch_size")  # 5 drawn points, batches of 32
def test_drawn_points_become_the_training_data(client):
    drawn = [[0.5, 0.25], [-1.0, 0.75], [0.125, -0.5], [1.25, 1.0], [-0.25, -1.25]]
    with client.websocket_connect("/ws") as ws:
        _start(ws)
        assert _ask(ws, {"type": "points", "points": drawn}, want="points")["count"] == 5
        f = _ask(ws, {"type": "config", "config": {**SMALL, "data": {"name": "drawn", "n": 0, "noise": 0.0}}})
        assert f["data"] == "drawn" and sorted(map(tuple, f["real"])) == sorted(map(tuple, drawn))
        f = _ask(ws, {"type": "points", "csv": "x,y\n0.5,0.5\n-0.5,-0.5\n"})  # new points restart training on them
        assert f["step"] == 0 and sorted(map(tuple, f["real"])) == [(-0.5, -0.5), (0.5, 0.5)]


# ------------------------------------------------------------------------------------------------ validation
@pytest.mark.parametrize("bad, needle", [
    ("{not json", "not valid JSON"),
    ('["a list"]', "expected a JSON object"),
    ('{"type": "explode"}', "message.type"),
    ('{"type": "config", "config": {"loss": {"name": "no-such-loss"}}}', "config.loss.name"),
    ('{"type": "config", "config": {"optim": {"g_lr": 0.5}}}', "config.optim.g_lr"),
    ('{"type": "config", "config": {"optim": {"d_lr": 0}}}', "config.optim.d_lr"),
    ('{"type": "config", "config": {"model": {"name": "mlp", "hidden": 5000}}}', "config.model.hidden"),
    ('{"type": "config", "config": {"model": {"name": "dcgan"}}}', "config.model.name"),
    ('{"type": "config", "config": {"loss": {"name": "vanilla", "bogus": 1}}}', "config.loss.bogus"),
    ('{"type": "save", "name": "../elsewhere"}', "save.name"),
    ('{"type": "points", "points": [[0, "x"]]}', "points[0]"),
])
def test_bad_messages_get_an_error_and_the_connection_keeps_working(client, bad, needle):
    with client.websocket_connect("/ws") as ws:
        _start(ws)
        ws.send_text(bad)
        reply = ws.receive_json()
        assert reply["type"] == "error" and needle in reply["message"]
        assert _ask(ws, {"type": "step"})["step"] == 1  # still connected, the session unchanged


def test_too_many_points_are_refused():
    with pytest.raises(protocol.ProtocolError, match="at most 100000"):
        protocol.check_points({"points": [[0.0, 0.0]] * (protocol.MAX_POINTS + 1)})
    with pytest.raises(GanforgeError, match="more than 100000"):
        parse_points_csv("0,0\n" * (protocol.MAX_POINTS + 1))


# ------------------------------------------------------------------------------------------------ saving
def test_saved_session_resumes_with_ganforge_train(client, app):
    with client.websocket_connect("/ws") as ws:
        _start(ws)
        _ask(ws, {"type": "points", "points": [[0.5, 0.5], [-0.5, 0.5], [0.0, -0.5]]}, want="points")
        _ask(ws, {"type": "config", "config": {**SMALL, "data": {"name": "drawn", "n": 200, "noise": 0.05}}})
        for _ in range(3):
            _ask(ws, {"type": "step"})
        saved = _ask(ws, {"type": "save", "name": "my-run"}, want="saved")
        G_at_save = _params(_session(app).trainer.G)
    run = Path(saved["path"])
    assert saved["step"] == 3 and run == (app.state.runs_dir / "my-run").resolve()
    assert (run / "config.yaml").exists() and (run / "points.csv").exists()
    cfg = load_config(run / "config.yaml", ["train.steps=5", "train.tensorboard=false"])
    resumed = Trainer(cfg, run, progress=False)
    assert resumed.step == 3 and _same(_params(resumed.G), G_at_save)  # the session's state, not a fresh start
    summary = train(cfg, run, progress=False)
    assert summary["step"] == 5
    history = [json.loads(line)["event"] for line in (run / "history.jsonl").read_text().splitlines()]
    assert history[0] == "start" and history[-1] == "resume"
    with client.websocket_connect("/ws") as ws:  # a name in use is refused
        _start(ws)
        ws.send_text(json.dumps({"type": "save", "name": "my-run"}))
        assert "already exists" in ws.receive_json()["message"]


# ------------------------------------------------------------------------------------------------ closing
def test_closing_the_socket_stops_background_training(client, app):
    with client.websocket_connect("/ws") as ws:
        _start(ws)
        ws.send_text(json.dumps({"type": "play"}))
        assert ws.receive_json()["type"] == "frame"  # training runs in the background
        session = _session(app)
        assert session.playing
    deadline = time.time() + 20
    while (app.state.sessions or session.workdir.exists()) and time.time() < deadline:
        time.sleep(0.05)
    assert not app.state.sessions and session.closed and not session.playing and session.task is None
    assert not session.workdir.exists()  # the worker finished and the scratch run directory is gone
    step = session.trainer.step
    time.sleep(0.3)
    assert session.trainer.step == step


# ------------------------------------------------------------------------------------------------ data sets
@pytest.mark.parametrize("name, modes", [("two-gaussians", 2), ("three-blobs", 3)])
def test_new_mixtures_score_their_own_samples_as_all_modes(name, modes):
    load_all()
    ds = DATASETS.build(name, {"n": 2500}, split="train", cache_dir=None)
    m = ds.mode_metrics(ds.x)
    assert m["modes"] == modes and m["hq_frac"] > 0.98  # a 3-sigma disc holds 1 - exp(-4.5) = 98.9% of the mass
    assert m["kl"] < 0.01  # uniform labels: the histogram is close to uniform


def test_line_lies_on_the_diagonal():
    load_all()
    x = DATASETS.build("line", {"n": 5000}, split="train", cache_dir=None).x
    across = (x[:, 0] - x[:, 1]) / 2 ** 0.5  # distance from the line y = x
    assert across.std().item() == pytest.approx(0.02, rel=0.1)
    along = (x[:, 0] + x[:, 1]) / 2 ** 0.5
    assert along.abs().max().item() <= 2 ** 0.5 + 0.1 and along.std().item() == pytest.approx((2 / 3) ** 0.5, rel=0.05)


def test_points_file_round_trip_and_resampling(tmp_path):
    pts = torch.tensor([[0.1, -0.2], [3.0, 4.5]])
    assert torch.equal(parse_points_csv(points_csv(pts)), pts)
    assert parse_points_csv("# mine\n1 2\n3;4\n").tolist() == [[1.0, 2.0], [3.0, 4.0]]
    with pytest.raises(GanforgeError, match="line 3"):
        parse_points_csv("x,y\n1,2\n1,oops\n")
    path = tmp_path / "p.csv"
    path.write_text(points_csv(pts))
    load_all()
    ds = DATASETS.build("points", {"path": str(path), "n": 100}, split="train", cache_dir=None)
    assert len(ds) == 100
    assert set(map(tuple, ds.x.tolist())) <= set(map(tuple, pts.tolist()))  # noise 0: only the given points
    assert ds.info.modality.extent == pytest.approx(1.2 * 4.5)

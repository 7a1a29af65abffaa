"""The dashboard's server over the fake world: what it answers, to whom, and the judged window's series.

A real ``http.server`` on a free loopback port, the controller's views over
``tests/control/fakes.py``. The page itself in a real browser against a real stack is
``tests/integration/test_dashboard.py``.
"""

from __future__ import annotations

import http.client
import json
import threading

import pytest

from app.artifacts.fsutil import atomic_write_json
from app.control.config import load_config
from app.control.dashboard import DashboardServer, DashboardState, WindowSeries, dashboard_token, is_loopback
from app.errors import ConfigError
from tests.control.fakes import World, make_controller, write_card
from tests.helpers import ROOT, free_port


def window_doc(polls: int, started: float = 1_800_000_000.0, **changes) -> dict:
    """A judged window as the controller writes it (<run_dir>/window.json), after ``polls`` polls."""
    doc = {"kind": "bake", "rollout": "r1", "color": "green", "version": "v1.1.0",
           "stable": {"color": "blue", "version": "v1.0.0"}, "started": started, "updated": started + 2 * polls,
           "period": 30.0, "polls": polls, "verdict": "inconclusive", "reason": "error rate: 40 of 50 requests",
           "ended": False,
           "checks": [{"name": "error rate", "verdict": "inconclusive", "n": 40 * polls, "needed": 50,
                       "estimate": 0.0, "low": 0.0, "high": 0.5 / (polls + 1), "limit": 0.01, "direction": "below"},
                      {"name": "live accuracy", "verdict": "inconclusive", "n": 0, "needed": 20, "estimate": None,
                       "low": None, "high": None, "limit": 0.8, "direction": "above"}]}
    doc.update(changes)
    return doc


@pytest.fixture
def world(tmp_path):
    models = tmp_path / "models"
    write_card(models, "v1.0.0")
    write_card(models, "v1.1.0")
    return World(models)


@pytest.fixture
def controller(tmp_path, world):
    controller = make_controller(tmp_path, world, f"[dashboard]\nport = {free_port()}\n")
    controller.lifecycle.up()
    return controller


class Running:
    """A dashboard server on a thread, and plain HTTP requests to it."""

    def __init__(self, controller, token: str = ""):
        config = controller.ctx.config
        self.server = DashboardServer(("127.0.0.1", 0), DashboardState(controller), token, config.dashboard.refresh)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def request(self, method: str, path: str, headers: dict | None = None, raw: bytes | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            if raw is not None:
                conn.connect()
                conn.sock.sendall(raw)
                response = http.client.HTTPResponse(conn.sock, method="GET")
                response.begin()
            else:
                conn.request(method, path, headers=headers or {})
                response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def state(self, **headers) -> dict:
        status, _, body = self.request("GET", "/api/state", headers)
        assert status == 200, body
        return json.loads(body)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def running(controller):
    server = Running(controller)
    yield server
    server.close()


def test_the_page_is_one_document_with_its_script_allowed_by_hash_only(running):
    status, headers, body = running.request("GET", "/")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    page = body.decode()
    assert 'id="active-color"' in page and "__REFRESH_MS__" not in page
    assert 'data-refresh="1000"' in page
    policy = headers["Content-Security-Policy"]
    assert "script-src 'sha256-" in policy and "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    assert "connect-src 'self'" in policy and "default-src 'none'" in policy
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")  # nothing fetched from elsewhere
    assert headers["Cache-Control"] == "no-store" and headers["X-Frame-Options"] == "DENY"


def test_the_state_says_which_color_serves_what(running, world):
    state = running.state()
    assert state["stack"] == {"state": "up", "message": "nginx and both colors answer"}
    status = state["status"]
    assert status["active"] == "blue" and status["phase"] == "idle"
    assert {c: status["colors"][c]["version"] for c in ("blue", "green")} == {"blue": "v1.0.0", "green": "v1.1.0"}
    assert state["window"] is None and state["shadow"] is None and state["errors"] == []
    assert [e["action"] for e in state["history"]] == ["up"]
    assert state["failovers"] == {"counts": {"blue": 0, "green": 0}, "events": []}


def test_with_the_stack_down_the_state_says_so(running, controller):
    controller.lifecycle.down()
    running.server.state._state = None  # no waiting for the cache
    state = running.state()
    assert state["stack"]["state"] == "down"
    assert state["stack"]["message"] == ("the stack is down: nginx is not running (run `bluegreen up`), and no "
                                         "color answers")
    assert state["status"]["colors"]["blue"]["state"] == "down"


def test_an_unreadable_state_file_is_said_and_the_rest_still_answers(running, controller):
    (controller.ctx.config.run_dir / "state.json").write_text("{broken")
    running.server.state._state = None
    state = running.state()
    assert state["status"] is None and state["stack"]["state"] == "unknown"
    assert "unreadable state" in state["errors"][0]
    assert [e["action"] for e in state["history"]] == ["up"]


def test_failovers_are_counted_per_color_from_their_health(running, world):
    world.colors["green"].failovers = 7
    running.server.state._state = None
    assert running.state()["failovers"]["counts"] == {"blue": 0, "green": 7}


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_it_only_reads(running, method):
    status, headers, body = running.request(method, "/api/state")
    assert status == 405 and headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"error": "method not allowed: the dashboard only reads (GET)", "status": 405}


@pytest.mark.parametrize(("raw", "status"), [
    (b"GET /api/state HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 200),
    (b"TRACE / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 501),
    (b"GET / HTTP/7.0\r\nHost: 127.0.0.1\r\n\r\n", 505),
    (b"NONSENSE\r\n\r\n", 400),
])
def test_every_answer_is_json_or_the_page_errors_included(running, raw, status):
    got, headers, body = running.request("GET", "/", raw=raw)
    assert got == status
    assert headers["Content-Type"] == "application/json"
    assert isinstance(json.loads(body), dict)


def test_an_unknown_path_is_a_json_404(running):
    status, _, body = running.request("GET", "/metrics")
    assert status == 404
    assert json.loads(body)["error"] == "not found: /metrics; the dashboard is GET / and GET /api/state"


@pytest.mark.parametrize("host", ["evil.example:8090", "192.168.1.5:8090", ""])
def test_on_loopback_it_answers_only_requests_addressed_to_loopback(running, host):
    status, _, body = running.request("GET", "/api/state", {"Host": host})
    assert status == 403
    assert "answers only requests addressed to loopback" in json.loads(body)["error"]


@pytest.mark.parametrize("host", ["localhost:8090", "127.0.0.1:8090", "[::1]:8090", "localhost"])
def test_loopback_names_are_answered(running, host):
    assert running.request("GET", "/api/state", {"Host": host})[0] == 200


def test_with_a_token_nothing_is_answered_without_it(controller):
    server = Running(controller, token="s3cret-token-0123456789")
    try:
        for path, headers in (("/", {}), ("/api/state", {}), ("/api/state", {"Authorization": "Bearer wrong"})):
            status, kind, body = server.request("GET", path, {"Host": "dashboard.internal", **headers})
            assert status == 401 and kind["Content-Type"] == "application/json", (path, headers)
            assert "token" in json.loads(body)["error"]
        assert server.request("GET", "/?token=s3cret-token-0123456789", {"Host": "dashboard.internal"})[0] == 200
        assert server.request("GET", "/api/state", {"Host": "dashboard.internal",
                                                     "Authorization": "Bearer s3cret-token-0123456789"})[0] == 200
    finally:
        server.close()


def test_a_token_is_made_only_off_loopback(tmp_path):
    path = tmp_path / "bluegreen.toml"
    path.write_text('run_dir = "run"\n[dashboard]\nhost = "0.0.0.0"\nport = 9999\n')
    config = load_config(str(path), environ={})
    token = dashboard_token(config)
    assert len(token) >= 32 and (config.run_dir / "dashboard.token").stat().st_mode & 0o777 == 0o600
    assert dashboard_token(config) == token  # kept across starts
    path.write_text('run_dir = "run"\n[dashboard]\nport = 9999\n')
    assert dashboard_token(load_config(str(path), environ={})) == ""
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("[::1]")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1") and not is_loopback("example.org")


def test_the_address_is_configurable_and_overridden_by_the_environment(tmp_path):
    config = load_config(None, environ={})
    assert (config.dashboard.host, config.dashboard.port) == ("127.0.0.1", 8090)
    config = load_config(None, environ={"BLUEGREEN_DASHBOARD_PORT": "9191", "BLUEGREEN_DASHBOARD_HOST": "[::1]"})
    assert (config.dashboard.host, config.dashboard.port) == ("[::1]", 9191)
    with pytest.raises(ConfigError, match=r"dashboard.port \(8080\) must differ from the stack's ports"):
        load_config(None, environ={"BLUEGREEN_DASHBOARD_PORT": "8080"})
    path = tmp_path / "bluegreen.toml"
    path.write_text('[dashboard]\nhost = "not a host!"\n')
    with pytest.raises(ConfigError, match="dashboard.host must be a host name or an IP address"):
        load_config(str(path), environ={})


def test_each_check_keeps_its_figures_at_every_poll_of_one_window(running, controller):
    run_dir = controller.ctx.config.run_dir
    for polls in (1, 2, 2, 3):  # the same poll read twice counts once
        atomic_write_json(run_dir / "window.json", window_doc(polls))
        running.server.state._state = None
        window = running.state()["window"]
    series = window["series"]["error rate"]
    assert [p["t"] for p in series] == [2.0, 4.0, 6.0]
    assert [p["high"] for p in series] == [0.25, 0.5 / 3, 0.125]
    assert all(p["limit"] == 0.01 and p["estimate"] == 0.0 for p in series)
    assert window["series"]["live accuracy"][-1] == {"t": 6.0, "estimate": None, "low": None, "high": None,
                                                    "limit": 0.8, "verdict": "inconclusive", "n": 0}
    assert window["kind"] == "bake" and window["checks"][0]["name"] == "error rate"
    # A new window (a canary's next step, say) starts its own series.
    atomic_write_json(run_dir / "window.json", window_doc(1, started=1_800_000_100.0, kind="canary"))
    running.server.state._state = None
    assert [p["t"] for p in running.state()["window"]["series"]["error rate"]] == [2.0]


def test_an_unreadable_window_is_said(running, controller):
    (controller.ctx.config.run_dir / "window.json").write_text("[1, 2")
    running.server.state._state = None
    assert "window.json: unreadable" in running.state()["window"]["error"]


def test_series_ignore_checks_that_are_not_objects():
    series = WindowSeries()
    window = series.update(window_doc(1, checks=["not a check", {"name": "latency", "estimate": True}]))
    assert window["series"] == {"latency": [{"t": 2.0, "estimate": None, "low": None, "high": None, "limit": None,
                                             "verdict": None, "n": None}]}


def test_the_state_is_computed_once_for_every_page_that_asks_at_once(controller, world):
    clock = [100.0]
    state = DashboardState(controller, clock=lambda: clock[0])
    first = state.get()
    world.routed = "green"
    assert state.get() is first
    clock[0] += 1.0
    assert state.get()["status"]["active"] == "green"


def test_the_readmes_dashboard_settings_load_as_written(tmp_path):
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### The dashboard"):readme.index("### Prometheus and Grafana")]
    example = section[section.index("```toml\n") + len("```toml\n"):section.index("```", section.index("```toml") + 7)]
    path = tmp_path / "bluegreen.toml"
    path.write_text(example)
    config = load_config(str(path), environ={})
    assert (config.dashboard.host, config.dashboard.port, config.dashboard.refresh, config.dashboard.events) == (
        "127.0.0.1", 8090, 1.0, 15)

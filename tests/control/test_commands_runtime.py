"""The controller over configured commands (docker compose, kubectl): exact commands, in order.

A recording runner stands in for the shell, and small HTTP servers stand in for the
colors and the doors, which follow the last route command. The controller's own logic
(gates, verification, state, bake) runs for real. The same flow against real containers:
``make test-containers``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.control.clock import Clock
from app.control.config import load_config
from app.control.context import Context
from app.control.controller import Controller
from app.control.deploy import Deployer
from app.control.doors import HttpDoors
from app.control.proxies import CommandProxy
from app.control.rollout import Phase
from app.control.runtimes import CommandRuntime
from app.control.store import StateStore
from app.errors import ControllerError

ROW = [5.1, 3.5, 1.4, 0.2]
COMMANDS = """
[runtime]
kind = "commands"
[runtime.commands]
start_color = "start $color $version"
stop_color = "stop $color"
proxy_start = "proxy-start"
proxy_stop = "proxy-stop"
proxy_test = "proxy-test $conf"
proxy_reload = "proxy-reload"
route = "route $color $other"
routed = "routed"
"""


class FakeWorld:
    """Colors that run what `start` told them, and a front door that follows `route`.

    A color answers /ready, /health and POST /predict; /predict answers what the card's
    reference says scikit-learn answered for that row, so the smoke gate sees the card's
    accuracy, and every request is counted in /health's live figures.
    """

    def __init__(self, models_dir):
        self.models_dir = models_dir
        self.versions: dict[str, str | None] = {"blue": None, "green": None}
        self.requests = {"blue": 0, "green": 0}
        self.routed = "blue"
        self.log: list[str] = []
        self.fail: set[str] = set()
        self.servers = {name: self._serve(name) for name in ("blue", "green", "front", "preview")}

    def _color(self, name):
        if name == "front":
            return self.routed
        if name == "preview":
            return "green" if self.routed == "blue" else "blue"
        return name

    def _answers(self, version):
        card = json.loads((self.models_dir / f"iris_model_{version}.json").read_text())
        reference = card["reference"]
        return {tuple(row): card["class_names"][p.index(max(p))]
                for row, p in zip(reference["rows"], reference["probabilities"])}

    def _serve(self, name):
        world = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                # Headers and body leave in two writes: without this, Nagle's algorithm and
                # the client's delayed ACK cost 40 ms per keep-alive request.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _send(self, status, body, color):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("X-Color", color)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                color = world._color(name)
                version = world.versions[color]
                if version is None:
                    return self._send(503, {"error": "down", "status": 503}, color)
                self._send(200, {"status": "ok", "version": version, "color": color,
                                 "live": {"requests": world.requests[color], "server_errors": 0}}, color)

            def do_POST(self):
                color = world._color(name)
                version = world.versions[color]
                row = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["x"]
                if version is None:
                    return self._send(502, {"error": "down", "status": 502}, color)
                world.requests[color] += 1
                self._send(200, {"prediction": world._answers(version).get(tuple(row)), "version": version}, color)

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return server

    def port(self, name):
        return self.servers[name].server_address[1]

    def __call__(self, command: str, env: dict):
        self.log.append(command)
        word, *args = command.split()
        if word in self.fail:
            return 1, f"{word}: simulated failure"
        if word == "start":
            self.versions[args[0]] = args[1]
        elif word == "stop":
            self.versions[args[0]] = None
        elif word == "route":
            self.routed = args[0]
        elif word == "routed":
            return 0, self.routed
        return 0, ""

    def close(self):
        for server in self.servers.values():
            server.shutdown()


@pytest.fixture
def world(shipped_models):
    world = FakeWorld(shipped_models)
    yield world
    world.close()


def make_controller(world, tmp_path, models_dir, extra=""):
    path = tmp_path / "bluegreen.toml"
    path.write_text(
        f'run_dir = "run"\nmodels_dir = "{models_dir}"\n'
        f'[colors.blue]\nports = [1]\nservers = ["blue:8080"]\nprobe = ["127.0.0.1:{world.port("blue")}"]\n'
        f'[colors.green]\nports = [2]\nservers = ["green:8080"]\nprobe = ["127.0.0.1:{world.port("green")}"]\n'
        f'[nginx]\nproxy_dir = "/etc/bluegreen"\nlisten_host = "0.0.0.0"\n{extra}'
        f'[switch]\nfront_url = "http://127.0.0.1:{world.port("front")}"\n'
        f'preview_url = "http://127.0.0.1:{world.port("preview")}"\n'
        # A one-second bake of a few dozen requests: enough for the commands, not for statistics.
        "[bake]\nperiod = 1.0\ninterval = 0.2\nfailure_limit = 0\nmin_requests = 10\nmax_error_rate = 0.5\n"
        "require_labels = false\n" + COMMANDS
    )
    config = load_config(str(path), environ={})
    clock = Clock()
    ctx = Context(config, CommandRuntime(config, world, clock), CommandProxy(config, world),
                  HttpDoors(config.front_url(), config.preview_url()), StateStore(config.run_dir, clock=clock),
                  clock, say=lambda line: None)
    return Controller(ctx)


@pytest.fixture
def controller(world, tmp_path, shipped_models):
    return make_controller(world, tmp_path, shipped_models)


def test_up_runs_the_configured_commands_in_order(controller, world):
    controller.lifecycle.up()
    assert world.log == [
        "routed",
        "start blue v1.0.0",
        "start green v1.1.0",
        "proxy-test /etc/bluegreen/nginx.conf.new",
        "route blue green",
        "proxy-start",
        "proxy-reload",  # the proxy may have been running already: it must read the new config
    ]
    rendered = (controller.ctx.config.run_dir / "nginx" / "nginx.conf").read_text()
    assert "server blue:8080 max_fails=0" in rendered and "server green:8080 backup;" in rendered
    assert "listen 0.0.0.0:8080;" in rendered and "daemon off;" in rendered
    assert "if (-f /etc/bluegreen/active-green)" in rendered


def test_switch_runs_only_the_route_command(controller, world):
    controller.lifecycle.up()
    world.log.clear()
    controller.operations.switch("green")
    assert world.log == ["routed", "route green blue"]
    assert world.routed == "green"


def test_a_failing_route_command_aborts_the_switch_with_the_old_color_active(controller, world):
    controller.lifecycle.up()
    world.fail.add("route")
    with pytest.raises(ControllerError, match=r"switch to green failed: `route green blue` exited 1: "
                                              r"route: simulated failure; traffic stays on blue"):
        controller.operations.switch("green")
    assert world.routed == "blue"
    assert controller.views.status()["active"] == "blue"
    assert controller.views.history()[-1]["outcome"] == "failed"


def test_a_failing_proxy_test_keeps_the_live_config(controller, world, tmp_path, shipped_models):
    controller.lifecycle.up()
    live = (controller.ctx.config.run_dir / "nginx" / "nginx.conf").read_text()
    changed = make_controller(world, tmp_path, shipped_models, extra='client_max_body_size = "2m"\n')
    world.fail.add("proxy-test")
    world.log.clear()
    with pytest.raises(ControllerError, match="nginx rejected the new config: `proxy-test"):
        changed.lifecycle.reload()
    assert world.log == ["routed", "proxy-test /etc/bluegreen/nginx.conf.new"]
    assert (controller.ctx.config.run_dir / "nginx" / "nginx.conf").read_text() == live


def test_reload_runs_the_configured_reload_command(controller, world, tmp_path, shipped_models):
    controller.lifecycle.up()
    changed = make_controller(world, tmp_path, shipped_models, extra='client_max_body_size = "2m"\n')
    world.log.clear()
    assert changed.lifecycle.reload() == "nginx config replaced and reloaded; the front door serves it"
    assert world.log == ["routed", "proxy-test /etc/bluegreen/nginx.conf.new", "proxy-reload"]
    assert "client_max_body_size 2m;" in (controller.ctx.config.run_dir / "nginx" / "nginx.conf").read_text()
    assert changed.lifecycle.reload() == "nginx config unchanged; nothing to reload"


def test_a_deploy_over_commands_is_promoted(controller, world):
    controller.lifecycle.up()
    world.log.clear()
    stop = threading.Event()

    def traffic():  # clients of the front door during the bake
        while not stop.is_set():
            with contextlib.suppress(OSError):
                urllib.request.urlopen(urllib.request.Request(
                    f"http://127.0.0.1:{world.port('front')}/predict", data=json.dumps({"x": ROW}).encode(),
                    method="POST"), timeout=2).read()
            time.sleep(0.02)

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    try:
        result = Deployer(controller).deploy("v1.0.0", force=True)  # the active version: both colors then run it
    finally:
        stop.set()
        thread.join()
    assert result.phase is Phase.PROMOTED, result.message
    # The bake runs without the lock; its decision takes the lock again (and checks the route).
    assert world.log == ["routed", "stop green", "start green v1.0.0", "route green blue", "routed"]
    assert world.routed == "green" and controller.ctx.read_state().stable == "v1.0.0"


def test_a_deploy_blocked_by_the_smoke_gate_leaves_traffic_where_it_was(controller, world, shipped_models):
    controller.lifecycle.up()
    world.log.clear()
    world._answers = lambda version: {}  # the new color answers null for every row
    result = Deployer(controller).deploy("v1.0.0", force=True)  # the active version: both colors then run it
    assert result.phase is Phase.ABORTED
    assert "blocked by gate: smoke evaluation through the preview door: smoke accuracy 0.0000" in result.message
    assert world.log == ["routed", "stop green", "start green v1.0.0"]
    assert world.routed == "blue"


def test_a_failing_start_command_aborts_the_deploy_and_traffic_stays(controller, world):
    controller.lifecycle.up()
    world.fail.add("start")
    result = Deployer(controller).deploy("v1.0.0", force=True)  # the active version: both colors then run it
    assert result.phase is Phase.ABORTED
    assert result.message.startswith("`start green v1.0.0` exited 1: start: simulated failure; traffic stays on blue")
    assert world.routed == "blue"
    assert "route green blue" not in world.log

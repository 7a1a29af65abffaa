"""The controller over configured commands (docker compose, kubectl): exact commands, in order.

No Docker engine or cluster here: a recording runner stands in for the shell, and small
HTTP servers stand in for the colors and the front door, which follows the last route
command. The controller's own logic (gates, verification, state) runs for real.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.controller import Controller
from app.deploy import Deployer
from app.errors import ControllerError
from app.stack_config import load_config

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
    """Colors that run what `start` told them, and a front door that follows `route`."""

    def __init__(self):
        self.versions: dict[str, str | None] = {"blue": None, "green": None}
        self.routed = "blue"
        self.log: list[str] = []
        self.fail: set[str] = set()
        self.servers = {name: self._serve(name) for name in ("blue", "green", "front")}

    def _serve(self, name):
        world = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                color = world.routed if name == "front" else name
                version = world.versions[color]
                if version is None:
                    self.send_response(503)
                    body = b'{"error": "down"}'
                else:
                    self.send_response(200)
                    body = json.dumps({"status": "ok", "version": version, "color": color,
                                       "live": {"requests": 0, "server_errors": 0}}).encode()
                self.send_header("X-Color", color)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
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
def world():
    world = FakeWorld()
    yield world
    world.close()


@pytest.fixture
def controller(world, tmp_path, shipped_models):
    path = tmp_path / "bluegreen.toml"
    path.write_text(
        f'run_dir = "run"\nmodels_dir = "{shipped_models}"\n'
        f'[colors.blue]\nports = [1]\nservers = ["blue:8080"]\nprobe = ["127.0.0.1:{world.port("blue")}"]\n'
        f'[colors.green]\nports = [2]\nservers = ["green:8080"]\nprobe = ["127.0.0.1:{world.port("green")}"]\n'
        f'[nginx]\nproxy_dir = "/etc/bluegreen"\nlisten_host = "0.0.0.0"\n'
        f'[switch]\nfront_url = "http://127.0.0.1:{world.port("front")}"\n' + COMMANDS
    )
    config = load_config(str(path), environ={})
    from app.commands_runtime import CommandProxy, CommandRuntime

    runtime = CommandRuntime(config, runner=world)
    return Controller(config, runtime=runtime, nginx=CommandProxy(config, world), say=lambda line: None)


@pytest.fixture
def deployer(controller):
    controller.up()
    return Deployer(controller, say=lambda line: None)


def test_up_runs_the_configured_commands_in_order(controller, world):
    controller.up()
    assert world.log == [
        "routed",
        "start blue v1.0.0",
        "start green v1.1.0",
        "proxy-test /etc/bluegreen/nginx.conf.new",
        "route blue green",
        "proxy-start",
        "proxy-reload",  # the proxy may have been running already: it must read the new config
    ]
    rendered = (controller.config.run_dir / "nginx" / "nginx.conf").read_text()
    assert "server blue:8080 max_fails=1" in rendered and "server green:8080 backup;" in rendered
    assert "listen 0.0.0.0:8080;" in rendered and "daemon off;" in rendered
    assert "if (-f /etc/bluegreen/active-green)" in rendered


def test_switch_runs_only_the_route_command(controller, world):
    controller.up()
    world.log.clear()
    controller.switch("green")
    assert world.log == ["routed", "route green blue"]
    assert world.routed == "green"


def test_a_failing_route_command_aborts_the_switch_with_the_old_color_active(controller, world):
    controller.up()
    world.fail.add("route")
    with pytest.raises(ControllerError, match=r"switch to green failed: `route green blue` exited 1: "
                                              r"route: simulated failure; traffic stays on blue"):
        controller.switch("green")
    assert world.routed == "blue"
    assert controller.status()["active"] == "blue"
    assert controller.history()[-1]["outcome"] == "failed"


def test_a_failing_proxy_test_keeps_the_live_config(controller, world):
    controller.up()
    live = (controller.config.run_dir / "nginx" / "nginx.conf").read_text()
    controller.config.data["nginx"]["client_max_body_size"] = "2m"
    world.fail.add("proxy-test")
    world.log.clear()
    with pytest.raises(ControllerError, match="nginx rejected the new config: `proxy-test"):
        controller.reload()
    assert world.log == ["proxy-test /etc/bluegreen/nginx.conf.new"]
    assert (controller.config.run_dir / "nginx" / "nginx.conf").read_text() == live


def test_deploy_runs_stop_then_start_on_the_idle_color(deployer, world):
    world.log.clear()
    # The fake colors answer no /predict: the smoke gate blocks, after the idle color was reloaded.
    with pytest.raises(ControllerError, match="blocked by gate: smoke evaluation through the preview door"):
        deployer.deploy("v1.0.0")
    assert world.log == ["routed", "stop green", "start green v1.0.0"]
    assert world.routed == "blue"


def test_a_failing_start_command_blocks_the_deploy_and_traffic_stays(deployer, world):
    world.fail.add("start")
    with pytest.raises(ControllerError, match=r"`start green v1.0.0` exited 1: start: simulated failure; "
                                              r"traffic stays on blue"):
        deployer.deploy("v1.0.0")
    assert world.routed == "blue"
    assert "route green blue" not in world.log

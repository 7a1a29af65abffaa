"""The Kubernetes setup through the controller's commands runtime: the exact kubectl commands.

``deploy/bluegreen.k8s.toml`` is loaded as shipped; only the addresses the controller
reaches change (the port-forwards and the Ingress of README "Kubernetes" become free
loopback ports). Its kubectl commands go to ``Cluster``, which applies each one to the
manifests of ``k8s/`` the way kubectl would (``set env``, ``scale``, ``rollout status``,
a merge ``patch`` of a Service, ``get -o jsonpath``), and refuses, as kubectl does, a
resource or namespace the manifests do not have. Each Service answers with the real model
server (the Flask app on the shipped models) of the Deployment its selector picks, so
the controller's gates, switch verification and bake run for real. After every step the
manifests as patched still pass strict validation and route where the controller says.

Validated this way only: no cluster runs here (README "Kubernetes").
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
import yaml
from werkzeug.serving import make_server

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
from app.server import create_app
from tests.helpers import ROOT

TOKEN = "feedback-token-for-the-k8s-test"
NAMESPACE = "bluegreen"
START = ("kubectl -n bluegreen set env deployment/iris-{color} MODEL_VERSION={version}"
         " && kubectl -n bluegreen scale deployment/iris-{color} --replicas=2"
         " && kubectl -n bluegreen rollout status deployment/iris-{color} --timeout=300s")
STOP = "kubectl -n bluegreen scale deployment/iris-{color} --replicas=0"
ROUTE = ("kubectl -n bluegreen patch service iris-active -p "
         "'{{\"spec\":{{\"selector\":{{\"app\":\"iris\",\"color\":\"{color}\"}}}}}}'"
         " && kubectl -n bluegreen patch service iris-preview -p "
         "'{{\"spec\":{{\"selector\":{{\"app\":\"iris\",\"color\":\"{other}\"}}}}}}'")
ROUTED = "kubectl -n bluegreen get service iris-active -o jsonpath='{.spec.selector.color}'"


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch (what ``kubectl patch`` does with a map such as a selector)."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class Cluster:
    """The manifests of k8s/ as a cluster would hold them after ``kubectl apply -f k8s/``."""

    def __init__(self, models_dir: Path):
        self.models_dir = models_dir
        self.objects = {}
        for path in sorted((ROOT / "k8s").glob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                self.objects[(doc["kind"].lower(), doc["metadata"]["name"])] = doc
        # What each Deployment's pods serve: the template they were last rolled out with.
        self.serving = {name: self._pods(doc) for (kind, name), doc in self.objects.items() if kind == "deployment"}
        self.log: list[str] = []
        self.apps: dict[tuple[str, str], object] = {}
        self.lock = threading.Lock()

    # -- kubectl ----------------------------------------------------------------------------
    def __call__(self, command: str, env: dict) -> tuple[int, str]:
        self.log.append(command)
        output = []
        for part in command.split(" && "):
            code, text = self.kubectl(shlex.split(part))
            output.append(text)
            if code:
                return code, "\n".join(output)
        return 0, "\n".join(output)

    def _object(self, kind: str, name: str):
        doc = self.objects.get((kind, name))
        if doc is None:
            raise LookupError(f'Error from server (NotFound): {kind}s "{name}" not found')
        return doc

    def kubectl(self, argv: list[str]) -> tuple[int, str]:
        if argv[:3] != ["kubectl", "-n", NAMESPACE]:
            return 1, f"unexpected command {argv}"
        verb, *rest = argv[3:]
        try:
            with self.lock:
                return 0, getattr(self, "do_" + verb.replace("-", "_"))(*rest)
        except LookupError as exc:
            return 1, str(exc)

    def do_set(self, what: str, target: str, assignment: str) -> str:
        assert what == "env"
        kind, name = target.split("/")
        container = self._object(kind, name)["spec"]["template"]["spec"]["containers"][0]
        key, value = assignment.split("=", 1)
        for item in container["env"]:
            if item["name"] == key:
                item["value"] = value
                break
        else:
            container["env"].append({"name": key, "value": value})
        return f"{target} env updated"

    def do_scale(self, target: str, replicas: str) -> str:
        kind, name = target.split("/")
        count = int(replicas.removeprefix("--replicas="))
        self._object(kind, name)["spec"]["replicas"] = count
        if count == 0:
            self.serving[name] = None
        return f"{target} scaled"

    def do_rollout(self, what: str, target: str, timeout: str) -> str:
        assert what == "status" and timeout.startswith("--timeout=")
        kind, name = target.split("/")
        doc = self._object(kind, name)
        self.serving[name] = self._pods(doc)
        return f'deployment "{name}" successfully rolled out'

    def do_patch(self, kind: str, name: str, flag: str, body: str) -> str:
        assert flag == "-p"
        doc = self._object(kind, name)
        self.objects[(kind, name)] = merge_patch(doc, json.loads(body))
        return f"{kind}/{name} patched"

    def do_get(self, kind: str, name: str, flag: str, output: str) -> str:
        assert flag == "-o" and output.startswith("jsonpath={") and output.endswith("}")
        value = self._object(kind, name)
        for key in output[len("jsonpath={."):-1].split("."):
            value = value[key]
        return value

    # -- what the Services answer -------------------------------------------------------------
    @staticmethod
    def _pods(deployment: dict) -> dict | None:
        if deployment["spec"]["replicas"] == 0:
            return None
        template = deployment["spec"]["template"]
        env = {e["name"]: e.get("value") for e in template["spec"]["containers"][0]["env"]}
        return {"labels": dict(template["metadata"]["labels"]), "version": env["MODEL_VERSION"], "color": env["COLOR"]}

    def selected(self, service: str) -> dict | None:
        """The pods ``service``'s selector picks (exactly one Deployment's, or None)."""
        selector = self.objects[("service", service)]["spec"]["selector"]
        pods = [p for p in self.serving.values() if p and all(p["labels"].get(k) == v for k, v in selector.items())]
        assert len(pods) <= 1, f"{service} selects pods of several Deployments: {pods}"
        return pods[0] if pods else None

    def app(self, service: str):
        def wsgi(environ, start_response):
            with self.lock:
                pods = self.selected(service)
            if pods is None:
                start_response("503 Service Unavailable", [("Content-Type", "application/json")])
                return [b'{"error": "no ready endpoints", "status": 503}']
            key = (pods["color"], pods["version"])
            if key not in self.apps:
                self.apps[key] = create_app({"MODELS_DIR": str(self.models_dir), "MODEL_VERSION": pods["version"],
                                             "COLOR": pods["color"], "FEEDBACK_TOKEN": TOKEN})
            return self.apps[key](environ, start_response)
        return wsgi

    def validate(self, tmp_path: Path) -> None:
        """The manifests as they are now pass kubernetes-validate --strict."""
        path = tmp_path / "cluster.yaml"
        path.write_text(yaml.safe_dump_all(list(self.objects.values())))
        result = subprocess.run([str(Path(sys.executable).parent / "kubernetes-validate"), "--strict", str(path)],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def cluster(shipped_models):
    cluster = Cluster(shipped_models)
    servers = {}
    for name, service in {"blue": "iris-blue", "green": "iris-green", "front": "iris-active",
                          "preview": "iris-preview"}.items():
        server = make_server("127.0.0.1", 0, cluster.app(service), threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers[name] = server
    cluster.ports = {name: server.server_address[1] for name, server in servers.items()}
    yield cluster
    for server in servers.values():
        server.shutdown()
        server.server_close()


@pytest.fixture
def controller(cluster, tmp_path):
    config = load_config(str(ROOT / "deploy" / "bluegreen.k8s.toml"), environ={})
    ports = cluster.ports
    config = dataclasses.replace(
        config, run_dir=tmp_path / "run",
        colors={color: dataclasses.replace(spec, probe=(f"127.0.0.1:{ports[color]}",))
                for color, spec in config.colors.items()},
        switch=dataclasses.replace(config.switch, front_url=f"http://127.0.0.1:{ports['front']}",
                                   preview_url=f"http://127.0.0.1:{ports['preview']}"),
        # A few seconds of bake instead of 30, with limits a hundred requests can show: the
        # commands are the subject here (labels are still required and judged).
        bake=dataclasses.replace(config.bake, period=3.0, interval=0.5, max_error_rate=0.5, max_slow_rate=0.5,
                                 min_requests=10),
    )
    clock = Clock()
    ctx = Context(config, CommandRuntime(config, cluster, clock), CommandProxy(config, cluster),
                  HttpDoors(config.front_url(), config.preview_url()), StateStore(config.run_dir, clock=clock),
                  clock, say=lambda line: None)
    return Controller(ctx)


def selectors(cluster) -> dict:
    return {name: cluster.objects[("service", name)]["spec"]["selector"]
            for name in ("iris-active", "iris-preview", "iris-blue", "iris-green")}


def routed_to(cluster, active: str) -> dict:
    other = "green" if active == "blue" else "blue"
    return {"iris-active": {"app": "iris", "color": active}, "iris-preview": {"app": "iris", "color": other},
            "iris-blue": {"app": "iris", "color": "blue"}, "iris-green": {"app": "iris", "color": "green"}}


def front(cluster) -> tuple[str, str]:
    answer = requests.get(f"http://127.0.0.1:{cluster.ports['front']}/health", timeout=5).json()
    return answer["color"], answer["version"]


class Clients:
    """Predictions and labelled feedback (with the token) through the front door, during a bake."""

    def __init__(self, cluster, models_dir: Path):
        reference = json.loads((models_dir / "iris_model_v1.0.0.json").read_text())["reference"]
        self.rows, self.labels = reference["rows"], reference["labels"]
        self.url = f"http://127.0.0.1:{cluster.ports['front']}"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        with requests.Session() as session:
            while not self.stop.is_set():
                session.post(self.url + "/predict", json={"instances": self.rows}, timeout=5)
                session.post(self.url + "/feedback", json={"instances": self.rows[:10], "labels": self.labels[:10]},
                             headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
                time.sleep(0.05)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)


def test_up_after_kubectl_apply_only_routes_the_doors(controller, cluster, tmp_path):
    # `kubectl apply -f k8s/` already runs both colors with their versions: nothing to start.
    controller.lifecycle.up()
    assert cluster.log == [ROUTED, ROUTE.format(color="blue", other="green")]
    assert selectors(cluster) == routed_to(cluster, "blue")
    assert front(cluster) == ("blue", "v1.0.0")
    cluster.validate(tmp_path)


def test_up_after_down_starts_each_color_then_routes(controller, cluster, tmp_path):
    controller.lifecycle.up()
    controller.lifecycle.down()
    cluster.log.clear()
    controller.lifecycle.up()
    assert cluster.log == [
        ROUTED,
        START.format(color="blue", version="v1.0.0"),
        START.format(color="green", version="v1.1.0"),
        ROUTE.format(color="blue", other="green"),
    ]
    assert front(cluster) == ("blue", "v1.0.0")
    cluster.validate(tmp_path)


def test_switch_patches_both_door_services_and_nothing_else(controller, cluster, tmp_path):
    controller.lifecycle.up()
    cluster.log.clear()
    controller.operations.switch("green")
    assert cluster.log == [ROUTED, ROUTE.format(color="green", other="blue")]
    assert selectors(cluster) == routed_to(cluster, "green")
    assert front(cluster) == ("green", "v1.1.0")
    cluster.log.clear()
    controller.operations.switch("green")                            # already there: nothing runs but the check
    assert cluster.log == [ROUTED]
    cluster.validate(tmp_path)


def test_a_deploy_loads_the_idle_color_gates_it_switches_and_bakes(controller, cluster, shipped_models, tmp_path):
    controller.lifecycle.up()
    controller.operations.switch("green")
    controller.operations.switch("blue")
    cluster.log.clear()
    with Clients(cluster, shipped_models):
        result = Deployer(controller).deploy("v1.0.0", force=True)   # onto green, which serves v1.1.0
    assert result.phase is Phase.PROMOTED, result.message
    assert cluster.log == [
        ROUTED,
        STOP.format(color="green"),
        START.format(color="green", version="v1.0.0"),
        ROUTE.format(color="green", other="blue"),
        ROUTED,                                           # the bake's decision checks the route again
    ]
    deployment = cluster.objects[("deployment", "iris-green")]
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert (env["MODEL_VERSION"], deployment["spec"]["replicas"]) == ("v1.0.0", 2)
    assert selectors(cluster) == routed_to(cluster, "green")
    assert front(cluster) == ("green", "v1.0.0")
    cluster.validate(tmp_path)


def test_rollback_routes_back_to_the_color_still_running_the_promoted_version(controller, cluster, shipped_models):
    controller.lifecycle.up()
    with Clients(cluster, shipped_models):
        assert Deployer(controller).deploy("v1.1.0").phase is Phase.PROMOTED   # green, already loaded
    controller.operations.switch("blue")
    cluster.log.clear()
    controller.operations.rollback()                                 # the last promoted version: v1.1.0 on green
    assert cluster.log == [ROUTED, ROUTE.format(color="green", other="blue")]
    assert front(cluster) == ("green", "v1.1.0")


def test_down_scales_both_colors_to_zero(controller, cluster, tmp_path):
    controller.lifecycle.up()
    cluster.log.clear()
    controller.lifecycle.down()
    assert cluster.log == [STOP.format(color="blue"), STOP.format(color="green")]
    assert [cluster.objects[("deployment", f"iris-{c}")]["spec"]["replicas"] for c in ("blue", "green")] == [0, 0]
    for door in ("front", "blue", "green"):
        assert requests.get(f"http://127.0.0.1:{cluster.ports[door]}/ready", timeout=5).status_code == 503
    cluster.validate(tmp_path)


def test_down_succeeds_while_the_port_forwards_still_listen(controller, cluster):
    # A kubectl port-forward (and the Ingress) keeps accepting after the scale-down; only a
    # server that still answers counts as left behind.
    controller.lifecycle.up()
    controller.lifecycle.down()


def test_a_command_naming_what_the_manifests_lack_fails_like_kubectl(cluster):
    assert cluster("kubectl -n bluegreen scale deployment/iris-purple --replicas=2", {}) == (
        1, 'Error from server (NotFound): deployments "iris-purple" not found')
    assert cluster("kubectl -n default get service iris-active -o jsonpath='{.spec.selector.color}'", {})[0] == 1


def test_the_manifests_patch_only_what_the_route_command_names():
    before = copy.deepcopy(Cluster(ROOT / "models").objects[("service", "iris-active")])
    after = merge_patch(before, {"spec": {"selector": {"app": "iris", "color": "green"}}})
    assert after["spec"]["ports"] == before["spec"]["ports"] and after["metadata"] == before["metadata"]
    assert after["spec"]["selector"] == {"app": "iris", "color": "green"}

"""A real Prometheus (Debian's package) with the shipped config and rules against a real stack.

The shipped deploy/prometheus/prometheus.yml is used as it is, but for what differs on a
test stack: its targets (free ports instead of bluegreen.toml's defaults) and a 1 s scrape
and evaluation interval, so that rates exist within seconds.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
import requests
import yaml

from tests.helpers import ROOT, Stack, Traffic, free_port, wait_until

pytestmark = pytest.mark.integration

SHIPPED = ROOT / "deploy" / "prometheus"


def config_for(stack: Stack) -> dict:
    """The shipped config, pointed at this stack's ports."""
    config = yaml.safe_load((SHIPPED / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    ports = {"127.0.0.1:8001": stack.blue_port, "127.0.0.1:8002": stack.green_port,
             "127.0.0.1:8081": stack.preview_port}
    for job in config["scrape_configs"]:
        for group in job["static_configs"]:
            group["targets"] = [f"127.0.0.1:{ports[target]}" for target in group["targets"]]
    return config


class Prometheus:
    def __init__(self, directory, config: dict):
        binary = shutil.which("prometheus")
        if not binary:
            pytest.fail("prometheus is not installed: run `make prometheus` (Debian's package)")
        shutil.copy(SHIPPED / "rules.yml", directory / "rules.yml")
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = open(directory / "prometheus.log", "wb")  # noqa: SIM115 (closed in stop())
        self.process = subprocess.Popen(
            [binary, f"--config.file={directory / 'prometheus.yml'}", f"--storage.tsdb.path={directory / 'data'}",
             f"--web.listen-address={self.url.removeprefix('http://')}"],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(lambda: self.process.poll() is None and requests.get(self.url + "/-/ready", timeout=2).ok, 30,
                   what="prometheus to be ready")

    def query(self, expr: str) -> list[dict]:
        answer = requests.get(self.url + "/api/v1/query", params={"query": expr}, timeout=5).json()
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def test_prometheus_reads_the_request_rate_per_version_and_the_route(shipped_models, tmp_path):
    with Stack(tmp_path, shipped_models) as stack:
        (tmp_path / "prometheus").mkdir()
        prometheus = Prometheus(tmp_path / "prometheus", config_for(stack))
        try:
            def rates() -> dict | None:
                found = {r["metric"]["version"]: float(r["value"][1])
                         for r in prometheus.query("bluegreen:requests:rate1m") if float(r["value"][1]) > 0}
                return found if len(found) == 2 else None

            with Traffic(stack.front, clients=2), Traffic(stack.preview, clients=1):
                per_version = wait_until(rates, 30, what="a request rate for both versions")
            series = {(r["metric"]["color"], r["metric"]["version"])
                      for r in prometheus.query("bluegreen:requests:rate1m")}
            assert series == {("blue", "v1.0.0"), ("green", "v1.1.0")}
            assert per_version["v1.0.0"] > per_version["v1.1.0"] > 0  # two clients on the front door, one on preview
            up = {r["metric"]["job"]: r["value"][1] for r in prometheus.query("up")}
            assert up == {"bluegreen-colors": "1", "bluegreen-route": "1", "bluegreen-rollout": "1"}
            route = {r["metric"]["color"]: r["value"][1] for r in prometheus.query("bluegreen_route_active")}
            assert route == {"blue": "1", "green": "0"}
            stack.cli("switch", "green")
            wait_until(lambda: {r["metric"]["color"]: r["value"][1]
                                for r in prometheus.query("bluegreen_route_active")} == {"blue": "0", "green": "1"},
                       10, what="the route to follow the switch")
            rollout = prometheus.query("bluegreen_rollout_running")
            assert [r["value"][1] for r in rollout] == ["0"]
        finally:
            prometheus.stop()

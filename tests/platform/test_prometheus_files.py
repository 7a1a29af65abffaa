"""The shipped Prometheus config, rules and Grafana dashboard: valid, tested, and naming only real metrics.

promtool (Debian's `prometheus` package, `make prometheus`) checks the config and the rules
and runs the rules' unit tests (deploy/prometheus/rules_test.yml). Every metric the rules
and the dashboard name must be one the servers export (read from a real app's /metrics),
one nginx answers on the preview door (the route, the saved rollout, the paired figures of a
judged window), one a rule records, or Prometheus's own ``up``. The real Prometheus against a
real stack is tests/integration/test_prometheus.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from app.control.config import load_config
from app.control.exposition import rollout_exposition, window_exposition
from app.control.nginx_render import render_config, render_context
from app.control.rollout import Phase, Rollout, RolloutState
from app.server import create_app

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"
FEEDBACK_TOKEN = "test-feedback-token-0123456789"

# What PromQL calls, joins and compares with: never a metric.
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
                "offset", "inf", "nan"}


def promtool(*args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool")
    if not binary:
        pytest.fail("promtool is not installed: run `make prometheus` (Debian's prometheus package)")
    return subprocess.run([binary, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)                    # strings
    text = re.sub(r"\{[^}]*\}", " ", text)                              # label matchers
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)                             # ranges
    names = set()
    for match in re.finditer(r"(?<![\w.])([A-Za-z_:][\w:]*)(\s*\()?", text):
        word, call = match.group(1), match.group(2)
        if not call and word.lower() not in PROMQL_WORDS:
            names.add(word)
    return names


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load((PROMETHEUS / "rules.yml").read_text())["groups"]
            for rule in group["rules"]]


def dashboard() -> dict:
    return json.loads((GRAFANA / "bluegreen.json").read_text())


def dashboard_exprs() -> list[str]:
    return [target["expr"] for panel in dashboard()["panels"] for target in panel.get("targets", [])]


def server_metrics(shipped_models) -> set[str]:
    """Every sample name a color's /metrics has once it has served, refused, mirrored and failed over."""
    client = create_app({"MODELS_DIR": str(shipped_models), "MODEL_VERSION": "v1.0.0", "COLOR": "blue",
                         "FEEDBACK_TOKEN": FEEDBACK_TOKEN}).test_client()
    client.post("/predict", json={"x": [5.1, 3.5, 1.4, 0.2]})
    client.post("/predict", json={"x": [5.1, 3.5, 1.4, 0.2]}, headers={"X-Route-Color": "green"})
    client.post("/predict", json={"x": [5.1, 3.5, 1.4, 0.2]}, headers={"X-Bluegreen-Shadow": "1"})
    client.post("/feedback", json={"x": [5.1, 3.5, 1.4, 0.2], "label": "setosa"},
                headers={"Authorization": f"Bearer {FEEDBACK_TOKEN}"})
    text = client.get("/metrics").get_data(as_text=True)
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


def paired_window() -> dict:
    """A canary step judged on paired answers, past its minimum sample (``judge.window_document``)."""
    disagreement = {"name": "disagreement with the stable version", "verdict": "inconclusive", "n": 120,
                    "needed": 50, "limit": 0.11, "direction": "below", "estimate": 0.05, "low": 0.01, "high": 0.14}
    return {"kind": "canary", "rollout": "r1", "color": "green", "version": "v1.1.0",
            "stable": {"color": "blue", "version": "v1.0.0"}, "started": 1.0, "updated": 2.0, "period": 60.0,
            "polls": 4, "verdict": "inconclusive", "reason": "", "ended": False, "paired": 120,
            "checks": [disagreement]}


def nginx_metrics(tmp_path) -> set[str]:
    """The names nginx answers on the preview door: its route, and the rollout file it serves
    (with the paired figures of a window the controller judges)."""
    path = tmp_path / "bluegreen.toml"
    path.write_text("")
    template = (ROOT / "nginx" / "nginx.conf.j2").read_text()
    text = render_config(template, render_context(load_config(str(path), environ={}), "/n", "/n/active-green"))
    route = text[text.index("location = /__bluegreen/metrics"):]
    start = route.index('return 200 "') + len('return 200 "')
    body = route[start:route.index('";', start)]
    exposition = body.encode().decode("unicode_escape")
    rollout = Rollout("v1.1.0", "blue", "green", canary=[10, 100], step=0, weight=10)
    rollout.advance(Phase.CANARY)
    exposition += rollout_exposition(RolloutState(versions={"blue": "v1.0.0", "green": "v1.1.0"}, rollout=rollout))
    exposition += window_exposition(paired_window())
    return {sample.name for family in text_string_to_metric_families(exposition) for sample in family.samples}


def test_promtool_accepts_the_config_and_the_rules_it_loads():
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout


def test_promtool_accepts_the_rules():
    result = promtool("check", "rules", "rules.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_unit_tests_pass():
    result = promtool("test", "rules", "rules_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_metric_name_reader_finds_names_and_skips_functions_labels_and_keywords():
    expr = ('sum by (color, version) (rate(bluegreen_http_requests_total{endpoint=~"/predict|x"}[5m]) '
            '* on (instance) group_left (version) bluegreen:server_version) > 0.01 and up == 0')
    assert metric_names(expr) == {"bluegreen_http_requests_total", "bluegreen:server_version", "up"}


def test_every_metric_the_rules_and_the_dashboard_name_is_exported_or_recorded(shipped_models, tmp_path):
    exported = server_metrics(shipped_models) | nginx_metrics(tmp_path) | {"up"}
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    read_by_rules = set().union(*(metric_names(rule["expr"]) for rule in rules()))
    read_by_dashboard = set().union(*(metric_names(expr) for expr in dashboard_exprs()))
    assert {"bluegreen_http_requests_total", "bluegreen_http_request_duration_seconds_bucket",
            "bluegreen_failover_requests_total", "bluegreen_model_info", "bluegreen_route_active",
            "bluegreen_rollout_phase_since_seconds", "bluegreen_rollout_disagreement_low",
            "bluegreen_rollout_disagreement_limit"} <= read_by_rules | read_by_dashboard
    unknown = (read_by_rules | read_by_dashboard) - exported - recorded
    assert unknown == set(), f"named but neither exported nor recorded: {sorted(unknown)}"
    assert all(name.startswith("bluegreen:") for name in recorded)


def test_every_alert_says_what_is_wrong_and_how_bad():
    alerts = [rule for rule in rules() if "alert" in rule]
    assert {a["alert"] for a in alerts} >= {"BluegreenServerErrors", "BluegreenFailovers", "BluegreenColorDown",
                                             "BluegreenActiveColorDown", "BluegreenRolloutTooLong",
                                             "BluegreenDisagreement"}
    for alert in alerts:
        assert alert["labels"]["severity"] in ("warning", "critical") and alert["annotations"]["summary"]


def test_the_scrape_config_labels_each_color_and_reads_nginxs_preview_door():
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    colors = {group["labels"]["color"]: group["targets"] for group in jobs["bluegreen-colors"]["static_configs"]}
    assert colors == {"blue": ["127.0.0.1:8001"], "green": ["127.0.0.1:8002"]}  # bluegreen.toml's defaults
    assert jobs["bluegreen-route"]["metrics_path"] == "/__bluegreen/metrics"
    assert jobs["bluegreen-rollout"]["metrics_path"] == "/__bluegreen/rollout"
    assert jobs["bluegreen-route"]["static_configs"][0]["targets"] == ["127.0.0.1:8081"]  # the preview door


def test_the_grafana_dashboard_loads_as_it_is_from_provisioning():
    board = dashboard()
    assert board["uid"] == "bluegreen" and board["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    titles = [panel["title"] for panel in board["panels"]]
    for wanted in ("Active color", "Requests per second", "Server errors", "Latency", "Failovers"):
        assert any(title.startswith(wanted) for title in titles), wanted
    for panel in board["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"} and panel["targets"]
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "bluegreen.yaml").read_text())
    assert provider["apiVersion"] == 1
    assert provider["providers"][0]["type"] == "file" and provider["providers"][0]["options"]["path"]
    source = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "bluegreen.yaml").read_text())
    assert source["datasources"][0]["type"] == "prometheus"

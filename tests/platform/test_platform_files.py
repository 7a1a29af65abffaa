"""Static validation of the files for Docker, Render, GitHub Actions, Kubernetes and Argo.

No Docker engine or cluster runs here: each file is checked with the tool its platform's
schema ships in (hadolint, check-jsonschema's vendored schemas, kubernetes-validate), and
each check is shown to reject a broken file too.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from app.control.config import load_config
from tests.helpers import ROOT

BIN = Path(sys.executable).parent
COMPOSE_FILES = ["docker-compose.blue.yml", "docker-compose.green.yml", "docker-compose.nginx.yml"]
K8S_FILES = sorted(str(p) for p in (ROOT / "k8s").glob("*.yaml"))


def run(*command):
    return subprocess.run([str(BIN / command[0]), *command[1:]], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


def test_hadolint_finds_no_errors_in_the_dockerfile():
    result = run("hadolint", "--failure-threshold", "error", "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_rejects_a_broken_dockerfile(tmp_path):
    broken = tmp_path / "Dockerfile"
    broken.write_text("FROM python:3.11-slim\nWORKDIR srv\n")
    result = run("hadolint", "--failure-threshold", "error", str(broken))
    assert result.returncode != 0 and "DL3000" in result.stdout


def test_dockerfile_builds_models_runs_as_non_root_and_checks_readiness():
    text = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in text
    assert "ARG MODEL_VERSION=v1.0.0" in text
    assert "contrib/train_models.py" in text
    assert "USER 10001" in text
    assert "HEALTHCHECK" in text and "/ready" in text
    assert 'CMD ["gunicorn", "-c", "app/server/gunicorn_conf.py", "app.wsgi:app"]' in text
    assert ".venv" in (ROOT / ".dockerignore").read_text()


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_files_match_the_compose_schema(name):
    result = run("check-jsonschema", "--builtin-schema", "vendor.compose-spec", name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_schema_rejects_a_broken_file(tmp_path):
    broken = tmp_path / "compose.yml"
    broken.write_text("services:\n  blue:\n    image: x\n    helthcheck: {}\n")
    assert run("check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(broken)).returncode != 0


@pytest.mark.parametrize("color, version", [("blue", "v1.0.0"), ("green", "v1.1.0")])
def test_each_color_compose_file_runs_one_color_on_the_shared_network(color, version):
    compose = yaml.safe_load((ROOT / f"docker-compose.{color}.yml").read_text())
    service = compose["services"][color]
    assert service["build"]["args"]["MODEL_VERSION"] == version
    assert service["environment"]["COLOR"] == color
    assert "/ready" in " ".join(service["healthcheck"]["test"])
    assert compose["networks"]["bluegreen"] == {"name": "bluegreen", "external": True}


def test_workflow_matches_the_github_schema_and_deploys_only_from_main():
    result = run("check-jsonschema", "--builtin-schema", "vendor.github-workflows", ".github/workflows/ci.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    workflow = yaml.safe_load((ROOT / ".github/workflows/ci.yml").read_text())
    jobs = workflow["jobs"]
    assert any(step.get("run") == "make test" for step in jobs["test"]["steps"])
    assert "docker build" in jobs["image"]["steps"][-1]["run"]
    assert jobs["deploy"]["needs"] == "image"
    assert jobs["deploy"]["if"] == "github.ref == 'refs/heads/main' && github.event_name == 'push'"
    assert "secrets.RENDER_DEPLOY_HOOK_URL" in jobs["deploy"]["steps"][0]["env"]["RENDER_DEPLOY_HOOK_URL"]


def test_render_blueprint_has_the_expected_fields():
    blueprint = yaml.safe_load((ROOT / "render.yaml").read_text())
    (service,) = blueprint["services"]
    assert service["type"] == "web" and service["runtime"] == "docker"
    assert service["dockerfilePath"] == "./Dockerfile"
    assert service["healthCheckPath"] == "/ready"
    assert {"key": "MODEL_VERSION", "value": "v1.0.0"} in service["envVars"]


def test_kubernetes_manifests_pass_strict_validation():
    result = run("kubernetes-validate", "--strict", *K8S_FILES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == len(K8S_FILES)


def test_strict_validation_rejects_an_unknown_field(tmp_path):
    broken = tmp_path / "svc.yaml"
    broken.write_text((ROOT / "k8s" / "service-active.yaml").read_text().replace("selector:", "selectr:"))
    assert run("kubernetes-validate", "--strict", str(broken)).returncode != 0


def test_kubernetes_colors_probe_our_endpoints_and_services_select_a_color():
    for color in ("blue", "green"):
        deployment = yaml.safe_load((ROOT / "k8s" / f"deployment-{color}.yaml").read_text())
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
        assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
        assert container["resources"]["requests"]["memory"]
        assert deployment["spec"]["template"]["metadata"]["labels"]["color"] == color
    active = yaml.safe_load((ROOT / "k8s" / "service-active.yaml").read_text())
    preview = yaml.safe_load((ROOT / "k8s" / "service-preview.yaml").read_text())
    assert active["spec"]["selector"]["color"] == "blue"
    assert preview["spec"]["selector"]["color"] == "green"


def test_argo_rollout_and_analysis_templates_have_the_expected_fields():
    rollout = yaml.safe_load((ROOT / "k8s" / "argo" / "rollout.yaml").read_text())
    assert rollout["apiVersion"] == "argoproj.io/v1alpha1" and rollout["kind"] == "Rollout"
    strategy = rollout["spec"]["strategy"]["blueGreen"]
    assert (strategy["activeService"], strategy["previewService"]) == ("iris-active", "iris-preview")
    assert strategy["prePromotionAnalysis"]["templates"] == [{"templateName": "iris-pre-promotion"}]
    assert strategy["postPromotionAnalysis"]["templates"] == [{"templateName": "iris-post-promotion"}]
    templates = {t["metadata"]["name"]: t for t in
                 yaml.safe_load_all((ROOT / "k8s" / "argo" / "analysis-template.yaml").read_text())}
    assert set(templates) == {"iris-pre-promotion", "iris-post-promotion"}
    expected = {"iris-pre-promotion": {"serving": "/health", "card-metrics": "/health", "smoke": "/predict"},
                "iris-post-promotion": {"live-accuracy": "/health", "error-rate": "/health"}}
    for name, template in templates.items():
        assert template["kind"] == "AnalysisTemplate" and template["spec"]["args"] == [{"name": "service"}]
        metrics = {m["name"]: m for m in template["spec"]["metrics"]}
        assert {m: metrics[m]["provider"]["web"]["url"].rsplit("/", 1)[1] for m in metrics} == {
            m: path.lstrip("/") for m, path in expected[name].items()}
        for metric in metrics.values():
            url = metric["provider"]["web"]["url"]
            assert url.startswith("http://{{args.service}}.bluegreen.svc.cluster.local/"), url
            assert metric["successCondition"]
    # Live accuracy is judged after promotion only, where /feedback arrives, and never on
    # fewer labels than the bake's minimum.
    assert "live-accuracy" not in {m["name"] for m in templates["iris-pre-promotion"]["spec"]["metrics"]}
    live = {m["name"]: m for m in templates["iris-post-promotion"]["spec"]["metrics"]}["live-accuracy"]
    assert "labelled" in live["successCondition"] and "labelled" in live["failureCondition"]


@pytest.mark.parametrize("name", ["bluegreen.docker.toml", "bluegreen.k8s.toml"])
def test_controller_configs_for_other_platforms_load(name):
    path = ROOT / "deploy" / name
    config = load_config(str(path), environ={})
    assert config.runtime.kind == "commands"
    commands = tomllib.loads(path.read_text())["runtime"]["commands"]
    assert "$color" in commands["start_color"] and "$version" in commands["start_color"]

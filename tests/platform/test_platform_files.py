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


def dockerfile_stages() -> dict[str, str]:
    """The Dockerfile's text per stage (``FROM ... AS name`` up to the next FROM)."""
    stages, name = {}, "preamble"
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("FROM "):
            name = line.split(" AS ")[1].strip()
        stages[name] = stages.get(name, "") + line + "\n"
    return stages


def test_dockerfile_trains_in_a_builder_and_serves_onnx_without_training_code():
    stages = dockerfile_stages()
    assert list(stages) == ["preamble", "train", "server-deps", "runtime"]
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in stages["preamble"]
    assert all(stages[name].startswith("FROM ${PYTHON_IMAGE} AS ") for name in ("train", "server-deps", "runtime"))
    assert "contrib/train_models.py" in stages["train"] and "-r requirements.txt" in stages["train"]
    assert "-r requirements-server.txt" in stages["server-deps"]
    runtime = stages["runtime"]
    assert "ARG MODEL_VERSION=v1.0.0" in runtime
    assert "COPY --from=train /srv/models /srv/models" in runtime
    assert "COPY --from=server-deps /opt/venv /opt/venv" in runtime
    assert "COPY app/server/ app/server/" in runtime
    assert "app/control" not in runtime and "app/training" not in runtime and "COPY app/ " not in runtime
    assert "USER 10001" in runtime
    assert "HEALTHCHECK" in runtime and "/ready" in runtime
    assert runtime.rstrip().endswith('CMD ["gunicorn", "-c", "app/server/gunicorn_conf.py", "app.wsgi:app"]')
    # What the runtime installs: the server's imports, none of training's.
    server_requirements = [line.split("#")[0].strip() for line in
                           (ROOT / "requirements-server.txt").read_text().splitlines()]
    assert "-c requirements.txt" in server_requirements
    for training_only in ("scikit-learn", "scipy", "skl2onnx", "onnx", "skops", "joblib"):
        assert training_only not in server_requirements


def test_build_credentials_are_build_secrets_never_files_of_the_context():
    text = (ROOT / "Dockerfile").read_text()
    for stage in ("train", "server-deps"):
        assert "--mount=type=secret,id=pip_conf,required=false --mount=type=secret,id=extra_ca,required=false" in \
            dockerfile_stages()[stage]
    assert ".crt" not in text and "pip.conf" not in text and "ca-certificates" not in text.split("ARG")[0]
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".run", ".git", "models/iris_model_*"} <= set(ignored)


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_files_match_the_compose_schema(name):
    result = run("check-jsonschema", "--builtin-schema", "vendor.compose-spec", name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_schema_rejects_a_broken_file(tmp_path):
    broken = tmp_path / "compose.yml"
    broken.write_text("services:\n  blue:\n    image: x\n    helthcheck: {}\n")
    assert run("check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(broken)).returncode != 0


class ComposeLoader(yaml.SafeLoader):
    """YAML as docker compose reads it: ``!reset`` clears the value of the files before."""


def _reset(loader, node):
    value = loader.construct_sequence(node) if isinstance(node, yaml.SequenceNode) else loader.construct_mapping(node)
    return {"!reset": value}


ComposeLoader.add_constructor("!reset", _reset)


def compose(name: str) -> dict:
    return yaml.load((ROOT / name).read_text(), Loader=ComposeLoader)


@pytest.mark.parametrize("color, version", [("blue", "v1.0.0"), ("green", "v1.1.0")])
def test_each_color_compose_file_runs_one_color_on_the_shared_network(color, version):
    shipped = compose(f"docker-compose.{color}.yml")
    service = shipped["services"][color]
    assert service["build"]["args"] == {"PYTHON_IMAGE": "${PYTHON_IMAGE:-python:3.11-slim}", "MODEL_VERSION": version}
    assert service["image"] == "bluegreen-model-server:latest"
    assert service["environment"]["COLOR"] == color
    assert service["environment"]["MODEL_VERSION"] == f"${{MODEL_VERSION:-{version}}}"
    # Tokens from the caller's environment, never written in the file.
    assert service["environment"]["FEEDBACK_TOKEN"] == "${FEEDBACK_TOKEN:-}"
    assert service["environment"]["METRICS_TOKEN"] == "${METRICS_TOKEN:-}"
    assert "test" not in service["healthcheck"]          # the image's own, on /ready
    # A color is never public: its port is published on loopback only.
    assert all(port.startswith("127.0.0.1:") for port in service["ports"])
    assert shipped["networks"]["bluegreen"] == {"name": "bluegreen", "external": True}


def test_only_the_front_door_is_published_on_every_address():
    nginx = compose("docker-compose.nginx.yml")["services"]["nginx"]
    assert nginx["ports"] == ["8080:8080", "127.0.0.1:8081:8081"]
    assert nginx["stop_signal"] == "SIGQUIT"              # nginx's graceful stop
    assert nginx["volumes"] == ["${BLUEGREEN_RUN_DIR:-./.run}/nginx:/etc/bluegreen"]


@pytest.mark.parametrize("name, service, bind", [
    ("docker-compose.blue.host.yml", "blue", "127.0.0.1:${BLUEGREEN_BLUE_PORT:-8001}"),
    ("docker-compose.green.host.yml", "green", "127.0.0.1:${BLUEGREEN_GREEN_PORT:-8002}"),
    ("docker-compose.nginx.host.yml", "nginx", None),
])
def test_the_host_overrides_use_host_networking_on_loopback_and_publish_nothing(name, service, bind, tmp_path):
    override = compose(name)
    spec = override["services"][service]
    assert spec["network_mode"] == "host"
    assert spec["ports"] == {"!reset": []}
    assert "!reset" in spec["networks"] and override["networks"] == {"!reset": {}}
    assert spec.get("environment", {}).get("BIND") == bind
    # The two files as compose merges them (a reset drops the key) match the compose schema.
    merged = compose(name.replace(".host", ""))
    target = merged["services"][service]
    for key, value in spec.items():
        if isinstance(value, dict) and "!reset" in value:
            target.pop(key, None)
        elif key == "environment":
            target[key].update(value)
        else:
            target[key] = value
    merged.pop("networks")
    (tmp_path / "merged.yml").write_text(yaml.safe_dump(merged))
    result = run("check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(tmp_path / "merged.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


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
    # The service's URL is public and is a color itself: both tokens are set, and generated
    # by Render, never written here.
    assert {"key": "FEEDBACK_TOKEN", "generateValue": True} in service["envVars"]
    assert {"key": "METRICS_TOKEN", "generateValue": True} in service["envVars"]
    assert service["dockerContext"] == "."


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


@pytest.mark.parametrize("name", ["bluegreen.docker.toml", "bluegreen.docker-local.toml", "bluegreen.k8s.toml"])
def test_controller_configs_for_other_platforms_load(name):
    path = ROOT / "deploy" / name
    config = load_config(str(path), environ={})
    assert config.runtime.kind == "commands"
    commands = tomllib.loads(path.read_text())["runtime"]["commands"]
    assert "$color" in commands["start_color"] and "$version" in commands["start_color"]

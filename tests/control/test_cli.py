"""The installed `bluegreen` command: what it imports, what it prints, how it fails."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import skops.io
from sklearn.dummy import DummyClassifier

from app.training.data import iris_split
from tests.helpers import ROOT, free_ports
from utils.local_stack import cli_env

BIN = Path(sys.executable).parent
HEAVY = ("flask", "werkzeug", "numpy", "scipy", "sklearn", "onnxruntime", "joblib", "prometheus_client")


@pytest.fixture
def config(tmp_path, shipped_models):
    front, preview, blue, green = free_ports(4)
    path = tmp_path / "bluegreen.toml"
    path.write_text(f'run_dir = "run"\nmodels_dir = "{shipped_models}"\n[nginx]\nport = {front}\n'
                    f"preview_port = {preview}\n[colors.blue]\nports = [{blue}]\n[colors.green]\nports = [{green}]\n")
    return path


def bluegreen(*args, env=None, cwd=None):
    return subprocess.run([str(BIN / "bluegreen"), *args], capture_output=True, text=True, timeout=120,
                          env={**cli_env(), **(env or {})}, cwd=cwd)


def imported_modules(*args, cwd=None) -> set[str]:
    """Top-level modules the installed `bluegreen ARGS` imported (Python's -X importtime)."""
    result = bluegreen(*args, env={"PYTHONPROFILEIMPORTTIME": "1"}, cwd=cwd)
    names = re.findall(r"^import time:\s+\d+ \|\s+\d+ \| +(\S+)$", result.stderr, re.M)
    assert names, result.stderr[-2000:]
    return {name.split(".")[0] for name in names}


@pytest.mark.parametrize("args", [("--help",), ("status",)])
def test_the_controller_imports_no_server_or_numeric_code(config, args):
    modules = imported_modules("--config", str(config), *args, cwd=config.parent)
    assert "app" in modules
    assert sorted(modules & set(HEAVY)) == []


def test_status_with_nothing_running_says_so_and_writes_nothing(config):
    result = bluegreen("--config", str(config), "status")
    assert result.returncode == 0, result.stderr
    assert "blue  v1.0.0   down" in result.stdout and "phase: idle" in result.stdout
    assert not (config.parent / "run").exists()


def test_a_reader_that_stops_early_gets_no_error(config):
    # `bluegreen history | head -1`: the pipe closes before the command has printed everything.
    run = config.parent / "run"
    run.mkdir()
    event = {"action": "switch", "outcome": "succeeded", "reason": "x" * 200, "time": 1.0}
    (run / "history.jsonl").write_text((json.dumps(event) + "\n") * 2000)  # far more than a pipe holds
    reader = subprocess.Popen(["head", "-c", "1"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    writer = subprocess.Popen([str(BIN / "bluegreen"), "--config", str(config), "history"], env=cli_env(),
                              stdout=reader.stdin, stderr=subprocess.PIPE, text=True)
    reader.stdin.close()
    reader.wait(30)
    _, err = writer.communicate(timeout=60)
    assert (writer.returncode, err) == (0, "")


def test_a_failure_is_one_line_and_verbose_shows_the_causes(config):
    run = config.parent / "run"
    run.mkdir()
    (run / "state.json").write_text('{"format": 2, "active": "blue"}')
    result = bluegreen("--config", str(config), "status")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert re.match(r"bluegreen: .*run/state.json: unreadable state \(missing key 'previous'\); move it aside",
                    result.stderr)
    verbose = bluegreen("--config", str(config), "--verbose", "status")
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr and "KeyError" in verbose.stderr
    assert verbose.stderr.strip().splitlines()[-1] == result.stderr.strip()


def test_a_wrongly_typed_setting_is_refused_before_anything_runs(config):
    config.write_text(config.read_text() + '[gates]\nmin_accuracy = "0.9"\n')
    result = bluegreen("--config", str(config), "up")
    assert result.returncode == 1
    assert result.stderr == "bluegreen: config: gates.min_accuracy must be a number, got the string '0.9'\n"
    assert not (config.parent / "run").exists()


def test_register_prints_one_summary_line_and_the_card_with_json(config, shipped_models, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(shipped_models, models)
    config.write_text(config.read_text().replace(str(shipped_models), str(models)))
    x_train, _, y_train, _, _ = iris_split()
    skops.io.dump(DummyClassifier(strategy="most_frequent").fit(x_train, y_train), tmp_path / "m.skops")
    result = bluegreen("--config", str(config), "register", "v3.0.0", str(tmp_path / "m.skops"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == (f"registered v3.0.0 (DummyClassifier): holdout accuracy 0.3333, f1 0.1667; fast path "
                             f"none (served by scikit-learn); card {models}/iris_model_v3.0.0.json\n")
    again = bluegreen("--config", str(config), "register", "v3.0.1", str(tmp_path / "m.skops"), "--json")
    assert json.loads(again.stdout)["version"] == "v3.0.1"
    # A relative path names the file from where the command runs, not the project's directory.
    relative = bluegreen("--config", str(config), "register", "v3.0.2", "m.skops", cwd=tmp_path)
    assert relative.returncode == 0, relative.stderr


def test_lint_fails_when_the_controller_imports_the_server(tmp_path):
    # The contracts of pyproject.toml, run on a copy of the package with one forbidden import.
    shutil.copytree(ROOT / "app", tmp_path / "app", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}

    def lint():
        return subprocess.run([str(BIN / "lint-imports"), "--no-cache"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)

    assert lint().returncode == 0
    gates = tmp_path / "app" / "control" / "gates.py"
    gates.write_text(gates.read_text() + "\n\ndef predict_locally():\n    from app.server import predictors\n")
    result = lint()
    assert result.returncode != 0
    assert "The controller imports no server, training, web or numeric code BROKEN" in result.stdout
    assert "app.control.gates -> app.server" in result.stdout


def test_the_wheel_installs_the_command_the_template_and_the_dependencies(tmp_path):
    source = tmp_path / "source"  # setuptools builds in the source tree: build a copy
    shutil.copytree(ROOT / "app", source / "app", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "nginx", source / "nginx")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path),
                            str(source)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    wheel = zipfile.ZipFile(next(tmp_path.glob("*.whl")))
    names = wheel.namelist()
    assert any(n.endswith(".data/data/share/bluegreen/nginx.conf.j2") for n in names)
    assert "app/server/gunicorn_conf.py" in names and "app/control/cli.py" in names
    meta = wheel.read(next(n for n in names if n.endswith("METADATA"))).decode()
    entry = wheel.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "bluegreen = app.control.cli:main" in entry
    requires = {re.split(r"[<>=!\s;]", line.split(": ", 1)[1])[0].lower()
                for line in meta.splitlines() if line.startswith("Requires-Dist: ")}
    assert {"flask", "gunicorn", "jinja2", "numpy", "onnxruntime", "prometheus-client", "scikit-learn",
            "skl2onnx"} <= requires


def test_a_config_file_elsewhere_reads_the_project_s_models_and_an_unknown_version_names_where_it_looked(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    front, preview, blue, green = free_ports(4)
    ports = (f"[nginx]\nport = {front}\npreview_port = {preview}\n[colors.blue]\nports = [{blue}]\n"
             f"[colors.green]\nports = [{green}]\n")
    config = elsewhere / "x.toml"
    config.write_text(ports)
    models = bluegreen("--config", str(config), "models", "--json", cwd=tmp_path)
    assert models.returncode == 0, models.stderr
    assert {"v1.0.0", "v1.1.0"} <= {row["version"] for row in json.loads(models.stdout)}  # the project's models
    config.write_text('models_dir = "models"\n' + ports.replace("ports = [", 'version = "v9.9.9"\nports = [', 1)
                      .replace(f"ports = [{green}]", f'version = "v9.9.8"\nports = [{green}]'))
    up = bluegreen("--config", str(config), "up", cwd=tmp_path)
    assert up.returncode == 1
    assert up.stderr == (f"bluegreen: unknown version v9.9.9: no model card iris_model_v9.9.9.json in "
                         f"{elsewhere / 'models'} (models_dir = 'models' in {config}, read from that file's folder)\n")

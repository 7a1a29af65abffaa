"""A color without scikit-learn installed (the runtime image): ONNX is served, nothing is unpickled.

Each case runs in a fresh interpreter where scikit-learn is absent: its import fails and
the package metadata says it is not installed, as in the image. The image itself is
checked the same way by ``make test-containers``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import ROOT

# Makes scikit-learn look uninstalled to this interpreter: no import, no distribution.
HIDE_SKLEARN = """
import importlib.metadata, sys
_version = importlib.metadata.version
def _without_sklearn(name):
    if name == "scikit-learn":
        raise importlib.metadata.PackageNotFoundError(name)
    return _version(name)
importlib.metadata.version = _without_sklearn
for name in ("sklearn", "scipy", "joblib"):
    sys.modules[name] = None
"""


def run_without_sklearn(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", HIDE_SKLEARN + code], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


def test_a_verified_onnx_export_is_served_without_sklearn(shipped_models):
    result = run_without_sklearn(
        "import json\nfrom app.server import create_app\n"
        f"app = create_app({{'MODELS_DIR': {str(shipped_models)!r}, 'MODEL_VERSION': 'v1.0.0'}})\n"
        "answer = app.test_client().post('/predict', json={'x': [5.1, 3.5, 1.4, 0.2]}).get_json()\n"
        "print(json.dumps([app.extensions['model_server'].predictor.name, answer['prediction']]))\n"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == ["onnx", "setosa"]


@pytest.mark.parametrize("settings, why", [
    ({"PREDICTOR": "sklearn"}, "scikit-learn requested"),
    ({}, "no usable ONNX export"),
])
def test_without_sklearn_the_pickled_model_is_refused_with_one_line(models_dir, settings, why):
    if not settings:  # the card has no export: only the pickle could serve
        card_path = models_dir / "iris_model_v1.0.0.json"
        card = json.loads(card_path.read_text())
        card["fast_path"] = {"format": None, "reason": "no export"}
        card_path.write_text(json.dumps(card))
    result = run_without_sklearn(
        "from app.errors import ModelLoadError\n"
        "from app.server import create_app\n"
        "try:\n"
        f"    create_app({{'MODELS_DIR': {str(models_dir)!r}, 'MODEL_VERSION': 'v1.0.0', **{settings!r}}})\n"
        "except ModelLoadError as exc:\n"
        "    print(exc)\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (f"{models_dir}/iris_model_v1.0.0.joblib: scikit-learn is not installed here: "
                                     "only a verified ONNX export can be served, not the pickled model"), why


def test_a_tampered_artifact_is_still_refused_without_sklearn(models_dir):
    (models_dir / "iris_model_v1.0.0.joblib").write_bytes(b"changed")
    result = run_without_sklearn(
        "from app.artifacts.cards import verify_artifact\n"
        "from app.errors import ModelLoadError\n"
        "try:\n"
        f"    verify_artifact({str(models_dir)!r}, 'v1.0.0')\n"
        "except ModelLoadError as exc:\n"
        "    print(exc)\n"
    )
    assert "does not match the card" in result.stdout, result.stdout + result.stderr

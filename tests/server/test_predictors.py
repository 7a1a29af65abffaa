"""The fast path reproduces scikit-learn, or the server falls back and says why."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from app.artifacts.cards import verify_artifact
from app.artifacts.loading import load_model
from app.errors import ModelLoadError
from app.server import create_app
from app.server.predictors import build_predictor
from app.training.data import holdout
from tests.helpers import ROOT


@pytest.mark.parametrize("version", ["v1.0.0", "v1.1.0"])
def test_fast_path_matches_sklearn_on_the_holdout(shipped_models, version):
    card = verify_artifact(shipped_models, version)
    predictor, reason = build_predictor(card, shipped_models)
    assert predictor.name == "onnx", reason
    rows, _ = holdout()
    expected = load_model(shipped_models, version).model.predict_proba(rows)
    got = predictor.predict_proba(rows)
    assert np.array_equal(got.argmax(axis=1), expected.argmax(axis=1))
    assert np.max(np.abs(got - expected)) < 1e-4


def test_the_card_reference_is_sklearn_on_the_holdout(shipped_models):
    card = verify_artifact(shipped_models, "v1.0.0")
    rows, _ = holdout()
    assert np.allclose(card["reference"]["rows"], rows)
    expected = load_model(shipped_models, "v1.0.0").model.predict_proba(rows)
    assert np.allclose(card["reference"]["probabilities"], expected)


def test_a_tampered_onnx_export_refuses_the_version(models_dir):
    # It used to be served around (scikit-learn instead, silently): a changed file the
    # card names is tampering, and the color must not start (issue 11, point 7).
    (models_dir / "iris_model_v1.0.0.onnx").write_bytes(b"garbage")
    with pytest.raises(ModelLoadError, match=r"iris_model_v1.0.0.onnx: sha256 .* does not match the card's"):
        verify_artifact(models_dir, "v1.0.0")
    with pytest.raises(ModelLoadError, match="does not match the card's"):
        create_app({"MODELS_DIR": str(models_dir), "MODEL_VERSION": "v1.0.0"})


def test_a_missing_onnx_export_the_card_lists_refuses_the_version(models_dir):
    (models_dir / "iris_model_v1.0.0.onnx").unlink()
    with pytest.raises(ModelLoadError, match=r"iris_model_v1.0.0.onnx: ONNX export missing \(the card lists it\)"):
        verify_artifact(models_dir, "v1.0.0")


def test_a_card_pointing_elsewhere_for_its_export_is_refused(models_dir):
    card_path = models_dir / "iris_model_v1.0.0.json"
    card = json.loads(card_path.read_text())
    card["fast_path"]["artifact"] = "../iris_model_v1.1.0.onnx"
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelLoadError, match="the card's fast path names '../iris_model_v1.1.0.onnx', not "
                                             "iris_model_v1.0.0.onnx"):
        verify_artifact(models_dir, "v1.0.0")


def test_export_that_disagrees_falls_back_to_sklearn(models_dir):
    # The RandomForest's card naming the LogisticRegression's ONNX export, copied in its place.
    (models_dir / "iris_model_v1.0.0.onnx").write_bytes((models_dir / "iris_model_v1.1.0.onnx").read_bytes())
    card_path = models_dir / "iris_model_v1.0.0.json"
    card = json.loads(card_path.read_text())
    card["fast_path"]["sha256"] = json.loads((models_dir / "iris_model_v1.1.0.json").read_text())["fast_path"]["sha256"]
    card_path.write_text(json.dumps(card))
    predictor, reason = build_predictor(verify_artifact(models_dir, "v1.0.0"), models_dir)
    assert predictor.name == "sklearn"
    assert "differ" in reason or "disagrees" in reason


def test_sklearn_can_be_forced(shipped_models):
    predictor, reason = build_predictor(verify_artifact(shipped_models, "v1.0.0"), shipped_models, mode="sklearn")
    assert predictor.name == "sklearn" and reason == "scikit-learn requested by configuration"


def test_the_fast_path_server_never_imports_sklearn(shipped_models):
    # scikit-learn and SciPy are ~105 MB resident; a color served by ONNX does without them.
    code = (
        "import sys; from app.server import create_app; "
        f"app = create_app({{'MODELS_DIR': {str(shipped_models)!r}}}); "
        "print(app.extensions['model_server'].predictor.name, 'sklearn' in sys.modules, 'scipy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.stdout.split() == ["onnx", "False", "False"], out.stderr

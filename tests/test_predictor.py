"""The fast path agrees with scikit-learn, or the server falls back and says why."""

from __future__ import annotations

import json

import numpy as np
import pytest

from app.model_store import load_model
from app.predictor import build_predictor
from app.training import holdout


@pytest.mark.parametrize("version", ["v1.0.0", "v1.1.0"])
def test_fast_path_matches_sklearn_on_the_holdout(shipped_models, version):
    loaded = load_model(shipped_models, version)
    predictor, reason = build_predictor(loaded)
    assert predictor.name == "onnx", reason
    rows, _ = holdout()
    expected = loaded.model.predict_proba(rows)
    got = predictor.predict_proba(rows)
    assert np.array_equal(got.argmax(axis=1), expected.argmax(axis=1))
    assert np.max(np.abs(got - expected)) < 1e-4


def test_tampered_onnx_export_falls_back_to_sklearn(models_dir):
    (models_dir / "iris_model_v1.0.0.onnx").write_bytes(b"garbage")
    predictor, reason = build_predictor(load_model(models_dir, "v1.0.0"))
    assert predictor.name == "sklearn"
    assert reason.endswith("ONNX export does not match the card's sha256")


def test_export_that_disagrees_falls_back_to_sklearn(models_dir):
    # Serve the RandomForest's artifact with the LogisticRegression's ONNX export.
    card_path = models_dir / "iris_model_v1.0.0.json"
    card = json.loads(card_path.read_text())
    other = json.loads((models_dir / "iris_model_v1.1.0.json").read_text())
    card["fast_path"] = other["fast_path"]
    card_path.write_text(json.dumps(card))
    predictor, reason = build_predictor(load_model(models_dir, "v1.0.0"))
    assert predictor.name == "sklearn"
    assert "differ" in reason or "disagrees" in reason


def test_sklearn_can_be_forced(shipped_models):
    predictor, reason = build_predictor(load_model(shipped_models, "v1.0.0"), mode="sklearn")
    assert predictor.name == "sklearn" and reason == "scikit-learn requested by configuration"

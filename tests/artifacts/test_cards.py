"""Model cards: verification before anything is unpickled, and each refusal."""

from __future__ import annotations

import json

import pytest

from app.artifacts.loading import load_model
from app.errors import ModelLoadError


def card(models_dir, version="v1.0.0"):
    return json.loads((models_dir / f"iris_model_{version}.json").read_text())


def test_tampered_artifact_is_refused_before_unpickling(models_dir):
    artifact = models_dir / "iris_model_v1.0.0.joblib"
    artifact.write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")  # a pickle that would run code
    with pytest.raises(ModelLoadError, match=r"iris_model_v1.0.0.joblib: sha256 .* does not match the card"):
        load_model(models_dir, "v1.0.0")


def test_missing_card_is_refused(models_dir):
    (models_dir / "iris_model_v1.0.0.json").unlink()
    with pytest.raises(ModelLoadError, match="model card missing; the artifact is not trusted without it"):
        load_model(models_dir, "v1.0.0")


def test_unknown_version_is_refused(models_dir):
    with pytest.raises(ModelLoadError, match=r"unknown version v9.9.9 \(no model card\)"):
        load_model(models_dir, "v9.9.9")


def test_card_for_another_version_is_refused(models_dir):
    (models_dir / "iris_model_v1.0.0.json").write_text(json.dumps(card(models_dir, "v1.1.0")))
    with pytest.raises(ModelLoadError, match="card is for version v1.1.0, not v1.0.0"):
        load_model(models_dir, "v1.0.0")


def test_other_sklearn_version_is_refused(models_dir):
    c = card(models_dir)
    c["sklearn_version"] = "0.24.2"
    (models_dir / "iris_model_v1.0.0.json").write_text(json.dumps(c))
    with pytest.raises(ModelLoadError, match="trained with scikit-learn 0.24.2, this installation has"):
        load_model(models_dir, "v1.0.0")


@pytest.mark.parametrize("version", ["1.0.0", "v1.0", "../v1.0.0", "v1.0.0-beta", ""])
def test_invalid_version_string_is_refused(models_dir, version):
    with pytest.raises(ModelLoadError, match="invalid version"):
        load_model(models_dir, version)

"""Training and registration: cards that describe the holdout evaluation, and each refusal."""

from __future__ import annotations

import json

import joblib
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LinearRegression

from app.artifacts.cards import list_versions
from app.artifacts.loading import load_model
from app.errors import ModelLoadError
from app.training.cards import add_holdout_labels
from app.training.data import holdout, iris_split
from app.training.register import register_version


def card(models_dir, version="v1.0.0"):
    return json.loads((models_dir / f"iris_model_{version}.json").read_text())


def test_shipped_cards_describe_holdout_evaluation(shipped_models):
    rf, lr = card(shipped_models, "v1.0.0"), card(shipped_models, "v1.1.0")
    assert rf["algorithm"] == "RandomForestClassifier" and lr["algorithm"] == "LogisticRegression"
    x_hold, y_hold = holdout()
    assert rf["holdout"]["size"] == len(y_hold) == 45
    for c in (rf, lr):
        assert set(c["metrics"]) >= {"accuracy", "f1_score", "precision", "recall"}
        assert c["class_names"] == ["setosa", "versicolor", "virginica"]
        assert set(c["training_stats"]["petal width (cm)"]) == {"mean", "std", "min", "q25", "q50", "q75", "max"}
        assert len(c["sha256"]) == 64


def test_holdout_is_never_trained_on():
    x_train, x_hold, _, _, _ = iris_split()
    train_rows = {tuple(r) for r in x_train}
    # iris has duplicate rows; at most those may coincide, not the holdout itself.
    assert sum(tuple(r) in train_rows for r in x_hold) <= 3


def test_metrics_are_recomputable_from_the_artifact(shipped_models):
    loaded = load_model(shipped_models, "v1.1.0")
    x_hold, y_hold = holdout()
    names = loaded.card["class_names"]
    predicted = [names[i] for i in loaded.model.predict_proba(x_hold).argmax(axis=1)]
    accuracy = sum(p == t for p, t in zip(predicted, y_hold)) / len(y_hold)
    assert accuracy == pytest.approx(loaded.card["metrics"]["accuracy"])


def fitted(model, n_features=4):
    x_train, _, y_train, _, _ = iris_split()
    return model.fit(x_train[:, :n_features], y_train)


def test_register_adds_a_version_with_its_card(models_dir, tmp_path):
    path = tmp_path / "dummy.joblib"
    joblib.dump(fitted(DummyClassifier(strategy="most_frequent")), path)
    new_card = register_version("v2.0.0", path, models_dir, trust_pickle=True)
    assert new_card["algorithm"] == "DummyClassifier"
    assert new_card["metrics"]["accuracy"] == pytest.approx(1 / 3)
    assert new_card["fast_path"]["format"] is None
    assert "v2.0.0" in [c["version"] for c in list_versions(models_dir)]
    assert load_model(models_dir, "v2.0.0").version == "v2.0.0"


@pytest.mark.parametrize("make, error", [
    (lambda: fitted(LinearRegression()), "LinearRegression is not a classifier with predict_proba"),
    (lambda: DummyClassifier(), "DummyClassifier is not fitted"),
    (lambda: fitted(DummyClassifier(), n_features=3), "the model expects 3 features; the iris data has 4"),
    (lambda: {"not": "a model"}, "dict is not a classifier with predict_proba"),
])
def test_register_refuses_what_is_not_a_fitted_iris_classifier(models_dir, tmp_path, make, error):
    path = tmp_path / "model.joblib"
    joblib.dump(make(), path)
    with pytest.raises(ModelLoadError, match=error):
        register_version("v2.0.0", path, models_dir, trust_pickle=True)
    assert not (models_dir / "iris_model_v2.0.0.json").exists()


def test_register_refuses_an_existing_version(models_dir, tmp_path):
    path = tmp_path / "model.joblib"
    joblib.dump(fitted(DummyClassifier()), path)
    with pytest.raises(ModelLoadError, match="version v1.0.0 already exists"):
        register_version("v1.0.0", path, models_dir, trust_pickle=True)


def test_register_refuses_a_file_that_is_not_joblib(models_dir, tmp_path):
    path = tmp_path / "model.joblib"
    path.write_text("hello")
    with pytest.raises(ModelLoadError, match="not a joblib file"):
        register_version("v2.0.0", path, models_dir, trust_pickle=True)


def test_cards_written_before_labels_were_recorded_get_them_and_nothing_else_changes(models_dir):
    path = models_dir / "iris_model_v1.0.0.json"
    old = card(models_dir)
    del old["reference"]["labels"]
    path.write_text(json.dumps(old))
    assert add_holdout_labels(models_dir) == ["v1.0.0"]
    upgraded = card(models_dir)
    assert upgraded["reference"]["labels"] == holdout()[1]
    assert {k: v for k, v in upgraded.items() if k != "reference"} == {k: v for k, v in old.items() if k != "reference"}
    assert load_model(models_dir, "v1.0.0").version == "v1.0.0"  # the checksum still holds
    assert add_holdout_labels(models_dir) == []

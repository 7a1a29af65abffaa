"""Each card carries its training values, which `bluegreen drift` compares live inputs with."""

from __future__ import annotations

import json
import shutil

from app.training.cards import add_training_values
from app.training.data import iris_split


def test_cards_carry_each_features_sorted_training_values(shipped_models):
    x_train, _, _, _, data = iris_split()
    card = json.loads((shipped_models / "iris_model_v1.1.0.json").read_text())
    assert set(card["training_values"]) == {str(n) for n in data.feature_names}
    for i, name in enumerate(card["feature_names"]):
        assert card["training_values"][name] == sorted(x_train[:, i].tolist())


def test_a_card_written_before_them_gets_them_without_touching_the_model(shipped_models, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(shipped_models, models)
    path = models / "iris_model_v1.0.0.json"
    card = json.loads(path.read_text())
    values = card.pop("training_values")
    path.write_text(json.dumps(card))
    artifact = (models / "iris_model_v1.0.0.joblib").read_bytes()
    assert add_training_values(models) == ["v1.0.0"]
    upgraded = json.loads(path.read_text())
    assert upgraded["training_values"] == values and upgraded["sha256"] == card["sha256"]
    assert (models / "iris_model_v1.0.0.joblib").read_bytes() == artifact
    assert add_training_values(models) == []  # once only


def test_a_card_of_other_training_data_is_left_alone(shipped_models, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(shipped_models, models)
    path = models / "iris_model_v1.0.0.json"
    card = json.loads(path.read_text())
    del card["training_values"]
    card["training_stats"]["sepal length (cm)"]["mean"] += 1.0
    path.write_text(json.dumps(card))
    assert add_training_values(models) == []
    assert "training_values" not in json.loads(path.read_text())

"""Model cards: a version's holdout evaluation, checksums and fast-path export.

Every version, shipped or registered, is evaluated on the same stratified holdout
(``app/training/data.py``), which no shipped model sees in training, and described by a
model card (JSON) beside its artifact. The card is written last: a version exists only
once its card does.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import joblib
import numpy as np
import sklearn
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from app.artifacts.cards import list_versions
from app.artifacts.fsutil import atomic_write_bytes, atomic_write_json, sha256_file
from app.artifacts.loading import check_classifier
from app.artifacts.versions import artifact_path, card_path, check_version_string, onnx_path
from app.errors import ModelLoadError
from app.training.data import HOLDOUT_FRACTION, SEED, holdout, iris_split


def _json_params(model) -> dict:
    params = {}
    for key, value in sorted(model.get_params(deep=False).items()):
        params[key] = value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
    return params


def _feature_stats(x_train: np.ndarray, names) -> dict:
    stats = {}
    for i, name in enumerate(names):
        column = x_train[:, i]
        q = np.quantile(column, [0.0, 0.25, 0.5, 0.75, 1.0])
        stats[name] = {
            "mean": float(column.mean()),
            "std": float(column.std()),
            "min": float(q[0]),
            "q25": float(q[1]),
            "q50": float(q[2]),
            "q75": float(q[3]),
            "max": float(q[4]),
        }
    return stats


def _training_values(x_train: np.ndarray, names) -> dict:
    """What `bluegreen drift` compares live inputs with: each feature's sorted training values
    (its bins are cut at their quantiles, and a two-sample test needs the sample itself;
    iris has 105 training rows)."""
    return {name: sorted(float(v) for v in x_train[:, i]) for i, name in enumerate(names)}


def class_names_for(model, target_names) -> list[str]:
    """Map a classifier's ``classes_`` to iris class names, or refuse."""
    names = [str(n) for n in target_names]
    classes = getattr(model, "classes_", None)
    if classes is None:
        raise ModelLoadError("the model has no classes_: it is not a fitted classifier")
    mapped = []
    for label in classes:
        if isinstance(label, (int, np.integer)) and 0 <= int(label) < len(names):
            mapped.append(names[int(label)])
        elif str(label) in names:
            mapped.append(str(label))
        else:
            raise ModelLoadError(f"the model's class {label!r} is not an iris class {names}")
    return mapped


def export_onnx(model, path: Path) -> dict:
    """Convert ``model`` to ONNX at ``path``; describe the result for the card.

    A model type skl2onnx cannot convert is not an error: the card records why, and the
    server serves it through scikit-learn.
    """
    try:
        from skl2onnx import to_onnx

        onx = to_onnx(
            model,
            np.zeros((1, model.n_features_in_), dtype=np.float32),
            options={id(model): {"zipmap": False}},
        )
    except Exception as exc:  # any converter failure means "no fast path", with the reason
        return {"format": None, "reason": f"skl2onnx cannot convert {type(model).__name__}: {exc}"}
    atomic_write_bytes(path, onx.SerializeToString())
    return {"format": "onnx", "artifact": path.name, "sha256": sha256_file(path)}


def build_card(model, version: str, artifact: Path, fast_path: dict, x_train, data) -> dict:
    """Evaluate ``model`` on the holdout and describe it."""
    x_hold, y_names = holdout()
    class_names = class_names_for(model, data.target_names)
    probabilities = model.predict_proba(x_hold)
    predicted = [class_names[i] for i in np.argmax(probabilities, axis=1)]
    weighted = {"average": "weighted", "zero_division": 0}
    return {
        "name": "iris",
        "version": version,
        "algorithm": type(model).__name__,
        "params": _json_params(model),
        "feature_names": [str(n) for n in data.feature_names],
        "class_names": class_names,
        "sklearn_version": sklearn.__version__,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "artifact": artifact.name,
        "sha256": sha256_file(artifact),
        "fast_path": fast_path,
        "holdout": {"size": len(y_names), "fraction": HOLDOUT_FRACTION, "seed": SEED, "stratified": True},
        # scikit-learn's own answers on the holdout: the server checks the fast path
        # against them at load time without importing scikit-learn (docs/adr/0006), and
        # the controller's smoke gate sends the rows and checks the accuracy on the labels.
        "reference": {"rows": x_hold.tolist(), "labels": y_names, "probabilities": probabilities.tolist()},
        "metrics": {
            "accuracy": float(accuracy_score(y_names, predicted)),
            "f1_score": float(f1_score(y_names, predicted, **weighted)),
            "precision": float(precision_score(y_names, predicted, **weighted)),
            "recall": float(recall_score(y_names, predicted, **weighted)),
            "average": "weighted",
        },
        "training_stats": _feature_stats(x_train, [str(n) for n in data.feature_names]),
        "training_values": _training_values(x_train, [str(n) for n in data.feature_names]),
    }


def save_version(model, version: str, models_dir: Path, source: dict | None = None) -> dict:
    """Write artifact, ONNX export and card for ``model`` as ``version``; return the card.

    ``source`` says where a registered model came from (its file and format), for the card.
    The card is written last: a version exists only once its card does.
    """
    check_version_string(version)
    x_train, _, _, _, data = iris_split()
    check_classifier(model, x_train.shape[1])
    class_names_for(model, data.target_names)
    models_dir = Path(models_dir)
    artifact = artifact_path(models_dir, version)
    buffer = _dump_bytes(model)
    atomic_write_bytes(artifact, buffer)
    fast_path = export_onnx(model, onnx_path(models_dir, version))
    card = build_card(model, version, artifact, fast_path, x_train, data)
    if source:
        card["source"] = source
    atomic_write_json(card_path(models_dir, version), card)
    return card


def _dump_bytes(model) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()


def add_training_values(models_dir: Path) -> list[str]:
    """Give cards written before `bluegreen drift` existed each feature's training values; return
    those changed. Every card describes the same fixed training split, so they are added only
    where the card's training means are that split's; the artifact is untouched."""
    x_train, _, _, _, data = iris_split()
    names = [str(n) for n in data.feature_names]
    changed = []
    for card in list_versions(models_dir):
        stats = card.get("training_stats")
        if "training_values" in card or not isinstance(stats, dict) or set(stats) != set(names):
            continue
        if not all(isinstance(stats[n], dict) and np.isclose(stats[n].get("mean", np.nan), x_train[:, i].mean())
                   for i, n in enumerate(names)):
            continue
        card["training_values"] = _training_values(x_train, names)
        atomic_write_json(card_path(models_dir, card["version"]), card)
        changed.append(card["version"])
    return changed


def add_holdout_labels(models_dir: Path) -> list[str]:
    """Give cards written before labels were recorded their holdout labels; return those changed.

    The labels belong to the fixed holdout, not to a model: the artifact and its checksum
    are untouched. A card evaluated on other rows is left alone.
    """
    x_hold, labels = holdout()
    changed = []
    for card in list_versions(models_dir):
        reference = card.get("reference")
        if not isinstance(reference, dict) or "labels" in reference or reference.get("rows") != x_hold.tolist():
            continue
        reference["labels"] = labels
        atomic_write_json(card_path(models_dir, card["version"]), card)
        changed.append(card["version"])
    return changed

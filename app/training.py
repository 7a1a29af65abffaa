"""Training and model cards.

The shipped versions are trained here, reproducibly, on the iris data scikit-learn ships.
Every version, shipped or registered, is evaluated on the same stratified holdout, which
no shipped model ever sees in training, and described by a model card (JSON) beside its
artifact. ``contrib/prepare_dir.sh`` and ``bluegreen register`` both end up here.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import joblib
import numpy as np
import sklearn
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score
from sklearn.model_selection import train_test_split

from app.errors import ModelLoadError
from app.fsutil import atomic_write_bytes, atomic_write_json, sha256_file
from app.model_files import SHIPPED_VERSIONS, artifact_path, card_path, check_version_string, onnx_path

SEED = 0
HOLDOUT_FRACTION = 0.3

SHIPPED = {
    SHIPPED_VERSIONS[0]: lambda: RandomForestClassifier(n_estimators=100, random_state=SEED, n_jobs=1),
    SHIPPED_VERSIONS[1]: lambda: LogisticRegression(max_iter=1000, random_state=SEED),
}


def iris_split():
    """Return (X_train, X_holdout, y_train, y_holdout, dataset) with the fixed seed."""
    data = load_iris()
    x_train, x_hold, y_train, y_hold = train_test_split(
        data.data, data.target, test_size=HOLDOUT_FRACTION, stratify=data.target, random_state=SEED
    )
    return x_train, x_hold, y_train, y_hold, data


def holdout():
    """Return the holdout rows and their class names, as used for every card."""
    _, x_hold, _, y_hold, data = iris_split()
    return x_hold, [str(data.target_names[i]) for i in y_hold]


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


def check_classifier(model, n_features: int) -> None:
    """Refuse objects that are not fitted classifiers over ``n_features`` features."""
    if not (hasattr(model, "predict_proba") and hasattr(model, "predict")):
        raise ModelLoadError(f"{type(model).__name__} is not a classifier with predict_proba")
    if not hasattr(model, "classes_"):
        raise ModelLoadError(f"{type(model).__name__} is not fitted (no classes_)")
    got = getattr(model, "n_features_in_", None)
    if got != n_features:
        raise ModelLoadError(f"the model expects {got} features; the iris data has {n_features}")


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
        # against them at load time without importing scikit-learn (docs/adr/0006).
        "reference": {"rows": x_hold.tolist(), "probabilities": probabilities.tolist()},
        "metrics": {
            "accuracy": float(accuracy_score(y_names, predicted)),
            "f1_score": float(f1_score(y_names, predicted, **weighted)),
            "precision": float(precision_score(y_names, predicted, **weighted)),
            "recall": float(recall_score(y_names, predicted, **weighted)),
            "average": "weighted",
        },
        "training_stats": _feature_stats(x_train, [str(n) for n in data.feature_names]),
    }


def save_version(model, version: str, models_dir: Path) -> dict:
    """Write artifact, ONNX export and card for ``model`` as ``version``; return the card.

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
    atomic_write_json(card_path(models_dir, version), card)
    return card


def _dump_bytes(model) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()


def train_shipped(models_dir: Path, force: bool = False) -> list[str]:
    """Train the shipped versions that are missing (all with ``force``); return those written."""
    written = []
    x_train, _, y_train, _, _ = iris_split()
    for version, make in SHIPPED.items():
        if not force and card_path(models_dir, version).exists():
            continue
        model = make().fit(x_train, y_train)
        save_version(model, version, models_dir)
        written.append(version)
    return written


def register_version(version: str, model_file: Path, models_dir: Path) -> dict:
    """Add a model trained elsewhere as ``version``; return its card."""
    check_version_string(version)
    if card_path(models_dir, version).exists():
        raise ModelLoadError(f"version {version} already exists in {models_dir}")
    model_file = Path(model_file)
    if not model_file.is_file():
        raise ModelLoadError(f"{model_file}: no such file")
    try:
        model = joblib.load(model_file)
    except Exception as exc:
        raise ModelLoadError(f"{model_file}: not a joblib file ({type(exc).__name__}: {exc})") from exc
    return save_version(model, version, models_dir)

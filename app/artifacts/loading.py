"""Unpickling a verified artifact: the server's fallback path and registration.

Only the server and training import this module (the controller never unpickles).
scikit-learn and joblib are imported when a model is actually loaded.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from app.artifacts.cards import verify_artifact
from app.artifacts.versions import artifact_path, sklearn_version
from app.errors import ModelLoadError


@dataclass
class LoadedModel:
    """A verified model and its card."""

    card: dict
    model: object
    models_dir: Path

    @property
    def version(self) -> str:
        return self.card["version"]


def check_classifier(model, n_features: int) -> None:
    """Refuse objects that are not fitted classifiers over ``n_features`` features."""
    if not (hasattr(model, "predict_proba") and hasattr(model, "predict")):
        raise ModelLoadError(f"{type(model).__name__} is not a classifier with predict_proba")
    if not hasattr(model, "classes_"):
        raise ModelLoadError(f"{type(model).__name__} is not fitted (no classes_)")
    got = getattr(model, "n_features_in_", None)
    if got != n_features:
        raise ModelLoadError(f"the model expects {got} features; the iris data has {n_features}")


def load_model(models_dir: Path, version: str) -> LoadedModel:
    """Verify, then unpickle, the model of ``version``."""
    models_dir = Path(models_dir)
    card = verify_artifact(models_dir, version)
    path = artifact_path(models_dir, version)
    if not sklearn_version():
        raise ModelLoadError(f"{path}: scikit-learn is not installed here: only a verified ONNX export "
                             "can be served, not the pickled model")
    import joblib
    import sklearn

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", sklearn.exceptions.InconsistentVersionWarning)
            model = joblib.load(path)
        check_classifier(model, len(card["feature_names"]))
    except ModelLoadError as exc:
        raise ModelLoadError(f"{path}: {exc}") from exc
    except Exception as exc:
        raise ModelLoadError(f"{path}: cannot be loaded ({type(exc).__name__}: {exc})") from exc
    if hasattr(model, "n_jobs"):
        # Forests fan out to joblib on every call; one job is faster for request-sized input.
        model.n_jobs = 1
    return LoadedModel(card=card, model=model, models_dir=models_dir)

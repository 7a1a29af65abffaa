"""Model loading and verification.

An artifact is trusted only through its card: the card must exist, name the requested
version and the installed scikit-learn, and carry the artifact's sha256, which is checked
BEFORE the file is unpickled (unpickling runs arbitrary code). Any refusal is a
``ModelLoadError`` whose one-line message names the file and the reason.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

from app.errors import ModelLoadError
from app.fsutil import sha256_file
from app.model_files import artifact_path, card_path, check_version_string, sklearn_version

REQUIRED_CARD_KEYS = ("version", "sha256", "sklearn_version", "feature_names", "class_names", "metrics")


@dataclass
class LoadedModel:
    """A verified model and its card."""

    card: dict
    model: object
    models_dir: Path

    @property
    def version(self) -> str:
        return self.card["version"]


def read_card(models_dir: Path, version: str) -> dict:
    """Return the card of ``version``, or refuse with the reason."""
    check_version_string(version)
    path = card_path(models_dir, version)
    if not path.is_file():
        if artifact_path(models_dir, version).is_file():
            raise ModelLoadError(f"{path}: model card missing; the artifact is not trusted without it")
        raise ModelLoadError(f"{path}: unknown version {version} (no model card)")
    try:
        card = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path}: unreadable model card ({exc})") from exc
    missing = [key for key in REQUIRED_CARD_KEYS if key not in card]
    if missing:
        raise ModelLoadError(f"{path}: model card lacks {', '.join(missing)}")
    if card["version"] != version:
        raise ModelLoadError(f"{path}: card is for version {card['version']}, not {version}")
    return card


def verify_artifact(models_dir: Path, version: str) -> dict:
    """Check card, scikit-learn version and checksum without unpickling; return the card."""
    card = read_card(models_dir, version)
    path = artifact_path(models_dir, version)
    if card["sklearn_version"] != sklearn_version():
        raise ModelLoadError(
            f"{path}: trained with scikit-learn {card['sklearn_version']}, "
            f"this server runs {sklearn_version()}; retrain or register it again"
        )
    if not path.is_file():
        raise ModelLoadError(f"{path}: artifact missing")
    digest = sha256_file(path)
    if digest != card["sha256"]:
        raise ModelLoadError(f"{path}: sha256 {digest[:12]}... does not match the card's {card['sha256'][:12]}...")
    return card


def load_model(models_dir: Path, version: str) -> LoadedModel:
    """Verify, then unpickle, the model of ``version``."""
    import joblib
    import sklearn

    from app.training import check_classifier

    models_dir = Path(models_dir)
    card = verify_artifact(models_dir, version)
    path = artifact_path(models_dir, version)
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


def list_versions(models_dir: Path) -> list[dict]:
    """Return the cards found in ``models_dir``, sorted by version."""
    cards = []
    for path in sorted(Path(models_dir).glob("iris_model_v*.json")):
        try:
            cards.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return sorted(cards, key=lambda card: [int(p) for p in card.get("version", "v0.0.0")[1:].split(".")])

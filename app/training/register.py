"""Registering a model trained elsewhere as a new version."""

from __future__ import annotations

from pathlib import Path

import joblib

from app.artifacts.versions import card_path, check_version_string
from app.errors import ModelLoadError
from app.training.cards import save_version


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


def summary_line(card: dict, models_dir: Path) -> str:
    """One line for a registered version: algorithm, holdout metrics, fast path, card file."""
    metrics = card["metrics"]
    fast = (card.get("fast_path") or {}).get("format") or "none (served by scikit-learn)"
    return (f"registered {card['version']} ({card['algorithm']}): holdout accuracy {metrics['accuracy']:.4f}, "
            f"f1 {metrics['f1_score']:.4f}; fast path {fast}; card {card_path(models_dir, card['version'])}")

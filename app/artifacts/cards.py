"""Model cards and verification before anything is unpickled.

An artifact is trusted only through its card: the card must exist, name the requested
version and the installed scikit-learn, and carry the artifact's sha256, which is checked
BEFORE the file is unpickled (unpickling runs arbitrary code); the ONNX export it names
is checked the same way. Any refusal is a
``ModelLoadError`` whose one-line message names the file and the reason.
"""

from __future__ import annotations

import json
from pathlib import Path

from app.artifacts.fsutil import sha256_file
from app.artifacts.versions import (
    artifact_path,
    card_path,
    check_version_string,
    onnx_path,
    sklearn_version,
    version_key,
)
from app.errors import ModelLoadError

REQUIRED_CARD_KEYS = ("version", "sha256", "sklearn_version", "feature_names", "class_names", "metrics")


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
    if not isinstance(card, dict):
        raise ModelLoadError(f"{path}: unreadable model card (not a JSON object)")
    missing = [key for key in REQUIRED_CARD_KEYS if key not in card]
    if missing:
        raise ModelLoadError(f"{path}: model card lacks {', '.join(missing)}")
    if card["version"] != version:
        raise ModelLoadError(f"{path}: card is for version {card['version']}, not {version}")
    return card


def verify_artifact(models_dir: Path, version: str) -> dict:
    """Check card, scikit-learn version and checksum without unpickling; return the card.

    Where scikit-learn is not installed at all (the runtime image), nothing here can unpickle
    the artifact, so its version is not compared: the ONNX export is served after its own
    checks, and ``app.artifacts.loading.load_model`` refuses to unpickle.
    """
    card = read_card(models_dir, version)
    path = artifact_path(models_dir, version)
    installed = sklearn_version()
    if installed and card["sklearn_version"] != installed:
        raise ModelLoadError(
            f"{path}: trained with scikit-learn {card['sklearn_version']}, "
            f"this installation has {installed}; retrain or register it again"
        )
    if not path.is_file():
        raise ModelLoadError(f"{path}: artifact missing")
    digest = sha256_file(path)
    if digest != card["sha256"]:
        raise ModelLoadError(f"{path}: sha256 {digest[:12]}... does not match the card's {card['sha256'][:12]}...")
    verify_fast_path(models_dir, version, card)
    return card


def verify_fast_path(models_dir: Path, version: str, card: dict) -> None:
    """Check the ONNX export the card names, as strictly as the artifact: a color loads it.

    An export that is missing or changed is tampering, not a reason to serve through
    scikit-learn instead: the version is refused (a deploy fails its verify step) with the
    reason. A card without an export is fine; the server then uses scikit-learn.
    """
    fast = card.get("fast_path") or {}
    if fast.get("format") != "onnx":
        return
    expected = onnx_path(models_dir, version)
    if fast.get("artifact") != expected.name:
        raise ModelLoadError(f"{card_path(models_dir, version)}: the card's fast path names "
                             f"{fast.get('artifact')!r}, not {expected.name}")
    if not expected.is_file():
        raise ModelLoadError(f"{expected}: ONNX export missing (the card lists it)")
    digest = sha256_file(expected)
    if digest != fast.get("sha256"):
        raise ModelLoadError(f"{expected}: sha256 {digest[:12]}... does not match the card's "
                             f"{str(fast.get('sha256'))[:12]}...")


def list_versions(models_dir: Path) -> list[dict]:
    """Return the readable cards found in ``models_dir``, sorted by version."""
    cards = []
    for path in sorted(Path(models_dir).glob("iris_model_v*.json")):
        try:
            card = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(card, dict) and isinstance(card.get("version"), str):
            cards.append(card)
    return sorted(cards, key=lambda card: version_key(card["version"]))

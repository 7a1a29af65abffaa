"""Where a version's files live and what a version string may be.

Kept free of scikit-learn imports, so the controller starts fast.
"""

from __future__ import annotations

import re
from pathlib import Path

from app.errors import ModelLoadError

VERSION_PATTERN = re.compile(r"^v\d+\.\d+\.\d+$")
# The versions trained by ``contrib/prepare_dir.sh``; blue serves the first, green the second.
SHIPPED_VERSIONS = ("v1.0.0", "v1.1.0")


def artifact_path(models_dir: Path, version: str) -> Path:
    return Path(models_dir) / f"iris_model_{version}.joblib"


def card_path(models_dir: Path, version: str) -> Path:
    return Path(models_dir) / f"iris_model_{version}.json"


def onnx_path(models_dir: Path, version: str) -> Path:
    return Path(models_dir) / f"iris_model_{version}.onnx"


def check_version_string(version: str) -> None:
    """Refuse anything but vMAJOR.MINOR.PATCH (it also becomes part of file names)."""
    if not VERSION_PATTERN.match(version or ""):
        raise ModelLoadError(f"invalid version {version!r}: expected vMAJOR.MINOR.PATCH, e.g. v1.2.0")


def version_key(version: str) -> tuple[int, ...]:
    """Sort key: v1.10.0 after v1.9.0; anything malformed first."""
    try:
        return tuple(int(part) for part in version[1:].split("."))
    except (TypeError, ValueError):
        return (-1,)


def sklearn_version() -> str:
    """The installed scikit-learn's version, without importing it ("" when not installed)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed_version

    try:
        return installed_version("scikit-learn")
    except PackageNotFoundError:
        return ""

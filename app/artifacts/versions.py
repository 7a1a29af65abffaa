"""Where a version's files live and what a version string may be.

Kept free of scikit-learn imports, so the controller starts fast.
"""

from __future__ import annotations

import re
from pathlib import Path

from app.errors import ModelLoadError

# v + three ASCII integers without leading zeros, at most six digits each: a version is
# part of file names and of one-line outputs, so no newline (``$`` would allow one), no
# other script's digits (``\d`` would), and no length that breaks a file name.
VERSION_PATTERN = re.compile(r"v(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})")
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
    if not isinstance(version, str) or not VERSION_PATTERN.fullmatch(version):
        shown = repr(version) if len(repr(version)) <= 40 else repr(version)[:37] + "..."
        raise ModelLoadError(f"invalid version {shown}: expected vMAJOR.MINOR.PATCH, e.g. v1.2.0 (ASCII digits, "
                             "no leading zeros, at most 6 digits each)")


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

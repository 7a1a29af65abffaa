"""Server settings: defaults, then the environment, then a mapping given to the factory.

Read once, in ``create_app``; nothing reads the environment per request.
"""

from __future__ import annotations

import os
from pathlib import Path

from app.artifacts.versions import SHIPPED_VERSIONS

ROOT = Path(__file__).resolve().parents[2]

DEFAULTS = {
    "MODEL_VERSION": SHIPPED_VERSIONS[0],
    "MODELS_DIR": str(ROOT / "models"),
    "COLOR": "blue",
    "MAX_BATCH_ROWS": 1000,
    "MAX_CONTENT_LENGTH": 1024 * 1024,
    # "auto": the fast path when it verifies, sklearn otherwise; "sklearn" forces sklearn.
    "PREDICTOR": "auto",
}

# Environment variable -> (setting, converter).
ENVIRONMENT = {
    "MODEL_VERSION": ("MODEL_VERSION", str),
    "MODELS_DIR": ("MODELS_DIR", str),
    "COLOR": ("COLOR", str),
    "MAX_BATCH_ROWS": ("MAX_BATCH_ROWS", int),
    "MAX_BODY_BYTES": ("MAX_CONTENT_LENGTH", int),
    "PREDICTOR": ("PREDICTOR", str),
}


def load_settings(overrides: dict | None = None, environ=None) -> dict:
    """Merge defaults, environment and ``overrides`` (last wins) into one dict."""
    environ = os.environ if environ is None else environ
    settings = dict(DEFAULTS)
    for name, (key, convert) in ENVIRONMENT.items():
        if environ.get(name):
            try:
                settings[key] = convert(environ[name])
            except ValueError as exc:
                raise ValueError(f"environment variable {name}={environ[name]!r}: {exc}") from exc
    settings.update(overrides or {})
    if settings["PREDICTOR"] not in ("auto", "sklearn"):
        raise ValueError(f"PREDICTOR must be 'auto' or 'sklearn', not {settings['PREDICTOR']!r}")
    return settings

"""Server settings: defaults, then the environment, then a mapping given to the factory.

Read once, in ``create_app``; nothing reads the environment per request. The tokens
(``FEEDBACK_TOKEN`` or ``FEEDBACK_TOKEN_FILE``, ``METRICS_TOKEN``) are read here too, so a
token file is read once at start and a bad one stops the server before it serves.
"""

from __future__ import annotations

import os
from pathlib import Path

from app.artifacts.versions import SHIPPED_VERSIONS

ROOT = Path(__file__).resolve().parents[2]

# A token shorter than this is too easy to guess by trying; the controller makes 43 characters.
MIN_TOKEN_LENGTH = 16

DEFAULTS = {
    "MODEL_VERSION": SHIPPED_VERSIONS[0],
    "MODELS_DIR": str(ROOT / "models"),
    "COLOR": "blue",
    "MAX_BATCH_ROWS": 1000,
    "MAX_CONTENT_LENGTH": 1024 * 1024,
    # "auto": the fast path when it verifies, sklearn otherwise; "sklearn" forces sklearn.
    "PREDICTOR": "auto",
    # The prediction log for `bluegreen drift` (app/server/predlog.py): the share of served
    # rows kept, where ("": beside the Prometheus files, or in memory), and the file size.
    "PREDLOG_SAMPLE": 0.1,
    "PREDLOG_DIR": "",
    "PREDLOG_MAX_BYTES": 4 * 1024 * 1024,
    # POST /feedback moves live accuracy, which can roll a version back: without a token
    # it is refused (403). /metrics is open unless METRICS_TOKEN is set.
    "FEEDBACK_TOKEN": "",
    "METRICS_TOKEN": "",
    # Where the shadow report's records go ("": beside the Prometheus files, or in memory).
    "RECORD_DIR": "",
    # The name the inference protocols address the model by ("": the card's, else "iris").
    "MODEL_NAME": "",
    # "on": the prediction routes are answered by a WSGI callable in front of Flask
    # (app/server/hotpath.py); "off": by Flask's views, the same code behind Flask.
    "FAST_PATH": "on",
}

# Environment variable -> (setting, converter).
ENVIRONMENT = {
    "MODEL_VERSION": ("MODEL_VERSION", str),
    "MODELS_DIR": ("MODELS_DIR", str),
    "COLOR": ("COLOR", str),
    "MAX_BATCH_ROWS": ("MAX_BATCH_ROWS", int),
    "MAX_BODY_BYTES": ("MAX_CONTENT_LENGTH", int),
    "PREDICTOR": ("PREDICTOR", str),
    "PREDLOG_SAMPLE": ("PREDLOG_SAMPLE", float),
    "PREDLOG_DIR": ("PREDLOG_DIR", str),
    "PREDLOG_MAX_BYTES": ("PREDLOG_MAX_BYTES", int),
    "FEEDBACK_TOKEN": ("FEEDBACK_TOKEN", str),
    "METRICS_TOKEN": ("METRICS_TOKEN", str),
    "RECORD_DIR": ("RECORD_DIR", str),
    "MODEL_NAME": ("MODEL_NAME", str),
    "FAST_PATH": ("FAST_PATH", str),
}


def _read_token_file(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"FEEDBACK_TOKEN_FILE={path}: cannot be read ({exc})") from exc


def check_token(name: str, token: str) -> None:
    """Refuse a token that is too short or that cannot travel in an Authorization header."""
    if not token:
        return
    if len(token) < MIN_TOKEN_LENGTH:
        raise ValueError(f"{name} is {len(token)} characters; use at least {MIN_TOKEN_LENGTH} "
                         "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    if not all(33 <= ord(c) <= 126 for c in token):
        raise ValueError(f"{name} must be printable ASCII without spaces")


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
    if environ.get("FEEDBACK_TOKEN_FILE"):
        if environ.get("FEEDBACK_TOKEN"):
            raise ValueError("set FEEDBACK_TOKEN or FEEDBACK_TOKEN_FILE, not both")
        settings["FEEDBACK_TOKEN"] = _read_token_file(environ["FEEDBACK_TOKEN_FILE"])
        if not settings["FEEDBACK_TOKEN"]:
            raise ValueError(f"FEEDBACK_TOKEN_FILE={environ['FEEDBACK_TOKEN_FILE']} is empty")
    settings.update(overrides or {})
    if settings["PREDICTOR"] not in ("auto", "sklearn"):
        raise ValueError(f"PREDICTOR must be 'auto' or 'sklearn', not {settings['PREDICTOR']!r}")
    if settings["FAST_PATH"] not in ("on", "off"):
        raise ValueError(f"FAST_PATH must be 'on' or 'off', not {settings['FAST_PATH']!r}")
    for name in ("FEEDBACK_TOKEN", "METRICS_TOKEN"):
        check_token(name, settings[name])
    return settings

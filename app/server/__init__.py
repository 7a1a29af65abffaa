"""The model server: one color's Flask app, run by gunicorn (``app/wsgi.py``).

``create_app`` is the factory: settings (defaults, environment, a test mapping last), a
verified model, its OpenAPI document, the routes, the JSON error handlers, and the hot
path in front of Flask (``app/server/hotpath.py``).
"""

from __future__ import annotations

import sys

from flask import Flask

from app.errors import ModelLoadError
from app.server.config import load_settings
from app.server.hotpath import HotPath
from app.server.openapi import build_openapi
from app.server.predlog import bp as predlog_bp
from app.server.responses import register_error_handlers
from app.server.serving import ModelServer
from app.server.views import bp


def create_app(config: dict | None = None) -> Flask:
    """Build the app: settings (defaults, environment, ``config``), a verified model, routes.

    Raises ``ModelLoadError`` when the model is refused; the process must not serve then.
    """
    settings = load_settings(config)
    app = Flask(__name__)
    app.config.update(settings)
    server = app.extensions["model_server"] = ModelServer.start(settings)
    app.extensions["openapi"] = build_openapi(server.version, server.n_features, server.class_names,
                                              settings["MAX_BATCH_ROWS"], server.input_limit.max_abs,
                                              server.model_name, server.card["feature_names"])
    register_error_handlers(app)
    app.register_blueprint(predlog_bp)
    app.register_blueprint(bp)
    if settings["FAST_PATH"] == "on":
        # The prediction routes are answered in front of Flask; the rest goes through it.
        app.wsgi_app = HotPath(app.wsgi_app, server, settings["MAX_CONTENT_LENGTH"])
    return app


def create_app_or_exit() -> Flask:
    """``create_app``, or one line naming the file and the reason and exit 3: never serve."""
    try:
        return create_app()
    except (ModelLoadError, ValueError) as exc:
        print(f"refusing to serve: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(3) from exc

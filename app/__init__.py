"""A blue-green deployable model server: the application factory."""

from __future__ import annotations

from flask import Flask

from app.config import load_settings
from app.errors import register_error_handlers
from app.serving import ModelServer


def create_app(config: dict | None = None) -> Flask:
    """Build the app: settings (defaults, environment, ``config``), a verified model, routes.

    Raises ``ModelLoadError`` when the model is refused; the process must not serve then.
    """
    settings = load_settings(config)
    app = Flask(__name__)
    app.config.update(settings)
    app.extensions["model_server"] = ModelServer.start(settings)
    register_error_handlers(app)

    from app.api import bp

    app.register_blueprint(bp)
    return app

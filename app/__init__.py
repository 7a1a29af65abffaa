"""A blue-green deployable model server: the application factory."""

from __future__ import annotations


def create_app(config: dict | None = None):
    """Build the app: settings (defaults, environment, ``config``), a verified model, routes.

    Raises ``ModelLoadError`` when the model is refused; the process must not serve then.
    """
    # Imported here, not at module level: the `bluegreen` controller imports this package
    # and must start fast, without Flask and scikit-learn.
    from flask import Flask

    from app.api import bp
    from app.config import load_settings
    from app.errors import register_error_handlers
    from app.serving import ModelServer

    settings = load_settings(config)
    app = Flask(__name__)
    app.config.update(settings)
    app.extensions["model_server"] = ModelServer.start(settings)
    register_error_handlers(app)
    app.register_blueprint(bp)
    return app

"""Error types, defined once.

Every error the server can answer with is an ``ApiError`` subclass carrying its HTTP
status; ``register_error_handlers`` maps them, and Werkzeug's own HTTP errors (404, 405,
413, ...), to one JSON body shape: ``{"error": "<message>", ...details}``.

Errors that belong to the controller or to model loading (not to an HTTP answer) are
plain exceptions with a one-line message; the CLI prints that line and exits non-zero.
"""

from __future__ import annotations

import json
import logging

from flask import Flask, Response, current_app
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answered to an HTTP client."""

    status = 500

    def __init__(self, message: str, **details):
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidInput(ApiError):
    """The request body is not what the endpoint expects."""

    status = 400


class UnsupportedMediaType(ApiError):
    """The request body is sent with a content type the endpoint does not read."""

    status = 415


class ModelNotReady(ApiError):
    """The model is not loaded yet, or the server is draining."""

    status = 503


class ModelLoadError(Exception):
    """A model artifact or its card was refused; the message names the file and reason."""


class ControllerError(Exception):
    """A controller command could not do what it was asked; one line for the user."""


def json_response(obj, status: int = 200) -> Response:
    """A JSON response; the one encoder for answers and errors alike."""
    return Response(json.dumps(obj), status=status, mimetype="application/json")


def error_response(message: str, status: int, **details) -> Response:
    """The one JSON shape every non-2xx answer uses."""
    return json_response({"error": message, "status": status, **details}, status)


def register_error_handlers(app: Flask) -> None:
    """Map ApiError, Werkzeug's HTTP errors and anything unexpected to JSON."""

    @app.errorhandler(ApiError)
    def handle_api_error(exc: ApiError):
        return error_response(exc.message, exc.status, **exc.details)

    @app.errorhandler(HTTPException)
    def handle_http_exception(exc: HTTPException):
        status = exc.code or 500
        if status == 404:
            message = "not found: the API is POST /predict, POST /feedback, GET /health"
        elif status == 405:
            message = "method not allowed for this endpoint"
        elif status == 413:
            limit = current_app.config["MAX_CONTENT_LENGTH"]
            message = f"request body too large: the limit is {limit} bytes"
        else:
            message = exc.description or exc.name
        response = error_response(message, status)
        valid_methods = getattr(exc, "valid_methods", None)
        if valid_methods:
            response.headers["Allow"] = ", ".join(valid_methods)
        return response

    @app.errorhandler(Exception)
    def handle_unexpected(exc: Exception):
        # Never a stack trace in a response body; the log has it.
        log.exception("unhandled error")
        return error_response("internal server error", 500)

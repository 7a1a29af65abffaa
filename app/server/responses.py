"""The one JSON error shape, and the handlers that give it to every non-2xx answer.

``ApiError`` (``app/errors.py``) carries its status; Werkzeug's own HTTP errors (404, 405,
413, ...) and anything unexpected are mapped here too, so every error body is
``{"error": "<message>", "status": <code>, ...details}``. No stack trace ever leaves.
"""

from __future__ import annotations

import json
import logging

from flask import Flask, Response, current_app
from werkzeug.exceptions import HTTPException

from app.errors import ApiError

log = logging.getLogger(__name__)


def json_response(obj, status: int = 200) -> Response:
    """A JSON response; the one encoder for answers and errors alike.

    NaN and infinities are not JSON: a body that holds one is a bug here (``ValueError``,
    answered as a 500 by the handler below), never an invalid document sent to a client.
    """
    return Response(json.dumps(obj, allow_nan=False), status=status, mimetype="application/json")


def error_response(message: str, status: int, **details) -> Response:
    """The one JSON shape every non-2xx answer uses."""
    return json_response({"error": message, "status": status, **details}, status)


def register_error_handlers(app: Flask) -> None:
    """Map ApiError, Werkzeug's HTTP errors and anything unexpected to JSON."""

    @app.errorhandler(ApiError)
    def handle_api_error(exc: ApiError):
        response = error_response(exc.message, exc.status, **exc.details)
        response.headers.update(exc.headers)
        return response

    @app.errorhandler(HTTPException)
    def handle_http_exception(exc: HTTPException):
        status = exc.code or 500
        if status == 404:
            message = "not found: the API is POST /predict, POST /feedback, GET /health (all of it: GET /openapi.json)"
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

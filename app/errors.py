"""Error types, defined once, for all three programs.

Nothing here imports a third-party package: the controller imports this module and must
start without Flask. ``ApiError`` subclasses carry the HTTP status they are answered
with; ``app/server/responses.py`` is the one place that turns them (and Werkzeug's own
HTTP errors) into the JSON error shape. The other errors are one line for a user:
the CLIs print the message and exit non-zero.
"""

from __future__ import annotations


class ApiError(Exception):
    """An error answered to an HTTP client."""

    status = 500
    # Headers the answer must carry (e.g. WWW-Authenticate on a 401).
    headers: dict[str, str] = {}

    def __init__(self, message: str, **details):
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidInput(ApiError):
    """The request body is not what the endpoint expects."""

    status = 400


class Unauthorized(ApiError):
    """The request lacks the bearer token the endpoint requires, or sends a wrong one."""

    status = 401
    headers = {"WWW-Authenticate": 'Bearer realm="bluegreen"'}


class Forbidden(ApiError):
    """The endpoint is switched off on this server (no token configured for it)."""

    status = 403


class NotFound(ApiError):
    """The request names a model or a version this server does not serve."""

    status = 404


class RequestTooLarge(ApiError):
    """The request body is over the server's limit."""

    status = 413


class UnsupportedMediaType(ApiError):
    """The request body is sent with a content type the endpoint does not read."""

    status = 415


class ModelNotReady(ApiError):
    """The server is draining: it was told to stop (``/ready`` answers 503)."""

    status = 503


class ModelFailure(ApiError):
    """The model raised, or answered something that is not a number, for a well-formed input.

    The model's failure, not the client's: a 5xx that counts as the version's server error.
    """

    status = 500


class ModelLoadError(Exception):
    """A model artifact or its card was refused; the message names the file and reason."""


class ControllerError(Exception):
    """A controller command could not do what it was asked; one line for the user.

    ``recorded``: the step that raised it has already recorded the failure in the history,
    so the command need not record it again.
    """

    def __init__(self, message: str = "", *, recorded: bool = False):
        super().__init__(message)
        self.recorded = recorded


class TrafficError(ControllerError):
    """A traffic move (a switch, a rollback) did not happen; the message says where traffic is."""


class ConfigError(ControllerError):
    """The controller's configuration is refused; the message names the key."""

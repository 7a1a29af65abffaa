"""An inference call, whichever entry point received it, and how a protocol answers it.

A ``Route`` pairs a handler, ``(ModelServer, Call) -> Reply``, with its protocol's error
shape. ``answer`` is the one place a call is run: the version pin is checked, the handler
called, and any error turned into the protocol's own JSON body. The hot path and Flask's
views both call it; they differ only in how they read the body and send the reply.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from app.errors import ApiError, InvalidInput, NotFound, RequestTooLarge
from app.server.exchange import Exchange

log = logging.getLogger(__name__)

JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Reply:
    """What a handler answers: status, body bytes, content type, extra headers."""

    status: int
    body: bytes
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()


class Call:
    """One request as a handler sees it: headers, path parameters, the body (read once, on first
    use, by the entry point's ``reader``), and its ``Exchange``."""

    __slots__ = ("environ", "params", "exchange", "_reader", "_body")

    def __init__(self, environ: dict, params: dict, exchange: Exchange, reader: Callable[[], bytes]):
        self.environ = environ
        self.params = params
        self.exchange = exchange
        self._reader = reader
        self._body: bytes | None = None

    @property
    def body(self) -> bytes:
        if self._body is None:
            self._body = self._reader()
        return self._body

    def header(self, name: str) -> str | None:
        """A request header by its WSGI name ("CONTENT_TYPE", "HTTP_X_MODEL_VERSION")."""
        return self.environ.get(name)

    @property
    def mimetype(self) -> str:
        # The raw header, not a parsed one: option parsing is a hot-path cost.
        return self.environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()


def project_error(exc: ApiError) -> Reply:
    """The project's error shape, ``{"error": ..., "status": N}``, byte for byte as Flask's
    handlers write it (``app/server/responses.py``): also the Open Inference Protocol's and
    KServe v1's (both read ``error``)."""
    body = json.dumps({"error": exc.message, "status": exc.status, **exc.details}, allow_nan=False)
    return Reply(exc.status, body.encode(), headers=tuple(exc.headers.items()))


@dataclass(frozen=True, slots=True)
class Route:
    """A route: its label (Flask's rule string), its handler and its protocol's error shape."""

    label: str
    handler: Callable
    error: Callable[[ApiError], Reply] = project_error
    # Whether an X-Model-Version header pins the request (the prediction routes).
    pinned: bool = True


def check_pin(srv, environ: dict) -> None:
    """A request pinned to a version (``X-Model-Version``) is answered by that version or refused:
    nginx sends it to the color serving it, and a color never answers for another version."""
    pinned = environ.get("HTTP_X_MODEL_VERSION")
    if pinned and pinned != srv.version:
        raise NotFound(f"this server serves model {srv.model_name} {srv.version}, not the version pinned by "
                       f"X-Model-Version ({pinned[:64]})")


def answer(srv, route: Route, call: Call) -> Reply:
    """Run ``route`` for ``call``: the one place every inference call is answered."""
    try:
        if route.pinned:
            check_pin(srv, call.environ)
        return route.handler(srv, call)
    except ApiError as exc:
        return route.error(exc)
    except Exception:
        # Never a stack trace in a response body; the log has it.
        log.exception("unhandled error on %s", route.label)
        return route.error(ApiError("internal server error"))


def read_wsgi_body(environ: dict, limit: int) -> bytes:
    """The request body from the WSGI input, refused past ``limit`` bytes.

    Reading is where a broken chunked encoding or a vanished client shows (gunicorn raises
    its parse errors from the input stream): the client's doing, a 400.
    """
    length = environ.get("CONTENT_LENGTH")
    try:
        if length:
            size = int(length)
            if size > limit:
                raise RequestTooLarge(f"request body too large: the limit is {limit} bytes")
            return environ["wsgi.input"].read(size) if size else b""
        raw = environ["wsgi.input"].read(limit + 1)
    except ApiError:
        raise
    except Exception as exc:
        raise InvalidInput(f"the request body could not be read ({type(exc).__name__}: {exc})") from exc
    if len(raw) > limit:
        raise RequestTooLarge(f"request body too large: the limit is {limit} bytes")
    return raw

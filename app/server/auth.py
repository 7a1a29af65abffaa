"""Bearer tokens for the endpoints that must not be open to whoever reaches a color.

POST /feedback moves live accuracy, and live accuracy can roll a version back, so only a
holder of the feedback token may send it (docs/adr/0011-trust-boundary.md). The check is
constant-time (``hmac.compare_digest``): the answer's timing says nothing about how much of
a guess was right.
"""

from __future__ import annotations

import hmac

from app.errors import Forbidden, Unauthorized


def require_bearer(expected: str, authorization: str | None, what: str, how_to_enable: str) -> None:
    """Return when ``authorization`` carries ``Bearer <expected>``; raise 403 or 401 otherwise.

    Args:
        expected: the configured token; empty means the endpoint is disabled.
        authorization: the request's Authorization header, if any.
        what: the endpoint, for the messages ("POST /feedback").
        how_to_enable: what an operator sets to enable it, for the 403.
    """
    if not expected:
        raise Forbidden(f"{what} is disabled on this server: no token is configured ({how_to_enable})")
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized(f"{what} requires a bearer token: send Authorization: Bearer <token>")
    if not hmac.compare_digest(token.strip().encode("utf-8", "surrogateescape"), expected.encode()):
        raise Unauthorized(f"{what}: the bearer token is not valid")

"""The controller's HTTP client: the standard library only, so the CLI starts fast.

Probes, front-door checks and smoke requests are small JSON exchanges on loopback (or an
Ingress URL). A connection problem is an ``HttpError`` whose message is short enough for
a status line ("ConnectionRefusedError", "timed out").
"""

from __future__ import annotations

import http.client
import json
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit


class HttpError(Exception):
    """No HTTP answer: refused, reset, timed out, or not HTTP. ``timed_out``: the peer
    accepted but did not answer in time (busy or frozen, not gone)."""

    def __init__(self, message: str, timed_out: bool = False):
        super().__init__(message)
        self.timed_out = timed_out


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status, headers (names in lower case) and body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        """The body as JSON; ValueError when it is not."""
        return json.loads(self.body)


class Connection:
    """One keep-alive connection to the host of ``base_url``, reopened when it breaks."""

    def __init__(self, base_url: str, timeout: float = 2.0):
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise HttpError(f"not an http(s) URL: {base_url!r}")
        self.scheme, self.host, self.port = parts.scheme, parts.hostname, parts.port
        self.prefix = parts.path.rstrip("/")
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def _open(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
            self._conn = cls(self.host, self.port, timeout=self.timeout)
        return self._conn

    def request(self, method: str, path: str, body=None, headers: dict | None = None) -> Answer:
        data = None if body is None else json.dumps(body).encode()
        sent = {"Content-Type": "application/json"} if data is not None else {}
        sent.update(headers or {})
        try:
            conn = self._open()
            conn.request(method, self.prefix + path, body=data, headers=sent)
            response = conn.getresponse()
            answer = Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise HttpError(_describe(exc), timed_out=isinstance(exc, (socket.timeout, TimeoutError))) from exc
        if answer.headers.get("connection", "").lower() == "close":
            self.close()
        return answer

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _describe(exc: Exception) -> str:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "connection closed without an answer"
    return type(exc).__name__


def get(url: str, timeout: float = 2.0, headers: dict | None = None) -> Answer:
    """One GET on a fresh connection, closed afterwards."""
    parts = urlsplit(url)
    with Connection(f"{parts.scheme}://{parts.netloc}", timeout) as conn:
        path = parts.path or "/"
        return conn.request("GET", path + (f"?{parts.query}" if parts.query else ""),
                            headers={"Connection": "close", **(headers or {})})

"""How the controller observes one server: ``/ready`` and ``/health`` over HTTP."""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass

from app.control.http import Connection, HttpError


@dataclass(frozen=True)
class ServerProbe:
    """What one server of a color answers right now."""

    address: str
    pid: int | None
    ready: bool
    health: dict | None
    error: str = ""
    # Set when the answer came from a process the runtime did not start (its pid and
    # command line): such a server is never taken for the color.
    foreign: str = ""
    # No answer in time: busy or frozen, not gone (a caller may ask again).
    timed_out: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def probe(address: str, pid: int | None = None, timeout: float = 2.0) -> ServerProbe:
    """Ask one server for /ready and /health."""
    try:
        with Connection(f"http://{address}", timeout) as conn:
            ready = conn.request("GET", "/ready").status == 200
            health = conn.request("GET", "/health").json()
        if not isinstance(health, dict):
            raise ValueError("/health is not a JSON object")
        return ServerProbe(address, pid, ready, health)
    except HttpError as exc:
        return ServerProbe(address, pid, False, None, str(exc), timed_out=exc.timed_out)
    except ValueError:
        return ServerProbe(address, pid, False, None, "/health did not answer JSON")


def fetch_records(address: str, since: float, timeout: float = 5.0) -> list[dict]:
    """A server's kept answers at or after ``since`` (``GET /records``; METRICS_TOKEN when set);
    none when it cannot give them."""
    token = os.environ.get("METRICS_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with Connection(f"http://{address}", timeout) as conn:
            answer = conn.request("GET", f"/records?since={since:.3f}", headers=headers)
            body = answer.json()
    except (HttpError, ValueError):
        return []
    if answer.status != 200 or not isinstance(body, dict) or not isinstance(body.get("records"), list):
        return []
    return [r for r in body["records"] if isinstance(r, dict)]


def serving_version(address: str) -> str:
    """The model version a server at ``address`` answers /health with ("" when none does:
    nothing listens, or a port-forward or ingress with no server behind it)."""
    health = probe(address, timeout=1.0).health or {}
    version = health.get("version")
    return version if isinstance(version, str) else ""


def accepts_connections(address: str, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False

"""`bluegreen dashboard`: a read-only page that shows one stack's rollout as it happens.

A small threaded server from the standard library (``http.server``: the controller
imports no web framework) on an admin address, loopback by default (``[dashboard]`` in
bluegreen.toml, ``BLUEGREEN_DASHBOARD_HOST`` / ``_PORT``). It answers two things:

- ``GET /``: the page (``static/dashboard.html``: its styles, its script and its SVG charts
  inline, nothing fetched from elsewhere), which asks for the state every
  ``dashboard.refresh`` seconds and redraws itself;
- ``GET /api/state``: the state as JSON, built from what the read-only commands read
  (``Views.status`` and ``history``, the shadow report) and the judged window the
  controller writes at every poll of a bake, a canary step or `watch`
  (``<run_dir>/window.json``). Each check's estimate, bounds and limit are kept here at
  every poll seen, so the page draws how they closed in.

Every other answer, errors included, is JSON. Listening anywhere but loopback it needs a
token (``BLUEGREEN_DASHBOARD_TOKEN``, or ``<run_dir>/dashboard.token``, made when missing),
as ``Authorization: Bearer`` or ``?token=`` on the page's address; on loopback it answers
only requests whose ``Host`` names loopback (a web page elsewhere cannot rebind a name to
it). With the stack down the page says so and keeps asking.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from app.control.config import COLORS, StackConfig
from app.control.controller import Controller
from app.control.shadow import ShadowControl
from app.control.tokens import secret
from app.errors import ControllerError

PAGE = Path(__file__).with_name("static") / "dashboard.html"
TOKEN_ENV = "BLUEGREEN_DASHBOARD_TOKEN"
# The state is computed at most this often, however many pages ask (each probes every server).
STATE_MIN_AGE = 0.4
# The shadow report reads every record both colors kept: at most this often while it runs.
SHADOW_MIN_AGE = 5.0
# Points kept per check of one window.
MAX_POINTS = 2000
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]", "::1")


def is_loopback(host: str) -> bool:
    name = host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class WindowSeries:
    """Each check's figures at every poll of the current judged window, as this server saw them."""

    def __init__(self):
        self.key: tuple | None = None
        self.points: dict[str, list[dict]] = {}
        self.last_update: float | None = None

    def update(self, window: dict) -> dict:
        """Add the poll ``window`` describes (once per poll); return it with its ``series``."""
        key = (window.get("kind"), window.get("rollout"), window.get("color"), window.get("started"))
        if key != self.key:
            self.key, self.points, self.last_update = key, {}, None
        updated, started = window.get("updated"), window.get("started")
        if isinstance(updated, (int, float)) and updated != self.last_update:
            self.last_update = updated
            at = updated - started if isinstance(started, (int, float)) else 0.0
            for check in window.get("checks") or []:
                if not isinstance(check, dict) or not isinstance(check.get("name"), str):
                    continue
                series = self.points.setdefault(check["name"], [])
                series.append({"t": round(at, 3), "estimate": _number(check.get("estimate")),
                               "low": _number(check.get("low")), "high": _number(check.get("high")),
                               "limit": _number(check.get("limit")), "verdict": check.get("verdict"),
                               "n": check.get("n")})
                del series[:-MAX_POINTS]
        return {**window, "series": self.points}


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def read_window(run_dir: Path) -> dict | None:
    """``<run_dir>/window.json`` as the controller last wrote it (None when there is none)."""
    try:
        window = json.loads((run_dir / "window.json").read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return {"error": f"{run_dir / 'window.json'}: unreadable ({exc})"}
    return window if isinstance(window, dict) else {"error": "window.json is not a JSON object"}


def stack_summary(status: dict | None, nginx_down: str) -> dict:
    """"up", "partial" or "down", and a sentence saying so."""
    if status is None:
        return {"state": "unknown", "message": "the stack's record cannot be read"}
    down = [c for c in COLORS if status["colors"][c]["state"] != "up"]
    if nginx_down and len(down) == len(COLORS):
        return {"state": "down", "message": f"the stack is down: {nginx_down}, and no color answers"}
    if nginx_down or down:
        parts = ([nginx_down] if nginx_down else []) + [f"{c} is down ({status['colors'][c]['reason']})" for c in down]
        return {"state": "partial", "message": "; ".join(parts)}
    return {"state": "up", "message": "nginx and both colors answer"}


class DashboardState:
    """The JSON the page draws, computed from the record and the world (never written)."""

    def __init__(self, controller: Controller, clock: Callable[[], float] = time.time):
        self.controller = controller
        self.ctx = controller.ctx
        self.config: StackConfig = controller.ctx.config
        self.clock = clock
        self.series = WindowSeries()
        self._lock = threading.Lock()
        self._state: dict | None = None
        self._at = 0.0
        self._shadow: tuple | None = None  # (key, computed at, report)

    def get(self) -> dict:
        with self._lock:
            now = self.clock()
            if self._state is None or now - self._at >= STATE_MIN_AGE:
                self._state, self._at = self.collect(now), now
            return self._state

    def collect(self, now: float) -> dict:
        errors = []
        try:
            status = self.controller.views.status()
        except ControllerError as exc:
            status = None
            errors.append(str(exc))
        try:
            history = self.controller.views.history(self.config.dashboard.events)
        except ControllerError as exc:
            history = []
            errors.append(str(exc))
        window = read_window(self.config.run_dir)
        return {
            "generated": now,
            "refresh": self.config.dashboard.refresh,
            "stack": stack_summary(status, self.ctx.proxy.down_reason()),
            "status": status,
            "window": self.series.update(window) if window and "error" not in window else window,
            "shadow": self.shadow(now),
            "failovers": failovers(status, history),
            "history": history,
            "errors": errors,
        }

    def shadow(self, now: float) -> dict | None:
        """The shadow report, once per change of shadow.json and every few seconds while it runs."""
        path = self.config.run_dir / "shadow.json"
        try:
            key = path.stat().st_mtime
        except FileNotFoundError:
            return None
        running = self.ctx.proxy.mirrored() > 0
        fresh = self._shadow and self._shadow[0] == (key, running)
        if fresh and (not running or now - self._shadow[1] < SHADOW_MIN_AGE):
            return self._shadow[2]
        try:
            report = ShadowControl(self.controller).report()
        except ControllerError as exc:
            report = {"error": str(exc)}
        self._shadow = ((key, running), now, report)
        return report


def failovers(status: dict | None, history: list[dict]) -> dict:
    """Requests each color answered for the other since it started (its /health), and the
    failover events among the last history lines."""
    counts = {}
    for color in COLORS:
        servers = (status or {}).get("colors", {}).get(color, {}).get("servers", [])
        counts[color] = sum(int(((s.get("health") or {}).get("live") or {}).get("failovers") or 0) for s in servers)
    return {"counts": counts, "events": [e for e in history if e.get("action") == "failover"]}


def _script_hash(page: str) -> str:
    """The CSP source that allows exactly the page's one inline script."""
    match = re.search(r"<script>(.*?)</script>", page, re.S)
    digest = hashlib.sha256(match.group(1).encode()).digest() if match else b""
    return f"'sha256-{base64.b64encode(digest).decode()}'"


class Handler(BaseHTTPRequestHandler):
    """GET / (the page) and GET /api/state (JSON); everything else a JSON error."""

    server: DashboardServer
    server_version = "bluegreen-dashboard"
    sys_version = ""

    def log_message(self, format, *args) -> None:
        """Quiet: the page asks every second."""

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The base class's errors (a malformed request line, an unknown method) in JSON too."""
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # a line it could not parse: answer with a status line
            self.request_version = "HTTP/1.0"
        self._json({"error": message or self.responses.get(code, ("error",))[0].lower(), "status": code}, code)

    def _send(self, status: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("X-Frame-Options", "DENY")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj, status: int = 200) -> None:
        self._send(status, json.dumps(obj, allow_nan=False).encode(), "application/json")

    def _refused(self, query: dict) -> tuple[int, str] | None:
        """Why this request may not see the stack, if it may not."""
        server = self.server
        if server.token:
            sent = (query.get("token") or [""])[0]
            scheme, _, bearer = (self.headers.get("Authorization") or "").partition(" ")
            if scheme.lower() == "bearer":
                sent = bearer.strip()
            if not sent:
                return 401, "this dashboard needs its token: open it with ?token=<token> or send Authorization: Bearer"
            if not hmac.compare_digest(sent.encode("utf-8", "surrogateescape"), server.token.encode()):
                return 401, "the dashboard token is not valid"
        elif (self.headers.get("Host") or "").rsplit(":", 1)[0].lower() not in LOOPBACK_NAMES:
            return 403, "this dashboard answers only requests addressed to loopback (Host: 127.0.0.1 or localhost)"
        return None

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        refused = self._refused(parse_qs(parts.query))
        if refused:
            self._json({"error": refused[1], "status": refused[0]}, refused[0])
        elif parts.path == "/":
            self._send(200, self.server.page, "text/html; charset=utf-8",
                       {"Content-Security-Policy": self.server.policy})
        elif parts.path == "/api/state":
            try:
                self._json(self.server.state.get())
            except Exception as exc:  # a bug must not cost the operator the page: it says so
                self._json({"error": f"the state could not be built: {type(exc).__name__}: {exc}", "status": 500},
                           500)
        else:
            self._json({"error": f"not found: {parts.path}; the dashboard is GET / and GET /api/state",
                        "status": 404}, 404)

    do_HEAD = do_GET

    def _not_allowed(self) -> None:
        self.close_connection = True
        self._json({"error": "method not allowed: the dashboard only reads (GET)", "status": 405}, 405)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed


class DashboardServer(ThreadingHTTPServer):
    """The threaded server, with what its handlers share."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], state: DashboardState, token: str, refresh: float):
        host = address[0].strip("[]")
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.state = state
        self.token = token
        text = PAGE.read_text().replace("__REFRESH_MS__", str(int(refresh * 1000)))
        self.page = text.encode()
        self.policy = (f"default-src 'none'; script-src {_script_hash(text)}; style-src 'unsafe-inline'; "
                       "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
                       "frame-ancestors 'none'")
        super().__init__((host, address[1]), Handler)


def dashboard_token(config: StackConfig) -> str:
    """The token a dashboard off loopback asks for; "" on loopback."""
    if is_loopback(config.dashboard.host):
        return ""
    return secret(TOKEN_ENV, config.run_dir / "dashboard.token")


def serve(controller: Controller, say: Callable[[str], None] = print,
          ready: Callable[[DashboardServer], None] | None = None) -> None:
    """Serve the dashboard until interrupted (Ctrl-C or TERM)."""
    config = controller.ctx.config
    host, port = config.dashboard.host, config.dashboard.port
    token = dashboard_token(config)
    try:
        server = DashboardServer((host, port), DashboardState(controller), token, config.dashboard.refresh)
    except OSError as exc:
        raise ControllerError(f"the dashboard cannot listen on {host}:{port}: {exc.strerror}") from exc
    shown = f"[{host.strip('[]')}]" if ":" in host.strip("[]") else host
    url = f"http://{shown}:{server.server_address[1]}/" + (f"?token={token}" if token else "")
    say(f"dashboard of {config.front_url()} on {url} (read-only; Ctrl-C stops it)")
    if ready:
        ready(server)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()

"""The nginx config renderer: a pure function from settings and paths to config text.

Nothing here reads or writes a file (the template comes in as text); writing, testing
and reloading live in ``app/control/proxies.py``.
"""

from __future__ import annotations

import hashlib
import re

import jinja2

from app.control.config import COLORS, StackConfig, other_color
from app.errors import ControllerError

GENERATION = re.compile(r"^# Config generation ([0-9a-f]{12})\b", re.M)


def error_pages(client_max_body_size: str) -> dict[int, tuple[int, str]]:
    """Every status nginx answers by itself -> (the status sent, the JSON error message).

    502-504 have their own page per door (which door could not reach its color). The
    messages go into single-quoted nginx strings: no quote, backslash or dollar sign.
    """
    pages = {
        400: (400, "bad request: nginx could not parse it (request line, headers or body framing)"),
        403: (403, "forbidden"),
        404: (404, "not found"),
        405: (405, "method not allowed"),
        408: (408, "request timed out: the client sent its request too slowly"),
        411: (411, "length required: send Content-Length or a chunked body"),
        413: (413, f"request body too large: the limit is {client_max_body_size}"),
        414: (414, "request line too long: the limit is 8k"),
        429: (429, "too many requests from this address: slow down"),
        # nginx's own code for a header line over 8k or all headers over 32k, sent as 400.
        494: (400, "request header or cookie too large: each header line at most 8k, all of them 32k"),
        500: (500, "internal error in the proxy"),
        501: (501, "not implemented: unsupported Transfer-Encoding"),
        505: (505, "HTTP version not supported: send HTTP/1.0 or HTTP/1.1"),
    }
    for _, message in pages.values():
        if any(c in message for c in "'\\$"):
            raise ControllerError(f"nginx error page message {message!r} cannot go into an nginx string")
    return pages


# The canary's and the shadow's weights move in steps of 1%: 100 buckets of request ids.
BUCKETS = tuple(f"b{i:02d}" for i in range(100))
# Mirrored copies the shadow relay keeps in flight at once; a slow shadow then costs
# nginx at most this many connections, and the copies beyond it are not sent.
SHADOW_IN_FLIGHT = 256
# How long a color that failed a mirrored copy gets no more copies (then nginx tries again).
SHADOW_FAIL_TIMEOUT = "2s"


def render_context(config: StackConfig, nginx_dir: str, marker: str, worker_user: str = "") -> dict:
    """Everything the template needs, from the configuration."""
    nginx = config.nginx
    colors = [{"name": color, "servers": config.servers(color), "backup_servers": config.servers(other_color(color))}
              for color in COLORS]
    listen_host = nginx.listen_host or config.host
    return {
        "nginx_dir": nginx_dir,
        "worker_user": worker_user,
        # A proxy in a container runs nginx in the foreground; locally it daemonizes.
        "daemon": "off" if nginx.proxy_dir else "on",
        "marker": marker,
        "canary_dir": f"{nginx_dir}/canary",
        "shadow_dir": f"{nginx_dir}/shadow",
        "lease_dir": f"{nginx_dir}/lease",
        "probation_dir": f"{nginx_dir}/probation",
        "buckets": BUCKETS,
        "shadow_in_flight": SHADOW_IN_FLIGHT,
        "shadow_fail_timeout": SHADOW_FAIL_TIMEOUT,
        "listen": f"{listen_host}:{nginx.port}",
        "preview_listen": f"{listen_host}:{nginx.preview_port}",
        "colors": colors,
        "client_max_body_size": nginx.client_max_body_size,
        "upstream_keepalive": nginx.upstream_keepalive,
        "upstream_keepalive_timeout": nginx.upstream_keepalive_timeout,
        "proxy_connect_timeout": nginx.proxy_connect_timeout,
        "proxy_read_timeout": nginx.proxy_read_timeout,
        "predict_timeout": nginx.predict_timeout,
        "failover": nginx.on_active_failure == "other-color",
        "error_pages": error_pages(nginx.client_max_body_size),
        "worker_processes": nginx.worker_processes or "auto",
        "worker_connections": nginx.worker_connections,
        "worker_rlimit_nofile": 2 * nginx.worker_connections + 256,
        "client_header_timeout": nginx.client_header_timeout,
        "client_body_timeout": nginx.client_body_timeout,
        "send_timeout": nginx.send_timeout,
        "keepalive_timeout": nginx.keepalive_timeout,
        "connections_per_client": nginx.connections_per_client,
        "feedback_rate": nginx.feedback_rate,
        "feedback_burst": nginx.feedback_burst,
        # Every server of a color twice (see the template), then one try on the other color.
        "upstream_tries": 2 * max(len(c["servers"]) for c in colors) + 1,
    }


def render_config(template_text: str, context: dict) -> str:
    """Render ``template_text`` with ``context`` and its ``generation``: a digest of the text
    rendered without it, so the same settings always give the same generation. A template
    error is a ControllerError."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True, autoescape=False)
    try:
        template = env.from_string(template_text)
        generation = hashlib.sha256(template.render(**context, generation="").encode()).hexdigest()[:12]
        return template.render(**context, generation=generation)
    except jinja2.TemplateError as exc:
        raise ControllerError(f"nginx template: {type(exc).__name__}: {exc}") from exc


def generation_of(config_text: str) -> str | None:
    """The generation a rendered config carries (None for a config without one)."""
    match = GENERATION.search(config_text)
    return match.group(1) if match else None

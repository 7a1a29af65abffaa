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

"""The nginx config renderer: a pure function from settings and paths to config text.

No file is read or written here except the template passed in as text; writing, testing
and reloading live in ``app/nginx_ctl.py``.
"""

from __future__ import annotations

import jinja2

from app.errors import ControllerError
from app.stack_config import COLORS, StackConfig


def render_context(config: StackConfig, nginx_dir: str, marker: str, worker_user: str = "") -> dict:
    """Everything the template needs, from the configuration."""
    nginx = config.nginx
    colors = []
    for color in COLORS:
        other = COLORS[1 - COLORS.index(color)]
        colors.append({
            "name": color,
            "servers": config.servers(color),
            "backup_servers": config.servers(other),
        })
    return {
        "nginx_dir": nginx_dir,
        "worker_user": worker_user,
        # A proxy in a container runs nginx in the foreground; locally it daemonizes.
        "daemon": "off" if nginx["proxy_dir"] else "on",
        "marker": marker,
        "listen": f"{nginx['listen_host'] or config.host}:{nginx['port']}",
        "preview_listen": f"{nginx['listen_host'] or config.host}:{nginx['preview_port']}",
        "colors": colors,
        **{key: nginx[key] for key in (
            "client_max_body_size", "upstream_keepalive", "upstream_keepalive_timeout",
            "fail_timeout", "proxy_connect_timeout", "proxy_read_timeout",
        )},
    }


def render_config(template_text: str, context: dict) -> str:
    """Render ``template_text`` with ``context``; a template error is a ControllerError."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True, autoescape=False)
    try:
        return env.from_string(template_text).render(**context)
    except jinja2.TemplateError as exc:
        raise ControllerError(f"nginx template: {type(exc).__name__}: {exc}") from None

"""The renderer is pure: configuration in, nginx config text out."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.control.config import load_config
from app.control.nginx_render import render_config, render_context
from app.errors import ControllerError

TEMPLATE = (Path(__file__).resolve().parents[2] / "nginx" / "nginx.conf.j2").read_text()


def render(tmp_path, toml="", environ=None):
    path = tmp_path / "bluegreen.toml"
    path.write_text(toml)
    config = load_config(str(path), environ=environ or {})
    return render_config(TEMPLATE, render_context(config, "/srv/run/nginx", "/srv/run/nginx/active-green"))


def test_each_color_has_the_other_as_backup(tmp_path):
    text = render(tmp_path)
    blue = text[text.index("upstream blue_active"):text.index("upstream blue_preview")]
    assert "server 127.0.0.1:8001 max_fails=1 fail_timeout=2s;" in blue
    assert "server 127.0.0.1:8002 backup;" in blue
    assert "keepalive_timeout 4s;" in blue


def test_replicas_are_all_upstream_servers(tmp_path):
    text = render(tmp_path, "[colors.green]\nports = [9001, 9002]\n")
    green = text[text.index("upstream green_active"):text.index("upstream green_preview")]
    assert "server 127.0.0.1:9001 max_fails=1" in green and "server 127.0.0.1:9002 max_fails=1" in green


def test_front_and_preview_doors_use_the_marker(tmp_path):
    text = render(tmp_path, environ={"BLUEGREEN_PORT": "9080", "BLUEGREEN_PREVIEW_PORT": "9081"})
    assert "listen 127.0.0.1:9080;" in text and "listen 127.0.0.1:9081;" in text
    assert text.count("if (-f /srv/run/nginx/active-green)") == 2
    assert "proxy_next_upstream error timeout non_idempotent;" in text
    assert "server_tokens off;" in text
    assert "pid /srv/run/nginx/nginx.pid;" in text


def test_an_undefined_template_variable_is_an_error():
    with pytest.raises(ControllerError, match="nginx template: UndefinedError"):
        render_config("listen {{ nope }};", {})

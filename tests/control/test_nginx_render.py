"""The renderer is pure: configuration in, nginx config text out."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.control.config import load_config
from app.control.nginx_render import generation_of, render_config, render_context
from app.errors import ControllerError

TEMPLATE = (Path(__file__).resolve().parents[2] / "nginx" / "nginx.conf.j2").read_text()


def render(tmp_path, toml="", environ=None):
    path = tmp_path / "bluegreen.toml"
    path.write_text(toml)
    config = load_config(str(path), environ=environ or {})
    return render_config(TEMPLATE, render_context(config, "/srv/run/nginx", "/srv/run/nginx/active-green"))


def upstream(text, name):
    start = text.index(f"upstream {name} {{")
    return text[start:text.index("}", start)]


def test_each_server_is_listed_twice_never_taken_out_and_the_other_color_is_the_backup(tmp_path):
    text = render(tmp_path)
    blue = upstream(text, "blue_active")
    assert blue.count("server 127.0.0.1:8001 max_fails=0;") == 2
    assert "server 127.0.0.1:8002 backup;" in blue
    assert "keepalive_timeout 4s;" in blue
    assert "proxy_next_upstream_tries 3;" in text  # twice the one server, then the other color


def test_with_on_active_failure_fail_there_is_no_backup(tmp_path):
    text = render(tmp_path, '[nginx]\non_active_failure = "fail"\n')
    assert "backup" not in upstream(text, "blue_active") and "backup" not in upstream(text, "green_active")


def test_replicas_are_all_upstream_servers(tmp_path):
    text = render(tmp_path, "[colors.green]\nports = [9001, 9002]\n")
    green = upstream(text, "green_active")
    assert green.count("server 127.0.0.1:9001 max_fails=0;") == 2 and green.count("server 127.0.0.1:9002") == 2
    assert "proxy_next_upstream_tries 5;" in text


def test_predictions_have_their_own_read_timeout(tmp_path):
    text = render(tmp_path, '[nginx]\npredict_timeout = "800ms"\n')
    block = text[text.index("location ~ ^/(predict|feedback)$"):]
    assert block.index("proxy_read_timeout 800ms;") < block.index("}")
    assert "proxy_read_timeout 30s;" in text


def test_the_route_color_header_is_set_once_beside_the_other_proxy_headers(tmp_path):
    text = render(tmp_path)
    # a proxy_set_header inside a server block would silently drop the http-level ones
    assert text.count("proxy_set_header X-Route-Color $route_color;") == 1
    http_level = text[:text.index("server {")]
    assert 'proxy_set_header Connection "";' in http_level and "X-Route-Color" in http_level


def test_the_generation_follows_the_settings(tmp_path):
    first, again = render(tmp_path), render(tmp_path)
    changed = render(tmp_path, '[nginx]\nclient_max_body_size = "2m"\n')
    assert generation_of(first) == generation_of(again) != generation_of(changed)
    assert f'return 200 "{generation_of(first)}";' in first
    assert generation_of("worker_processes 1;") is None


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

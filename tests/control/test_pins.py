"""Version pins (app/control/pins.py): the marker files nginx tests per request, and the 404's body."""

from __future__ import annotations

import json

from app.control import pins
from app.control.config import load_config
from app.control.nginx_render import render_config, render_context
from tests.control.test_nginx_render import TEMPLATE


def config(tmp_path):
    path = tmp_path / "bluegreen.toml"
    path.write_text(f'run_dir = "{tmp_path / "run"}"\n')
    return load_config(str(path), environ={})


def test_publish_names_each_colors_version_and_the_versions_served(tmp_path):
    cfg = config(tmp_path)
    directory = cfg.run_dir / "nginx" / "pins"
    pins.publish(cfg, {"blue": "v1.0.0", "green": "v1.1.0"})
    assert sorted(p.name for p in directory.iterdir()) == ["blue-v1.0.0", "green-v1.1.0", "unserved.json"]
    body = json.loads((directory / "unserved.json").read_text())
    assert body["status"] == 404 and body["versions"] == ["v1.0.0", "v1.1.0"]
    assert body["error"].endswith("served: v1.0.0 (blue), v1.1.0 (green)")


def test_a_color_being_loaded_serves_no_pin_until_it_serves_its_new_version(tmp_path):
    cfg = config(tmp_path)
    directory = cfg.run_dir / "nginx" / "pins"
    pins.publish(cfg, {"blue": "v1.0.0", "green": "v1.1.0"})
    pins.publish(cfg, {"blue": "v1.0.0", "green": None})
    assert sorted(p.name for p in directory.iterdir()) == ["blue-v1.0.0", "unserved.json"]
    assert json.loads((directory / "unserved.json").read_text())["versions"] == ["v1.0.0"]
    pins.publish(cfg, {"blue": "v1.0.0", "green": "v1.2.0"})
    assert sorted(p.name for p in directory.iterdir()) == ["blue-v1.0.0", "green-v1.2.0", "unserved.json"]
    pins.publish(cfg, {"blue": "v1.2.0", "green": "v1.2.0"})
    body = json.loads((directory / "unserved.json").read_text())
    assert body["versions"] == ["v1.2.0"] and body["error"].endswith("served: v1.2.0 (blue, green)")


def test_the_front_door_routes_pins_by_marker_and_only_well_formed_versions_name_a_file(tmp_path):
    text = render_config(TEMPLATE, render_context(config(tmp_path), "/srv/run/nginx", "/srv/run/nginx/active-green"))
    front = text[text.index("# Front door"):text.index("# Preview door")]
    assert "if (-f /srv/run/nginx/pins/$idle_color-$pin_name)" in front
    assert "if (-f /srv/run/nginx/pins/$active_color-$pin_name)" in front
    assert '"~^v[0-9]{1,6}\\.[0-9]{1,6}\\.[0-9]{1,6}$" $pin;' in text
    assert "proxy_pass http://${route_color}_preview$request_uri;" in front   # no other color as backup
    assert "alias /srv/run/nginx/pins/unserved.json;" in front
    preview = text[text.index("# Preview door"):text.index("# Shadow relay")]
    assert "$pin" not in preview

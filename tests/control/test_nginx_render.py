"""The renderer is pure: configuration in, nginx config text out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.control.config import load_config
from app.control.nginx_render import generation_of, render_config, render_context
from app.errors import ConfigError, ControllerError

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


def location(text, name, start=0):
    begin = text.index(f"location {name} {{", start)
    return text[begin:text.index("\n        }", begin)]


def test_predictions_have_their_own_read_timeout(tmp_path):
    text = render(tmp_path, '[nginx]\npredict_timeout = "800ms"\n')
    for path in ("/predict", "/feedback"):
        assert "proxy_read_timeout 800ms;" in location(text, f"= {path}")
    assert "proxy_read_timeout 30s;" in text


def doors(text):
    preview = text.index("# Preview door")
    return text[text.index("# Front door"):preview], text[preview:]


NGINX_OWN_STATUSES = (400, 403, 404, 405, 408, 411, 413, 414, 429, 494, 500, 501, 505)


def test_every_status_nginx_answers_itself_is_json_on_both_doors(tmp_path):
    for door in doors(render(tmp_path)):
        for status in NGINX_OWN_STATUSES:
            code = 400 if status == 494 else status
            assert f"error_page {status} ={code} /__bluegreen/error/{status};" in door
            page = location(door, f"= /__bluegreen/error/{status}")
            assert "internal;" in page
            body = page.split("'")[1].removesuffix("\\n")
            assert json.loads(body)["status"] == code and json.loads(body)["error"]
        assert "error_page 502 503 504 =502 /__bluegreen/error/unavailable;" in door
        # /metrics is read on each color's own port, never through a door.
        metrics = location(door, "= /metrics")
        assert "return 404 '" in metrics and "proxy_pass" not in metrics


def test_feedback_is_rate_limited_per_client_on_both_doors(tmp_path):
    text = render(tmp_path, '[nginx]\nfeedback_rate = "2r/s"\nfeedback_burst = 5\n')
    assert "limit_req_zone $binary_remote_addr zone=feedback:10m rate=2r/s;" in text
    assert "limit_req_status 429;" in text
    for door in doors(text):
        assert "limit_req zone=feedback burst=5 nodelay;" in location(door, "= /feedback")


def test_slow_clients_are_cut_off_and_connections_are_plenty(tmp_path):
    text = render(tmp_path)
    for line in ("worker_processes auto;", "worker_connections 4096;", "worker_rlimit_nofile 8448;",
                 "client_header_timeout 10s;", "client_body_timeout 10s;", "send_timeout 10s;",
                 "keepalive_timeout 15s;", "reset_timedout_connection on;", "large_client_header_buffers 4 8k;",
                 "limit_conn_zone $binary_remote_addr zone=per_client:10m;", "limit_conn per_client 256;",
                 "limit_conn_status 429;"):
        assert line in text
    text = render(tmp_path, '[nginx]\nworker_processes = 3\nworker_connections = 2000\n'
                            'client_header_timeout = "5s"\nconnections_per_client = 50\n')
    for line in ("worker_processes 3;", "worker_connections 2000;", "client_header_timeout 5s;",
                 "limit_conn per_client 50;"):
        assert line in text


@pytest.mark.parametrize("toml, error", [
    ('feedback_rate = "fast"', 'nginx.feedback_rate must be an nginx rate such as "10r/s"'),
    ('feedback_rate = "0r/s"', "nginx.feedback_rate must be an nginx rate"),
    ("worker_connections = 0", "nginx.worker_connections must be above 0"),
    ('client_header_timeout = "soon"', "nginx.client_header_timeout must be an nginx time"),
])
def test_bad_trust_settings_are_refused(tmp_path, toml, error):
    with pytest.raises(ConfigError, match=error):
        render(tmp_path, f"[nginx]\n{toml}\n")


def test_only_a_plain_request_id_is_passed_to_the_colors(tmp_path):
    text = render(tmp_path)
    block = text[text.index("map $http_x_request_id $req_id {"):]
    block = block[:block.index("}\n")]
    assert "default                    $request_id;" in block
    assert '"~^[A-Za-z0-9._-]{1,128}$" $http_x_request_id;' in block


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
    # the front door (its active and its idle color), the preview door and the shadow relay
    assert text.count("if (-f /srv/run/nginx/active-green)") == 4
    assert "proxy_next_upstream error timeout non_idempotent;" in text
    assert "server_tokens off;" in text
    assert "pid /srv/run/nginx/nginx.pid;" in text


def test_an_undefined_template_variable_is_an_error():
    with pytest.raises(ControllerError, match="nginx template: UndefinedError"):
        render_config("listen {{ nope }};", {})


def test_canary_and_shadow_buckets_are_fixed_and_their_markers_read_per_request(tmp_path):
    text = render(tmp_path)
    for name in ("$request_bucket", "$client_bucket", "$shadow_bucket"):
        block = text[text.index(f'" {name} {{'):]
        block = block[:block.index("}")]
        assert block.count("1% b") == 100 and "1% b00;" in block and "1% b99;" in block
    # a canary bucket's marker names the idle color; only the prediction routes and /feedback are
    # split; a marker is looked up with the lease's suffix (docs/adr/0017)
    assert "if (-f /srv/run/nginx/canary/$idle_color-$canary_bucket$canary_suffix$lease_suffix)" in text
    assert "if (-f /srv/run/nginx/canary/sticky)" in text
    assert "if (-f /srv/run/nginx/shadow/$shadow_bucket$shadow_suffix$lease_suffix)" in text
    front = text[text.index("# Front door"):text.index("# Preview door")]
    assert "location / {\n            proxy_pass http://${active_color}_active;" in front
    assert "add_header X-Config-Generation" in front and "proxy_pass http://${active_color}_active;" in front
    # /predict, /feedback and the inference protocols' prediction routes (docs/adr/0014) only
    assert front.count("proxy_pass http://${route_color}_active;") == 3
    assert "location ~ ^/(v2/models/[^/]+(/versions/[^/]+)?/infer|v1/models/[^/]+:predict|invocations)$ {" in front


def test_the_mirror_goes_through_a_relay_that_answers_at_once_and_clients_cannot_fake_a_copy(tmp_path):
    text = render(tmp_path)
    front = text[text.index("# Front door"):text.index("# Preview door")]
    # only the sampled predictions are rewritten to the one location that mirrors them
    mirrored = front[front.index("location = /__bluegreen/mirrored {"):]
    mirrored = mirrored[:mirrored.index("}")]
    assert front.count("mirror /__bluegreen/shadow;") == 1 and "mirror /__bluegreen/shadow;" in mirrored
    assert "internal;" in mirrored
    assert "proxy_pass http://unix:/srv/run/nginx/shadow.sock:/__bluegreen/shadow;" in front
    relay = text[text.index("# Shadow relay"):]
    assert "listen unix:/srv/run/nginx/shadow.sock;" in relay
    assert "mirror /__bluegreen/shadow/send;" in relay and "return 204;" in relay
    assert "limit_conn shadow_in_flight 256;" in relay
    assert "proxy_set_header X-Bluegreen-Shadow 1;" in relay
    http_level = text[:text.index("server {")]
    assert 'proxy_set_header X-Bluegreen-Shadow "";' in http_level
    assert "location = /records {" in front


def test_copies_to_a_dead_color_are_throttled_and_kept_out_of_the_error_log(tmp_path):
    text = render(tmp_path)
    shadow = text[text.index("upstream green_shadow {"):]
    shadow = shadow[:shadow.index("}")]
    assert shadow.count("max_fails=1 fail_timeout=2s;") == 2  # twice: nginx ignores max_fails for a lone server
    relay = text[text.index("# Shadow relay"):]
    assert "error_log /srv/run/nginx/error.log crit;" in relay
    assert "proxy_pass http://${shadow_color}_shadow$shadow_uri;" in relay

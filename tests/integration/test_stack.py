"""The local stack against real nginx and real gunicorn: up, switch, rollback, reload, down."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests

from app.control.store import StateStore
from tests.helpers import Stack, Traffic, free_port, pids_matching, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(shipped_models, tmp_path_factory):
    with Stack(tmp_path_factory.mktemp("stack"), shipped_models) as stack:
        yield stack


@pytest.fixture
def on_blue(stack):
    """Each test starts with both colors up and blue active."""
    stack.cli("up")
    if stack.front_color() != "blue":
        stack.cli("switch", "blue")
    return stack


def test_up_serves_blue_on_the_front_door_and_green_on_preview(on_blue):
    front = requests.post(on_blue.front + "/predict", json={"x": [5.1, 3.5, 1.4, 0.2]})
    assert front.status_code == 200
    assert front.headers["X-Color"] == "blue" and front.json()["version"] == "v1.0.0"
    preview = requests.get(on_blue.preview + "/health")
    assert preview.headers["X-Color"] == "green" and preview.json()["version"] == "v1.1.0"
    status = on_blue.status()
    assert status["active"] == "blue"
    assert {c: status["colors"][c]["state"] for c in ("blue", "green")} == {"blue": "up", "green": "up"}
    assert status["colors"]["blue"]["servers"][0]["health"]["metrics"]["accuracy"] > 0.9


def test_switch_under_keepalive_load_drops_nothing(on_blue):
    switches = 10
    with Traffic(on_blue.front, clients=6) as traffic:
        time.sleep(0.5)
        for i in range(switches):
            on_blue.cli("switch", "green" if i % 2 == 0 else "blue")
            time.sleep(0.3)
    print(f"\nswitch under load: {traffic.sent} requests, {len(traffic.failures)} failed, "
          f"{switches} switches, versions {traffic.versions}")
    assert traffic.sent > 500
    assert traffic.failures == []
    assert set(traffic.versions) == {"v1.0.0", "v1.1.0"}
    assert on_blue.front_color() == "blue"


def test_switch_reports_success_only_when_the_front_door_serves_the_target(on_blue):
    result = on_blue.cli("switch", "green")
    assert "switched from blue (v1.0.0) to green (v1.1.0)" in result.stdout
    assert all(requests.get(on_blue.front + "/health").headers["X-Color"] == "green" for _ in range(5))
    entry = on_blue.history()[-1]
    assert (entry["action"], entry["outcome"], entry["from"], entry["to"]) == ("switch", "succeeded", "blue", "green")
    assert (entry["from_version"], entry["to_version"]) == ("v1.0.0", "v1.1.0")
    assert entry["duration_ms"] < 1000


def test_switch_to_the_active_color_does_nothing(on_blue):
    before = len(on_blue.history())
    result = on_blue.cli("switch", "blue")
    assert result.stdout.strip() == "blue is already active (v1.0.0); nothing to do"
    assert len(on_blue.history()) == before


def test_rollback_returns_to_the_previous_color(on_blue):
    on_blue.cli("switch", "green")
    result = on_blue.cli("rollback")
    assert "to blue (v1.0.0)" in result.stdout
    assert on_blue.front_color() == "blue"
    assert on_blue.history()[-1]["action"] == "rollback"


def test_switch_to_a_stopped_color_is_refused_and_traffic_stays(on_blue):
    on_blue.kill_color("green")
    wait_until(lambda: not on_blue.gunicorn_pids("green"), what="green to die")
    result = on_blue.cli("switch", "green", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"bluegreen: refusing to switch to green: 127.0.0.1:{on_blue.green_port} does not answer "
        "(connection refused); traffic stays on blue")
    assert on_blue.front_color() == "blue"
    assert on_blue.history()[-1]["outcome"] == "refused"
    assert on_blue.status()["colors"]["green"]["state"] == "down"
    # `up` reconciles: it restarts what is down and nothing else.
    blue_pids = sorted(on_blue.gunicorn_pids("blue"))
    assert "green: starting v1.1.0" in on_blue.cli("up").stdout
    assert sorted(on_blue.gunicorn_pids("blue")) == blue_pids


def test_up_twice_changes_nothing_that_is_healthy(on_blue):
    pids = {c: sorted(on_blue.gunicorn_pids(c)) for c in ("blue", "green")}
    nginx_pid = on_blue.status()["nginx_pid"]
    result = on_blue.cli("up")
    assert "starting" not in result.stdout
    assert {c: sorted(on_blue.gunicorn_pids(c)) for c in ("blue", "green")} == pids
    assert on_blue.status()["nginx_pid"] == nginx_pid


def test_broken_template_fails_reload_and_the_front_door_keeps_serving(on_blue):
    live_config = (on_blue.run_dir / "nginx" / "nginx.conf").read_text()
    broken = on_blue.dir / "broken.conf.j2"
    broken.write_text(live_config.replace("proxy_http_version 1.1;", "proxy_http_version 1.1"))
    original = on_blue.config.read_text()
    on_blue.config.write_text(original.replace("[nginx]\n", f'[nginx]\ntemplate = "{broken}"\n'))
    try:
        with Traffic(on_blue.front, clients=2) as traffic:
            result = on_blue.cli("reload", check=False)
            time.sleep(0.3)
    finally:
        on_blue.config.write_text(original)
    assert result.returncode == 1
    assert result.stderr.startswith("bluegreen: nginx rejected the new config: nginx: [emerg]")
    assert (on_blue.run_dir / "nginx" / "nginx.conf").read_text() == live_config
    assert traffic.failures == [] and traffic.sent > 0
    assert on_blue.cli("reload").stdout.strip() == "nginx config unchanged; nothing to reload"


def test_reload_applies_a_changed_config_without_dropping_requests(on_blue):
    original = on_blue.config.read_text()
    on_blue.config.write_text(original.replace("[nginx]\n", '[nginx]\nclient_max_body_size = "2m"\n'))
    try:
        assert on_blue.cli("reload").stdout.strip() == "nginx config replaced and reloaded; the front door serves it"
        assert "client_max_body_size 2m;" in (on_blue.run_dir / "nginx" / "nginx.conf").read_text()
    finally:
        on_blue.config.write_text(original)
        on_blue.cli("reload")


def test_two_switches_at_once_are_serialized(on_blue):
    first, second = on_blue.popen("switch", "green"), on_blue.popen("switch", "green")
    outputs = [p.communicate(timeout=60) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    stdout = [out for out, _ in outputs]
    assert sum("switched from blue" in out for out in stdout) == 1
    assert sum("already active" in out for out in stdout) == 1
    assert on_blue.front_color() == "green"
    assert [e["to"] for e in on_blue.history()[-1:]] == ["green"]


def test_a_held_lock_makes_a_switch_fail_clearly(on_blue):
    original = on_blue.config.read_text()
    on_blue.config.write_text(original + "\n[switch]\nlock_timeout = 0.5\n")
    store = StateStore(on_blue.run_dir)
    try:
        with store.locked(1):
            result = on_blue.cli("switch", "green", check=False)
    finally:
        on_blue.config.write_text(original)
    assert result.returncode == 1
    assert result.stderr.startswith("bluegreen: another bluegreen command is running (pid ")
    assert on_blue.front_color() == "blue"


def test_killing_the_active_color_under_load(on_blue):
    clients = 6
    with Traffic(on_blue.front, clients=clients) as traffic:
        time.sleep(1.0)
        killed_at = time.monotonic()
        on_blue.kill_color("blue")
        time.sleep(2.0)
    print(f"\nactive color killed under load: {traffic.sent} requests, {len(traffic.failures)} failed "
          f"{traffic.failures}, versions {traffic.versions}")
    # nginx retries every request it has not started answering (the idle color is the
    # backup); only a response already under way when blue died can break, so at most
    # the requests in flight at that instant fail, and none afterwards.
    assert len(traffic.failures) <= clients
    assert traffic.failures_after(killed_at + 1.0) == []
    assert traffic.versions.get("v1.1.0", 0) > 0  # the backup color answered
    status = on_blue.status()
    assert status["active"] == "blue"
    assert status["colors"]["blue"]["state"] == "down"
    on_blue.cli("up")
    assert on_blue.status()["colors"]["blue"]["state"] == "up"


def test_interrupted_switch_is_repaired_from_what_nginx_serves(on_blue):
    # A controller killed after flipping nginx's marker but before writing its record.
    (on_blue.run_dir / "nginx" / "active-green").write_text("green\n")
    assert on_blue.front_color() == "green"
    status = on_blue.status()
    assert status["active"] == "green"
    on_blue.cli("up")
    entry = on_blue.history()[-2] if on_blue.history()[-1]["action"] == "up" else on_blue.history()[-1]
    assert (entry["action"], entry["outcome"], entry["to"]) == ("reconcile", "repaired", "green")
    assert on_blue.cli("rollback").returncode == 0
    assert on_blue.front_color() == "blue"


def test_controller_killed_during_up_leaves_no_orphans(shipped_models, tmp_path):
    stack = Stack(tmp_path, shipped_models)
    try:
        process = stack.popen("up")
        wait_until(lambda: stack.gunicorn_pids("blue"), 60, what="blue to start")
        process.send_signal(signal.SIGKILL)
        process.wait()
        stack.cli("up")
        status = stack.status()
        assert all(status["colors"][c]["state"] == "up" for c in ("blue", "green"))
        assert stack.front_color() == "blue"
    finally:
        stack.down()
    assert pids_matching(str(stack.run_dir)) == []
    assert stack.gunicorn_pids("blue") == [] and stack.gunicorn_pids("green") == []


def test_a_gunicorn_of_ours_still_booting_when_up_runs_again_is_stopped_not_taken_for_a_stranger(
        shipped_models, tmp_path):
    # An `up` killed while blue's gunicorn boots leaves it holding the port before its pid file
    # exists: the command line is ours (pid file and address), so the next `up` stops it.
    stack = Stack(tmp_path, shipped_models)
    stack.run_dir.mkdir(mode=0o700)
    pid_file, address = stack.run_dir / f"blue-{stack.blue_port}.pid", f"127.0.0.1:{stack.blue_port}"
    booting = subprocess.Popen(
        [sys.executable, "-c", "import socket, sys, time; s = socket.socket(); s.bind(('127.0.0.1', "
         "int(sys.argv[1]))); s.listen(); time.sleep(120)", str(stack.blue_port), "-m", "gunicorn",
         "--pid", str(pid_file), "--bind", address])
    try:
        wait_until(lambda: _listening(stack.blue_port), what="the booting stand-in to listen")
        up = stack.cli("up")
        assert f"repaired: stopped gunicorn processes left by a killed master or command: pid {booting.pid} (" \
            in up.stdout
        assert booting.wait(10) is not None
        assert stack.status()["colors"]["blue"]["state"] == "up"
    finally:
        booting.kill()
        stack.down()


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_down_leaves_no_process(shipped_models, tmp_path):
    stack = Stack(tmp_path, shipped_models)
    stack.cli("up")
    assert pids_matching(str(stack.run_dir))
    stack.cli("down")
    assert pids_matching(str(stack.run_dir)) == []
    assert stack.gunicorn_pids("blue") == [] and stack.gunicorn_pids("green") == []


def test_nginx_answers_its_own_errors_in_json(on_blue):
    big = b'{"x": [' + b"1," * 600_000 + b"1]}"
    response = requests.post(on_blue.front + "/predict", data=big)
    assert response.status_code == 413
    assert response.json() == {"error": "request body too large: the limit is 1m", "status": 413}
    assert "nginx/" not in response.headers.get("Server", "")  # server_tokens off
    on_blue.kill_color("green")
    wait_until(lambda: not on_blue.gunicorn_pids("green"), what="green to die")
    response = requests.get(on_blue.preview + "/health")
    assert response.status_code == 502
    assert response.json() == {"error": "the preview color is not answering (upstream unavailable)", "status": 502}


def test_access_log_has_upstream_status_and_timings(on_blue):
    requests.post(on_blue.front + "/predict", json={"x": [5.1, 3.5, 1.4, 0.2]}, headers={"X-Request-ID": "trace-42"})
    log = on_blue.run_dir / "nginx" / "access.log"
    line = wait_until(lambda: next((x for x in log.read_text().splitlines() if "request_id=trace-42" in x), None),
                      5, what="the access log line")
    assert '"POST /predict HTTP/1.1" 200' in line
    assert f"color=blue upstream=127.0.0.1:{on_blue.blue_port} upstream_status=200" in line
    assert "request_time=" in line and "upstream_time=" in line


def test_a_color_may_have_several_replicas(shipped_models, tmp_path):
    ports = sorted({free_port() for _ in range(2)})
    stack = Stack(tmp_path, shipped_models)
    stack.config.write_text(stack.config.read_text().replace(
        f"ports = [{stack.blue_port}]", f"ports = [{ports[0]}, {ports[1]}]"))
    try:
        stack.cli("up")
        servers = stack.status()["colors"]["blue"]["servers"]
        assert [s["address"] for s in servers] == [f"127.0.0.1:{p}" for p in ports]
        assert all(s["ready"] for s in servers)
        for _ in range(40):
            requests.post(stack.front + "/predict", json={"x": [5.1, 3.5, 1.4, 0.2]}, headers={"Connection": "close"})
        wait_until(lambda: all(f"upstream=127.0.0.1:{p}" in (stack.run_dir / "nginx" / "access.log").read_text()
                               for p in ports), 5, what="both replicas in the access log")
    finally:
        stack.down()
    assert all(pids_matching(f"127.0.0.1:{p}") == [] for p in ports)


def test_switch_is_refused_when_nginx_is_down(shipped_models, tmp_path):
    stack = Stack(tmp_path, shipped_models)
    try:
        stack.cli("up")
        os.kill(stack.status()["nginx_pid"], signal.SIGTERM)  # nginx's fast shutdown
        wait_until(lambda: stack.status()["nginx_pid"] is None, what="nginx to stop")
        result = stack.cli("switch", "green", check=False)
        assert result.returncode == 1
        assert result.stderr.strip() == (
            "bluegreen: refusing to switch to green: nginx is not running (run `bluegreen up`); traffic stays on blue")
        stack.cli("up")  # restarts nginx, nothing else
        assert stack.status()["nginx_pid"]
        assert stack.front_color() == "blue"
    finally:
        stack.down()

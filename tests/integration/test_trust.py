"""The trust boundary against real nginx and gunicorn: issue 11's attacks, as a new user would try them.

Poisoned feedback and malformed input move no traffic; every non-2xx answer from the front
door, the preview door or a color is the JSON error shape; slow clients leave the others
served; a tampered export fails the deploy; `make serve` listens on loopback only.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

from tests.helpers import ROOT, Stack, Traffic, free_port, wait_until

pytestmark = pytest.mark.integration

ROW = [5.1, 3.5, 1.4, 0.2]
ATTACKER = "127.0.0.2"  # another loopback address: nginx limits clients per address


@pytest.fixture(scope="module")
def stack(shipped_models, tmp_path_factory):
    with Stack(tmp_path_factory.mktemp("trust"), shipped_models,
               "[bake]\nperiod = 4.0\ninterval = 0.4\nfailure_limit = 1\nmin_labelled = 10\n") as stack:
        yield stack


def raw(port: int, data: bytes, source: str = "127.0.0.1", timeout: float = 5.0) -> tuple[int | None, bytes]:
    """Send ``data`` as is; return (status, body) of the first answer (None: no answer)."""
    with socket.socket() as sock:
        sock.settimeout(timeout)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        sock.sendall(data)
        out = b""
        try:
            while b"\r\n\r\n" not in out or len(out.partition(b"\r\n\r\n")[2]) < _length(out):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                out += chunk
        except TimeoutError:
            pass
    head, _, body = out.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1."):
        return None, out
    return int(head.split()[1]), body[:_length(out)]


def _length(out: bytes) -> int:
    for line in out.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 1 << 30


H = b"Host: x\r\n"
# Issue 11, point 5: what got HTML before (nginx's and gunicorn's own pages).
MALFORMED = {
    "path traversal": b"GET /../../etc/passwd HTTP/1.1\r\n" + H + b"\r\n",
    "CL and TE": b"POST /predict HTTP/1.1\r\n" + H
    + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "bad chunk size": b"POST /predict HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
    "lowercase method": b"get /health HTTP/1.1\r\n" + H + b"\r\n",
    "CONNECT": b"CONNECT example.org:443 HTTP/1.1\r\n" + H + b"\r\n",
    "no Host": b"GET /health HTTP/1.1\r\n\r\n",
    "negative Content-Length": b"POST /predict HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n",
    "TLS bytes": bytes.fromhex("16030100a5010000a10303") + b"\0" * 40 + b"\r\n\r\n",
    "TRACE": b"TRACE / HTTP/1.1\r\n" + H + b"\r\n",
    "URI too long": b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + H + b"\r\n",
    "huge header": b"GET /health HTTP/1.1\r\n" + H + b"X-Big: " + b"a" * 9000 + b"\r\n\r\n",
    "huge cookie": b"GET /health HTTP/1.1\r\n" + H + b"Cookie: " + b"a=b; " * 2000 + b"\r\n\r\n",
    "HTTP/2.0 on a plain port": b"GET /health HTTP/2.0\r\n" + H + b"\r\n",
    "control character in Content-Type": b"POST /predict HTTP/1.1\r\n" + H
    + b"Content-Type: app\x01lication/json\r\nContent-Length: 2\r\n\r\n{}",
    "2000 headers": b"GET /health HTTP/1.1\r\n" + H + b"".join(b"X-H%d: v\r\n" % i for i in range(2000)) + b"\r\n",
    "unsupported Transfer-Encoding": b"POST /predict HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\n",
    "deep JSON": b"POST /predict HTTP/1.1\r\n" + H + b"Content-Length: 100000\r\n\r\n" + b"[" * 100000,
    "invented method": b"BREW /health HTTP/1.1\r\n" + H + b"\r\n",
    "unknown path": b"GET /nope HTTP/1.1\r\n" + H + b"\r\n",
}


def test_every_non_2xx_answer_is_json_from_either_door_and_from_a_color(stack):
    doors = {"front door": stack.port, "preview door": stack.preview_port, "blue directly": stack.blue_port}
    seen = {}
    for door, port in doors.items():
        for name, request in MALFORMED.items():
            status, body = raw(port, request)
            assert status is not None, f"{door}, {name}: no HTTP answer ({body[:80]!r})"
            seen[(door, name)] = status
            assert status < 500 or status in (501, 505), f"{door}, {name}: a client got {status}"
            if status < 400:  # gunicorn accepts some of these (no Host) that nginx refuses
                assert door == "blue directly", f"{door}, {name}: {status}"
                continue
            error = json.loads(body)
            assert error["status"] == status and isinstance(error["error"], str), f"{door}, {name}: {body!r}"
    # X-Request-ID with high bytes is answered (nginx replaces it); a color's own id is plain.
    status, body = raw(stack.port, b"GET /health HTTP/1.1\r\n" + H + b"X-Request-ID: \xff\xfe\r\n\r\n")
    assert status == 200
    print(f"\n{len(seen)} malformed requests, all answered in JSON: {sorted(set(seen.values()))}")


def test_the_doors_do_not_proxy_metrics_and_hide_internal_pages(stack):
    for url in (stack.front, stack.preview):
        response = requests.get(url + "/metrics")
        assert response.status_code == 404
        assert response.json()["error"].startswith("not found: /metrics is not served through nginx")
        response = requests.get(url + "/__bluegreen/error/400")
        assert response.status_code == 404 and response.json()["status"] == 404
    assert requests.get(f"http://127.0.0.1:{stack.blue_port}/metrics").status_code == 200


def test_poisoned_feedback_and_malformed_input_move_no_traffic(stack):
    stack.cli("up")
    if stack.front_color() != "green":
        stack.cli("switch", "green")
    watch = stack.popen("watch", "--duration", "8")
    try:
        time.sleep(1.0)
        with Traffic(stack.front, clients=2):
            # Point 1: 25 wrong labels without the token (refused: 401, or 429 past the rate limit).
            for _ in range(25):
                response = requests.post(stack.front + "/feedback", json={"x": ROW, "label": "virginica"})
                assert response.status_code in (401, 429) and response.json()["status"] == response.status_code
            # Point 2: deep nesting is a 400, never a 5xx counted as a server error.
            for _ in range(6):
                assert requests.post(stack.front + "/predict", data="[" * 100_000).status_code == 400
            # Point 4: values the model cannot represent.
            response = requests.post(stack.front + "/predict", json={"x": [1e39, 3, 4.2, 1.5]})
            assert response.status_code == 400 and "±3.4028235e+38" in response.json()["error"]
            out, err = watch.communicate(timeout=60)
    finally:
        if watch.poll() is None:
            watch.kill()
    assert watch.returncode == 0, out + err
    assert stack.front_color() == "green"
    live = requests.get(stack.front + "/health").json()["live"]
    assert live["labelled"] == 0 and live["server_errors"] == 0
    assert not any(e["action"] == "rollback" for e in stack.history())
    stack.cli("switch", "blue")


def test_feedback_with_the_token_counts_and_is_rate_limited(stack):
    auth = stack.feedback_auth()
    assert stack.cli("token").stdout.strip() == stack.feedback_token()
    assert oct((stack.run_dir / "feedback.token").stat().st_mode & 0o777) == "0o600"
    statuses = [requests.post(stack.front + "/feedback", json={"x": ROW, "label": "setosa"}, headers=auth)
                for _ in range(40)]
    codes = [r.status_code for r in statuses]
    assert codes.count(200) >= 20 and 429 in codes
    limited = next(r for r in statuses if r.status_code == 429)
    assert limited.json() == {"error": "too many requests from this address: slow down", "status": 429}


def test_invented_methods_fold_into_one_label(stack):
    # Point 3 (the 100k run is a benchmark: docs/PERFORMANCE.md, "Trust boundary").
    with requests.Session() as session:
        for i in range(500):
            method = "INVENT" + "".join(chr(65 + int(d)) for d in str(i))  # letters only, for nginx
            assert session.request(method, stack.front + "/health").status_code == 405
    text = requests.get(f"http://127.0.0.1:{stack.blue_port}/metrics").text
    methods = {line.split('method="')[1].split('"')[0] for line in text.splitlines()
               if line.startswith("bluegreen_http_requests_total{")}
    assert methods <= {"GET", "POST", "other"}


def slowloris(port: int, count: int) -> list[socket.socket]:
    """``count`` connections from ATTACKER, each with half a request header sent."""
    held = []
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        sock.bind((ATTACKER, 0))
        with contextlib.suppress(BlockingIOError):
            sock.connect(("127.0.0.1", port))
        held.append(sock)
    time.sleep(0.5)
    for sock in held:
        with contextlib.suppress(OSError):
            sock.send(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    return held


def test_a_thousand_slow_clients_leave_the_others_served(stack):
    # Point 6: 1030 half-sent requests used to lock everyone out (one worker, 1024 connections).
    held = slowloris(stack.port, 1030)
    try:
        time.sleep(1.0)
        answered = 0
        for _ in range(20):
            response = requests.post(stack.front + "/predict", json={"x": ROW}, timeout=3,
                                     headers={"Connection": "close"})
            answered += response.status_code == 200
        assert answered == 20
    finally:
        for sock in held:
            sock.close()


def test_a_deploy_whose_export_was_changed_fails_with_the_reason(stack, models_dir):
    # Point 7: a tampered .onnx used to pass every gate (served around through scikit-learn).
    original = stack.config.read_text()
    stack.config.write_text(original.replace(f'models_dir = "{stack_models(stack)}"', f'models_dir = "{models_dir}"'))
    try:
        export = models_dir / "iris_model_v1.1.0.onnx"
        export.write_bytes(export.read_bytes()[:-8] + b"tampered")
        result = stack.cli("deploy", "v1.1.0", check=False)
    finally:
        stack.config.write_text(original)
    assert result.returncode == 1
    assert f"{export}: sha256 " in result.stderr and "does not match the card's" in result.stderr
    assert "traffic stays on" in result.stderr


def stack_models(stack) -> str:
    return next(line.split('"')[1] for line in stack.config.read_text().splitlines() if line.startswith("models_dir"))


def test_make_serve_listens_on_loopback_only(tmp_path):
    # Point 8: `make serve` bound 0.0.0.0 though the README says loopback.
    port = free_port()
    env = {**os.environ, "PORT": str(port), "WEB_CONCURRENCY": "1", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    env.pop("BIND", None)
    process = subprocess.Popen(["make", "-s", "serve"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200, 60,
                   what="make serve")
        listening = [line.split()[1] for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                     if line.split()[1].endswith(f":{port:04X}") and line.split()[3] == "0A"]
        assert listening == [f"0100007F:{port:04X}"]
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)


NOBODY = 65534


@pytest.fixture
def shared_dir():
    """A directory other users can reach (pytest's own are private), for a stack whose files must
    keep them out by themselves."""
    directory = Path(tempfile.mkdtemp(prefix="bluegreen-modes-"))
    directory.chmod(0o711)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="planting files as another user needs root")
def test_a_run_dir_or_a_token_others_can_write_is_refused_and_the_relay_socket_is_out_of_their_reach(
        models_dir, shared_dir):
    stack = Stack(shared_dir, models_dir)
    run = stack.run_dir
    run.mkdir()
    os.chown(run, NOBODY, NOBODY)
    run.chmod(0o777)
    planted = run / "feedback.token"
    planted.write_text("chosen-by-another-user-0123456789\n")
    os.chown(planted, NOBODY, NOBODY)
    planted.chmod(0o666)
    for args in (("token",), ("up",)):
        refused = stack.cli(*args, check=False)
        assert refused.returncode == 1 and refused.stdout == "", refused.stdout
        assert refused.stderr == (f"bluegreen: {run}: other users can write the run directory (mode 0777) and plant "
                                  "its files (the feedback token, the state, nginx's markers): `chmod go-w "
                                  f"{run}` (bluegreen makes it 0700)\n")
    run.chmod(0o700)
    refused = stack.cli("token", check=False)
    assert refused.returncode == 1 and refused.stderr.startswith(
        f"bluegreen: {planted}: other users can write the feedback token (mode 0666), so it may not be yours")
    planted.chmod(0o644)
    token = stack.cli("token")
    assert token.stdout == "chosen-by-another-user-0123456789\n"
    warning = f"{planted}: other users can read the feedback token (mode 0644) and move live accuracy with it"
    assert token.stderr.startswith(f"bluegreen: warning: {warning}")
    try:
        up = stack.cli("up")
        assert f"warning: {warning}" in up.stdout
        relay = run / "nginx" / "shadow.sock"
        assert relay.is_socket()
        reach = subprocess.run(["/usr/bin/python3", "-c", "import socket, sys; "
                                "socket.socket(socket.AF_UNIX).connect(sys.argv[1])", str(relay)],
                               user=NOBODY, capture_output=True, text=True, timeout=30)
        assert reach.returncode != 0 and "PermissionError" in reach.stderr, reach.stderr
        assert (run.stat().st_mode & 0o777, (run / "nginx").stat().st_mode & 0o777) == (0o700, 0o700)
    finally:
        stack.down()

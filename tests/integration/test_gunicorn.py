"""One color under real gunicorn, talked to over HTTP on loopback."""

from __future__ import annotations

import json
import re
import socket
import subprocess

import pytest
import requests
from prometheus_client.multiprocess import MultiProcessCollector

from tests.helpers import ROOT, Gunicorn, wait_until

pytestmark = pytest.mark.integration

ROW = [6.7, 3.0, 5.2, 2.3]
TOKEN = "gunicorn-test-feedback-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def color(shipped_models, tmp_path):
    server = Gunicorn(shipped_models, version="v1.1.0", color="green", workers=2,
                      metrics_dir=tmp_path / "metrics", extra_env={"FEEDBACK_TOKEN": TOKEN}).wait_ready()
    yield server
    server.stop()


def test_curl_style_request_through_gunicorn(color):
    # Exactly what the original shell scripts send: curl -d without a Content-Type.
    out = subprocess.run(["curl", "-s", "-i", f"{color.url}/predict", "-d", '{"x": [6.7, 3.0, 5.2, 2.3]}'],
                         capture_output=True, text=True, timeout=10).stdout
    assert out.startswith("HTTP/1.1 200")
    assert "X-Model-Version: v1.1.0" in out and "X-Color: green" in out
    assert '"prediction": "virginica"' in out


def predictions_answered_per_process(color) -> dict[int, float]:
    """The /predict 200s each process counted, from its own file in the multiprocess directory
    (prometheus_client writes one ``counter_<pid>.db`` per process): who answered what."""
    answered = {}
    for path in color.metrics_dir.glob("counter_*.db"):
        for family in MultiProcessCollector.merge([str(path)]):
            for sample in family.samples:
                if sample.name == "bluegreen_http_requests_total" and sample.labels == {
                        "endpoint": "/predict", "method": "POST", "status": "200"} and sample.value:
                    answered[int(path.stem.split("_")[-1])] = sample.value
    return answered


def test_metrics_are_aggregated_across_workers(color):
    sent = 0
    with requests.Session() as session:  # keep-alive: gunicorn gthread keeps the connection
        for _ in range(40):
            assert session.post(color.url + "/predict", json={"x": ROW}).status_code == 200
            sent += 1
    # Fresh connections, each accepted by whichever worker takes it: at least 40, and on
    # until a second worker has answered some (bounded: one worker answering all fails below).
    while sent < 80 or (len(predictions_answered_per_process(color)) < 2 and sent < 400):
        response = requests.post(color.url + "/predict", json={"x": ROW}, headers={"Connection": "close"})
        assert response.status_code == 200
        sent += 1
    answered = predictions_answered_per_process(color)
    assert len(answered) >= 2, f"one worker answered all {sent} requests: {answered}"
    assert set(answered) <= color.worker_pids(), answered   # workers, not the master
    assert sum(answered.values()) == sent
    text = requests.get(color.url + "/metrics").text
    match = re.search(r'bluegreen_http_requests_total\{endpoint="/predict",method="POST",status="200"\} (\S+)', text)
    assert match and float(match.group(1)) == sent
    assert f'bluegreen_predictions_total{{class_name="virginica"}} {float(sent)}' in text
    assert 'bluegreen_model_info{color="green",predictor="onnx",version="v1.1.0"} 1.0' in text


def test_live_feedback_is_aggregated_across_workers(color):
    for _ in range(20):
        requests.post(color.url + "/feedback", json={"x": ROW, "label": "virginica"},
                      headers={"Connection": "close", **AUTH})
    requests.post(color.url + "/feedback", json={"x": ROW, "label": "setosa"}, headers=AUTH)
    live = requests.get(color.url + "/health").json()["live"]
    assert live["labelled"] == 21 and live["correct"] == 20


def test_live_latency_buckets_are_summed_over_workers(color):
    for _ in range(30):  # fresh connections land on both workers
        requests.post(color.url + "/predict", json={"x": ROW}, headers={"Connection": "close"})
    requests.post(color.url + "/predict", json={"x": [1]}, headers={"Connection": "close"})  # a 400
    live = requests.get(color.url + "/health").json()["live"]
    buckets = live["latency_buckets"]
    assert buckets["+Inf"] == live["requests"] == 30
    assert buckets["2.5"] == 30 and list(buckets.values()) == sorted(buckets.values())


def test_bad_input_never_kills_a_worker(color):
    for body in ['{"x": [1, 2]}', "{oops", '{"x": [NaN, 1, 2, 3]}', '{"instances": []}']:
        response = requests.post(color.url + "/predict", data=body)
        assert response.status_code == 400 and "error" in response.json()
def raw_answer(port: int, request: bytes) -> tuple[int, dict, dict]:
    """Send ``request`` as it is (it asks to close the connection); the answer's status,
    headers and JSON body."""
    data = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        while chunk := sock.recv(65536):
            data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    return int(lines[0].split()[1]), dict(line.split(": ", 1) for line in lines[1:]), json.loads(body)


def request_bytes(line: bytes, headers: bytes = b"", body: bytes = b"") -> bytes:
    length = b"Content-Length: %d\r\n" % len(body) if body else b""
    return line + b"\r\nHost: x\r\nConnection: close\r\n" + headers + length + b"\r\n" + body


def test_the_app_s_answers_carry_the_color_headers_and_gunicorn_s_own_refusals_do_not(color):
    # README, API: which answers carry X-Model-Version, X-Color and X-Request-ID.
    by_the_app = {
        "a prediction": (request_bytes(b"POST /predict HTTP/1.1", body=json.dumps({"x": ROW}).encode()), 200),
        "a wrong row": (request_bytes(b"POST /predict HTTP/1.1", body=b'{"x": [1, 2]}'), 400),
        "feedback without a token": (request_bytes(b"POST /feedback HTTP/1.1", body=b"{}"), 401),
        "an unknown path": (request_bytes(b"GET /nope HTTP/1.1"), 404),
        "a wrong method": (request_bytes(b"DELETE /predict HTTP/1.1"), 405),
        "a body over the limit": (request_bytes(b"POST /predict HTTP/1.1", b"Content-Length: 2000000\r\n"), 413),
        "a broken chunked body": (request_bytes(b"POST /predict HTTP/1.1", b"Transfer-Encoding: chunked\r\n",
                                                ) + b"ZZ\r\n\r\n", 400),
    }
    for what, (request, expected) in by_the_app.items():
        status, headers, body = raw_answer(color.port, request)
        assert status == expected and body.get("status", 200) == status, (what, status, body)
        assert headers.get("X-Model-Version") == "v1.1.0" and headers.get("X-Color") == "green", (what, headers)
        assert re.fullmatch(r"[0-9a-f]{32}", headers.get("X-Request-ID", "")), (what, headers)
    # Refused by gunicorn before the request reaches the app: JSON, but no color headers.
    by_gunicorn = {
        "a malformed request line": (b"GARBAGE\r\n\r\n", 400),
        "a malformed header": (request_bytes(b"GET /health HTTP/1.1", b"Bad Header: y\r\n"), 400),
        "a request line over 8190 bytes": (request_bytes(b"GET /health?" + b"a" * 9000 + b" HTTP/1.1"), 414),
        "a header line over 16 KiB": (request_bytes(b"GET /health HTTP/1.1", b"X-Big: " + b"a" * 17000 + b"\r\n"), 431),
        "more than 1000 headers": (request_bytes(b"GET /health HTTP/1.1",
                                                 b"".join(b"X-%d: 1\r\n" % i for i in range(1001))), 431),
    }
    for what, (request, expected) in by_gunicorn.items():
        status, headers, body = raw_answer(color.port, request)
        assert (status, body["status"]) == (expected, expected), (what, status, body)
        assert not {"X-Model-Version", "X-Color", "X-Request-ID"} & set(headers), (what, headers)


def test_sigterm_marks_the_worker_draining_before_gunicorn_stops_it(app):
    # The hook gunicorn runs in each worker: TERM first flips readiness, then does
    # what the worker's own handler did.
    import os
    import signal
    import types

    from app.server import gunicorn_hooks

    calls = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(signum))
    try:
        gunicorn_hooks.post_worker_init(types.SimpleNamespace(wsgi=app))
        os.kill(os.getpid(), signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert app.extensions["model_server"].draining.is_set()
    assert calls == [signal.SIGTERM]
    assert app.test_client().get("/ready").status_code == 503


def test_sigterm_stops_gunicorn_gracefully_and_quickly(shipped_models):
    server = Gunicorn(shipped_models, workers=2).wait_ready()
    assert requests.post(server.url + "/predict", json={"x": ROW}).status_code == 200
    server.process.send_signal(15)
    try:
        server.process.wait(10)  # well under graceful_timeout: workers do not hang on exit
    finally:
        log = server.stop()
    assert server.process.returncode == 0, log


def test_tampered_model_is_refused_and_never_served(models_dir):
    (models_dir / "iris_model_v1.0.0.joblib").write_bytes(b"tampered")
    server = Gunicorn(models_dir)
    try:
        wait_until(lambda: server.process.poll() is not None, 30, what="gunicorn to exit")
    finally:
        log = server.stop()
    assert server.process.returncode != 0
    lines = [line for line in log.splitlines() if "refusing to serve" in line]
    assert len(lines) == 1, log
    assert lines[0].startswith(f"refusing to serve: {models_dir}/iris_model_v1.0.0.joblib: sha256 ")
    assert "does not match the card's" in lines[0]


def test_test_req_script_checks_a_running_color(color):
    result = subprocess.run(["bash", str(ROOT / "utils" / "test_req.sh"), color.url],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout


def test_test_req_script_fails_when_nothing_answers():
    result = subprocess.run(["bash", str(ROOT / "utils" / "test_req.sh"), "127.0.0.1:1"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0

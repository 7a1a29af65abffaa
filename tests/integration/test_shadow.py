"""Shadow traffic against real nginx and gunicorn: mirrored, paired, reported, and never in users' way."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time

import pytest
import requests

from tests.helpers import Stack

pytestmark = pytest.mark.integration

ROWS = [[5.1, 3.5, 1.4, 0.2], [5.9, 3.0, 5.1, 1.8], [6.0, 2.7, 5.1, 1.6], [6.7, 3.0, 5.2, 2.3]]
LABELS = ["setosa", "virginica", "versicolor", "virginica"]


@pytest.fixture
def stack(models_dir, tmp_path):
    with Stack(tmp_path, models_dir) as stack:
        yield stack


def send(stack, clients: int, each: int, feedback_every: int = 0) -> tuple[list[str], list[float], list[str]]:
    """``clients`` keep-alive clients, ``each`` predictions apiece: (request ids, latencies in ms, failures).
    Every ``feedback_every``-th prediction gets its label; ``send.labelled`` counts those nginx let
    through (POST /feedback is rate-limited per client address)."""
    ids, latencies, failures = [], [], []
    send.labelled = 0
    lock = threading.Lock()
    auth = stack.feedback_auth()

    def client(n: int) -> None:
        with requests.Session() as session:
            for i in range(each):
                row = (n + i) % len(ROWS)
                began = time.perf_counter()
                try:
                    response = session.post(stack.front + "/predict", json={"x": ROWS[row]}, timeout=10)
                    took = (time.perf_counter() - began) * 1000
                    body = response.json()
                    ok = response.status_code == 200 and body.get("color") == "blue"
                except Exception as exc:  # counted, never raised
                    ok, body, took = False, {"error": f"{type(exc).__name__}: {exc}"}, 0.0
                with lock:
                    (ids.append(body["request_id"]) if ok else failures.append(str(body)))
                    latencies.append(took)
                if ok and feedback_every and i % feedback_every == 0:
                    answer = session.post(stack.front + "/feedback", headers=auth,
                                          json={"x": ROWS[row], "label": LABELS[row],
                                                "request_id": body["request_id"]})
                    with lock:
                        send.labelled += answer.status_code == 200

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return ids, latencies, failures


def live_requests(stack, color: str) -> int:
    port = stack.blue_port if color == "blue" else stack.green_port
    return requests.get(f"http://127.0.0.1:{port}/health", timeout=5).json()["live"]["requests"]


def test_shadow_start_report_stop_under_load(stack):
    stack.cli("shadow", "start", "v1.1.0", "--sample", "100")
    status = stack.status()
    assert status["active"] == "blue" and status["shadow"] == {"color": "green", "sample": 100}
    assert status["colors"]["green"]["version"] == "v1.1.0"
    green_before = live_requests(stack, "green")  # the smoke gate's requests

    ids, _, failures = send(stack, clients=8, each=150, feedback_every=10)
    assert failures == []
    time.sleep(1.0)  # the last mirrored copies finish
    report = json.loads(stack.cli("shadow", "report", "--json").stdout)
    sent = len(ids)
    assert abs(report["paired"] - sent) <= 0.01 * sent, (report["paired"], sent)
    assert report["sampled"] == sent and report["rows"] == report["paired"]
    assert report["version"] == "v1.1.0" and report["active_version"] == "v1.0.0"
    # v1.1.0 answers these rows as v1.0.0 does, but for one of them (see the card's holdout).
    assert 0 < report["agreement_low"] <= report["agreement"] <= report["agreement_high"] <= 1
    assert sum(m["rows"] for m in report["matrix"]) == report["rows"]
    assert report["active"]["errors"] == report["shadow"]["errors"] == 0
    assert report["active"]["p50_ms"] <= report["active"]["p99_ms"]
    assert report["shadow"]["answers"] == report["paired"]
    assert report["labelled"]["rows"] == send.labelled > 0
    assert report["labelled"]["active_accuracy"] is not None and report["labelled"]["shadow_accuracy"] is not None
    print(f"\nshadow: {sent} sent, {report['paired']} paired, agreement {report['agreement']:.4f} "
          f"({report['agreement_low']:.4f}-{report['agreement_high']:.4f}), {report['labelled']['rows']} labelled")
    text = stack.cli("shadow", "report").stdout
    assert f"paired requests: {report['paired']} of {sent} sampled" in text and "agreement:" in text
    assert text.startswith("shadow v1.1.0 on green against v1.0.0 on blue, ")
    # The copies were answered by green, yet none of them is green's traffic.
    assert live_requests(stack, "green") == green_before

    stack.cli("shadow", "stop")
    assert stack.status()["shadow"]["sample"] == 0
    more, _, failures = send(stack, clients=2, each=50)
    assert failures == []
    time.sleep(0.5)
    after = json.loads(stack.cli("shadow", "report", "--json").stdout)
    assert after["running"] is False and after["paired"] == report["paired"]   # nothing mirrored after stop
    actions = [(e["action"], e["outcome"]) for e in stack.history() if e["action"] == "shadow"]
    assert actions == [("shadow", "started"), ("shadow", "stopped")]
    # A deploy is refused while a shadow runs, and works once it stopped (checked above).
    stack.cli("shadow", "start", "v1.1.0", "--sample", "10")
    refused = stack.cli("deploy", "v1.1.0", check=False)
    assert refused.returncode == 1 and "shadow stop" in refused.stderr
    stack.cli("shadow", "stop")


def test_a_frozen_shadow_does_not_slow_users(stack):
    stack.cli("shadow", "start", "v1.1.0", "--sample", "100")
    _, before, failures = send(stack, clients=4, each=100)
    assert failures == []
    green = stack.gunicorn_pids("green")
    for pid in green:
        os.kill(pid, signal.SIGSTOP)  # the shadow answers nothing at all while frozen
    try:
        _, frozen, failures = send(stack, clients=4, each=100)
    finally:
        for pid in green:
            os.kill(pid, signal.SIGCONT)
    assert failures == []
    p99 = sorted(frozen)[int(0.99 * len(frozen))]
    assert p99 < max(100.0, 5 * sorted(before)[int(0.99 * len(before))]), (p99, sorted(before)[-5:])
    print(f"\nusers' p99 with a frozen shadow: {p99:.1f} ms (before: {sorted(before)[int(0.99 * len(before))]:.1f})")
    stack.cli("shadow", "stop")


@pytest.mark.parametrize("signal_", [signal.SIGKILL, signal.SIGSTOP])
def test_a_shadow_whose_color_died_or_froze_is_reported_from_what_it_wrote_without_flooding_nginx_log(
        stack, signal_):
    stack.cli("shadow", "start", "v1.1.0")
    error_log = stack.run_dir / "nginx" / "error.log"
    _, _, failures = send(stack, clients=4, each=100)
    green = stack.gunicorn_pids("green")
    for pid in green:
        os.kill(pid, signal_)
    try:
        before = error_log.stat().st_size
        started = time.monotonic()
        _, _, after_failures = send(stack, clients=4, each=500)  # every one of them mirrored to the dead color
        took = time.monotonic() - started
        grew = error_log.stat().st_size - before
        began = time.monotonic()
        report = stack.cli("shadow", "report", timeout=60)
        reported_in = time.monotonic() - began
    finally:
        if signal_ is signal.SIGSTOP:
            for pid in green:
                os.kill(pid, signal.SIGCONT)
    print(f"\nshadow color {signal_.name}: 2,000 mirrored requests in {took:.1f} s grew nginx's error log by {grew} "
          f"bytes; the report took {reported_in:.1f} s:\n{report.stdout}")
    assert failures == [] and after_failures == []
    assert grew < 2000  # a line or two, not one per copy
    paired = re.search(r"paired requests: (\d+) of 2400 sampled", report.stdout)
    assert paired and 396 <= int(paired.group(1)) <= 400  # what green kept before it went
    assert "missing: the shadow side, green, does not answer (127.0.0.1:" in report.stdout
    assert "its last kept answer at " in report.stdout
    assert reported_in < 20

"""The judge: windows since the bake began, the stable side, when to roll back, how a window ends."""

from __future__ import annotations

import dataclasses

import pytest

from app.control import gates, judge, windows
from app.control.config import BakeSettings
from app.control.probes import ServerProbe
from app.control.rollout import GateResult, Verdict

SETTINGS = BakeSettings(failure_limit=2)
BUCKETS = {"0.1": 90, "0.25": 95, "0.5": 99, "+Inf": 100}


def server(version="v2.0.0", answers=True, metrics=None, holdout_size=None, **live):
    if not answers:
        return ServerProbe("127.0.0.1:9", 1, False, None, "connection refused")
    health = {"status": "ok", "version": version, "live": live}
    if metrics is not None:
        health.update(metrics=metrics, holdout_size=holdout_size)
    return ServerProbe("127.0.0.1:9", 1, True, health)


class Runtime:
    """Each color answers with the probes set for it."""

    def __init__(self):
        self.colors = {"green": [server()], "blue": [server("v1.0.0")]}

    def probe_color(self, color):
        return self.colors[color]


class Clock:
    def monotonic(self):
        return 0.0

    def time(self):
        return 0.0


def monitor(runtime, settings=SETTINGS):
    lines = []
    m = judge.Judge(runtime, "green", "v2.0.0", settings, Clock(), lines.append)
    m.lines = lines
    return m


def test_slow_requests_are_counted_above_the_smallest_bucket_at_or_over_the_limit():
    assert windows.slow_counts({"latency_buckets": BUCKETS}, 250.0) == (100, 5, 250.0)
    assert windows.slow_counts({"latency_buckets": BUCKETS}, 200.0) == (100, 5, 250.0)
    assert windows.slow_counts({"latency_buckets": BUCKETS}, 300.0) == (100, 1, 500.0)


@pytest.mark.parametrize("live", [
    {},
    {"latency_buckets": {"0.25": 5}},                      # no total
    {"latency_buckets": {"0.1": 5, "+Inf": 9}},             # no bucket at or above the limit
    {"latency_buckets": {"0.25": "five", "+Inf": 9}},
    {"latency_buckets": {"soon": 5, "+Inf": 9}},
])
def test_without_usable_buckets_there_is_no_latency_to_judge(live):
    assert windows.slow_counts(live, 250.0) is None


def test_a_color_reports_latency_only_when_every_server_does():
    both = windows.color_totals([server(requests=10, latency_buckets=BUCKETS)] * 2, [], 250.0)
    assert (both.requests, both.timed, both.slow, both.slow_over_ms) == (20, 200, 10, 250.0)
    one = windows.color_totals([server(requests=10, latency_buckets=BUCKETS), server(requests=10)], [], 250.0)
    assert one.requests == 20 and one.slow is None


def test_the_window_counts_only_what_happened_since_the_bake_began():
    runtime = Runtime()
    runtime.colors["green"] = [server(requests=500, server_errors=400, labelled=90, correct=0)]
    m = monitor(runtime)
    runtime.colors["green"] = [server(requests=1500, server_errors=400, labelled=90, correct=0)]
    result = m.poll()
    assert (result.numbers["requests"], result.numbers["server_errors"], result.numbers["labelled"]) == (1000, 0, 0)


def test_a_server_that_restarted_begins_the_window_again_and_a_silent_poll_changes_nothing():
    runtime = Runtime()
    runtime.colors["green"] = [server(requests=500, labelled=40, correct=40)]
    m = monitor(runtime)
    runtime.colors["green"] = [server(answers=False)]
    m.poll()
    runtime.colors["green"] = [server(requests=600, labelled=50, correct=45)]
    assert (m.poll().numbers["requests"], m.last.numbers["labelled"]) == (100, 10)
    runtime.colors["green"] = [server(requests=30, labelled=3, correct=3)]   # counters began again
    assert (m.poll().numbers["requests"], m.last.numbers["labelled"]) == (30, 3)


def test_the_stable_side_is_the_other_color_with_its_labels_before_the_bake_and_its_card():
    runtime = Runtime()
    runtime.colors["blue"] = [server("v1.0.0", labelled=1000, correct=950, requests=5000,
                                     metrics={"accuracy": 0.98}, holdout_size=45)]
    m = monitor(runtime)
    stable = m.stable(gates.Window())
    assert (stable.color, stable.version) == ("blue", "v1.0.0")
    assert stable.reference == gates.Reference(950, 1000, "its live labels before the bake")
    runtime.colors["blue"] = [server("v1.0.0", metrics={"accuracy": 0.98}, holdout_size=45)]
    assert monitor(runtime).stable(gates.Window()).reference.source == "its card's holdout"


def test_requests_the_stable_color_answered_for_the_candidate_are_not_its_traffic():
    runtime = Runtime()
    m = monitor(runtime)
    runtime.colors["blue"] = [server("v1.0.0", requests=100, failovers=100)]
    m.poll()
    # The candidate failed those 100 requests; the stable color had no traffic of its own.
    assert m.last.numbers["failovers"] == 100 and "had no traffic in this window" in m.last.reason


def result(verdict, gate=gates.POLL_ERRORS):
    return GateResult(gate, verdict, f"{verdict.value} reason")


def test_a_failed_check_rolls_back_at_once_a_color_not_serving_after_the_failure_limit():
    m = monitor(Runtime())
    m.record(result(Verdict.FAIL), gates.Window())
    assert m.should_roll_back
    m = monitor(Runtime())
    for _ in range(SETTINGS.failure_limit):
        m.record(result(Verdict.FAIL, gates.POLL_SERVING), gates.Window())
        assert not m.should_roll_back
    m.record(result(Verdict.FAIL, gates.POLL_SERVING), gates.Window())
    assert m.should_roll_back


@pytest.mark.parametrize("verdicts, expected", [
    ([Verdict.INCONCLUSIVE, Verdict.PASS], Verdict.PASS),
    ([Verdict.PASS, Verdict.INCONCLUSIVE], Verdict.INCONCLUSIVE),   # judged on everything: the last poll
    ([], Verdict.INCONCLUSIVE),
])
def test_a_bake_ends_with_its_last_polls_verdict(verdicts, expected):
    m = monitor(Runtime())
    for v in verdicts:
        m.record(result(v), gates.Window())
    assert judge.final_judgment(m, 30.0).verdict is expected


def test_a_last_poll_that_failed_within_the_limit_is_no_pass():
    m = monitor(Runtime(), dataclasses.replace(SETTINGS, failure_limit=5))
    m.record(result(Verdict.PASS), gates.Window())
    m.record(result(Verdict.FAIL, gates.POLL_SERVING), gates.Window())
    outcome = judge.final_judgment(m, 30.0)
    assert outcome.verdict is Verdict.INCONCLUSIVE and "within the failure limit 5" in outcome.reason


def test_each_verdict_change_is_printed_with_its_numbers():
    runtime = Runtime()
    m = monitor(runtime)
    runtime.colors["green"] = [server(requests=60, server_errors=30)]
    m.poll()
    assert m.lines[-1].endswith("poll 1 of green: fail (error rate 50.00% over 60 requests since the bake began is "
                                "above 1.00% (absolute: blue (v1.0.0) had no traffic in this window): its 99% "
                                "lower bound is " + f"{m.last.numbers['error_rate_low']:.2%}); since the bake "
                                "began: 60 requests, 30 errors, 0 labelled")


def test_a_real_servers_health_gives_the_bake_latency_to_judge(shipped_models):
    # The buckets as the server reports them in /health, read by the bake's own parser.
    from app.server import create_app

    client = create_app({"MODELS_DIR": str(shipped_models), "MODEL_VERSION": "v1.1.0", "COLOR": "green"}).test_client()
    for _ in range(5):
        assert client.post("/predict", json={"x": [6.7, 3.0, 5.2, 2.3]}).status_code == 200
    health = client.get("/health").get_json()
    probe = ServerProbe("127.0.0.1:9", 1, True, health)
    totals = windows.color_totals([probe], [], SETTINGS.slow_request_ms)
    assert (totals.requests, totals.timed, totals.slow, totals.slow_over_ms) == (5, 5, 0, 250.0)
    window = dataclasses.replace(totals, requests=SETTINGS.min_requests, timed=SETTINGS.min_requests)
    poll = gates.judge(window, None, SETTINGS)
    assert "latency not judged" not in poll.reason
    assert "share slower than 250 ms" in poll.reason

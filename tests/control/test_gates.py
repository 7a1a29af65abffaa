"""Gates return a verdict with its reason and numbers, and never pass on missing data."""

from __future__ import annotations

import math

import pytest

from app.control import gates
from app.control.config import BakeSettings, GateSettings
from app.control.probes import ServerProbe
from app.control.rollout import SmokeAnswer, Verdict

GATES = GateSettings(min_accuracy=0.9, min_f1_score=0.9, max_metric_drop=0.05)
BAKE = BakeSettings(max_error_rate=0.01, min_live_accuracy=0.8, min_labelled=20)
PASS, FAIL, INCONCLUSIVE = Verdict.PASS, Verdict.FAIL, Verdict.INCONCLUSIVE


def card(version="v2.0.0", **metrics):
    base = {"accuracy": 0.95, "f1_score": 0.95, "precision": 0.95, "recall": 0.95}
    return {"version": version, "metrics": {**base, **metrics}}


def server(status="ok", version="v2.0.0", ready=True, live=None, answers=True):
    health = {"status": status, "version": version, "live": live or {}} if answers else None
    return ServerProbe("127.0.0.1:9", 1, ready, health, "" if answers else "connection refused")


def verdict(result):
    return result.verdict, result.reason


@pytest.mark.parametrize("probes, expected", [
    ([server()], (PASS, "")),
    ([], (FAIL, "the color has no servers")),
    ([server(answers=False)], (FAIL, "127.0.0.1:9 does not answer (connection refused)")),
    ([server(ready=False)], (FAIL, "127.0.0.1:9 is not ready")),
    ([server(status="draining")], (FAIL, "127.0.0.1:9 reports status 'draining'")),
    ([server(version="v1.0.0")], (FAIL, "127.0.0.1:9 serves v1.0.0, expected v2.0.0")),
    ([server(), server(answers=False)], (FAIL, "127.0.0.1:9 does not answer (connection refused)")),
])
def test_color_serving(probes, expected):
    assert verdict(gates.color_serving(probes, "v2.0.0")) == expected


@pytest.mark.parametrize("candidate, expected", [
    (card(), (PASS, "")),
    (card(accuracy=0.85), (FAIL, "v2.0.0 holdout accuracy 0.8500 is below the threshold 0.9000")),
    (card(f1_score=0.5), (FAIL, "v2.0.0 holdout f1_score 0.5000 is below the threshold 0.9000")),
    (card(accuracy=math.nan), (FAIL, "the card of v2.0.0 has no usable accuracy (no data is not a pass)")),
    (card(accuracy=None), (FAIL, "the card of v2.0.0 has no usable accuracy (no data is not a pass)")),
    ({"version": "v2.0.0"}, (FAIL, "the card of v2.0.0 has no usable accuracy (no data is not a pass)")),
])
def test_card_meets_thresholds(candidate, expected):
    assert verdict(gates.card_meets_thresholds(candidate, GATES)) == expected


def test_a_verdict_carries_its_numbers():
    result = gates.card_meets_thresholds(card(accuracy=0.85), GATES)
    assert result.numbers == {"accuracy": 0.85}
    assert gates.card_meets_thresholds(card(), GATES).numbers == {"accuracy": 0.95, "f1_score": 0.95}


@pytest.mark.parametrize("candidate, expected", [
    (card(accuracy=0.93), (PASS, "")),
    (card(accuracy=0.90), (FAIL, "v2.0.0 accuracy 0.9000 is 0.0800 worse than the active v1.0.0 (0.9800); "
                                 "the tolerance is 0.0500")),
    (card(recall=math.nan), (FAIL, "cannot compare recall: it is missing on v2.0.0 (no data is not a pass)")),
])
def test_card_not_worse(candidate, expected):
    active = card("v1.0.0", accuracy=0.98)
    assert verdict(gates.card_not_worse(candidate, active, GATES)) == expected


def smoke(n=10, status=200, wrong=0, latency=5.0, version="v2.0.0"):
    return [SmokeAnswer("setosa", status, "setosa" if i >= wrong else "virginica", version, latency)
            for i in range(n)]


@pytest.mark.parametrize("answers, expected", [
    (smoke(), (PASS, "10 holdout rows")),
    ([], (FAIL, "no smoke requests were answered (no data is not a pass)")),
    (smoke(status=502), (FAIL, "10 of 10 smoke requests failed (first: HTTP 502)")),
    ([SmokeAnswer("setosa", error="connection refused")], (FAIL, "1 of 1 smoke requests failed "
                                                                 "(first: connection refused)")),
    (smoke(wrong=1), (FAIL, "smoke accuracy 0.9000 does not match the card's 1.0000")),
    (smoke(latency=300.0), (FAIL, "smoke p95 latency 300.0 ms is above the limit 250 ms")),
    (smoke(5) + smoke(5, version="v1.0.0"), (FAIL, "smoke requests were answered by several versions "
                                                   "['v1.0.0', 'v2.0.0']")),
])
def test_smoke_evaluation(answers, expected):
    assert verdict(gates.smoke_evaluation(answers, 1.0, 250.0)) == expected


@pytest.mark.parametrize("probes, window, expected", [
    ([server()], gates.Window(100, 0), (PASS, "")),
    ([server()], gates.Window(0, 0), (INCONCLUSIVE, "no request reached the color since the last poll")),
    ([server(answers=False)], gates.Window(0, 0), (FAIL, "127.0.0.1:9 does not answer (connection refused)")),
    ([server()], gates.Window(100, 2), (FAIL, "error rate 2.00% over the last 100 requests is above 1.00%")),
    # nginx sent 10 of this color's requests to the other color: they count as failed here.
    ([server()], gates.Window(90, 0, failovers=10),
     (FAIL, "error rate 10.00% over the last 100 requests is above 1.00% (10 answered by the other color)")),
    ([server()], gates.Window(10, 0, labelled=25, correct=12),
     (FAIL, "live accuracy 48.00% over 25 labelled samples since the bake began is below 80.00%")),
    ([server()], gates.Window(10, 0, labelled=5, correct=0), (PASS, "")),
    # Only the window counts: a lifetime accuracy of 0 from before the bake is not judged.
    ([server(live={"labelled": 500, "correct": 0, "accuracy": 0.0})], gates.Window(10, 0), (PASS, "")),
])
def test_bake_poll(probes, window, expected):
    assert verdict(gates.bake_poll(probes, "v2.0.0", window, BAKE)) == expected


def test_a_poll_says_which_check_failed_and_its_numbers():
    failed = gates.bake_poll([server()], "v2.0.0", gates.Window(100, 2, 3, 3), BAKE)
    assert failed.gate == gates.POLL_ERRORS
    assert failed.numbers == {"requests": 100, "server_errors": 2, "labelled": 3, "correct": 3, "failovers": 0}
    assert gates.bake_poll([server(answers=False)], "v2.0.0", gates.Window(), BAKE).gate == gates.POLL_SERVING

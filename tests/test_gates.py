"""Gates return a reason or "", and never pass on missing data."""

from __future__ import annotations

import math

import pytest

from app import gates
from app.runtime import ServerProbe

THRESHOLDS = {"min_accuracy": 0.9, "min_f1_score": 0.9, "max_metric_drop": 0.05,
              "max_error_rate": 0.01, "min_live_accuracy": 0.8, "min_labelled": 20}


def card(version="v2.0.0", **metrics):
    base = {"accuracy": 0.95, "f1_score": 0.95, "precision": 0.95, "recall": 0.95}
    return {"version": version, "metrics": {**base, **metrics}}


def server(status="ok", version="v2.0.0", ready=True, live=None, answers=True):
    health = {"status": status, "version": version, "live": live or {}} if answers else None
    return ServerProbe("127.0.0.1:9", 1, ready, health, "" if answers else "ConnectionError")


@pytest.mark.parametrize("probes, reason", [
    ([server()], ""),
    ([], "the color has no servers"),
    ([server(answers=False)], "127.0.0.1:9 does not answer (ConnectionError)"),
    ([server(ready=False)], "127.0.0.1:9 is not ready"),
    ([server(status="draining")], "127.0.0.1:9 reports status 'draining'"),
    ([server(version="v1.0.0")], "127.0.0.1:9 serves v1.0.0, expected v2.0.0"),
    ([server(), server(answers=False)], "127.0.0.1:9 does not answer (ConnectionError)"),
])
def test_color_serving(probes, reason):
    assert gates.color_serving(probes, "v2.0.0") == reason


@pytest.mark.parametrize("candidate, reason", [
    (card(), ""),
    (card(accuracy=0.85), "v2.0.0 holdout accuracy 0.8500 is below the threshold 0.9000"),
    (card(f1_score=0.5), "v2.0.0 holdout f1_score 0.5000 is below the threshold 0.9000"),
    (card(accuracy=math.nan), "the card of v2.0.0 has no usable accuracy (no data is not a pass)"),
    (card(accuracy=None), "the card of v2.0.0 has no usable accuracy (no data is not a pass)"),
    ({"version": "v2.0.0"}, "the card of v2.0.0 has no usable accuracy (no data is not a pass)"),
])
def test_card_meets_thresholds(candidate, reason):
    assert gates.card_meets_thresholds(candidate, THRESHOLDS) == reason


@pytest.mark.parametrize("candidate, reason", [
    (card(accuracy=0.93), ""),
    (card(accuracy=0.90), "v2.0.0 accuracy 0.9000 is 0.0800 worse than the active v1.0.0 (0.9800); "
                          "the tolerance is 0.0500"),
    (card(recall=math.nan), "cannot compare recall: it is missing on v2.0.0 (no data is not a pass)"),
])
def test_card_not_worse(candidate, reason):
    active = card("v1.0.0", accuracy=0.98)
    assert gates.card_not_worse(candidate, active, THRESHOLDS) == reason


def smoke(n=10, status=200, wrong=0, latency=5.0, version="v2.0.0"):
    return [(status, "setosa" if i >= wrong else "virginica", "setosa", latency, version) for i in range(n)]


@pytest.mark.parametrize("results, reason", [
    (smoke(), ""),
    ([], "no smoke requests were answered (no data is not a pass)"),
    (smoke(status=502), "10 of 10 smoke requests failed (first: HTTP 502)"),
    (smoke(wrong=1), "smoke accuracy 0.9000 does not match the card's 1.0000"),
    (smoke(latency=300.0), "smoke p95 latency 300.0 ms is above the limit 250 ms"),
    (smoke(5) + smoke(5, version="v1.0.0"), "smoke requests were answered by several versions ['v1.0.0', 'v2.0.0']"),
])
def test_smoke_evaluation(results, reason):
    assert gates.smoke_evaluation(results, 1.0, 250.0) == reason


@pytest.mark.parametrize("probes, window, verdict", [
    ([server()], {"requests": 100, "server_errors": 0}, ("pass", "")),
    ([server()], {"requests": 0, "server_errors": 0},
     ("inconclusive", "no request reached the color since the last poll")),
    ([server(answers=False)], {"requests": 0, "server_errors": 0},
     ("fail", "127.0.0.1:9 does not answer (ConnectionError)")),
    ([server()], {"requests": 100, "server_errors": 2},
     ("fail", "error rate 2.00% over the last 100 requests is above 1.00%")),
    ([server(live={"labelled": 25, "accuracy": 0.5})], {"requests": 10, "server_errors": 0},
     ("fail", "live accuracy 50.00% over 25 labelled samples is below 80.00%")),
    ([server(live={"labelled": 5, "accuracy": 0.0})], {"requests": 10, "server_errors": 0}, ("pass", "")),
])
def test_bake_poll(probes, window, verdict):
    assert gates.bake_poll(probes, "v2.0.0", window, THRESHOLDS) == verdict

"""Gates return a verdict with its reason and numbers, and never pass on missing data."""

from __future__ import annotations

import dataclasses
import math

import pytest

from app.control import gates
from app.control.config import BakeSettings, GateSettings
from app.control.probes import ServerProbe
from app.control.rollout import SmokeAnswer, Verdict

GATES = GateSettings(min_accuracy=0.9, min_f1_score=0.9, max_metric_drop=0.05)
# The labelled rule (`require_labels = true`): these checks are its subject.
BAKE = BakeSettings(max_error_rate=0.01, min_live_accuracy=0.8, min_labelled=20, require_labels=True)
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


# -- the bake's checks: a minimum sample, then bounds that hold over every poll ----------------------
def poll(window, stable=None, settings=BAKE, probes=None):
    return gates.bake_poll(probes or [server()], "v2.0.0", window, settings, stable)


def stable(reference=None, window=None, version="v1.0.0"):
    return gates.Stable("blue", version, window or gates.Window(), reference)


LIVE = gates.Reference(950, 1000, "its live labels before the bake")     # a precise stable figure
CARD = gates.Reference(44, 45, "its card's holdout")                     # a 45-row one
BUSY = 2000  # error-free requests: the error-rate check passes with them


@pytest.mark.parametrize("probes, expected", [
    ([server(answers=False)], (FAIL, "127.0.0.1:9 does not answer (connection refused)")),
    ([server(version="v1.0.0")], (FAIL, "127.0.0.1:9 serves v1.0.0, expected v2.0.0")),
])
def test_a_poll_fails_first_when_the_color_does_not_serve(probes, expected):
    result = poll(gates.Window(BUSY, 0, 100, 100), stable(LIVE), probes=probes)
    assert verdict(result) == expected and result.gate == gates.POLL_SERVING


def test_below_the_minimum_requests_the_error_rate_is_inconclusive_never_a_pass():
    result = gates.error_rate(gates.Window(49, 0), None, BAKE)
    assert verdict(result) == (INCONCLUSIVE, "error rate: 49 of the 50 requests needed before a verdict")


def test_an_error_rate_whose_lower_bound_is_above_the_limit_fails():
    result = gates.error_rate(gates.Window(60, 30), None, BAKE)
    assert result.verdict is FAIL
    assert result.reason.startswith("error rate 50.00% over 60 requests since the bake began is above 1.00% "
                                    "(absolute: the stable version had no traffic in this window): its 99% lower "
                                    "bound is ")
    assert result.numbers["error_rate_low"] > 0.01


def test_an_error_rate_passes_only_when_its_upper_bound_is_within_the_limit():
    few = gates.error_rate(gates.Window(200, 0), None, BAKE)
    assert few.verdict is INCONCLUSIVE and "do not yet show it within 1.00%" in few.reason
    assert few.numbers["error_rate_high"] > 0.01
    many = gates.error_rate(gates.Window(1000, 0), None, BAKE)
    assert many.verdict is PASS and many.numbers["error_rate_high"] <= 0.01


def test_one_error_in_a_small_window_is_no_failure():
    # The old per-poll rule failed 1 error in 50 requests (2% > 1%): one unlucky window.
    assert gates.error_rate(gates.Window(50, 1), None, BAKE).verdict is INCONCLUSIVE


def test_failovers_count_as_failed_requests():
    result = gates.error_rate(gates.Window(90, 0, failovers=10), None, BAKE)
    assert result.verdict is FAIL and result.reason.startswith("error rate 10.00% over 100 requests")


def test_with_stable_traffic_in_the_same_window_the_error_rate_is_compared_with_the_stable_one():
    candidate = gates.Window(20000, 400)                                  # 2%
    assert gates.error_rate(candidate, None, BAKE).verdict is FAIL        # absolute: above 1%
    both_bad = gates.error_rate(candidate, stable(window=gates.Window(20000, 400)), BAKE)  # the stable one: 2% too
    assert both_bad.verdict is PASS
    assert "within blue (v1.0.0)'s 2.00% over 20000 requests in the same window" in both_bad.reason
    worse = gates.error_rate(candidate, stable(window=gates.Window(20000, 20)), BAKE)      # the stable one: 0.1%
    assert worse.verdict is FAIL and "is above blue (v1.0.0)'s 0.10%" in worse.reason


def test_below_the_minimum_labels_live_accuracy_is_inconclusive_never_a_pass():
    result = gates.live_accuracy(gates.Window(BUSY, 0, 19, 19), BAKE)
    assert verdict(result) == (INCONCLUSIVE, "live accuracy: 19 of the 20 labels needed before a verdict")


def test_live_accuracy_fails_when_its_upper_bound_is_below_the_threshold():
    result = gates.live_accuracy(gates.Window(BUSY, 0, 25, 10), BAKE)
    assert result.verdict is FAIL
    assert result.reason.startswith("live accuracy 40.00% over 25 labelled samples since the bake began is below "
                                    "80.00%: its 99% upper bound is ")
    assert result.numbers["accuracy_high"] < 0.8


def test_live_accuracy_passes_only_when_its_lower_bound_clears_the_threshold():
    straddles = gates.live_accuracy(gates.Window(BUSY, 0, 40, 36), BAKE)         # 90%, but only 40 labels
    assert straddles.verdict is INCONCLUSIVE and "straddle 80.00%" in straddles.reason
    assert straddles.numbers["accuracy_low"] < 0.8 < straddles.numbers["accuracy_high"]
    clears = gates.live_accuracy(gates.Window(BUSY, 0, 300, 270), BAKE)          # 90% over 300
    assert clears.verdict is PASS and clears.numbers["accuracy_low"] >= 0.8


def test_against_a_precise_stable_figure_the_sequential_test_decides():
    worse = gates.accuracy_vs_stable(gates.Window(BUSY, 0, 200, 170), stable(LIVE), BAKE)     # 85% against 95%
    assert worse.verdict is FAIL and worse.gate == gates.POLL_VS_STABLE
    assert "is worse than blue (v1.0.0)'s 95.00% (its live labels before the bake, 1000 labels" in worse.reason
    assert worse.numbers["llr"] >= worse.numbers["llr_fail"]
    good = gates.accuracy_vs_stable(gates.Window(BUSY, 0, 200, 190), stable(LIVE), BAKE)      # 95%
    assert good.verdict is PASS and good.numbers["llr"] <= good.numbers["llr_pass"]
    early = gates.accuracy_vs_stable(gates.Window(BUSY, 0, 50, 45), stable(LIVE), BAKE)       # 90% over 50
    assert early.verdict is INCONCLUSIVE and "is undecided" in early.reason


def test_the_hypotheses_allow_for_the_stable_figure_being_a_sample():
    numbers = gates.accuracy_vs_stable(gates.Window(BUSY, 0, 50, 45), stable(LIVE), BAKE).numbers
    # H0 sits at the stable figure's lower bound, H1 at its upper bound minus the drop.
    assert numbers["h0_accuracy"] == numbers["stable_low"] < 0.95
    assert numbers["h1_accuracy"] == pytest.approx(numbers["stable_high"] - 0.10, abs=1e-6)


def test_against_a_45_row_card_no_sequential_test_is_possible_but_bounds_can_still_decide():
    # 44 of 45: 99% bounds 83.5%-99.7%, wider than the 10-point drop.
    like_it = gates.accuracy_vs_stable(gates.Window(BUSY, 0, 400, 388), stable(CARD), BAKE)   # 97% over 400
    assert like_it.verdict is PASS and "is not worse by 10 points than" in like_it.reason
    ten_worse = gates.accuracy_vs_stable(gates.Window(BUSY, 0, 300, 264), stable(CARD), BAKE)  # 88%
    assert ten_worse.verdict is INCONCLUSIVE and "too uncertain a figure for a sequential test" in ten_worse.reason
    far_worse = gates.accuracy_vs_stable(gates.Window(BUSY, 0, 300, 210), stable(CARD), BAKE)  # 70%
    assert far_worse.verdict is FAIL and "below the stable version's lower bound" in far_worse.reason


def test_without_figures_for_the_stable_version_the_comparison_cannot_pass():
    result = gates.accuracy_vs_stable(gates.Window(BUSY, 0, 300, 290), None, BAKE)
    assert verdict(result) == (INCONCLUSIVE, "no accuracy figures for the stable version: the candidate cannot be "
                                             "compared with it")


def test_a_poll_passes_only_when_every_required_check_passed():
    passed = poll(gates.Window(BUSY, 0, 300, 290), stable(LIVE))
    assert passed.verdict is PASS and passed.gate == gates.BAKE_POLL
    assert "latency not judged: the servers report no latency buckets" in passed.reason
    no_labels = poll(gates.Window(BUSY, 0), stable(LIVE))
    assert no_labels.verdict is INCONCLUSIVE and "live accuracy: 0 of the 20 labels needed" in no_labels.reason
    no_stable = poll(gates.Window(BUSY, 0, 300, 290), None)
    assert no_stable.verdict is INCONCLUSIVE and "cannot be compared" in no_stable.reason


def test_without_required_labels_a_poll_may_pass_but_labels_can_still_fail_it():
    settings = dataclasses.replace(BAKE, require_labels=False)
    passed = poll(gates.Window(BUSY, 0), None, settings)
    assert passed.verdict is PASS and "live accuracy: 0 of the 20 labels needed before a verdict" in passed.reason
    failed = poll(gates.Window(BUSY, 0, 25, 0), None, settings)
    assert failed.verdict is FAIL and failed.gate == gates.POLL_ACCURACY


def test_the_first_failing_check_names_the_poll_and_every_number_is_kept():
    failed = poll(gates.Window(100, 20, 25, 0), stable(LIVE))
    assert failed.gate == gates.POLL_ERRORS
    assert {"requests", "server_errors", "labelled", "correct", "failovers", "confidence", "error_rate",
            "error_rate_low", "error_rate_high", "error_rate_limit", "accuracy", "accuracy_low", "accuracy_high",
            "stable_accuracy", "stable_low", "stable_high", "llr", "llr_fail", "llr_pass"} <= set(failed.numbers)
    assert (failed.numbers["requests"], failed.numbers["labelled"], failed.numbers["confidence"]) == (100, 25, 0.99)


def test_only_the_window_counts():
    # A lifetime accuracy of 0 from before the bake is not judged: the window has no labels.
    lifetime = server(live={"labelled": 500, "correct": 0, "accuracy": 0.0})
    result = poll(gates.Window(BUSY, 0), stable(LIVE), dataclasses.replace(BAKE, require_labels=False), [lifetime])
    assert result.verdict is PASS


def test_slow_requests_are_judged_like_errors_once_the_servers_report_latency():
    assert gates.latency(gates.Window(BUSY, 0), None, BAKE) is None
    slow = gates.latency(gates.Window(BUSY, 0, timed=BUSY, slow=200, slow_over_ms=250.0), None, BAKE)
    assert slow.verdict is FAIL and slow.reason.startswith("share slower than 250 ms 10.00% over 2000 requests")
    fast = gates.latency(gates.Window(BUSY, 0, timed=BUSY, slow=0, slow_over_ms=250.0), None, BAKE)
    assert fast.verdict is PASS and fast.gate == gates.POLL_LATENCY


def test_a_stable_reference_is_its_window_then_its_labels_before_the_bake_then_its_card():
    window, before = gates.Window(labelled=30, correct=29), gates.Window(labelled=800, correct=760)
    assert gates.stable_reference(window, before, 0.98, 45, 20) == gates.Reference(
        29, 30, "its labels in the same window", fixed=False)
    assert gates.stable_reference(gates.Window(), before, 0.98, 45, 20).source == "its live labels before the bake"
    card = gates.stable_reference(gates.Window(), gates.Window(labelled=5, correct=5), 0.9777, 45, 20)
    assert (card.correct, card.labelled, card.source) == (44, 45, "its card's holdout")
    assert gates.stable_reference(gates.Window(), gates.Window(), None, None, 20) is None


# -- the simulation drives these same functions ------------------------------------------------------
def test_the_gate_simulation_rolls_back_a_much_worse_version_and_spares_a_healthy_one():
    from utils.gate_simulation import Scenario, run

    def rates(drop):
        result = run(Scenario(3600, 60, 100, drop, "live:1000", 0.95, 100_000, bakes=200, seed=7))
        outcomes = result["outcomes"]
        assert sum(outcomes.values()) == 200
        return outcomes[FAIL] / 200, outcomes[PASS] / 200

    assert rates(0.10) == (1.0, 0.0)
    healthy_rollbacks, healthy_passes = rates(0.0)
    assert healthy_rollbacks <= 0.02 and healthy_passes >= 0.95

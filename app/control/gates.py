"""Gates: pure functions from observations to a ``GateResult`` (verdict, reason, numbers).

A gate never raises for a failed check and never passes on missing data: no answer, no
samples, a NaN each fail the gate or leave it inconclusive, never pass it.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.control.config import BakeSettings, GateSettings
from app.control.probes import ServerProbe
from app.control.rollout import GateResult, SmokeAnswer, Verdict

SERVING = "serving"
CARD_THRESHOLDS = "holdout metrics meet thresholds"
SMOKE = "smoke evaluation through the preview door"
BAKE_POLL = "bake poll"


def _pass(gate: str, reason: str = "", **numbers) -> GateResult:
    return GateResult(gate, Verdict.PASS, reason, numbers)


def _fail(gate: str, reason: str, **numbers) -> GateResult:
    return GateResult(gate, Verdict.FAIL, reason, numbers)


def color_serving(probes: list[ServerProbe], version: str) -> GateResult:
    """Every server of the color is ready, healthy, and serves ``version``."""
    if not probes:
        return _fail(SERVING, "the color has no servers")
    for server in probes:
        if server.foreign:
            return _fail(SERVING, f"{server.address} is answered by {server.foreign}, which bluegreen did not start")
        if server.health is None:
            return _fail(SERVING, f"{server.address} does not answer ({server.error or 'no response'})")
        if not server.ready:
            return _fail(SERVING, f"{server.address} is not ready")
        if server.health.get("status") != "ok":
            return _fail(SERVING, f"{server.address} reports status {server.health.get('status')!r}")
        if server.health.get("version") != version:
            return _fail(SERVING, f"{server.address} serves {server.health.get('version')}, expected {version}")
    return _pass(SERVING, servers=len(probes))


def _metric(card: dict, name: str) -> float | None:
    value = (card.get("metrics") or {}).get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return None
    return float(value)


def card_meets_thresholds(card: dict, settings: GateSettings) -> GateResult:
    """The candidate's holdout metrics meet the absolute thresholds."""
    numbers = {}
    for name, threshold in (("accuracy", settings.min_accuracy), ("f1_score", settings.min_f1_score)):
        value = _metric(card, name)
        if value is None:
            return _fail(CARD_THRESHOLDS, f"the card of {card.get('version')} has no usable {name} "
                                          "(no data is not a pass)")
        numbers[name] = value
        if value < threshold:
            return _fail(CARD_THRESHOLDS, f"{card['version']} holdout {name} {value:.4f} is below the threshold "
                                          f"{threshold:.4f}", **numbers)
    return _pass(CARD_THRESHOLDS, **numbers)


def card_not_worse(card: dict, active_card: dict, settings: GateSettings) -> GateResult:
    """The candidate is not worse than the active version by more than the tolerance."""
    gate = f"not worse than active {active_card.get('version')}"
    tolerance = settings.max_metric_drop
    drops = {}
    for name in ("accuracy", "f1_score", "precision", "recall"):
        new, old = _metric(card, name), _metric(active_card, name)
        if new is None or old is None:
            missing_on = card.get("version") if new is None else active_card.get("version")
            return _fail(gate, f"cannot compare {name}: it is missing on {missing_on} (no data is not a pass)")
        drops[name] = round(old - new, 6)
        if old - new > tolerance:
            return _fail(gate, f"{card['version']} {name} {new:.4f} is {old - new:.4f} worse than the active "
                               f"{active_card['version']} ({old:.4f}); the tolerance is {tolerance:.4f}", **drops)
    return _pass(gate, **drops)


def smoke_evaluation(answers: list[SmokeAnswer], expected_accuracy: float, max_latency_ms: float) -> GateResult:
    """Holdout rows sent through the preview door: all answered, by one version, same accuracy, fast enough."""
    if not answers:
        return _fail(SMOKE, "no smoke requests were answered (no data is not a pass)")
    failed = [a for a in answers if a.status != 200]
    if failed:
        first = failed[0]
        what = f"HTTP {first.status}" if first.status is not None else first.error or "no answer"
        return _fail(SMOKE, f"{len(failed)} of {len(answers)} smoke requests failed (first: {what})",
                     rows=len(answers), failed=len(failed))
    versions = {a.version for a in answers}
    if len(versions) != 1:
        return _fail(SMOKE, f"smoke requests were answered by several versions {sorted(map(str, versions))}")
    accuracy = sum(a.predicted == a.expected for a in answers) / len(answers)
    latencies = sorted(a.latency_ms for a in answers)
    p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
    numbers = {"rows": len(answers), "accuracy": round(accuracy, 6), "p95_ms": round(p95, 2)}
    if abs(accuracy - expected_accuracy) > 1e-9:
        return _fail(SMOKE, f"smoke accuracy {accuracy:.4f} does not match the card's {expected_accuracy:.4f}",
                     **numbers)
    if p95 > max_latency_ms:
        return _fail(SMOKE, f"smoke p95 latency {p95:.1f} ms is above the limit {max_latency_ms:g} ms", **numbers)
    return _pass(SMOKE, f"{len(answers)} holdout rows", **numbers)


@dataclass(frozen=True)
class Window:
    """What a color saw during a bake: requests and 5xx since the previous poll (the error
    rate is judged on recent traffic), labels since the bake began (accuracy needs them all)."""

    requests: int = 0
    server_errors: int = 0
    labelled: int = 0
    correct: int = 0
    failovers: int = 0      # requests meant for this color that the other color answered

    def describe(self) -> str:
        accuracy = f", accuracy {self.correct / self.labelled:.2%}" if self.labelled else ""
        failed_over = f", {self.failovers} failed over to the other color" if self.failovers else ""
        return (f"{self.requests} requests, {self.server_errors} errors{failed_over} since the last poll; "
                f"{self.labelled} labelled since the bake began{accuracy}")


POLL_SERVING = "bake poll: serving"
POLL_ERRORS = "bake poll: error rate"
POLL_ACCURACY = "bake poll: live accuracy"


def bake_poll(probes: list[ServerProbe], version: str, window: Window, settings: BakeSettings) -> GateResult:
    """Judge one poll of the new active color, on the bake's window only.

    A server that does not answer, is not ready, reports another status or version, an
    error rate above the limit since the previous poll, or live accuracy below the limit
    over the labels received since the bake began (once ``min_labelled`` arrived) fail
    the poll. A poll that finds the color healthy but no request in the window is
    inconclusive: it proves nothing about the new version.
    """
    numbers = {"requests": window.requests, "server_errors": window.server_errors, "labelled": window.labelled,
               "correct": window.correct, "failovers": window.failovers}
    serving = color_serving(probes, version)
    if not serving.passed:
        return GateResult(POLL_SERVING, Verdict.FAIL, serving.reason, numbers)
    # A request nginx had to send to the other color is one this color failed to answer.
    attempted, failed = window.requests + window.failovers, window.server_errors + window.failovers
    if attempted > 0:
        rate = failed / attempted
        if rate > settings.max_error_rate:
            return _fail(POLL_ERRORS, f"error rate {rate:.2%} over the last {attempted} requests is above "
                                      f"{settings.max_error_rate:.2%}"
                                      + (f" ({window.failovers} answered by the other color)" if window.failovers
                                         else ""), **numbers)
    if window.labelled >= settings.min_labelled:
        accuracy = window.correct / window.labelled
        if accuracy < settings.min_live_accuracy:
            return _fail(POLL_ACCURACY, f"live accuracy {accuracy:.2%} over {window.labelled} labelled samples "
                                        f"since the bake began is below {settings.min_live_accuracy:.2%}", **numbers)
    if attempted == 0:
        return GateResult(BAKE_POLL, Verdict.INCONCLUSIVE, "no request reached the color since the last poll", numbers)
    return _pass(BAKE_POLL, **numbers)

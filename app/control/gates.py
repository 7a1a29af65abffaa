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
    """What a color saw between two polls: requests to /predict and /feedback, and 5xx among them."""

    requests: int = 0
    server_errors: int = 0


def bake_poll(probes: list[ServerProbe], version: str, window: Window, settings: BakeSettings) -> GateResult:
    """Judge one poll of the new active color.

    A server that does not answer, is not ready, reports another status or version, an
    error rate above the limit, or live accuracy below the limit (once enough labels
    arrived) fail the poll. A poll that finds the color healthy but no request in the
    window is inconclusive: it proves nothing about the new version.
    """
    serving = color_serving(probes, version)
    if not serving.passed:
        return GateResult(BAKE_POLL, Verdict.FAIL, serving.reason)
    numbers = {"requests": window.requests, "server_errors": window.server_errors}
    if window.requests > 0:
        rate = window.server_errors / window.requests
        if rate > settings.max_error_rate:
            return _fail(BAKE_POLL, f"error rate {rate:.2%} over the last {window.requests} requests is above "
                                    f"{settings.max_error_rate:.2%}", **numbers)
    for server in probes:
        live = server.health.get("live") or {}
        labelled, accuracy = live.get("labelled") or 0, live.get("accuracy")
        if labelled >= settings.min_labelled and accuracy is not None and accuracy < settings.min_live_accuracy:
            return _fail(BAKE_POLL, f"live accuracy {accuracy:.2%} over {labelled} labelled samples is below "
                                    f"{settings.min_live_accuracy:.2%}", labelled=labelled, accuracy=accuracy,
                         **numbers)
    if window.requests == 0:
        return GateResult(BAKE_POLL, Verdict.INCONCLUSIVE, "no request reached the color since the last poll", numbers)
    return _pass(BAKE_POLL, **numbers)

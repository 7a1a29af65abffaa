"""Gates: functions that return a reason to stop, or "" when there is none.

A gate never raises for a failed check and never passes on missing data: no answer, no
samples, a NaN, all count as a reason (inconclusive is not a pass).
"""

from __future__ import annotations


def color_serving(probes, version: str) -> str:
    """Every server of the color is ready, healthy, and serves ``version``."""
    if not probes:
        return "the color has no servers"
    for server in probes:
        if server.health is None:
            return f"{server.address} does not answer ({server.error or 'no response'})"
        if not server.ready:
            return f"{server.address} is not ready"
        if server.health.get("status") != "ok":
            return f"{server.address} reports status {server.health.get('status')!r}"
        if server.health.get("version") != version:
            return f"{server.address} serves {server.health.get('version')}, expected {version}"
    return ""


def _metric(card: dict, name: str):
    value = (card.get("metrics") or {}).get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return None
    return float(value)


def card_meets_thresholds(card: dict, thresholds: dict) -> str:
    """The candidate's holdout metrics meet the absolute thresholds."""
    for name, key in (("accuracy", "min_accuracy"), ("f1_score", "min_f1_score")):
        value = _metric(card, name)
        if value is None:
            return f"the card of {card.get('version')} has no usable {name} (no data is not a pass)"
        if value < thresholds[key]:
            return f"{card['version']} holdout {name} {value:.4f} is below the threshold {thresholds[key]:.4f}"
    return ""


def card_not_worse(card: dict, active_card: dict, thresholds: dict) -> str:
    """The candidate is not worse than the active version by more than the tolerance."""
    tolerance = thresholds["max_metric_drop"]
    for name in ("accuracy", "f1_score", "precision", "recall"):
        new, old = _metric(card, name), _metric(active_card, name)
        if new is None or old is None:
            missing_on = card.get("version") if new is None else active_card.get("version")
            return f"cannot compare {name}: it is missing on {missing_on} (no data is not a pass)"
        if old - new > tolerance:
            return (f"{card['version']} {name} {new:.4f} is {old - new:.4f} worse than the active "
                    f"{active_card['version']} ({old:.4f}); the tolerance is {tolerance:.4f}")
    return ""


def smoke_evaluation(results: list, expected_accuracy: float, max_latency_ms: float) -> str:
    """Holdout rows sent through the preview door: all answered, same accuracy, fast enough.

    ``results`` holds one (status, predicted_label, true_label, latency_ms, version) per row.
    """
    if not results:
        return "no smoke requests were answered (no data is not a pass)"
    failed = [r for r in results if r[0] != 200]
    if failed:
        return f"{len(failed)} of {len(results)} smoke requests failed (first: HTTP {failed[0][0]})"
    versions = {r[4] for r in results}
    if len(versions) != 1:
        return f"smoke requests were answered by several versions {sorted(versions)}"
    accuracy = sum(r[1] == r[2] for r in results) / len(results)
    if abs(accuracy - expected_accuracy) > 1e-9:
        return f"smoke accuracy {accuracy:.4f} does not match the card's {expected_accuracy:.4f}"
    latencies = sorted(r[3] for r in results)
    p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
    if p95 > max_latency_ms:
        return f"smoke p95 latency {p95:.1f} ms is above the limit {max_latency_ms:g} ms"
    return ""


def bake_poll(probes, version: str, window: dict, thresholds: dict) -> tuple[str, str]:
    """Judge one poll of the new active color: ("pass"|"fail"|"inconclusive", reason).

    A server that does not answer, is not ready, reports another status or version, an
    error rate above the limit, or live accuracy below the limit (once enough labels
    arrived) fail the poll. A poll that finds the color healthy but no request in the
    window is inconclusive: it proves nothing about the new version.
    """
    reason = color_serving(probes, version)
    if reason:
        return "fail", reason
    if window["requests"] > 0:
        rate = window["server_errors"] / window["requests"]
        if rate > thresholds["max_error_rate"]:
            return "fail", (f"error rate {rate:.2%} over the last {window['requests']} requests is above "
                            f"{thresholds['max_error_rate']:.2%}")
    for server in probes:
        live = server.health.get("live") or {}
        labelled, accuracy = live.get("labelled") or 0, live.get("accuracy")
        if labelled >= thresholds["min_labelled"] and accuracy is not None \
                and accuracy < thresholds["min_live_accuracy"]:
            return "fail", (f"live accuracy {accuracy:.2%} over {labelled} labelled samples is below "
                            f"{thresholds['min_live_accuracy']:.2%}")
    if window["requests"] == 0:
        return "inconclusive", "no request reached the color since the last poll"
    return "pass", ""

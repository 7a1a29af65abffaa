"""Gates: pure functions from observations to a ``GateResult`` (verdict, reason, numbers).

A gate never raises for a failed check and never passes on missing data: no answer, no
samples, a NaN each fail the gate or leave it inconclusive, never pass it.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.control import stats
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


# -- the bake's checks (docs/adr/0010-gates-with-honest-statistics.md) -------------------------
@dataclass(frozen=True)
class Window:
    """What a color saw since the bake began; its counters from before the bake never count.

    ``slow`` is None when the servers report no latency buckets; ``slow_over_ms`` is the
    bucket bound the slow requests were counted above.
    """

    requests: int = 0
    server_errors: int = 0
    labelled: int = 0
    correct: int = 0
    failovers: int = 0      # requests meant for this color that the other color answered
    timed: int = 0          # requests with a latency measurement
    slow: int | None = None
    slow_over_ms: float = 0.0

    @property
    def attempted(self) -> int:
        """Requests meant for this color: those it answered and those nginx sent elsewhere."""
        return self.requests + self.failovers

    @property
    def failed(self) -> int:
        # A request nginx had to send to the other color is one this color failed to answer.
        return self.server_errors + self.failovers

    def describe(self) -> str:
        accuracy = f", accuracy {self.correct / self.labelled:.2%}" if self.labelled else ""
        failed_over = f", {self.failovers} failed over to the other color" if self.failovers else ""
        return (f"since the bake began: {self.requests} requests, {self.server_errors} errors{failed_over}, "
                f"{self.labelled} labelled{accuracy}")


@dataclass(frozen=True)
class Reference:
    """The stable version's live accuracy as the candidate is compared with it.

    ``fixed``: a sample looked at once (its figures from before the bake, or its card's
    holdout); otherwise its window, which grows with the bake like the candidate's.
    """

    correct: int
    labelled: int
    source: str
    fixed: bool = True


@dataclass(frozen=True)
class Stable:
    """The version a rollback returns to: its color, its window, and its accuracy figures."""

    color: str
    version: str
    window: Window = Window()
    reference: Reference | None = None

    @property
    def name(self) -> str:
        return f"{self.color} ({self.version})"


def stable_reference(window: Window, before: Window, card_accuracy: float | None, holdout_size: int | None,
                     min_labelled: int) -> Reference | None:
    """The best accuracy figures of the stable version: its labels in this window (a canary),
    else its labels before the bake (the last it served), else its card's holdout; None
    when it has none of them."""
    if window.labelled >= min_labelled:
        return Reference(window.correct, window.labelled, "its labels in the same window", fixed=False)
    if before.labelled >= min_labelled:
        return Reference(before.correct, before.labelled, "its live labels before the bake")
    if card_accuracy is not None and holdout_size:
        return Reference(round(card_accuracy * holdout_size), holdout_size, "its card's holdout")
    return None


POLL_SERVING = "bake poll: serving"
POLL_ERRORS = "bake poll: error rate"
POLL_LATENCY = "bake poll: latency"
POLL_ACCURACY = "bake poll: live accuracy"
POLL_VS_STABLE = "bake poll: live accuracy against the stable version"


def _pct(value: float) -> str:
    return f"{value:.2%}"


def _level(confidence: float) -> str:
    return f"{confidence * 100:g}%"


def _rate(gate: str, what: str, bad: int, n: int, stable_bad: int, stable_n: int, limit: float,
          stable: Stable | None, settings: BakeSettings, key: str) -> GateResult:
    """A share of bad requests (errors, slow ones) against ``limit`` above the stable version's
    share in the same window, or against ``limit`` itself when the stable version had no
    traffic there; pass only when the upper bound is within it."""
    numbers = {f"{key}_requests": n, key: round(bad / n, 6) if n else None}
    if n < settings.min_requests:
        return GateResult(gate, Verdict.INCONCLUSIVE,
                          f"{what}: {n} of the {settings.min_requests} requests needed before a verdict", numbers)
    level = settings.confidence
    compared = stable is not None and stable_n >= settings.min_requests
    if compared:
        # Both sides are uncertain: each gets half of what may go wrong.
        level = 1 - (1 - settings.confidence) / 2
        other = stats.anytime_interval(stable_bad, stable_n, level)
        ceiling, floor = other.high + limit, other.low + limit
        basis = (f"{stable.name}'s {_pct(other.estimate)} over {stable_n} requests in the same window "
                 f"(bounds {_pct(other.low)}-{_pct(other.high)}) plus {_pct(limit)}")
        numbers.update({f"stable_{key}": round(other.estimate, 6), f"stable_{key}_requests": stable_n})
    else:
        ceiling = floor = limit
        who = stable.name if stable is not None else "the stable version"
        basis = f"{_pct(limit)} (absolute: {who} had no traffic in this window)"
    bounds = stats.anytime_interval(bad, n, level)
    numbers.update({f"{key}_low": round(bounds.low, 6), f"{key}_high": round(bounds.high, 6),
                    f"{key}_limit": round(floor, 6)})
    observed = f"{what} {_pct(bounds.estimate)} over {n} requests since the bake began"
    if bounds.low > ceiling:
        return _fail(gate, f"{observed} is above {basis}: its {_level(level)} lower bound is {_pct(bounds.low)}",
                     **numbers)
    if bounds.high <= floor:
        return _pass(gate, f"{observed}, {_level(level)} upper bound {_pct(bounds.high)}, within {basis}",
                     **numbers)
    return GateResult(gate, Verdict.INCONCLUSIVE,
                      f"{observed}: {_level(level)} bounds {_pct(bounds.low)}-{_pct(bounds.high)} do not yet show "
                      f"it within {basis}", numbers)


def error_rate(window: Window, stable: Stable | None, settings: BakeSettings) -> GateResult:
    """Server errors (and failovers) since the bake began, against ``bake.max_error_rate``."""
    stable_window = stable.window if stable else Window()
    result = _rate(POLL_ERRORS, "error rate", window.failed, window.attempted, stable_window.server_errors,
                   stable_window.requests, settings.max_error_rate, stable, settings, "error_rate")
    if window.failovers and result.verdict is Verdict.FAIL:
        return GateResult(result.gate, result.verdict,
                          f"{result.reason} ({window.failovers} answered by the other color)", result.numbers)
    return result


def latency(window: Window, stable: Stable | None, settings: BakeSettings) -> GateResult | None:
    """Requests slower than ``bake.slow_request_ms``, against ``bake.max_slow_rate``; None
    when the servers report no latency buckets (nothing to judge: said in the verdict)."""
    if window.slow is None:
        return None
    stable_window = stable.window if stable else Window()
    stable_slow = stable_window.slow if stable_window.slow is not None else 0
    stable_timed = stable_window.timed if stable_window.slow is not None else 0
    what = f"share slower than {window.slow_over_ms:g} ms"
    return _rate(POLL_LATENCY, what, window.slow, window.timed, stable_slow, stable_timed, settings.max_slow_rate,
                 stable, settings, "slow_rate")


def live_accuracy(window: Window, settings: BakeSettings) -> GateResult:
    """Live accuracy since the bake began against ``bake.min_live_accuracy``: inconclusive
    below ``bake.min_labelled`` labels, a failure when the upper bound is below the
    threshold, a pass only when the lower bound clears it."""
    n, correct = window.labelled, window.correct
    numbers = {"labelled": n, "accuracy": round(correct / n, 6) if n else None}
    if n < settings.min_labelled:
        return GateResult(POLL_ACCURACY, Verdict.INCONCLUSIVE,
                          f"live accuracy: {n} of the {settings.min_labelled} labels needed before a verdict", numbers)
    bounds = stats.anytime_interval(correct, n, settings.confidence)
    level, threshold = _level(settings.confidence), settings.min_live_accuracy
    numbers.update(accuracy_low=round(bounds.low, 6), accuracy_high=round(bounds.high, 6))
    observed = f"live accuracy {_pct(bounds.estimate)} over {n} labelled samples since the bake began"
    if bounds.high < threshold:
        return _fail(POLL_ACCURACY, f"{observed} is below {_pct(threshold)}: its {level} upper bound is "
                                    f"{_pct(bounds.high)}", **numbers)
    if bounds.low >= threshold:
        return _pass(POLL_ACCURACY, f"{observed}, {level} lower bound {_pct(bounds.low)}, clears {_pct(threshold)}",
                     **numbers)
    return GateResult(POLL_ACCURACY, Verdict.INCONCLUSIVE,
                      f"{observed}: {level} bounds {_pct(bounds.low)}-{_pct(bounds.high)} straddle {_pct(threshold)}",
                      numbers)


def accuracy_vs_stable(window: Window, stable: Stable | None, settings: BakeSettings) -> GateResult:
    """Live accuracy against the stable version's: fail when the candidate is worse, pass
    only when it is shown not worse by ``bake.accuracy_drop``, whatever the stable
    version's true accuracy within its bounds.

    Half of ``1 - confidence`` goes to the stable version's bounds, half to the test. When
    those bounds are narrower than the drop, Wald's sequential test decides between H0
    "as good as the stable version" (its lower bound) and H1 "worse by the drop" (its upper
    bound minus the drop). When they are wider (a 45-row card), the candidate's own
    anytime bounds are compared with them instead: it fails below the stable version's
    lower bound and passes only with a lower bound within the drop of its upper bound.
    """
    if stable is None or stable.reference is None:
        return GateResult(POLL_VS_STABLE, Verdict.INCONCLUSIVE,
                          "no accuracy figures for the stable version: the candidate cannot be compared with it")
    n, correct = window.labelled, window.correct
    reference = stable.reference
    alpha = (1 - settings.confidence) / 2
    if reference.fixed:  # looked at once: a two-sided interval leaves alpha on each side
        other = stats.wilson_interval(reference.correct, reference.labelled, 1 - 2 * alpha)
    else:  # the stable window grows with the bake: bounds valid at every look
        other = stats.anytime_interval(reference.correct, reference.labelled, 1 - 2 * alpha)
    drop = settings.accuracy_drop
    p0, p1 = other.low, other.high - drop
    numbers = {"stable_accuracy": round(other.estimate, 6), "stable_labelled": reference.labelled,
               "stable_low": round(p0, 6), "stable_high": round(other.high, 6)}
    observed = f"live accuracy {_pct(correct / n)} over {n} labelled samples"
    against = (f"{stable.name}'s {_pct(other.estimate)} ({reference.source}, {reference.labelled} labels, "
               f"{_level(1 - 2 * alpha)} bounds {_pct(p0)}-{_pct(other.high)})")
    worse = f"worse by {drop * 100:g} points"
    if 0 < p1 < p0 < 1:
        test = stats.sprt(correct, n, p0, p1, alpha, alpha)
        numbers.update(h0_accuracy=round(p0, 6), h1_accuracy=round(p1, 6), llr=round(test.llr, 4),
                       llr_fail=round(test.upper, 4), llr_pass=round(test.lower, 4))
        hypotheses = f"'as good' ({_pct(p0)}) against '{worse}' ({_pct(p1)})"
        if test.accepts_h1:
            return _fail(POLL_VS_STABLE, f"{observed} is worse than {against}: the sequential test of {hypotheses} "
                                         f"decided '{worse}' (log-likelihood ratio {test.llr:.2f} >= "
                                         f"{test.upper:.2f})", **numbers)
        if test.accepts_h0:
            return _pass(POLL_VS_STABLE, f"{observed} is as good as {against}: log-likelihood ratio "
                                         f"{test.llr:.2f} <= {test.lower:.2f}", **numbers)
        return GateResult(POLL_VS_STABLE, Verdict.INCONCLUSIVE,
                          f"{observed} against {against}: the sequential test of {hypotheses} is undecided "
                          f"(log-likelihood ratio {test.llr:.2f}, decides at {test.lower:.2f} or {test.upper:.2f})",
                          numbers)
    # The stable version's bounds are wider than the drop: no sequential test can tell the
    # two apart, but the candidate's own bounds can still clear both ends.
    own = stats.anytime_interval(correct, n, 1 - alpha)
    numbers.update(accuracy_low=round(own.low, 6), accuracy_high=round(own.high, 6))
    level = _level(1 - alpha)
    if own.high < p0:
        return _fail(POLL_VS_STABLE, f"{observed} is worse than {against}: its {level} upper bound "
                                     f"{_pct(own.high)} is below the stable version's lower bound", **numbers)
    floor = max(0.0, p1)
    if own.low >= floor:
        return _pass(POLL_VS_STABLE, f"{observed} is not {worse} than {against}: its {level} lower bound "
                                     f"{_pct(own.low)} clears {_pct(floor)}", **numbers)
    return GateResult(POLL_VS_STABLE, Verdict.INCONCLUSIVE,
                      f"{observed} against {against}: too uncertain a figure for a sequential test, and the "
                      f"candidate's {level} bounds {_pct(own.low)}-{_pct(own.high)} neither fall below "
                      f"{_pct(p0)} nor clear {_pct(floor)}", numbers)


def combine(checks: list[tuple[GateResult | None, bool, str]], numbers: dict) -> GateResult:
    """One poll's verdict from its checks, each ``(result, required, why not judged)``.

    The first failure fails the poll. The poll passes only when every required check
    passed; a check that could not be judged (``result`` None) is named in the reason.
    """
    merged = dict(numbers)
    for result, _, _ in checks:
        if result is not None:
            merged.update(result.numbers)
    for result, _, _ in checks:
        if result is not None and result.verdict is Verdict.FAIL:
            return GateResult(result.gate, Verdict.FAIL, result.reason, merged)
    notes = [why for result, _, why in checks if result is None and why]
    waiting = [r for r, required, _ in checks if r is not None and required and not r.passed]
    if waiting:
        reason = "; ".join([r.reason for r in waiting] + notes)
        return GateResult(BAKE_POLL, Verdict.INCONCLUSIVE, reason, merged)
    judged = [r.reason for r, _, _ in checks if r is not None and r.reason]
    return GateResult(BAKE_POLL, Verdict.PASS, "; ".join(judged + notes), merged)


def bake_poll(probes: list[ServerProbe], version: str, window: Window, settings: BakeSettings,
              stable: Stable | None = None) -> GateResult:
    """Judge one poll of the new active color on everything it saw since the bake began.

    A server that does not answer, is not ready, or reports another status or version
    fails the poll. Then each check is judged with bounds that stay valid however often
    it is polled: the error rate (and the share of slow requests, when the servers report
    latency) against its limit above the stable version's in the same window, live
    accuracy against ``bake.min_live_accuracy``, and live accuracy against the stable
    version (a sequential test). Below its minimum sample a check is inconclusive, never
    a pass; the poll passes only when every required check passed (live accuracy is not
    required with ``bake.require_labels = false``, but it can still fail the poll).
    """
    numbers = {"requests": window.requests, "server_errors": window.server_errors, "labelled": window.labelled,
               "correct": window.correct, "failovers": window.failovers, "confidence": settings.confidence}
    serving = color_serving(probes, version)
    if not serving.passed:
        return GateResult(POLL_SERVING, Verdict.FAIL, serving.reason, numbers)
    return judge(window, stable, settings, numbers)


def judge(window: Window, stable: Stable | None, settings: BakeSettings, numbers: dict | None = None) -> GateResult:
    """The statistical checks of a poll whose servers all serve the version (``bake_poll``'s second half)."""
    labels = settings.require_labels
    accuracy = live_accuracy(window, settings)
    # Below the minimum sample the threshold check says so for both accuracy checks.
    enough = window.labelled >= settings.min_labelled
    return combine([
        (error_rate(window, stable, settings), True, ""),
        (latency(window, stable, settings), True, "latency not judged: the servers report no latency buckets"),
        (accuracy, labels, ""),
        (accuracy_vs_stable(window, stable, settings) if enough else None, labels, ""),
    ], numbers if numbers is not None else {})

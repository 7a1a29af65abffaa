"""Gates: pure functions from observations to a ``GateResult`` (verdict, reason, numbers).

A gate never raises for a failed check and never passes on missing data: no answer, no
samples, a NaN each fail the gate or leave it inconclusive, never pass it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from app.control import stats
from app.control.config import BakeSettings, GateSettings
from app.control.pairs import PairCounts
from app.control.probes import ServerProbe
from app.control.rollout import Figures, GateResult, SmokeAnswer, Verdict

SERVING = "serving"
CARD_THRESHOLDS = "holdout metrics meet thresholds"
SMOKE = "smoke evaluation through the preview door"
BAKE_POLL = "bake poll"


def _pass(gate: str, reason: str = "", figures: Figures | None = None, **numbers) -> GateResult:
    return GateResult(gate, Verdict.PASS, reason, numbers, figures)


def _fail(gate: str, reason: str, figures: Figures | None = None, **numbers) -> GateResult:
    return GateResult(gate, Verdict.FAIL, reason, numbers, figures)


def _undecided(gate: str, reason: str, numbers: dict, figures: Figures | None = None) -> GateResult:
    return GateResult(gate, Verdict.INCONCLUSIVE, reason, numbers, figures)


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
        return _undecided(gate, f"{what}: {n} of the {settings.min_requests} requests needed before a verdict",
                          numbers, Figures(n, settings.min_requests, limit, estimate=bad / n if n else None))
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
    figures = Figures(n, settings.min_requests, floor, "below", bounds.estimate, bounds.low, bounds.high)
    if bounds.low > ceiling:
        return _fail(gate, f"{observed} is above {basis}: its {_level(level)} lower bound is {_pct(bounds.low)}",
                     figures, **numbers)
    if bounds.high <= floor:
        return _pass(gate, f"{observed}, {_level(level)} upper bound {_pct(bounds.high)}, within {basis}",
                     figures, **numbers)
    return _undecided(gate, f"{observed}: {_level(level)} bounds {_pct(bounds.low)}-{_pct(bounds.high)} do not yet "
                            f"show it within {basis}", numbers, figures)


def error_rate(window: Window, stable: Stable | None, settings: BakeSettings) -> GateResult:
    """Server errors (and failovers) since the bake began, against ``bake.max_error_rate``."""
    stable_window = stable.window if stable else Window()
    result = _rate(POLL_ERRORS, "error rate", window.failed, window.attempted, stable_window.server_errors,
                   stable_window.requests, settings.max_error_rate, stable, settings, "error_rate")
    if window.failovers and result.verdict is Verdict.FAIL:
        return replace(result, reason=f"{result.reason} ({window.failovers} answered by the other color)")
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
    threshold = settings.min_live_accuracy
    if n < settings.min_labelled:
        return _undecided(POLL_ACCURACY, f"live accuracy: {n} of the {settings.min_labelled} labels needed before a "
                                         "verdict", numbers,
                          Figures(n, settings.min_labelled, threshold, "above", correct / n if n else None))
    bounds = stats.anytime_interval(correct, n, settings.confidence)
    level = _level(settings.confidence)
    numbers.update(accuracy_low=round(bounds.low, 6), accuracy_high=round(bounds.high, 6))
    figures = Figures(n, settings.min_labelled, threshold, "above", bounds.estimate, bounds.low, bounds.high)
    observed = f"live accuracy {_pct(bounds.estimate)} over {n} labelled samples since the bake began"
    if bounds.high < threshold:
        return _fail(POLL_ACCURACY, f"{observed} is below {_pct(threshold)}: its {level} upper bound is "
                                    f"{_pct(bounds.high)}", figures, **numbers)
    if bounds.low >= threshold:
        return _pass(POLL_ACCURACY, f"{observed}, {level} lower bound {_pct(bounds.low)}, clears {_pct(threshold)}",
                     figures, **numbers)
    return _undecided(POLL_ACCURACY, f"{observed}: {level} bounds {_pct(bounds.low)}-{_pct(bounds.high)} straddle "
                                     f"{_pct(threshold)}", numbers, figures)


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
        return _undecided(POLL_VS_STABLE, "no accuracy figures for the stable version: the candidate cannot be "
                                          "compared with it", {})
    n, correct = window.labelled, window.correct
    reference = stable.reference
    alpha = (1 - settings.confidence) / 2
    if reference.fixed:  # looked at once: a two-sided interval leaves alpha on each side
        other = stats.wilson_interval(reference.correct, reference.labelled, 1 - 2 * alpha)
    else:  # the stable window grows with the bake: bounds valid at every look
        other = stats.anytime_interval(reference.correct, reference.labelled, 1 - 2 * alpha)
    drop = settings.accuracy_drop
    p0, p1 = other.low, other.high - drop
    own = stats.anytime_interval(correct, n, 1 - alpha)
    figures = Figures(n, settings.min_labelled, max(0.0, p1), "above", own.estimate, own.low, own.high)
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
                                         f"{test.upper:.2f})", figures, **numbers)
        if test.accepts_h0:
            return _pass(POLL_VS_STABLE, f"{observed} is as good as {against}: log-likelihood ratio "
                                         f"{test.llr:.2f} <= {test.lower:.2f}", figures, **numbers)
        return _undecided(POLL_VS_STABLE, f"{observed} against {against}: the sequential test of {hypotheses} is "
                                          f"undecided (log-likelihood ratio {test.llr:.2f}, decides at "
                                          f"{test.lower:.2f} or {test.upper:.2f})", numbers, figures)
    # The stable version's bounds are wider than the drop: no sequential test can tell the
    # two apart, but the candidate's own bounds can still clear both ends.
    numbers.update(accuracy_low=round(own.low, 6), accuracy_high=round(own.high, 6))
    level = _level(1 - alpha)
    if own.high < p0:
        return _fail(POLL_VS_STABLE, f"{observed} is worse than {against}: its {level} upper bound "
                                     f"{_pct(own.high)} is below the stable version's lower bound", figures, **numbers)
    floor = max(0.0, p1)
    if own.low >= floor:
        return _pass(POLL_VS_STABLE, f"{observed} is not {worse} than {against}: its {level} lower bound "
                                     f"{_pct(own.low)} clears {_pct(floor)}", figures, **numbers)
    return _undecided(POLL_VS_STABLE, f"{observed} against {against}: too uncertain a figure for a sequential test, "
                                      f"and the candidate's {level} bounds {_pct(own.low)}-{_pct(own.high)} neither "
                                      f"fall below {_pct(p0)} nor clear {_pct(floor)}", numbers, figures)


# -- the paired checks: both versions on the same requests (app/control/pairs.py) -----------------
POLL_DISAGREEMENT = "bake poll: disagreement with the stable version"
POLL_CLASS_SHIFT = "bake poll: class shares against the stable version"
POLL_PAIRED_ERRORS = "bake poll: errors where the stable version answered"
POLL_PAIRED_LABELS = "bake poll: accuracy on paired labels"


@dataclass(frozen=True)
class Paired:
    """The paired evidence of a window: its counts, and the two versions' names."""

    counts: PairCounts
    candidate: str
    stable: str


def disagreement(paired: Paired, settings: BakeSettings) -> GateResult:
    """How often the two versions predict another class for the same row: a guard against a
    broken or mis-fed model (wrong feature order, units or labels) and a far less accurate
    one (on labelled rows accuracy can differ by at most the disagreement), while a new
    version is meant to differ a little. Wald's sequential test decides between "at most
    half of ``bake.max_disagreement``" (pass) and "at least ``bake.max_disagreement``"
    (fail), each wrong at most ``1 - confidence`` of the time however often it looks; a
    version in between may go either way."""
    counts, limit = paired.counts, settings.max_disagreement
    n, k = counts.rows, counts.disagree
    numbers = {"paired_rows": n, "disagreement": round(k / n, 6) if n else None, "disagreement_limit": limit}
    if n < settings.min_pairs:
        return _undecided(POLL_DISAGREEMENT, f"disagreement: {n} of the {settings.min_pairs} paired rows needed "
                                             "before a verdict", numbers,
                          Figures(n, settings.min_pairs, limit, estimate=k / n if n else None))
    alpha = 1 - settings.confidence
    bounds = stats.anytime_interval(k, n, settings.confidence)
    ok, bad = limit / 2, limit
    test = stats.sprt(n - k, n, 1 - ok, 1 - bad, alpha, alpha)  # on the rows they agree on
    numbers.update(disagreement_low=round(bounds.low, 6), disagreement_high=round(bounds.high, 6),
                   llr=round(test.llr, 4), llr_fail=round(test.upper, 4), llr_pass=round(test.lower, 4))
    figures = Figures(n, settings.min_pairs, limit, "below", bounds.estimate, bounds.low, bounds.high)
    observed = (f"disagreement: {paired.candidate} predicts another class than {paired.stable} on "
                f"{_pct(bounds.estimate)} of {n} paired rows ({counts.pairs} requests, "
                f"{_level(settings.confidence)} bounds {_pct(bounds.low)}-{_pct(bounds.high)})")
    hypotheses = f"'at most {_pct(ok)}' against 'at least {_pct(bad)}'"
    if test.accepts_h1:
        return _fail(POLL_DISAGREEMENT, f"{observed}: the sequential test of {hypotheses} decided 'at least "
                                        f"{_pct(bad)}' (log-likelihood ratio {test.llr:.2f} >= {test.upper:.2f})",
                     figures, **numbers)
    if test.accepts_h0:
        return _pass(POLL_DISAGREEMENT, f"{observed}: the sequential test of {hypotheses} decided 'at most "
                                        f"{_pct(ok)}' (log-likelihood ratio {test.llr:.2f} <= {test.lower:.2f})",
                     figures, **numbers)
    return _undecided(POLL_DISAGREEMENT, f"{observed}: the sequential test of {hypotheses} is undecided "
                                         f"(log-likelihood ratio {test.llr:.2f}, decides at {test.lower:.2f} or "
                                         f"{test.upper:.2f})", numbers, figures)


def class_shift(paired: Paired, settings: BakeSettings) -> GateResult:
    """How far each class's share of predictions moved against the stable version's on the
    same rows, against ``bake.max_class_shift``. A class's shift is (rows only the new
    version gives it - rows only the stable one gives it) / rows; each count gets anytime
    bounds, ``1 - confidence`` shared among the classes and both counts."""
    counts, limit = paired.counts, settings.max_class_shift
    n = counts.rows
    classes = sorted({c for pair in counts.matrix for c in pair})
    if n < settings.min_pairs or not classes:
        return _undecided(POLL_CLASS_SHIFT, f"class shares: {n} of the {settings.min_pairs} paired rows needed "
                                            "before a verdict", {"paired_rows": n},
                          Figures(n, settings.min_pairs, limit))
    level = 1 - (1 - settings.confidence) / (2 * len(classes))
    widest, worst, worst_low, moved = None, 0.0, 0.0, None
    shifts = {}
    for name in classes:
        gained, lost = counts.shifts.get(name, (0, 0))
        up, down = stats.anytime_interval(gained, n, level), stats.anytime_interval(lost, n, level)
        low, high = up.low - down.high, up.high - down.low
        shifts[name] = round((gained - lost) / n, 6)
        far = max(abs(low), abs(high))
        if widest is None or far > worst:
            widest, worst = name, far
        shown = low if low > 0 else -high if high < 0 else 0.0  # how far the shift is shown from 0
        if shown > worst_low:
            worst_low, moved = shown, (name, low, high)
    numbers = {"class_shift": shifts, "class_shift_limit": limit}
    figures = Figures(n, settings.min_pairs, limit, "below", abs(shifts[widest]), worst_low, worst)
    if moved is not None and worst_low > limit:
        name, low, high = moved
        return _fail(POLL_CLASS_SHIFT, f"class shares: {paired.candidate} gives {name} {_pct(shifts[name])} of the "
                                       f"{n} paired rows more than {paired.stable} does (bounds {_pct(low)} to "
                                       f"{_pct(high)}), beyond {_pct(limit)}", figures, **numbers)
    if worst <= limit:
        return _pass(POLL_CLASS_SHIFT, f"class shares within {_pct(limit)} of {paired.stable}'s over {n} paired rows "
                                       f"(the widest bound, {widest}: {_pct(worst)})", figures, **numbers)
    return _undecided(POLL_CLASS_SHIFT, f"class shares: the bounds on {widest}'s shift reach {_pct(worst)}, beyond "
                                        f"{_pct(limit)}, over {n} paired rows", numbers, figures)


def paired_errors(paired: Paired, settings: BakeSettings) -> GateResult:
    """Requests the stable version answered with 200 and the new one with any error (a 4xx
    too: an input the stable version takes is no client error), against
    ``bake.max_error_rate``."""
    counts, limit, level = paired.counts, settings.max_error_rate, settings.confidence
    n, k = counts.stable_ok, counts.candidate_failed
    numbers = {"paired_answered": n, "paired_failed": k}
    if n < settings.min_pairs:
        return _undecided(POLL_PAIRED_ERRORS, f"errors on paired requests: {n} of the {settings.min_pairs} needed "
                                              "before a verdict", numbers,
                          Figures(n, settings.min_pairs, limit, estimate=k / n if n else None))
    bounds = stats.anytime_interval(k, n, level)
    figures = Figures(n, settings.min_pairs, limit, "below", bounds.estimate, bounds.low, bounds.high)
    observed = (f"{paired.candidate} failed {k} of the {n} paired requests {paired.stable} answered "
                f"({_pct(bounds.estimate)})")
    if bounds.low > limit:
        return _fail(POLL_PAIRED_ERRORS, f"{observed}: its {_level(level)} lower bound {_pct(bounds.low)} is above "
                                         f"{_pct(limit)}", figures, **numbers)
    if bounds.high <= limit:
        return _pass(POLL_PAIRED_ERRORS, f"{observed}, {_level(level)} upper bound {_pct(bounds.high)}, within "
                                         f"{_pct(limit)}", figures, **numbers)
    return _undecided(POLL_PAIRED_ERRORS, f"{observed}: {_level(level)} bounds {_pct(bounds.low)}-"
                                          f"{_pct(bounds.high)} do not yet show it within {_pct(limit)}",
                      numbers, figures)


def paired_labels(paired: Paired, settings: BakeSettings) -> GateResult | None:
    """Both versions on the same labelled rows (None when there are none). Only the rows
    where they disagree tell them apart: ``b`` where only the stable version was right,
    ``c`` where only the new one was. Fail when ``b`` is shown to outnumber ``c`` (a sign
    test on the discordant rows, bounds valid at every poll); pass once the accuracy
    difference ``(c - b) / labelled`` is shown above ``-bake.accuracy_drop``."""
    counts = paired.counts
    n, b, c = counts.labelled, counts.stable_only_right, counts.candidate_only_right
    if not n:
        return None
    alpha = 1 - settings.confidence
    drop = settings.accuracy_drop
    numbers = {"paired_labelled": n, "stable_only_right": b, "candidate_only_right": c}
    discordant = b + c
    sign = stats.anytime_interval(b, discordant, 1 - alpha / 2) if discordant else None
    # The difference's bounds from both counts' anytime bounds (alpha/4 each side each).
    low_c, high_b = stats.anytime_interval(c, n, 1 - alpha / 4).low, stats.anytime_interval(b, n, 1 - alpha / 4).high
    high_c, low_b = stats.anytime_interval(c, n, 1 - alpha / 4).high, stats.anytime_interval(b, n, 1 - alpha / 4).low
    difference = (c - b) / n
    figures = Figures(n, settings.min_labelled, -drop, "above", difference, low_c - high_b, high_c - low_b)
    observed = (f"on {n} labelled paired rows {paired.candidate} alone was right {c} times and {paired.stable} "
                f"alone {b} times")
    if sign is not None and sign.low > 0.5:
        return _fail(POLL_PAIRED_LABELS, f"{observed}: {paired.stable} wins {_pct(sign.estimate)} of the rows they "
                                         f"disagree on, lower bound {_pct(sign.low)} above 50%", figures, **numbers)
    if n >= settings.min_labelled and low_c - high_b >= -drop:
        return _pass(POLL_PAIRED_LABELS, f"{observed}: the accuracy difference is at least "
                                         f"{(low_c - high_b) * 100:.1f} points, within the drop of "
                                         f"{drop * 100:g}", figures, **numbers)
    return _undecided(POLL_PAIRED_LABELS, f"{observed}: the accuracy difference is between "
                                          f"{(low_c - high_b) * 100:.1f} and {(high_c - low_b) * 100:.1f} points",
                      numbers, figures)


def combine(checks: list[tuple[GateResult | None, bool, str]], numbers: dict) -> GateResult:
    """One poll's verdict from its checks, each ``(result, required, why not judged)``.

    The first failure fails the poll. The poll passes only when every required check
    passed; a check that could not be judged (``result`` None) is named in the reason.
    Each judged check is kept in the result's ``parts``.
    """
    merged = dict(numbers)
    parts = tuple(result for result, _, _ in checks if result is not None)
    for result in parts:
        merged.update(result.numbers)
    for result in parts:
        if result.verdict is Verdict.FAIL:
            return GateResult(result.gate, Verdict.FAIL, result.reason, merged, parts=parts)
    notes = [why for result, _, why in checks if result is None and why]
    waiting = [r for r, required, _ in checks if r is not None and required and not r.passed]
    if waiting:
        reason = "; ".join([r.reason for r in waiting] + notes)
        return GateResult(BAKE_POLL, Verdict.INCONCLUSIVE, reason, merged, parts=parts)
    judged = [r.reason for r in parts if r.reason]
    return GateResult(BAKE_POLL, Verdict.PASS, "; ".join(judged + notes), merged, parts=parts)


def bake_poll(probes: list[ServerProbe], version: str, window: Window, settings: BakeSettings,
              stable: Stable | None = None, paired: Paired | None = None) -> GateResult:
    """Judge one poll of the new color on everything it saw since the window began.

    A server that does not answer, is not ready, or reports another status or version
    fails the poll. Then each check is judged with bounds that stay valid however often
    it is polled (``judge``). Below its minimum sample a check is inconclusive, never a
    pass; the poll passes only when every required check passed.
    """
    numbers = {"requests": window.requests, "server_errors": window.server_errors, "labelled": window.labelled,
               "correct": window.correct, "failovers": window.failovers, "confidence": settings.confidence}
    serving = color_serving(probes, version)
    if not serving.passed:
        return GateResult(POLL_SERVING, Verdict.FAIL, serving.reason, numbers)
    return judge(window, stable, settings, numbers, paired)


def judge(window: Window, stable: Stable | None, settings: BakeSettings, numbers: dict | None = None,
          paired: Paired | None = None) -> GateResult:
    """The statistical checks of a poll whose servers all serve the version (``bake_poll``'s second half).

    Required: the error rate and latency (when the servers report it), and, when both
    versions answered the same requests, the paired checks (errors where the stable version
    answered, disagreement, class shares). Live accuracy (against the threshold and the
    stable version) is required with ``bake.require_labels``, and can fail the poll either
    way, as can the paired labels. A disagreement beyond the limit does not fail a version
    whose paired labels show it is not worse: it is meant to differ.
    """
    labels = settings.require_labels
    accuracy = live_accuracy(window, settings)
    # Below the minimum sample the threshold check says so for both accuracy checks.
    enough = window.labelled >= settings.min_labelled
    checks = [
        (error_rate(window, stable, settings), True, ""),
        (latency(window, stable, settings), True, "latency not judged: the servers report no latency buckets"),
    ]
    if paired is not None:
        agreement = disagreement(paired, settings)
        on_labels = paired_labels(paired, settings)
        if agreement.verdict is Verdict.FAIL and on_labels is not None and on_labels.passed:
            agreement = replace(agreement, verdict=Verdict.PASS,
                                reason=f"{agreement.reason}, but on paired labels it is not worse: "
                                       f"{on_labels.reason}")
        checks += [(paired_errors(paired, settings), True, ""), (agreement, True, ""),
                   (class_shift(paired, settings), True, ""), (on_labels, False, "")]
    else:
        checks.append((None, False, "paired checks not judged: no answers of the stable version to the same "
                                    "requests"))
    checks += [
        (accuracy, labels, ""),
        (accuracy_vs_stable(window, stable, settings) if enough else None, labels, ""),
    ]
    return combine(checks, numbers if numbers is not None else {})

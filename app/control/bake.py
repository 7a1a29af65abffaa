"""The post-promotion bake and `watch`: poll a color, judge everything it saw since the bake began, decide.

A ``BakeMonitor`` judges each poll with ``gates.bake_poll`` on what the color counted
since the bake began (its counters from before never count), with statistics that stay
valid however many polls look (docs/adr/0010): the error rate, the share of slow
requests when the servers report latency, live accuracy against the threshold and
against the stable version. The stable version is the other color, the one a rollback
returns to: its window in the same bake, its live labels from before the bake, or its
card's holdout (``gates.stable_reference``). The monitor asks for a rollback at the
first statistical failure, or once more polls failed than ``bake.failure_limit`` because
the color did not answer or serve its version; then it probes once more first, so a
color that recovered before the decision is not rolled back (and the recovery is
recorded). ``run_bake`` polls for ``bake.period``
and ends with the last poll's verdict: pass (every required check passed on the whole
bake), fail, or inconclusive (a check still short of its sample or undecided: never a
pass); it stops early when ``preempted`` says the rollout was aborted or traffic moved.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from app.control import gates
from app.control.clock import Clock
from app.control.config import BakeSettings, other_color
from app.control.probes import ServerProbe
from app.control.rollout import Action, GateResult, Verdict
from app.control.runtimes import Runtime

if TYPE_CHECKING:
    from app.control.controller import Controller

# How often a bake looks for an abort request or a moved route between polls.
PREEMPTION_CHECK_SECONDS = 0.1
COUNTERS = ("requests", "server_errors", "labelled", "correct", "failovers", "timed")


def _count(live: dict, key: str) -> int:
    value = live.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _bucket_bound(le: str) -> float | None:
    try:
        bound = float(le)
    except (TypeError, ValueError):
        return None
    return bound if bound == bound else None


def slow_counts(live: dict, slow_ms: float) -> tuple[int, int, float] | None:
    """(requests timed, requests slower than the bucket bound, that bound in ms) from one
    server's cumulative ``latency_buckets`` ({"0.25": n, ..., "+Inf": total}); the bound is
    the smallest bucket at or above ``slow_ms``. None when the server reports no usable buckets."""
    buckets = live.get("latency_buckets")
    if not isinstance(buckets, dict):
        return None
    counts = {}
    for le, count in buckets.items():
        bound = _bucket_bound(le)
        if bound is None or isinstance(count, bool) or not isinstance(count, int) or count < 0:
            return None
        counts[bound] = count
    total = counts.get(math.inf)
    bounds = [b for b in counts if b != math.inf and b * 1000 >= slow_ms - 1e-9]
    if total is None or not bounds:
        return None
    bound = min(bounds)
    return total, max(0, total - counts[bound]), bound * 1000


def color_totals(probes: list[ServerProbe], other: list[ServerProbe], slow_ms: float = 250.0) -> gates.Window:
    """What a color's servers counted since they started, and the other color's failovers
    (requests it answered for this one)."""
    totals = dict.fromkeys(COUNTERS, 0)
    slow, bound = 0, 0.0
    for server in probes:
        live = (server.health or {}).get("live") or {}
        for key in ("requests", "server_errors", "labelled", "correct"):
            totals[key] += _count(live, key)
        latency = slow_counts(live, slow_ms)
        if latency is None or slow is None:
            slow = None
            continue
        totals["timed"] += latency[0]
        slow += latency[1]
        bound = max(bound, latency[2])
    totals["failovers"] = sum(_count((server.health or {}).get("live") or {}, "failovers") for server in other)
    return gates.Window(**totals, slow=slow if probes else None, slow_over_ms=bound)


def _since(totals: gates.Window, start: gates.Window) -> gates.Window:
    counts = {key: max(0, getattr(totals, key) - getattr(start, key)) for key in COUNTERS}
    # Replicas polled a moment apart can disagree by a request: a part never exceeds its whole.
    counts["server_errors"] = min(counts["server_errors"], counts["requests"])
    counts["correct"] = min(counts["correct"], counts["labelled"])
    slow = None if totals.slow is None or start.slow is None else min(max(0, totals.slow - start.slow),
                                                                      counts["timed"])
    return gates.Window(**counts, slow=slow, slow_over_ms=totals.slow_over_ms)


@dataclass
class _Counters:
    """One color's counters at the start of the bake and at the last poll its servers answered."""

    start: gates.Window
    last: gates.Window = field(init=False)

    def __post_init__(self):
        self.last = self.start

    def window(self, totals: gates.Window, answered: bool) -> gates.Window:
        """Since the bake began. A poll its servers did not answer changes nothing; counters
        that went down mean a server restarted and began again: the window restarts with it."""
        if answered:
            if any(getattr(totals, key) < getattr(self.last, key) for key in COUNTERS if key != "failovers"):
                self.start = gates.Window(failovers=self.start.failovers,
                                          slow=None if totals.slow is None else 0)
            if totals.failovers < self.last.failovers:
                self.start = gates.Window(**{**self.start.__dict__, "failovers": 0})
            if (totals.slow is None) != (self.start.slow is None):  # latency buckets appeared or went away
                self.start = gates.Window(**{**self.start.__dict__, "slow": totals.slow, "timed": totals.timed})
            self.last = totals
        return _since(self.last, self.start)


def _answered(probes: list[ServerProbe]) -> bool:
    return bool(probes) and all(server.health is not None for server in probes)


class BakeMonitor:
    """Polls one color, counts pass / fail / inconclusive, and says when to roll back."""

    def __init__(self, runtime: Runtime, color: str, version: str, settings: BakeSettings, clock: Clock, say,
                 on_poll: Callable[[BakeMonitor], None] | None = None):
        self.runtime = runtime
        self.on_poll = on_poll
        self.color, self.version = color, version
        self.stable_color = other_color(color)
        self.settings = settings
        self.clock = clock
        self.say = say
        self.polls = self.passed = self.failed = self.inconclusive = 0
        self.failing = 0  # polls in a row that failed: an answering poll starts over
        self.first_failure: float | None = None
        self.last: GateResult | None = None
        self.other_probes: list[ServerProbe] = []
        own, other = self._totals()
        self.own = _Counters(own)
        self.other = _Counters(other)
        # The stable version's labels before the bake, and its card: fixed for the whole bake.
        self.stable_before = other
        self.stable_card = self._card(self.other_probes)

    def _totals(self) -> tuple[gates.Window, gates.Window]:
        self.probes = self.runtime.probe_color(self.color)
        self.other_probes = self.runtime.probe_color(self.stable_color)
        slow_ms = self.settings.slow_request_ms
        return (color_totals(self.probes, self.other_probes, slow_ms),
                color_totals(self.other_probes, self.probes, slow_ms))

    @staticmethod
    def _card(probes: list[ServerProbe]) -> dict | None:
        """The stable version's name and card figures, as its servers report them in /health."""
        for server in probes:
            health = server.health or {}
            if isinstance(health.get("version"), str):
                accuracy = (health.get("metrics") or {}).get("accuracy")
                size = health.get("holdout_size")
                usable = isinstance(accuracy, (int, float)) and not isinstance(accuracy, bool) and 0 <= accuracy <= 1
                sized = isinstance(size, int) and not isinstance(size, bool) and size > 0
                return {"version": health["version"], "accuracy": float(accuracy) if usable else None,
                        "holdout_size": size if sized else None}
        return None

    @property
    def should_roll_back(self) -> bool:
        """More polls failed than ``bake.failure_limit``, or a statistical check failed: its
        bounds already allow for chance and for every poll that looked, so it is not a
        blip to wait out (the limit is for polls that could not observe the color)."""
        if self.last is not None and self.last.verdict is Verdict.FAIL and self.last.gate != gates.POLL_SERVING:
            return True
        return self.failing > self.settings.failure_limit

    @property
    def last_reason(self) -> str:
        return self.last.reason if self.last else ""

    def stable(self, window: gates.Window) -> gates.Stable | None:
        """The stable side of the comparison, from its window in this bake and what was known before."""
        if self.stable_card is None:
            self.stable_card = self._card(self.other_probes)
        if self.stable_card is None:
            return None
        reference = gates.stable_reference(window, self.stable_before, self.stable_card["accuracy"],
                                           self.stable_card["holdout_size"], self.settings.min_labelled)
        return gates.Stable(self.stable_color, self.stable_card["version"], window, reference)

    def poll(self) -> GateResult:
        own, other = self._totals()
        window = self.own.window(own, _answered(self.probes))
        stable_window = self.other.window(other, _answered(self.other_probes))
        # Requests the stable color answered for this one are not its own traffic.
        stable_window = gates.Window(**{**stable_window.__dict__,
                                        "requests": max(0, stable_window.requests - window.failovers)})
        if self.on_poll:
            self.on_poll(self)
        result = gates.bake_poll(self.probes, self.version, window, self.settings, self.stable(stable_window))
        self.record(result, window)
        return result

    def record(self, result: GateResult, window: gates.Window) -> None:
        """Count one poll's verdict; print it when it changed, and every failure."""
        self.polls += 1
        if result.verdict is Verdict.FAIL:
            self.failed += 1
            self.failing += 1
            self.first_failure = self.first_failure or self.clock.monotonic()
        else:
            self.failing, self.first_failure = 0, None  # it answered: an earlier blip is not this failure
            if result.verdict is Verdict.PASS:
                self.passed += 1
            else:
                self.inconclusive += 1
        if self.last is None or result.verdict is not self.last.verdict or result.verdict is Verdict.FAIL:
            detail = f" ({result.reason})" if result.reason else ""
            self.say(f"{time.strftime('%H:%M:%S')} poll {self.polls} of {self.color}: {result.verdict.value}{detail}"
                     f"; {window.describe()}")
        self.last = result

    def recovered(self) -> bool:
        """Before a rollback for a color that did not answer: does it answer now? Then forget the failures."""
        if self.last is None or self.last.gate != gates.POLL_SERVING:
            return False
        serving = gates.color_serving(self.runtime.probe_color(self.color), self.version)
        if not serving.passed:
            return False
        self.say(f"{time.strftime('%H:%M:%S')} {self.color} answers again before the rollback decision "
                 f"({self.failing} failed polls in a row, the last: {self.last_reason}); not rolling back")
        self.failing, self.first_failure = 0, None
        return True

    def summary(self) -> str:
        return f"{self.passed} polls passed, {self.failed} failed, {self.inconclusive} inconclusive"


@dataclass(frozen=True)
class BakeOutcome:
    """How a bake ended, why, and the numbers of its last poll; ``preempted``: an abort, a
    rollback or a moved route stopped it."""

    verdict: Verdict
    reason: str
    preempted: bool = False
    numbers: dict = field(default_factory=dict)


def bake_outcome(monitor: BakeMonitor, period: float) -> BakeOutcome:
    """The verdict of a bake that ran its whole period without a rollback: its last poll's,
    which judged everything the bake saw. A last poll that failed, with too few failures
    for a rollback, is no pass either."""
    last = monitor.last
    if last is None:
        return BakeOutcome(Verdict.INCONCLUSIVE, f"no poll in {period:g}s")
    where = f"{monitor.polls} polls in {period:g}s"
    if last.verdict is Verdict.PASS:
        return BakeOutcome(Verdict.PASS, f"bake passed ({where}): {last.reason}", numbers=last.numbers)
    if last.verdict is Verdict.FAIL:
        return BakeOutcome(Verdict.INCONCLUSIVE, f"the last of {where} failed ({last.reason}), "
                                                 f"{monitor.failed} failed polls are within the failure limit "
                                                 f"{monitor.settings.failure_limit}", numbers=last.numbers)
    return BakeOutcome(Verdict.INCONCLUSIVE, f"{where}: {last.reason}", numbers=last.numbers)


def run_bake(monitor: BakeMonitor, settings: BakeSettings, clock: Clock, preempted: Callable[[], str],
             record_recovery: Callable[[str], None]) -> BakeOutcome:
    """Poll every ``interval`` for ``period``; stop early on a rollback decision or a preemption."""
    deadline = clock.monotonic() + settings.period
    while clock.monotonic() < deadline:
        next_poll = clock.monotonic() + settings.interval
        while clock.monotonic() < next_poll:
            why = preempted()
            if why:
                return BakeOutcome(Verdict.INCONCLUSIVE, why, preempted=True)
            clock.sleep(min(PREEMPTION_CHECK_SECONDS, max(0.0, next_poll - clock.monotonic())))
        monitor.poll()
        if monitor.should_roll_back:
            reason = monitor.last_reason
            if monitor.recovered():
                record_recovery(reason)
                continue
            return BakeOutcome(Verdict.FAIL, reason, numbers=monitor.last.numbers)
    return bake_outcome(monitor, settings.period)


def watch(controller: Controller, duration: float | None = None) -> int:
    """Poll the active color until stopped; roll back and return 1 when it fails."""
    settings, clock, say = controller.config.bake, controller.clock, controller.say
    state = controller.read_state()
    color = state.active
    monitor = BakeMonitor(controller.runtime, color, state.versions[color], settings, clock, say,
                          on_poll=lambda m: controller.note_failovers(other_color(color), m.other_probes))
    say(f"watching {color} ({state.versions[color]}) every {settings.interval:g}s; "
        f"rollback at the first failed check, or once {settings.failure_limit + 1} polls find it not serving")
    deadline = None if duration is None else clock.monotonic() + duration
    while deadline is None or clock.monotonic() < deadline:
        clock.sleep(settings.interval)
        monitor.poll()
        if not monitor.should_roll_back:
            continue
        reason = monitor.last_reason
        if monitor.recovered():
            controller.record(Action.RECONCILE, "recovered", f"{color} answered again before the rollback "
                                                             f"decision (it had failed: {reason})", color=color)
            continue
        with controller.locked() as state:
            if state.active != color:
                say(f"{color} is no longer active; stopping")
                return 0
            controller.record(Action.GATE, "failed", reason, gate=f"watch: {monitor.last.gate}",
                              version=state.versions[color], numbers=monitor.last.numbers)
            entry = controller.rollback_locked(state, f"automatic rollback: {reason}", automatic=True,
                                               since=monitor.first_failure)
        say(f"rolled back {color} -> {state.active} in {entry['since_ms']:.0f} ms from the first failed poll: "
            f"{reason}")
        return 1
    return 0

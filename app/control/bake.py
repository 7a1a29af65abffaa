"""The post-promotion bake and `watch`: poll a color, judge each poll on its window, decide.

A ``BakeMonitor`` judges each poll with ``gates.bake_poll`` on what the color saw inside
the bake: requests and errors since the previous poll, labels since the bake began (a
color's lifetime counters, from before this bake, never count). It asks for a rollback
once more polls failed than ``bake.failure_limit``; when the last failure was the color
not answering, it probes once more first, so a color that recovered before the decision
is not rolled back (and the recovery is recorded). ``run_bake`` polls for
``bake.period`` and ends with a verdict: pass (at least one poll passed, none too many
failed), fail, or inconclusive (no poll saw traffic to judge: never a pass); it stops
early when ``preempted`` says the rollout was aborted or traffic moved.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
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


def _count(live: dict, key: str) -> int:
    value = live.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def color_totals(probes: list[ServerProbe], other: list[ServerProbe]) -> gates.Window:
    """What a color's servers counted since they started, and the other color's failovers
    (requests it answered for this one)."""
    totals = {"requests": 0, "server_errors": 0, "labelled": 0, "correct": 0}
    for server in probes:
        live = (server.health or {}).get("live") or {}
        for key in totals:
            totals[key] += _count(live, key)
    failovers = sum(_count((server.health or {}).get("live") or {}, "failovers") for server in other)
    return gates.Window(**totals, failovers=failovers)


class BakeMonitor:
    """Polls one color, counts pass / fail / inconclusive, and says when to roll back."""

    def __init__(self, runtime: Runtime, color: str, version: str, settings: BakeSettings, clock: Clock, say,
                 on_poll: Callable[[BakeMonitor], None] | None = None):
        self.runtime = runtime
        self.on_poll = on_poll
        self.color, self.version = color, version
        self.settings = settings
        self.clock = clock
        self.say = say
        self.polls = self.passed = self.failed = self.inconclusive = 0
        self.first_failure: float | None = None
        self.last: GateResult | None = None
        self.other_probes: list[ServerProbe] = []
        self.start = self.previous = self._totals()

    def _totals(self) -> gates.Window:
        probes = self.runtime.probe_color(self.color)
        self.other_probes = self.runtime.probe_color(other_color(self.color))
        self.probes = probes
        return color_totals(probes, self.other_probes)

    @property
    def should_roll_back(self) -> bool:
        return self.failed > self.settings.failure_limit

    @property
    def last_reason(self) -> str:
        return self.last.reason if self.last else ""

    def _window(self, totals: gates.Window) -> gates.Window:
        if totals.requests < self.previous.requests or totals.labelled < self.start.labelled:
            # A server restarted and its counters began again: the window restarts with it.
            self.start = self.previous = gates.Window(failovers=self.previous.failovers)
        if totals.failovers < self.previous.failovers:
            self.previous = gates.Window(**{**self.previous.__dict__, "failovers": 0})
        window = gates.Window(totals.requests - self.previous.requests,
                              max(0, totals.server_errors - self.previous.server_errors),
                              totals.labelled - self.start.labelled, max(0, totals.correct - self.start.correct),
                              totals.failovers - self.previous.failovers)
        self.previous = totals
        return window

    def poll(self) -> GateResult:
        window = self._window(self._totals())
        if self.on_poll:
            self.on_poll(self)
        result = gates.bake_poll(self.probes, self.version, window, self.settings)
        self.polls += 1
        if result.verdict is Verdict.FAIL:
            self.failed += 1
            self.first_failure = self.first_failure or self.clock.monotonic()
        elif result.verdict is Verdict.PASS:
            self.passed += 1
        else:
            self.inconclusive += 1
        if self.last is None or result.verdict is not self.last.verdict or result.verdict is Verdict.FAIL:
            detail = f" ({result.reason})" if result.reason else ""
            self.say(f"{time.strftime('%H:%M:%S')} poll {self.polls} of {self.color}: {result.verdict.value}{detail}"
                     f"; {window.describe()}")
        self.last = result
        return result

    def recovered(self) -> bool:
        """Before a rollback for a color that did not answer: does it answer now? Then forget the failures."""
        if self.last is None or self.last.gate != gates.POLL_SERVING:
            return False
        serving = gates.color_serving(self.runtime.probe_color(self.color), self.version)
        if not serving.passed:
            return False
        self.say(f"{time.strftime('%H:%M:%S')} {self.color} answers again before the rollback decision "
                 f"({self.failed} failed polls, the last: {self.last_reason}); not rolling back")
        self.failed, self.first_failure = 0, None
        return True

    def summary(self) -> str:
        return f"{self.passed} polls passed, {self.failed} failed, {self.inconclusive} inconclusive"


@dataclass(frozen=True)
class BakeOutcome:
    """How a bake ended, and why; ``preempted``: an abort, a rollback or a moved route stopped it."""

    verdict: Verdict
    reason: str
    preempted: bool = False


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
            return BakeOutcome(Verdict.FAIL, reason)
    if monitor.passed == 0:
        return BakeOutcome(Verdict.INCONCLUSIVE, f"{monitor.polls} polls in {settings.period:g}s, none saw a "
                                                 f"request to {monitor.color}")
    return BakeOutcome(Verdict.PASS, f"bake passed ({monitor.passed} of {monitor.polls} polls)")


def watch(controller: Controller, duration: float | None = None) -> int:
    """Poll the active color until stopped; roll back and return 1 when it fails."""
    settings, clock, say = controller.config.bake, controller.clock, controller.say
    state = controller.read_state()
    color = state.active
    monitor = BakeMonitor(controller.runtime, color, state.versions[color], settings, clock, say,
                          on_poll=lambda m: controller.note_failovers(other_color(color), m.other_probes))
    say(f"watching {color} ({state.versions[color]}) every {settings.interval:g}s; "
        f"rollback after {settings.failure_limit + 1} failed polls")
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
            entry = controller.rollback_locked(state, f"automatic rollback: {reason}", automatic=True,
                                               since=monitor.first_failure)
        say(f"rolled back {color} -> {state.active} in {entry['since_ms']:.0f} ms from the first failed poll: "
            f"{reason}")
        return 1
    return 0

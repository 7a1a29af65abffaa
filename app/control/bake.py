"""The post-promotion bake and `watch`: poll a color, judge each poll, decide.

A ``BakeMonitor`` judges each poll with ``gates.bake_poll`` on what the color saw since
the previous poll; it asks for a rollback once more polls failed than
``bake.failure_limit``. ``run_bake`` polls for ``bake.period`` and ends with a verdict:
pass (at least one poll passed, none too many failed), fail, or inconclusive (no poll
saw traffic to judge: never a pass). ``watch`` polls the active color until stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.control import gates
from app.control.clock import Clock
from app.control.config import BakeSettings
from app.control.probes import ServerProbe
from app.control.rollout import GateResult, Verdict
from app.control.runtimes import Runtime

if TYPE_CHECKING:
    from app.control.controller import Controller


def window_totals(probes: list[ServerProbe]) -> gates.Window:
    """Requests and server errors a color's servers have counted since they started."""
    requests = errors = 0
    for server in probes:
        live = (server.health or {}).get("live") or {}
        requests += live.get("requests") or 0
        errors += live.get("server_errors") or 0
    return gates.Window(requests, errors)


class BakeMonitor:
    """Polls one color, counts pass / fail / inconclusive, and says when to roll back."""

    def __init__(self, runtime: Runtime, color: str, version: str, settings: BakeSettings, clock: Clock, say):
        self.runtime = runtime
        self.color, self.version = color, version
        self.settings = settings
        self.clock = clock
        self.say = say
        self.polls = self.passed = self.failed = self.inconclusive = 0
        self.first_failure: float | None = None
        self.last: GateResult | None = None
        self.baseline = window_totals(runtime.probe_color(color))

    @property
    def should_roll_back(self) -> bool:
        return self.failed > self.settings.failure_limit

    @property
    def last_reason(self) -> str:
        return self.last.reason if self.last else ""

    def poll(self) -> GateResult:
        probes = self.runtime.probe_color(self.color)
        totals = window_totals(probes)
        window = gates.Window(max(0, totals.requests - self.baseline.requests),
                              max(0, totals.server_errors - self.baseline.server_errors))
        self.baseline = totals
        result = gates.bake_poll(probes, self.version, window, self.settings)
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
            self.say(f"{time.strftime('%H:%M:%S')} poll {self.polls} of {self.color}: {result.verdict.value}{detail}")
        self.last = result
        return result

    def summary(self) -> str:
        return f"{self.passed} polls passed, {self.failed} failed, {self.inconclusive} inconclusive"


@dataclass(frozen=True)
class BakeOutcome:
    """How a bake ended, and why."""

    verdict: Verdict
    reason: str


def run_bake(monitor: BakeMonitor, settings: BakeSettings, clock: Clock) -> BakeOutcome:
    """Poll every ``interval`` for ``period``; stop early when the monitor asks for a rollback."""
    deadline = clock.monotonic() + settings.period
    while clock.monotonic() < deadline:
        clock.sleep(settings.interval)
        monitor.poll()
        if monitor.should_roll_back:
            return BakeOutcome(Verdict.FAIL, monitor.last_reason)
    if monitor.passed == 0:
        return BakeOutcome(Verdict.INCONCLUSIVE, f"{monitor.polls} polls in {settings.period:g}s, none saw a "
                                                 f"request to {monitor.color}")
    return BakeOutcome(Verdict.PASS, f"bake passed ({monitor.passed} of {monitor.polls} polls)")


def watch(controller: Controller, duration: float | None = None) -> int:
    """Poll the active color until stopped; roll back and return 1 when it fails."""
    settings, clock, say = controller.config.bake, controller.clock, controller.say
    state = controller.read_state()
    color = state.active
    monitor = BakeMonitor(controller.runtime, color, state.versions[color], settings, clock, say)
    say(f"watching {color} ({state.versions[color]}) every {settings.interval:g}s; "
        f"rollback after {settings.failure_limit + 1} failed polls")
    deadline = None if duration is None else clock.monotonic() + duration
    while deadline is None or clock.monotonic() < deadline:
        clock.sleep(settings.interval)
        monitor.poll()
        if monitor.should_roll_back:
            with controller.locked() as state:
                if state.active != color:
                    say(f"{color} is no longer active; stopping")
                    return 0
                entry = controller.roll_back(state, f"automatic rollback: {monitor.last_reason}",
                                             since=monitor.first_failure)
            say(f"rolled back {color} -> {state.active} in {entry['since_ms']:.0f} ms from the first failed poll: "
                f"{monitor.last_reason}")
            return 1
    return 0

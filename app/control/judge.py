"""The one judge: a color's window judged at every poll, and the one loop that runs it.

A bake after a switch, each canary step and `watch` are the same judgment over different
windows (argo-rollouts judges every analysis run with one ``assessRunStatus``): a
``Judge`` polls one color, judges everything it saw since the window began with
``gates.bake_poll`` (statistics that stay valid however many polls look, docs/adr/0010):
the error rate, the share of slow requests when the servers report latency, live accuracy
against the threshold and against the stable version. The stable version is the other
color, the one a rollback returns to: its window in the same bake, its live labels from
before, or its card's holdout (``gates.stable_reference``).

``judge_window`` polls every ``interval`` for a period and returns a ``Judgment``. It asks
for a rollback at the first statistical failure, or once more polls failed than
``failure_limit`` because the color did not answer or serve its version; then it probes
once more first, so a color that recovered before the decision is not rolled back (the
recovery is recorded). A window that ran its period ends with its last poll's verdict:
pass (every required check passed on the whole window), or inconclusive (a check still
short of its sample or undecided: never a pass). It stops early when ``preempted`` says
why (an abort, another command, a moved route). A controller error is not caught here:
the caller ends its rollout for it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from app.control import gates
from app.control.clock import Clock
from app.control.config import BakeSettings, other_color
from app.control.events import Action, Event, Outcome
from app.control.pairs import Pairing
from app.control.probes import ServerProbe
from app.control.rollout import GateResult, Verdict
from app.control.runtimes import Runtime
from app.control.windows import Counters, answered, color_totals

# How often a judged window looks for an abort request or a moved route between polls.
PREEMPTION_CHECK_SECONDS = 0.1


class Judge:
    """Polls one color, counts pass / fail / inconclusive, and says when to roll back.

    With ``paired``, both colors answer a sample of the same requests in this window (the
    caller turned nginx's pairing on): the judge reads both colors' kept answers at each
    poll and the paired checks judge them (``pairs.py``).
    """

    def __init__(self, runtime: Runtime, color: str, version: str, settings: BakeSettings, clock: Clock, say,
                 on_poll: Callable[[Judge], None] | None = None, paired: bool = False):
        self.runtime = runtime
        self.on_poll = on_poll
        self.color, self.version = color, version
        self.stable_color = other_color(color)
        self.settings = settings
        self.clock = clock
        self.say = say
        self.started = clock.time()
        self.pairing = Pairing(color, self.stable_color, self.started) if paired else None
        self.cursors: dict[str, object | None] = {color: None, self.stable_color: None}
        self.seen = 0   # requests, labels and pairs at the last poll: does evidence still arrive?
        self.growing = True
        self.polls = self.passed = self.failed = self.inconclusive = 0
        self.failing = 0  # polls in a row that failed: an answering poll starts over
        self.first_failure: float | None = None
        self.last: GateResult | None = None
        self.other_probes: list[ServerProbe] = []
        own, other = self._totals()
        self.own = Counters(own)
        self.other = Counters(other)
        # The stable version's labels before the window, and its card: fixed for the whole window.
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
        """More polls failed than ``failure_limit``, or a statistical check failed: its bounds
        already allow for chance and for every poll that looked, so it is not a blip to wait
        out (the limit is for polls that could not observe the color)."""
        if self.last is not None and self.last.verdict is Verdict.FAIL and self.last.gate != gates.POLL_SERVING:
            return True
        return self.failing > self.settings.failure_limit

    @property
    def last_reason(self) -> str:
        return self.last.reason if self.last else "no poll yet"

    def stable(self, window: gates.Window) -> gates.Stable | None:
        """The stable side of the comparison, from its window and what was known before."""
        if self.stable_card is None:
            self.stable_card = self._card(self.other_probes)
        if self.stable_card is None:
            return None
        reference = gates.stable_reference(window, self.stable_before, self.stable_card["accuracy"],
                                           self.stable_card["holdout_size"], self.settings.min_labelled)
        return gates.Stable(self.stable_color, self.stable_card["version"], window, reference)

    def paired(self) -> gates.Paired | None:
        """Both colors' answers to the same requests so far, read on from the last poll."""
        if self.pairing is None:
            return None
        for color in (self.color, self.stable_color):
            records, self.cursors[color] = self.runtime.records(color, self.cursors[color])
            self.pairing.add(color, records)
        stable = (self.stable_card or {}).get("version") or "the stable version"
        return gates.Paired(self.pairing.counts(), f"{self.color} ({self.version})",
                            f"{self.stable_color} ({stable})")

    def poll(self) -> GateResult:
        own, other = self._totals()
        window = self.own.window(own, answered(self.probes))
        stable_window = self.other.window(other, answered(self.other_probes))
        # Requests the stable color answered for this one are not its own traffic.
        stable_window = gates.Window(**{**stable_window.__dict__,
                                        "requests": max(0, stable_window.requests - window.failovers)})
        if self.on_poll:
            self.on_poll(self)
        stable = self.stable(stable_window)
        paired = self.paired()
        result = gates.bake_poll(self.probes, self.version, window, self.settings, stable, paired)
        seen = window.attempted + window.labelled + (paired.counts.pairs + paired.counts.labelled if paired else 0)
        self.growing, self.seen = seen > self.seen, seen
        self.record(result, window, paired)
        return result

    def record(self, result: GateResult, window: gates.Window, paired: gates.Paired | None = None) -> None:
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
            pairs = f"; {paired.counts.describe()}" if paired else ""
            self.say(f"{self.wall_clock()} poll {self.polls} of {self.color}: {result.verdict.value}{detail}"
                     f"; {window.describe()}{pairs}")
        self.last = result

    def wall_clock(self) -> str:
        return time.strftime("%H:%M:%S", time.localtime(self.clock.time()))

    def recovered(self) -> bool:
        """Before a rollback for a color that did not answer: does it answer now? Then forget the failures."""
        if self.last is None or self.last.gate != gates.POLL_SERVING:
            return False
        serving = gates.color_serving(self.runtime.probe_color(self.color), self.version)
        if not serving.passed:
            return False
        self.say(f"{self.wall_clock()} {self.color} answers again before the rollback decision "
                 f"({self.failing} failed polls in a row, the last: {self.last_reason}); not rolling back")
        self.failing, self.first_failure = 0, None
        return True

    def summary(self) -> str:
        return f"{self.passed} polls passed, {self.failed} failed, {self.inconclusive} inconclusive"


@dataclass(frozen=True)
class Judgment:
    """How a judged window ended. ``verdict`` is FAIL only when the color must be rolled back;
    ``preempted`` says why another command (or an operator) stopped the window early;
    ``first_failure`` is when the failure that decided it was first seen (clock.monotonic)."""

    verdict: Verdict
    reason: str
    numbers: dict = field(default_factory=dict)
    preempted: str | None = None
    first_failure: float | None = None
    promoted: str | None = None     # a pass an operator gave a paused window, with their reason
    timed_out: bool = False         # a pause that ran out without a verdict

    def to_json(self) -> dict:
        return {"verdict": self.verdict.value, "reason": self.reason, "numbers": dict(self.numbers)}


def final_judgment(judge: Judge, period: float) -> Judgment:
    """The verdict of a window that ran its whole period without a rollback: its last poll's,
    which judged everything the window saw. A last poll that failed, with too few failures
    for a rollback, is no pass either."""
    last = judge.last
    if last is None:
        return Judgment(Verdict.INCONCLUSIVE, f"no poll in {period:g}s")
    where = f"{judge.polls} polls in {period:g}s"
    if last.verdict is Verdict.PASS:
        return Judgment(Verdict.PASS, f"bake passed ({where}): {last.reason}", last.numbers)
    if last.verdict is Verdict.FAIL:
        return Judgment(Verdict.INCONCLUSIVE, f"the last of {where} failed ({last.reason}), {judge.failed} failed "
                                              f"polls are within the failure limit {judge.settings.failure_limit}",
                        last.numbers)
    return Judgment(Verdict.INCONCLUSIVE, f"{where}: {last.reason}", last.numbers)


def judge_window(judge: Judge, period: float | None, preempted: Callable[[], str | None],
                 record: Callable[[Event], object], *, longest: float | None = None, while_growing: bool = True,
                 publish: Callable[[Judge, Judgment | None], None] | None = None) -> Judgment:
    """Poll every ``interval`` for ``period`` seconds (None: until a rollback or a preemption);
    stop early on a rollback decision or when ``preempted`` says why. A window still
    undecided at ``period`` goes on, up to ``longest`` seconds, while evidence still arrives
    (or, without ``while_growing``, whatever arrives), and ends at its first decided poll.
    A recovery before a rollback decision is recorded with ``record``; ``publish`` is told of
    every poll and of the end."""
    clock, interval = judge.clock, judge.settings.interval
    began = clock.monotonic()
    end = math.inf if period is None else began + period
    limit = end if longest is None else max(end, began + longest)

    def ended(judgment: Judgment) -> Judgment:
        if publish:
            publish(judge, judgment)
        return judgment

    while True:
        next_poll = clock.monotonic() + interval
        while clock.monotonic() < next_poll:
            why = preempted()
            if why:
                return ended(Judgment(Verdict.INCONCLUSIVE, why, judge.last.numbers if judge.last else {},
                                      preempted=why))
            clock.sleep(min(PREEMPTION_CHECK_SECONDS, max(0.0, next_poll - clock.monotonic())))
        judge.poll()
        if publish:
            publish(judge, None)
        if judge.should_roll_back:
            reason = judge.last_reason
            if judge.recovered():
                record(Event(action=Action.RECONCILE, outcome=Outcome.RECOVERED,
                             reason=f"{judge.color} answered again before the rollback decision (it had failed: "
                                    f"{reason})", details={"color": judge.color, "version": judge.version}))
                continue
            return ended(Judgment(Verdict.FAIL, reason, judge.last.numbers, first_failure=judge.first_failure))
        now = clock.monotonic()
        if now < end:
            continue
        decided = judge.last.verdict is Verdict.PASS
        if decided or now >= limit or (while_growing and not judge.growing):
            return ended(final_judgment(judge, now - began))


CHECK_PREFIX = "bake poll: "


def window_document(judge: Judge, kind: str, rollout: str | None, period: float | None,
                    judgment: Judgment | None = None) -> dict:
    """What the window looks like now, for the dashboard (``<run_dir>/window.json``): each
    check's verdict with its estimate, bounds and limit."""
    last = judge.last
    checks = [{"name": part.gate.removeprefix(CHECK_PREFIX), "verdict": part.verdict.value, **part.figures.to_json()}
              for part in (last.parts if last else ()) if part.figures is not None]
    shown = judgment or last
    stable = (judge.stable_card or {}).get("version")
    return {"kind": kind, "rollout": rollout, "color": judge.color, "version": judge.version,
            "stable": {"color": judge.stable_color, "version": stable}, "started": round(judge.started, 3),
            "updated": round(judge.clock.time(), 3), "period": period, "polls": judge.polls,
            "verdict": shown.verdict.value if shown else "inconclusive", "reason": shown.reason if shown else "",
            "ended": judgment is not None, "checks": checks,
            "paired": judge.pairing.counts().pairs if judge.pairing else None}

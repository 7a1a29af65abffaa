"""What the controller records: typed events, one line each in the history.

Every step that changes something (a switch, a rollback, a gate, a canary step, a repair,
a deploy's end) returns a frozen dataclass with typed fields and records that same value
(``store.StateStore.append``). Code reads the fields; only the history file holds the
JSON form, written once by ``to_json`` in the shape ``bluegreen history --json`` shows.
An outcome is an ``Outcome``, never free text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from app.control.rollout import Phase, Verdict, now_iso


class Action(StrEnum):
    """What an event in the history records."""

    ABORT = "abort"
    FAILOVER = "failover"
    UP = "up"
    DOWN = "down"
    SWITCH = "switch"
    ROLLBACK = "rollback"
    RECONCILE = "reconcile"
    GATE = "gate"
    DEPLOY = "deploy"
    RELOAD = "reload"
    CANARY = "canary"
    SHADOW = "shadow"
    WATCH = "watch"
    PAUSE = "pause"
    PROMOTE = "promote"


class Outcome(StrEnum):
    """How a step or an event ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REFUSED = "refused"
    NOOP = "noop"
    REPAIRED = "repaired"
    RECOVERED = "recovered"
    REQUESTED = "requested"
    OBSERVED = "observed"
    STARTED = "started"
    STOPPED = "stopped"
    CLEARED = "cleared"
    STEP = "step"
    PREEMPTED = "preempted"
    # a gate's or a judged window's verdict
    PASSED = "passed"
    INCONCLUSIVE = "inconclusive"
    # how a rollout ended (its final phase)
    PROMOTED = "promoted"
    VERIFIED = "verified"
    ROLLED_BACK = "rolled-back"
    ABORTED = "aborted"
    DEGRADED = "degraded"
    PAUSED = "paused"
    # a deploy's printed steps
    DONE = "done"
    READY = "ready"
    SKIPPED = "skipped"
    RUNNING = "running"
    DRY_RUN = "dry run"

    @classmethod
    def of(cls, verdict: Verdict) -> Outcome:
        """A verdict as an outcome: pass -> passed, fail -> failed, inconclusive."""
        return VERDICT_OUTCOMES[verdict]

    @classmethod
    def ended(cls, phase: Phase) -> Outcome:
        """A rollout's final phase as the outcome of its deploy."""
        return cls(phase.value)

    @property
    def failure(self) -> bool:
        """The step did not do what was asked (the history then says why)."""
        return self in (Outcome.FAILED, Outcome.REFUSED, Outcome.ABORTED, Outcome.ROLLED_BACK)


VERDICT_OUTCOMES = {Verdict.PASS: Outcome.PASSED, Verdict.FAIL: Outcome.FAILED,
                    Verdict.INCONCLUSIVE: Outcome.INCONCLUSIVE}


@dataclass(frozen=True, kw_only=True)
class Event:
    """One line of the history: when, what, how it ended, why. ``details`` are written as
    they are and never read back by the controller; the subclasses type what code reads."""

    action: Action
    outcome: Outcome
    reason: str = ""
    details: dict = field(default_factory=dict)
    time: str = field(default_factory=now_iso)

    def fields(self) -> dict:
        """The typed fields of a subclass, as the history writes them."""
        return {}

    def to_json(self) -> dict:
        return {"time": self.time, "action": self.action.value, "outcome": self.outcome.value,
                "reason": self.reason, **self.details, **self.fields()}


@dataclass(frozen=True, kw_only=True)
class Switched(Event):
    """A switch or a rollback of the front door, from ``source`` to ``target``.

    ``duration_ms``: from the route change until the front door was seen serving the
    target; ``since_ms``: from a given moment (a first failed poll, an abort request).
    A switch to the color already active is ``NOOP`` and is not recorded.
    """

    source: str
    target: str
    from_version: str
    to_version: str
    duration_ms: float | None = None
    since_ms: float | None = None

    def fields(self) -> dict:
        timings = {k: v for k, v in (("duration_ms", self.duration_ms), ("since_ms", self.since_ms)) if v is not None}
        return {"from": self.source, "to": self.target, "from_version": self.from_version,
                "to_version": self.to_version, **timings}

    @property
    def took_ms(self) -> float:
        """How long the move took, from ``since`` when it was given (0 for a no-op)."""
        return self.since_ms if self.since_ms is not None else (self.duration_ms or 0.0)


@dataclass(frozen=True, kw_only=True)
class GateEvent(Event):
    """A gate's verdict on a version, with the numbers it was decided on."""

    action: Action = Action.GATE
    gate: str
    version: str
    numbers: dict = field(default_factory=dict)

    def fields(self) -> dict:
        return {"gate": self.gate, "version": self.version, "numbers": dict(self.numbers)}


@dataclass(frozen=True, kw_only=True)
class CanaryEvent(Event):
    """A canary's share moved (``STEP``), judged (a verdict) or cleared back to 0%."""

    action: Action = Action.CANARY
    color: str
    weight: int
    version: str | None = None
    rollout: str | None = None
    step: int | None = None
    exposure: int | None = None
    from_weight: int | None = None
    numbers: dict | None = None

    def fields(self) -> dict:
        optional = {"version": self.version, "rollout": self.rollout, "step": self.step, "exposure": self.exposure,
                    "from_weight": self.from_weight, "numbers": self.numbers}
        return {"color": self.color, "weight": self.weight, **{k: v for k, v in optional.items() if v is not None}}


@dataclass(frozen=True, kw_only=True)
class DeployEvent(Event):
    """How a deploy ended: its final phase as the outcome, the bake's verdict, the exposure."""

    action: Action = Action.DEPLOY
    version: str
    rollout: str
    source: str
    target: str
    dry_run: bool = False
    bake: dict | None = None
    exposure: int | None = None

    def fields(self) -> dict:
        optional = {k: v for k, v in (("bake", self.bake), ("exposure", self.exposure)) if v is not None}
        return {"version": self.version, "rollout": self.rollout, "from": self.source, "to": self.target,
                "dry_run": self.dry_run, **optional}


@dataclass(frozen=True, kw_only=True)
class Failover(Event):
    """Requests meant for ``meant_for`` that ``answered_by`` answered: every server of
    ``meant_for`` failed them."""

    action: Action = Action.FAILOVER
    outcome: Outcome = Outcome.OBSERVED
    meant_for: str
    answered_by: str
    requests: int

    def fields(self) -> dict:
        return {"from": self.meant_for, "to": self.answered_by, "requests": self.requests}


def repair(reason: str, **details) -> Event:
    """A repair of the record from what is observed (its own recorded step)."""
    return Event(action=Action.RECONCILE, outcome=Outcome.REPAIRED, reason=reason, details=details)

"""The rollout model: phases, verdicts, the recorded state, and the history's events.

Read it like argo-rollouts' blue-green status. ``RolloutState`` is what is true between
commands: which color takes the front door (``active``), what each color runs
(``versions``), the last promoted version (``stable``) and the current rollout, if any.
A ``Rollout`` moves through ``Phase``s along ``TRANSITIONS`` only; anything else is a bug
and raises. Gates and judged windows return a ``GateResult``: a ``Verdict`` with its reason
and its numbers. Every step leaves an event (``events.py``) in the history log
(``store.py``), kept apart from the state so that the state stays small.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from enum import StrEnum

from app.control.config import COLORS, other_color


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Phase(StrEnum):
    """Where a rollout is. ``IDLE``: none has run yet."""

    IDLE = "idle"
    GATING = "gating"            # verifying the artifact, card and smoke gates
    LOADING = "loading"          # starting the version on the idle color
    CANARY = "canary"            # a share of the front door on the new version, step by step
    PAUSED = "paused"            # a window ended undecided: the share stays, still judged, until a verdict,
                                 # `bluegreen promote`, `abort` or bake.pause_timeout
    SWITCHING = "switching"      # moving the front door, verified through it
    BAKING = "baking"            # watching the new active color before calling it stable
    PROMOTED = "promoted"        # the bake passed: the version is stable
    VERIFIED = "verified"        # a dry run passed every pre-promotion gate; nothing switched
    ROLLED_BACK = "rolled-back"  # users saw the version (a canary step or the switch), and a check failed it
                                 # or a step could not decide: traffic went back to the stable version
    ABORTED = "aborted"          # stopped by a refusal, an error or an operator, at any step; traffic
                                 # is back on the stable version if it had moved
    DEGRADED = "degraded"        # the bake ended without a verdict: the version serves, not stable

    @property
    def running(self) -> bool:
        return self in (Phase.GATING, Phase.LOADING, Phase.CANARY, Phase.SWITCHING, Phase.BAKING, Phase.PAUSED)


# Every phase a rollout may move to from each phase. A new rollout starts in GATING.
TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.GATING: frozenset({Phase.LOADING, Phase.CANARY, Phase.SWITCHING, Phase.VERIFIED, Phase.ABORTED}),
    Phase.LOADING: frozenset({Phase.GATING, Phase.ABORTED}),
    # A canary that fails a step goes back to 0%: rolled back, since users saw the version.
    Phase.CANARY: frozenset({Phase.SWITCHING, Phase.PAUSED, Phase.ROLLED_BACK, Phase.ABORTED}),
    Phase.SWITCHING: frozenset({Phase.BAKING, Phase.ABORTED}),
    Phase.BAKING: frozenset({Phase.PROMOTED, Phase.PAUSED, Phase.ROLLED_BACK, Phase.DEGRADED, Phase.ABORTED}),
    # A pause ends with a verdict or a human's: the next canary step (or the switch), the
    # version promoted, or traffic back on the stable version.
    Phase.PAUSED: frozenset({Phase.CANARY, Phase.SWITCHING, Phase.PROMOTED, Phase.ROLLED_BACK, Phase.ABORTED}),
    # An operator's `promote` ends a degraded rollout too.
    Phase.DEGRADED: frozenset({Phase.PROMOTED, Phase.ROLLED_BACK}),
    Phase.PROMOTED: frozenset({Phase.ROLLED_BACK}),
    Phase.VERIFIED: frozenset(),
    Phase.ROLLED_BACK: frozenset(),
    Phase.ABORTED: frozenset(),
    Phase.IDLE: frozenset(),
}


class Verdict(StrEnum):
    """A gate's or a poll's answer. No data is never a pass: it is inconclusive or a failure."""

    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Figures:
    """A check's estimate against its limit, for a chart: the bounds it was decided on, the
    sample (``n`` of ``needed`` before any verdict), and whether it passes ``below`` the
    limit (an error rate) or ``above`` it (an accuracy)."""

    n: int
    needed: int
    limit: float
    direction: str = "below"
    estimate: float | None = None
    low: float | None = None
    high: float | None = None

    def to_json(self) -> dict:
        def rounded(value):
            return None if value is None or value != value else round(value, 6)

        return {"n": self.n, "needed": self.needed, "limit": rounded(self.limit), "direction": self.direction,
                "estimate": rounded(self.estimate), "low": rounded(self.low), "high": rounded(self.high)}


@dataclass(frozen=True)
class GateResult:
    """One gate's verdict, why, and the numbers it was decided on. A check also carries its
    ``figures``; a poll that combines checks keeps each of them in ``parts``."""

    gate: str
    verdict: Verdict
    reason: str = ""
    numbers: dict = field(default_factory=dict)
    figures: Figures | None = None
    parts: tuple[GateResult, ...] = ()

    @property
    def passed(self) -> bool:
        return self.verdict is Verdict.PASS


@dataclass(frozen=True)
class SmokeAnswer:
    """One holdout row sent through the preview door, and what came back."""

    expected: str
    status: int | None = None       # None: no HTTP answer at all
    predicted: str | None = None
    version: str | None = None
    latency_ms: float = 0.0
    error: str = ""                 # the connection error, when there was no answer


class InvalidTransition(RuntimeError):
    """A rollout was asked to move to a phase it cannot reach from where it is."""


@dataclass
class Rollout:
    """The current (or last) rollout: one version, from the active color to the idle one.

    ``id`` tells this rollout from the next one; ``pid`` and ``pid_started`` name the
    deploy process that drives it, so that the next command can tell a running rollout
    from one whose process was killed.
    """

    version: str
    source: str                     # the color that served before
    target: str                     # the color the version is loaded into
    phase: Phase = Phase.GATING
    started: str = field(default_factory=now_iso)
    updated: str = field(default_factory=now_iso)
    dry_run: bool = False
    reasons: list[str] = field(default_factory=list)
    id: str = field(default_factory=lambda: os.urandom(6).hex())
    pid: int | None = None
    pid_started: int | None = None
    # A canary: its weights (percent of the front door, the last 100), the step it is on
    # (0-based) and the weight the front door gives the new version now.
    canary: list[int] = field(default_factory=list)
    step: int | None = None
    weight: int = 0
    # The verdict a pause or a degraded end stands on (what `promote` overrides).
    judgment: dict | None = None

    def advance(self, phase: Phase, reason: str = "") -> None:
        """Move to ``phase``, recording why; refuse a move ``TRANSITIONS`` does not allow."""
        if phase not in TRANSITIONS[self.phase]:
            raise InvalidTransition(f"rollout of {self.version}: {self.phase.value} -> {phase.value} "
                                    "is not a valid transition")
        self.phase = phase
        self.updated = now_iso()
        if reason:
            self.reasons.append(f"{phase.value}: {reason}")

    def to_json(self) -> dict:
        return {"id": self.id, "version": self.version, "source": self.source, "target": self.target,
                "phase": self.phase.value, "started": self.started, "updated": self.updated,
                "dry_run": self.dry_run, "reasons": list(self.reasons), "pid": self.pid,
                "pid_started": self.pid_started, "canary": list(self.canary), "step": self.step,
                "weight": self.weight, "judgment": self.judgment}

    @classmethod
    def from_json(cls, data: dict) -> Rollout:
        rollout = cls(version=data["version"], source=data["source"], target=data["target"],
                      phase=Phase(data["phase"]), started=data["started"], updated=data["updated"],
                      dry_run=data["dry_run"], reasons=list(data["reasons"]), id=data["id"], pid=data["pid"],
                      pid_started=data["pid_started"], canary=list(data.get("canary") or []),
                      step=data.get("step"), weight=data.get("weight") or 0, judgment=data.get("judgment"))
        for name in ("version", "source", "target", "id"):
            if not isinstance(getattr(rollout, name), str):
                raise TypeError(f"rollout.{name} must be a string")
        for name in ("pid", "pid_started", "step"):
            value = getattr(rollout, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise TypeError(f"rollout.{name} must be a whole number")
        if not (isinstance(rollout.weight, int) and not isinstance(rollout.weight, bool)
                and 0 <= rollout.weight <= 100):
            raise TypeError("rollout.weight must be a whole percentage")
        if rollout.judgment is not None and not isinstance(rollout.judgment, dict):
            raise TypeError("rollout.judgment must be an object")
        if not isinstance(rollout.reasons, list) or not all(isinstance(r, str) for r in rollout.reasons):
            raise TypeError("rollout.reasons must list strings")
        return rollout


PROMOTED_KEPT = 20


@dataclass
class RolloutState:
    """What is true between commands. The route marker is the truth about ``active``.

    ``promoted`` lists the versions that became stable, oldest first: the last one is
    ``stable``, the version traffic returns to on an abort or an automatic rollback.
    ``rejected`` lists versions a bake or ``watch`` rolled back: never a rollback target.
    """

    active: str = COLORS[0]
    versions: dict[str, str] = field(default_factory=dict)
    previous: str | None = None     # the color that was active before the last switch
    promoted: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    rollout: Rollout | None = None
    # Who turned nginx's paired answers on for a judged window (a deploy or `watch`): its
    # pid, start time and percent; a reconcile turns them off once that process is gone.
    pairing: dict | None = None

    @property
    def idle(self) -> str:
        return other_color(self.active)

    @property
    def phase(self) -> Phase:
        return self.rollout.phase if self.rollout else Phase.IDLE

    @property
    def stable(self) -> str | None:
        return self.promoted[-1] if self.promoted else None

    def promote(self, version: str) -> None:
        """``version`` becomes the stable one."""
        self.promoted = [v for v in self.promoted if v != version][-(PROMOTED_KEPT - 1):] + [version]
        self.rejected = [v for v in self.rejected if v != version]

    def reject(self, version: str) -> None:
        """``version`` failed in production: no longer stable, never a rollback target."""
        self.promoted = [v for v in self.promoted if v != version]
        self.rejected = [v for v in self.rejected if v != version][-(PROMOTED_KEPT - 1):] + [version]

    def trusted(self, version: str, configured: set[str]) -> bool:
        """Promoted once, or configured in bluegreen.toml and never rejected."""
        return version in self.promoted or (version in configured and version not in self.rejected)

    def rollback_target(self) -> str | None:
        """The most recently promoted version other than the one serving now."""
        serving = self.versions.get(self.active)
        return next((v for v in reversed(self.promoted) if v != serving), None)

    def to_json(self) -> dict:
        return {"format": 3, "active": self.active, "previous": self.previous, "versions": dict(self.versions),
                "promoted": list(self.promoted), "rejected": list(self.rejected),
                "rollout": self.rollout.to_json() if self.rollout else None, "pairing": self.pairing}

    @classmethod
    def from_json(cls, data: dict) -> RolloutState:
        """Rebuild the state; a missing key or a wrong type raises KeyError, TypeError or ValueError."""
        active, previous = data["active"], data["previous"]
        for key, kind in (("versions", dict), ("promoted", list), ("rejected", list), ("rollout", (dict, type(None)))):
            if not isinstance(data[key], kind):
                raise TypeError(f"{key} has the wrong type ({type(data[key]).__name__})")
        state = cls(active=active, previous=previous, versions=dict(data["versions"]),
                    promoted=list(data["promoted"]), rejected=list(data["rejected"]),
                    rollout=Rollout.from_json(data["rollout"]) if data["rollout"] is not None else None,
                    pairing=data.get("pairing"))
        if state.pairing is not None and not (isinstance(state.pairing, dict)
                                              and isinstance(state.pairing.get("pid"), int)):
            raise TypeError("pairing must name the process that turned it on")
        for color in (state.active, state.previous):
            if color is not None and color not in COLORS:
                raise ValueError(f"unknown color {color!r}")
        if set(state.versions) != set(COLORS) or not all(isinstance(v, str) for v in state.versions.values()):
            raise ValueError(f"versions must name a version for each of {list(COLORS)}")
        if not all(isinstance(v, str) for v in state.promoted + state.rejected):
            raise ValueError("promoted and rejected must list version strings")
        return state

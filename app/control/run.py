"""One rollout as its deploy process drives it: its steps, its record, and how it ends.

A deploy (``deploy.py``), its canary steps (``canary.py``) and its bake (``bake.py``)
share one ``RolloutRun``: it prints and keeps each step, checks whether the rollout is
still this process's own ("ours") and whether anything preempted it, ends it in a final
phase, and records how it ended: the state is saved first, then the ``DeployEvent``, so the
history never claims an outcome the state lacks. ``abandon`` is the one way a controller
error ends a rollout, wherever it struck: traffic back on the stable version, the rollout
aborted, both recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.control.config import BakeSettings
from app.control.context import Context
from app.control.events import DeployEvent, Outcome
from app.control.judge import Judge, Judgment
from app.control.reconcile import Reconciler
from app.control.rollout import Phase, Rollout, RolloutState, Verdict
from app.control.traffic import Traffic
from app.errors import ControllerError, TrafficError

# How long a rollout that a controller error interrupted keeps trying to take the lock and
# read the state again (a state file unreadable for a moment) before it gives up.
ABANDON_RETRY_SECONDS = 0.5


@dataclass(frozen=True)
class Step:
    """One printed and returned step of a deploy."""

    name: str
    outcome: Outcome
    reason: str
    seconds: float


@dataclass(frozen=True)
class CanaryStep:
    """One judged canary step: its share, its verdict and the requests that reached the version."""

    step: int
    weight: int
    verdict: Verdict
    reason: str
    exposure: int

    def to_json(self) -> dict:
        return {"step": self.step, "weight": self.weight, "verdict": self.verdict.value, "reason": self.reason,
                "exposure": self.exposure}


@dataclass
class DeployResult:
    """What a deploy did: its final phase, why, a one-line message, and every step."""

    version: str
    source: str
    target: str
    dry_run: bool
    phase: Phase = Phase.GATING
    reason: str = ""
    message: str = ""
    steps: list[Step] = field(default_factory=list)
    bake: Judgment | None = None       # how the bake (or the canary step that ended it) was judged
    canary: list[CanaryStep] = field(default_factory=list)
    exposure: int | None = None        # requests that reached the version during its canary steps
    error: str | None = None           # a controller error that interrupted the deploy (then it failed)
    recorded: bool = False             # its end is in the history

    @property
    def succeeded(self) -> bool:
        return self.phase in (Phase.PROMOTED, Phase.VERIFIED) and self.error is None

    def to_json(self) -> dict:
        return {"version": self.version, "from": self.source, "to": self.target, "dry_run": self.dry_run,
                "phase": self.phase.value, "outcome": self.phase.value, "reason": self.reason,
                "message": self.message,
                "steps": [{"step": s.name, "outcome": s.outcome.value, "reason": s.reason, "seconds": s.seconds}
                          for s in self.steps],
                **({"canary": [s.to_json() for s in self.canary], "exposure": self.exposure}
                   if self.exposure is not None else {})}


class RolloutRun:
    """The steps shared by a deploy, its canary and its bake."""

    def __init__(self, ctx: Context, traffic: Traffic, reconciler: Reconciler, rollout: Rollout,
                 result: DeployResult, started: float):
        self.ctx = ctx
        self.traffic = traffic
        self.reconciler = reconciler
        self.rollout = rollout
        self.result = result
        self.started = started
        self.leased = False

    # -- steps and checks -------------------------------------------------------------------
    def step(self, name: str, outcome: Outcome, reason: str = "") -> Step:
        """Print and keep one step of the deploy."""
        step = Step(name, outcome, reason, round(self.ctx.clock.monotonic() - self.started, 3))
        self.result.steps.append(step)
        self.ctx.say(f"[{step.seconds:7.2f}s] {name}: {outcome.value}" + (f" ({reason})" if reason else ""))
        return step

    def ours(self, state: RolloutState, *phases: Phase) -> bool:
        """Whether the recorded rollout is still this one (and, given ``phases``, in one of them)."""
        current = state.rollout
        return current is not None and current.id == self.rollout.id and (not phases or current.phase in phases)

    def stopped(self, state: RolloutState, *phases: Phase) -> str | None:
        """Why this rollout must not take its next step (an abort request, another command
        ended it, or its lease lapsed); None to go on."""
        request = self.ctx.store.abort_request(self.rollout.id)
        if request:
            return f"operator {request.get('action', 'abort')}"
        if not self.ours(state, *phases):
            return "the rollout was ended by another command"
        return self.ctx.lease.lapsed()

    def preempted(self, phases: tuple[Phase, ...], active: str) -> str | None:
        """Why a judged window must stop now (no lock held): ``stopped``, or the front door no
        longer on ``active``; None to go on."""
        lapsed = self.ctx.lease.lapsed()
        if lapsed:
            return lapsed
        request = self.ctx.store.abort_request(self.rollout.id)
        if request:
            return f"operator {request.get('action', 'abort')}"
        state = self.ctx.read_state()
        why = self.stopped(state, *phases)
        if why:
            return why
        if state.active != active:
            return f"the front door was moved away from {active} by another command"
        return None

    # -- the lease --------------------------------------------------------------------------
    def hold_lease(self) -> None:
        """From here until ``release_lease`` nginx applies what this rollout exposes users to
        (a canary's share, the new color on probation, paired copies) only while this process
        renews its lease (``lease.py``): a deploy that dies leaves nothing unjudged for long."""
        self.ctx.lease.take()
        self.leased = True

    def drop_lease(self) -> None:
        """Stop renewing, and leave the lease to lapse by itself (the deploy was interrupted:
        the next command's reconcile ends the rollout)."""
        if self.leased:
            self.leased = False
            self.ctx.lease.drop()

    def release_lease(self) -> None:
        """Let the lease go, once the rollout's end is saved (a promoted color is no longer on
        probation by then). A color still on probation (its rollout ended, but traffic could
        not be moved back) is no longer served once the lease is gone: the record is made to
        say so at once, as the next command's reconcile would."""
        if not self.leased:
            return
        self.leased = False
        warning = self.ctx.lease.release()
        if warning:
            self.ctx.say(f"warning: {warning}")
            return
        if self.ctx.proxy.on_probation() is None:
            return
        result = self.result
        try:
            before = self.ctx.read_state().active
            with self.reconciler.locked(repair_rollout=False) as state:
                back = f"{state.active} ({state.versions[state.active]})"
        except ControllerError as exc:
            self.ctx.say(f"warning: its lease ended, so nginx no longer serves a color on probation; the record "
                         f"could not say so yet ({exc}): the next bluegreen command does")
            return
        if state.active != before and result.message:
            result.message += f"; but its lease has ended, so nginx routes to {back} again"

    # -- judged windows ---------------------------------------------------------------------
    def paired(self, settings: BakeSettings):
        """Paired answers for this rollout's judged windows (``Reconciler.pairing``)."""
        return self.reconciler.pairing(settings.paired_sample, lambda state: self.ours(state))

    def judge(self, color: str, settings: BakeSettings, paired: bool = False) -> Judge:
        """The judge of ``color``'s window, noting the other color's failovers at each poll."""
        return Judge(self.ctx.runtime, color, self.rollout.version, settings, self.ctx.clock, self.ctx.say,
                     on_poll=lambda j: self.reconciler.note_failovers(j.stable_color, j.other_probes), paired=paired)

    # -- endings ----------------------------------------------------------------------------
    def end(self, state: RolloutState, phase: Phase, reason: str, message: str) -> None:
        """End the rollout in ``phase`` (the caller finishes it)."""
        if state.rollout.phase is not phase:
            state.rollout.advance(phase, reason)
        self.result.phase, self.result.reason, self.result.message = phase, reason, message

    def finish(self, state: RolloutState) -> DeployResult:
        """Save the state, then record how the deploy ended (lock held)."""
        self.ctx.store.save(state)
        self.record_end()
        return self.result

    def record_end(self) -> None:
        result, rollout = self.result, self.rollout
        self.ctx.record(DeployEvent(outcome=Outcome.ended(result.phase), reason=result.reason,
                                    version=rollout.version, rollout=rollout.id, source=rollout.source,
                                    target=rollout.target, dry_run=rollout.dry_run,
                                    bake=result.bake.to_json() if result.bake else None, exposure=result.exposure))
        result.recorded = True

    def exposure_note(self) -> str:
        exposure = self.result.exposure
        return "" if exposure is None else f"; {exposure} requests reached {self.rollout.version}"

    def end_preempted(self, state: RolloutState, why: str, during: str) -> DeployResult:
        """Another command ended the rollout, or an operator asked to stop it (lock held):
        the canary's share back to 0% and traffic back on the stable version if this rollout
        still runs; record how it ended either way."""
        current, result = state.rollout, self.result
        moved = None
        if self.ours(state) and current.phase.running:
            moved = self.traffic.return_to_stable(state, f"{why} during {during}", automatic=False,
                                                  since=self.ctx.clock.monotonic())
            current.advance(Phase.ABORTED, why)
            self.ctx.store.save(state)
        else:
            self.traffic.clear_split(why)
        result.phase = current.phase if self.ours(state) else Phase.ABORTED
        result.reason = why
        result.message = (f"deploy {result.version} {result.phase.value}: {why}; traffic on {state.active} "
                          f"({state.versions[state.active]}){self.exposure_note()}")
        self.step(during, Outcome.PREEMPTED, why)
        if moved:
            self.step(f"rollback to {state.stable}", Outcome.DONE, f"{moved.took_ms:.0f} ms")
        self.record_end()
        return result

    def abandon(self, error: ControllerError) -> DeployResult:
        """A controller error interrupted the rollout, wherever it struck: make the record
        whole. A rollout still running is ended aborted, with traffic back on the stable
        version; one whose end was saved but not recorded gets its event. The state may be
        unreadable for a moment: the lock and the state are tried again for
        ``switch.lock_timeout``; after that the next command's reconcile ends the rollout."""
        clock, result = self.ctx.clock, self.result
        result.error = str(error)
        deadline = clock.monotonic() + self.ctx.config.switch.lock_timeout
        while True:
            try:
                with self.reconciler.locked(repair_rollout=False) as state:
                    return self._make_whole(state, error)
            except ControllerError as again:
                if clock.monotonic() >= deadline:
                    result.phase, result.reason = Phase.ABORTED, str(error)
                    why = "for the same reason" if str(again) == str(error) else f"({again})"
                    result.message = (f"deploy {result.version} failed: {error}; and it could not be ended {why}: "
                                      "the next bluegreen command ends it")
                    return result
                clock.sleep(ABANDON_RETRY_SECONDS)

    def _make_whole(self, state: RolloutState, error: ControllerError) -> DeployResult:
        result, why = self.result, str(error)
        here = f"{state.active} ({state.versions[state.active]})"
        if not self.ours(state):  # never saved, or another command replaced it: nothing of ours to end
            result.phase, result.reason = Phase.ABORTED, why
            result.message = f"deploy {result.version} failed: {why}; traffic on {here}"
            return result
        if not state.rollout.phase.running:  # its end was saved; the event may be missing
            result.phase = state.rollout.phase
            result.message = (f"deploy {result.version} {result.phase.value}, but a step failed: {why}; "
                              f"traffic on {here}")
            self.record_end()
            return result
        try:
            moved = self.traffic.return_to_stable(state, f"deploy {result.version} could not go on: {why}",
                                                  automatic=False)
        except TrafficError as again:  # it says where traffic stays
            where = f"; {again}"
        else:
            back = f"{state.active} ({state.versions[state.active]})"
            where = (f"; traffic back on {back}" if moved else
                     "" if isinstance(error, TrafficError) else f"; traffic on {back}")
            if moved:
                self.step(f"rollback to {state.stable}", Outcome.DONE, f"{moved.took_ms:.0f} ms")
        self.end(state, Phase.ABORTED, why, f"deploy {result.version} failed: {why}{where}{self.exposure_note()}")
        return self.finish(state)

"""An operator's moves: `switch`, `rollback` and `abort`.

A deploy holds the controller lock only while it gates, loads and switches, never while a
window is judged (docs/adr/0008), and it looks for an abort request between its steps and
at every check for preemption: `abort` (and `rollback`, which aborts a running rollout)
writes that request, then takes the lock and puts traffic back on the stable version at
once when it had moved, without waiting for the deploy to notice.
"""

from __future__ import annotations

from app.control.config import COLORS
from app.control.context import Context
from app.control.events import Action, Event, Outcome, Switched
from app.control.reconcile import Reconciler, interrupted, running_rollout
from app.control.rollout import Phase
from app.control.traffic import Traffic
from app.errors import ControllerError


class Operations:
    """The operator's commands that move traffic."""

    def __init__(self, ctx: Context, traffic: Traffic, reconciler: Reconciler):
        self.ctx = ctx
        self.traffic = traffic
        self.reconciler = reconciler

    def switch(self, target: str, force: bool = False) -> Switched:
        if target not in COLORS:
            raise ControllerError(f"unknown color {target!r}: expected blue or green")
        with self.reconciler.locked() as state:
            if target == state.active:
                return self.traffic.switch(state, target)
            busy = running_rollout(state)
            if busy:
                raise ControllerError(f"refusing to switch to {target}: {busy}; `bluegreen abort` ends it, "
                                      f"traffic stays on {state.active}")
            version = state.versions[target]
            configured = set(self.ctx.config.default_versions().values())
            if not force and not state.trusted(version, configured):
                refusal = (f"{target} runs {version}, which was never promoted (a dry run or a deploy that did not "
                           "finish loaded it); deploy it through the gates, or switch with --force")
                self.ctx.record(Switched(action=Action.SWITCH, outcome=Outcome.REFUSED, reason=refusal,
                                         source=state.active, target=target, from_version=state.versions[state.active],
                                         to_version=version))
                raise ControllerError(f"refusing to switch to {target}: {refusal}; traffic stays on {state.active}",
                                      recorded=True)
            moved = self.traffic.switch(state, target, force=force)
            state.promote(version)  # the operator chose it: traffic returns here on an abort
            self.ctx.store.save(state)
            return moved

    def rollback(self, force: bool = False) -> Switched | None:
        """The operator's rollback: ends a running rollout, or returns to the previous promoted version."""
        if running_rollout(self.ctx.read_state()):
            return self.abort(Action.ROLLBACK)
        with self.reconciler.locked() as state:
            return self.traffic.roll_back(state, "manual rollback", force=force)

    def promote(self, reason: str | None = None) -> Phase:
        """A human's verdict on a rollout that could not decide: a paused window passes (the
        canary moves on, a bake promotes), a degraded rollout becomes stable. Recorded with
        its reason and the verdict it overrode; return the rollout's phase after it."""
        why = reason or "no reason given"
        state = self.ctx.read_state()
        rollout = state.rollout
        if rollout is None or rollout.phase not in (Phase.PAUSED, Phase.DEGRADED):
            now = f"the rollout of {rollout.version} is {rollout.phase.value}" if rollout else "no rollout has run"
            raise ControllerError(f"nothing to promote: {now}; only a paused or degraded rollout can be promoted")
        gone = interrupted(state)
        if rollout.phase is Phase.PAUSED and not gone:
            return self._ask_promote(rollout, why)
        if gone and state.active != rollout.target:
            raise ControllerError(f"{gone} in a paused canary step: only its deploy could move it on; "
                                  "`bluegreen reconcile` ends it (the share back to 0%)")
        with self.reconciler.locked(repair_rollout=False) as state:
            current = state.rollout
            if current is None or current.id != rollout.id or current.phase is not rollout.phase:
                raise ControllerError(f"the rollout of {rollout.version} changed meanwhile; nothing promoted")
            if gone and state.active != current.target:  # its lease lapsed: nginx went back by itself
                raise ControllerError(f"{gone}, and its lease lapsed: traffic is back on {state.active} "
                                      f"({state.versions[state.active]}); `bluegreen reconcile` ends the rollout, "
                                      f"deploy {rollout.version} again to judge it")
            self.traffic.end_probation()  # a human's verdict: the version keeps the front door
            state.promote(current.version)
            current.advance(Phase.PROMOTED, f"operator promote: {why}")
            self.ctx.store.save(state)
        self.ctx.record(Event(action=Action.PROMOTE, outcome=Outcome.SUCCEEDED,
                              reason=f"operator promote of {rollout.version} ({why})",
                              details={"version": rollout.version, "rollout": rollout.id,
                                       "overrode": rollout.judgment}))
        self.ctx.say(f"promoted {rollout.version}: it is the stable version now ({why})")
        return Phase.PROMOTED

    def _ask_promote(self, rollout, why: str) -> Phase:
        """A paused rollout's deploy is running: ask it to take the window as passed (it looks
        for the request between polls, as for an abort, and records what it does)."""
        self.ctx.store.request_promote(rollout.id, why)
        self.ctx.record(Event(action=Action.PROMOTE, outcome=Outcome.REQUESTED,
                              reason=f"operator promote of {rollout.version} while paused ({why})",
                              details={"version": rollout.version, "rollout": rollout.id,
                                       "overrode": rollout.judgment}))
        step = "the canary moves on to its next step" if rollout.target != self.ctx.read_state().active else \
            "the version becomes the stable one"
        self.ctx.say(f"promote: asked the deploy of {rollout.version} (pid {rollout.pid}) to take its paused window "
                     f"as passed: {step}")
        return Phase.PAUSED

    def abort(self, action: Action = Action.ABORT) -> Switched | None:
        """Stop the running rollout; traffic back on the stable version at once if it had moved.
        Return the move back, None when traffic had not moved (or the deploy stops by itself)."""
        asked = self.ctx.clock.monotonic()
        state = self.ctx.read_state()
        rollout = state.rollout
        if rollout is None or not rollout.phase.running:
            last = f" (the last one, {rollout.version}, is {rollout.phase.value})" if rollout else ""
            raise ControllerError(f"no rollout is running{last}: nothing to abort")
        self.ctx.store.request_abort(rollout.id, action.value)
        self.ctx.record(Event(action=action, outcome=Outcome.REQUESTED,
                              reason=f"operator {action.value} of the rollout of {rollout.version} while "
                                     f"{rollout.phase.value}", details={"version": rollout.version,
                                                                        "rollout": rollout.id}))
        if rollout.phase in (Phase.GATING, Phase.LOADING) and not interrupted(state):
            self.ctx.say(f"{action.value}: the deploy of {rollout.version} stops after its current step "
                         f"({rollout.phase.value}); traffic stays on {state.active} ({state.versions[state.active]})")
            return None
        with self.reconciler.locked(repair_rollout=False) as state:
            current = state.rollout
            if current is None or current.id != rollout.id or not current.phase.running:
                if current is not None and current.id == rollout.id and current.phase is Phase.ABORTED:
                    # Its deploy saw the request between two polls and moved traffic back first.
                    self.ctx.say(f"aborted the rollout of {rollout.version}: traffic on {state.active} "
                                 f"({state.versions[state.active]}) (its deploy acted on the request)")
                    return None
                ended = current.phase.value if current and current.id == rollout.id else "replaced"
                self.ctx.say(f"the rollout of {rollout.version} already ended ({ended})")
                return None
            try:
                moved = self.traffic.return_to_stable(state, f"operator {action.value} of {rollout.version}",
                                                      automatic=False, since=asked)
            except ControllerError as exc:  # the rollout ends all the same: its deploy stops at once
                current.advance(Phase.ABORTED, f"operator {action.value}; {exc}")
                self.ctx.store.save(state)
                raise
            current.advance(Phase.ABORTED, f"operator {action.value}")
            self.ctx.store.save(state)
        took = f" in {moved.took_ms:.0f} ms" if moved else ""
        self.ctx.say(f"aborted the rollout of {rollout.version}: traffic on {state.active} "
                     f"({state.versions[state.active]}){took}")
        return moved

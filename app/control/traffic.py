"""Traffic moves: the switch, loading a version onto the idle color, rollback, the canary share.

Every function here runs with the controller lock held and the state in hand. A switch
moves the route marker without a reload (docs/adr/0003-switching.md) and counts as done
only once fresh requests through the front door are answered by the target; a switch
that is refused or not confirmed leaves (or puts back) the door where it was. The state is
saved before the event is recorded, so the history never claims a move the state lacks.

Rollback returns to a version, never to a slot: the most recently promoted version other
than the one serving (``RolloutState.rollback_target``). When the other color no longer
runs it, it is loaded there first, through the same serving gate (docs/adr/0008).
"""

from __future__ import annotations

import os

from app.control import gates, pins
from app.control.config import other_color
from app.control.context import Context
from app.control.events import Action, CanaryEvent, Event, Outcome, Switched
from app.control.frontdoor import FrontDoor
from app.control.processes import process_started
from app.control.rollout import TRANSITIONS, GateResult, Phase, RolloutState
from app.errors import ControllerError, TrafficError


class Traffic:
    """Moves the front door between the colors and versions (lock held)."""

    def __init__(self, ctx: Context, front: FrontDoor):
        self.ctx = ctx
        self.front = front
        self.proxy = ctx.proxy

    def switch(self, state: RolloutState, target: str, *, force: bool = False, reason: str = "manual switch",
               action: Action = Action.SWITCH, since: float | None = None, probation: bool = False) -> Switched:
        """Move the front door to ``target``, gated and verified.

        Idempotent: a switch to the active color does nothing (``Outcome.NOOP``). ``since``
        (a ``clock.monotonic()`` value, such as a first failed poll) sets ``since_ms``: how
        long from then until the front door was seen serving the target. On ``probation``
        (a deploy's switch, before its bake) nginx serves the target only while this
        process's lease lives (``lease.py``): the caller holds it.
        """
        source, clock = state.active, self.ctx.clock

        def event(outcome: Outcome, why: str, **timings) -> Switched:
            return Switched(action=action, outcome=outcome, reason=why, source=source, target=target,
                            from_version=state.versions[source], to_version=state.versions[target], **timings)

        if target == source:
            self.ctx.say(f"{target} is already active ({state.versions[target]}); nothing to do")
            return event(Outcome.NOOP, reason)
        refusal = self.proxy.down_reason() or self.serving(target, state.versions[target]).reason
        if refusal and not force:
            self.ctx.record(event(Outcome.REFUSED, f"{reason}: {refusal}"))
            raise TrafficError(f"refusing to switch to {target}: {refusal}; traffic stays on {source}", recorded=True)
        started = clock.monotonic()
        on_probation = self.proxy.on_probation()

        def undo() -> None:
            self.proxy.route(source)
            self.proxy.set_probation(on_probation)

        try:
            if probation or on_probation == target:  # a probation left on the target would undo the switch
                self.proxy.set_probation(target if probation else None)
            self.proxy.route(target)
        except ControllerError as exc:
            if probation or self.proxy.routed_color() != source:
                undo()
            self.ctx.record(event(Outcome.FAILED, f"{reason}: {exc}"))
            raise TrafficError(f"switch to {target} failed: {exc}; traffic stays on {source}",
                               recorded=True) from exc
        try:
            self.front.wait_for(target)
        except ControllerError as exc:
            if not force:
                undo()
                self.ctx.record(event(Outcome.FAILED, f"{reason}: {exc}"))
                raise TrafficError(f"switch to {target} not confirmed ({exc}); traffic back on {source}",
                                   recorded=True) from exc
            self.ctx.say(f"warning: forced switch to {target} not confirmed: {exc}")
        elapsed_ms = round((clock.monotonic() - started) * 1000, 1)
        since_ms = None if since is None else round((clock.monotonic() - since) * 1000, 1)
        previous = state.previous
        state.previous, state.active = source, target
        try:
            self.ctx.store.save(state)
        except ControllerError as exc:
            raise self._unsaved(state, previous, on_probation, undo, event, reason, exc) from exc
        done = self.ctx.record(event(Outcome.SUCCEEDED, reason + (" (forced)" if force else ""),
                                     duration_ms=elapsed_ms, since_ms=since_ms))
        self.ctx.say(f"switched from {source} ({done.from_version}) to {target} ({done.to_version}) "
                     f"in {elapsed_ms:.0f} ms")
        if not probation and on_probation == source:  # the color left is no longer on probation
            self.proxy.set_probation(None)
        return done

    def _unsaved(self, state: RolloutState, previous: str | None, on_probation: str | None, undo, event,
                 reason: str, exc: ControllerError) -> TrafficError:
        """A move nginx made whose state could not be saved (``state.active`` is already the
        target): kept when it returned users to the stable version, undone otherwise."""
        target, source = state.active, state.previous
        if state.stable and state.versions[target] == state.stable != state.versions[source]:
            # Back on the stable version: traffic stays there (undoing would hand users back to
            # the version being left). The record catches up at the next command's reconcile,
            # which adopts what nginx serves; the history says only what happened.
            if on_probation == source:
                self.proxy.set_probation(None)
            self.ctx.record(event(Outcome.FAILED, f"{reason}: traffic is on {target} ({state.versions[target]}), "
                                                  f"but the state could not be saved: {exc}"))
            return TrafficError(f"traffic is on {target} ({state.versions[target]}), but the state could not be "
                                f"saved ({exc}); the next bluegreen command records it", recorded=True)
        # A move to a version not yet judged is undone: the record must know where users are.
        state.previous, state.active = previous, source
        undo()
        self.ctx.record(event(Outcome.FAILED, f"{reason}: undone, the state could not be saved: {exc}"))
        return TrafficError(f"switch to {target} undone, traffic back on {source}: {exc}", recorded=True)

    def serving(self, color: str, version: str) -> GateResult:
        """The serving gate of ``color``, asked again for up to ``switch.verify_timeout`` while
        its only fault is a server that did not answer in time: a color busy with its load
        (or paired copies) is not refused, nor reloaded, for one slow probe."""
        clock = self.ctx.clock
        deadline = clock.monotonic() + self.ctx.config.switch.verify_timeout
        while True:
            probes = self.ctx.runtime.probe_color(color)
            verdict = gates.color_serving(probes, version)
            failing = [p for p in probes if not gates.color_serving([p], version).passed]
            if verdict.passed or not failing or not all(p.timed_out for p in failing) \
                    or clock.monotonic() >= deadline:
                return verdict
            clock.sleep(0.25)

    def load_color(self, state: RolloutState, color: str, version: str) -> None:
        """Start ``version`` on ``color`` (not the active one) and gate it."""
        if color == state.active:
            raise ControllerError(f"refusing to reload {color}: it has the traffic")
        self.ctx.say(f"{color}: loading {version}")
        pins.publish(self.ctx.config, {**state.versions, color: None})
        self.ctx.runtime.stop_color(color)
        self.ctx.runtime.start_color(color, version)
        state.versions[color] = version
        self.ctx.store.save(state)
        pins.publish(self.ctx.config, state.versions)
        serving = gates.color_serving(self.ctx.runtime.probe_color(color), version)
        if not serving.passed:
            raise ControllerError(f"{color} does not serve {version}: {serving.reason}")

    def roll_back_to(self, state: RolloutState, version: str, reason: str, *, automatic: bool = False,
                     force: bool = False, since: float | None = None) -> Switched:
        """Put ``version`` on the front door: switch when the other color runs it, load it there
        first otherwise. An automatic rollback rejects the version it leaves. The caller says
        what became of the rollout."""
        leaving_color, leaving = state.active, state.versions[state.active]
        other = other_color(state.active)
        if state.versions[other] != version or not self.serving(other, version).passed:
            try:
                self.load_color(state, other, version)
            except ControllerError as exc:
                self.ctx.record(Event(action=Action.ROLLBACK, outcome=Outcome.FAILED, reason=f"{reason}: {exc}",
                                      details={"to_version": version}))
                raise TrafficError(f"rollback to {version} failed: {exc}; traffic stays on {leaving_color} "
                                   f"({leaving})", recorded=True) from exc
        moved = self.switch(state, other, force=force, reason=reason, action=Action.ROLLBACK, since=since)
        if automatic:
            state.reject(leaving)
        state.promote(version)
        self.ctx.store.save(state)
        return moved

    def return_to_stable(self, state: RolloutState, reason: str, *, automatic: bool,
                         since: float | None = None) -> Switched | None:
        """Traffic back on the stable version, if it is not there; None when it was. A
        canary's share of the idle color goes back to 0% first, whichever version is active,
        and again after the move: markers left for a color that was active apply again once
        it is idle."""
        self.clear_split(reason)
        if not state.stable or state.versions[state.active] == state.stable:
            return None
        moved = self.roll_back_to(state, state.stable, reason, automatic=automatic, since=since)
        self.clear_split(reason)
        return moved

    def end_probation(self) -> None:
        """The active color keeps the front door whether or not a lease lives (its version
        was decided on)."""
        if self.proxy.on_probation() is not None:
            self.proxy.set_probation(None)

    def pair(self, state: RolloutState, percent: int) -> None:
        """nginx sends a copy of ``percent`` of the front door's /predict to the other color
        than the one answering it (0: none), owned by this process while a window is judged
        (only while its lease lives)."""
        self.proxy.mirror(percent, leased=True)
        pid = os.getpid()
        state.pairing = {"pid": pid, "pid_started": process_started(pid), "percent": percent} if percent else None
        self.ctx.store.save(state)

    def clear_split(self, reason: str) -> CanaryEvent | None:
        """A canary's share back to 0% at once (recorded when there was one)."""
        color, percent = self.proxy.split_share()
        if not percent:
            return None
        self.proxy.split(color, 0)
        self.ctx.say(f"canary: {color} back to 0% of the front door (it had {percent}%)")
        return self.ctx.record(CanaryEvent(outcome=Outcome.CLEARED, color=color, weight=0, from_weight=percent,
                                           reason=f"{reason}: {color}'s {percent}% of the front door back to 0%"))

    def roll_back(self, state: RolloutState, reason: str, *, automatic: bool = False, force: bool = False,
                  since: float | None = None) -> Switched:
        """Back to the most recently promoted version other than the one serving."""
        target = state.rollback_target()
        if target is None:
            serving = state.versions[state.active]
            raise ControllerError(f"nothing to roll back to: {serving} is the only promoted version")
        down = self.proxy.down_reason()
        if down and not force:  # refuse before loading anything: the switch could not happen
            raise TrafficError(f"refusing to roll back: {down}; traffic stays on {state.active}")
        leaving = state.active
        moved = self.roll_back_to(state, target, reason, automatic=automatic, force=force, since=since)
        rollout = state.rollout
        if rollout and rollout.target == leaving and Phase.ROLLED_BACK in TRANSITIONS[rollout.phase]:
            rollout.advance(Phase.ROLLED_BACK, reason)  # the promoted (or degraded) rollout is undone
            self.ctx.store.save(state)
        return moved

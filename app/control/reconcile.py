"""Reconcile: the record repaired from what is observed, under the controller lock.

Every command that changes something takes the lock through ``Reconciler.locked``, which
first repairs the record, each repair a recorded step: the route marker is the truth about
the active color; what each color's servers answer is the truth about its version; a
rollout whose deploy process is gone is ended (traffic returned to the stable version when
it had moved, a canary's share put back to 0%). Reading the state never writes it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from app.control import pins
from app.control.config import COLORS, other_color
from app.control.context import Context
from app.control.events import Event, Failover, repair
from app.control.probes import ServerProbe
from app.control.processes import process_alive
from app.control.rollout import TRANSITIONS, Phase, RolloutState
from app.control.traffic import Traffic


def interrupted(state: RolloutState) -> str | None:
    """Why the current rollout can make no progress (its deploy process is gone); None otherwise."""
    rollout = state.rollout
    if rollout is None or not rollout.phase.running or process_alive(rollout.pid, rollout.pid_started):
        return None
    doing = "in a canary step" if rollout.phase is Phase.CANARY else f"while {rollout.phase.value}"
    return f"the deploy of {rollout.version} (pid {rollout.pid}) ended {doing}"


def running_rollout(state: RolloutState) -> str | None:
    """A description of a rollout whose deploy is still running; None when none is."""
    rollout = state.rollout
    if rollout is None or not rollout.phase.running or interrupted(state):
        return None
    return f"a deploy of {rollout.version} is {rollout.phase.value} (pid {rollout.pid})"


def observed_version(probes: list[ServerProbe]) -> str | None:
    """The version every server answers with, when they all answer, agree and are ours."""
    versions = {(p.health or {}).get("version") for p in probes}
    if any(p.foreign for p in probes) or len(versions) != 1 or None in versions:
        return None
    return versions.pop()


class Reconciler:
    """The lock, and the repairs made under it before any command acts."""

    def __init__(self, ctx: Context, traffic: Traffic):
        self.ctx = ctx
        self.traffic = traffic

    @contextmanager
    def locked(self, repair_rollout: bool = True) -> Iterator[RolloutState]:
        """Hold the controller lock; yield the state, reconciled with what is observed."""
        with self.ctx.store.locked(self.ctx.config.switch.lock_timeout):
            state = self.ctx.read_state()
            self.ctx.store.check_writable()
            self.reconcile_locked(state, repair_rollout)
            pins.publish(self.ctx.config, state.versions)
            yield state

    @contextmanager
    def pairing(self, percent: int, eligible: Callable[[RolloutState], bool]) -> Iterator[bool]:
        """Paired answers on for a judged window while ``eligible(state)`` (lock held to turn
        them on and off); whether they are on. A front door without per-request buckets, a
        shadow or another window's pairing leaves them off."""
        if not percent or not self.ctx.proxy.buckets():
            yield False
            return
        with self.locked(repair_rollout=False) as state:
            on = eligible(state) and state.pairing is None and not self.ctx.proxy.mirrored()
            if on:
                self.ctx.lease.take()  # the copies stop by themselves if this process dies
                try:
                    self.traffic.pair(state, percent)
                except BaseException:
                    self.ctx.lease.release()
                    raise
        try:
            yield on
        finally:
            if on:  # off whatever the record says now: this window turned it on
                try:
                    with self.locked(repair_rollout=False) as state:
                        self.traffic.pair(state, 0)
                finally:
                    warning = self.ctx.lease.release()
                    if warning:
                        self.ctx.say(f"warning: {warning}")

    def reconcile(self) -> str:
        """`bluegreen reconcile`: repair what needs repairing; say what is true now."""
        with self.locked() as state:
            pass
        return f"the record matches what is observed: {state.active} ({state.versions[state.active]}) is active"

    def reconcile_locked(self, state: RolloutState, repair_rollout: bool = True) -> list[Event]:
        """Repair the record from what is observed (lock held); return the repairs. They are
        recorded (and said) once the state that holds them is saved: a state that cannot be
        written leaves no history line claiming a repair it lacks."""
        repairs: list[Event] = []
        routed = self.ctx.proxy.routed_color()
        if routed != state.active:
            if self.ctx.proxy.on_probation() == state.active:  # nginx went back by itself: make it the route
                why = (f"nginx serves {routed}: {state.active} ({state.versions[state.active]}) was on probation "
                       "for a judged window, and the lease of the controller judging it lapsed")
                self.ctx.proxy.route(routed)
                self.ctx.proxy.set_probation(None)
            else:
                why = (f"nginx serves {routed} but the record said {state.active} "
                       "(a controller was interrupted mid-switch)")
            repairs.append(repair(why, **{"from": state.active, "to": routed}))
            state.previous, state.active = state.active, routed
        elif self.ctx.proxy.on_probation() not in (None, state.active):
            self.ctx.proxy.set_probation(None)  # left on a color traffic has left: it applies to nothing
        for color in COLORS:
            probes = self.ctx.runtime.probe_color(color)
            observed = observed_version(probes)
            if observed and observed != state.versions[color]:
                repairs.append(repair(f"{color} serves {observed} but the record said {state.versions[color]}",
                                      color=color, **{"from": state.versions[color], "to": observed}))
                state.versions[color] = observed
            self.note_failovers(color, probes)
        why = interrupted(state) if repair_rollout else None
        if why:
            repairs.append(self._end_interrupted(state, why))
        pairing = state.pairing
        if pairing and not process_alive(pairing.get("pid"), pairing.get("pid_started")):
            self.traffic.pair(state, 0)
            repairs.append(repair(f"nginx paired {pairing.get('percent')}% of the front door's requests for a "
                                  f"window judged by pid {pairing.get('pid')}, which is gone: turned off"))
        if repairs:
            self.ctx.store.save(state)
        for event in repairs:
            self.ctx.say(f"repaired: {event.reason}")
            self.ctx.record(event)
        return repairs

    def note_failovers(self, color: str, probes: list[ServerProbe]) -> int:
        """Record requests ``color`` answered that nginx meant for the other color (every server
        of that one failed them) since the last look; return how many."""
        new = 0
        for server in probes:
            live = (server.health or {}).get("live") or {}
            count, since = live.get("failovers"), live.get("since")
            if isinstance(count, int) and count > 0 and isinstance(since, str):
                new += self.ctx.store.note_failovers(f"{color}@{server.address}", since, count)
        if new:
            meant_for = other_color(color)
            self.ctx.record(Failover(meant_for=meant_for, answered_by=color, requests=new,
                                     reason=f"{new} requests meant for {meant_for} were answered by {color}: "
                                            f"every server of {meant_for} failed them"))
            self.ctx.say(f"failover: {new} requests meant for {meant_for} were answered by {color}")
        return new

    def _end_interrupted(self, state: RolloutState, why: str) -> Event:
        """End a rollout whose deploy is gone (its repair is recorded by the caller, once saved)."""
        rollout = state.rollout
        if state.active == rollout.target and state.stable and state.versions[state.active] != state.stable:
            self.traffic.return_to_stable(state, f"{why}; its version had the traffic", automatic=False)
            outcome = f"{why}; traffic returned to {state.stable}"
        elif self.traffic.clear_split(why):
            outcome = f"{why}; its canary share went back to 0%, all traffic on {state.versions[state.active]}"
        elif rollout.phase in (Phase.GATING, Phase.LOADING):
            outcome = f"{why}; traffic never left {state.versions[state.active]}"
        else:  # nginx had already gone back (its lease lapsed), or the record was repaired first
            outcome = f"{why}; traffic is on {state.versions[state.active]}"
        if Phase.ABORTED in TRANSITIONS[rollout.phase]:
            rollout.advance(Phase.ABORTED, outcome)
        return repair(outcome, rollout=rollout.id, version=rollout.version)

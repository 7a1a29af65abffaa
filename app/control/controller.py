"""The controller: the steps behind each `bluegreen` command, over small interfaces.

A ``Stack`` wires the parts once: a ``Runtime`` (the colors), a ``Proxy`` (the front
door), the ``Doors`` (what the front door answers), the ``StateStore`` and a clock. The
``Controller`` holds the lock for every command that changes something, reconciles the
record with what is observed first (recording each repair), and never writes when it
only reads. A switch moves the front door without a reload (docs/adr/0003-switching.md)
and counts as done only once the front door is seen answering with the target.

Rollback returns to a version, never to a slot: the most recently promoted version other
than the one serving (``RolloutState.rollback_target``). When the other color no longer
runs it, it is loaded there first, through the same serving gate (docs/adr/0008).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from app.artifacts.cards import list_versions, verify_artifact
from app.artifacts.versions import SHIPPED_VERSIONS, card_path
from app.control import gates, offline
from app.control.clock import Clock
from app.control.commands import ShellRunner
from app.control.config import COLORS, StackConfig, other_color
from app.control.doors import Doors, HttpDoors
from app.control.nginx_render import generation_of
from app.control.probes import ServerProbe
from app.control.processes import process_alive
from app.control.proxies import CommandProxy, LocalNginx, Proxy
from app.control.rollout import TRANSITIONS, Action, Event, Phase, RolloutState
from app.control.runtimes import CommandRuntime, LocalRuntime, Runtime
from app.control.store import StateStore
from app.errors import ControllerError, ModelLoadError


def _observed_version(probes: list[ServerProbe]) -> str | None:
    """The version every server answers with, when they all answer, agree and are ours."""
    versions = {(p.health or {}).get("version") for p in probes}
    if any(p.foreign for p in probes) or len(versions) != 1 or None in versions:
        return None
    return versions.pop()


@dataclass
class Stack:
    """The controller's parts, wired once per command."""

    config: StackConfig
    runtime: Runtime
    proxy: Proxy
    doors: Doors
    store: StateStore
    clock: Clock
    say: Callable[[str], None] = print


def build_stack(config: StackConfig, say: Callable[[str], None] = print) -> Stack:
    """The parts ``runtime.kind`` asks for: local processes, or configured commands."""
    if config.runtime.kind == "commands":
        runner = ShellRunner(config.runtime.command_timeout, config.runtime.workdir)
        runtime, proxy = CommandRuntime(config, runner), CommandProxy(config, runner)
    else:
        runtime, proxy = LocalRuntime(config), LocalNginx(config)
    doors = HttpDoors(config.front_url(), config.preview_url())
    return Stack(config, runtime, proxy, doors, StateStore(config.run_dir), Clock(), say)


class Controller:
    """Drives one stack: its colors, its front door and its rollout record."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self.config = stack.config
        self.runtime = stack.runtime
        self.proxy = stack.proxy
        self.doors = stack.doors
        self.store = stack.store
        self.clock = stack.clock
        self.say = stack.say

    # -- state ------------------------------------------------------------------------------
    def read_state(self) -> RolloutState:
        """The recorded state, as is (reading never writes)."""
        return self.store.read(self.config.default_versions())

    def configured_versions(self) -> set[str]:
        return set(self.config.default_versions().values())

    @contextmanager
    def locked(self, repair_rollout: bool = True) -> Iterator[RolloutState]:
        """Hold the controller lock; yield the state, reconciled with what is observed."""
        with self.store.locked(self.config.switch.lock_timeout):
            state = self.read_state()
            self.store.check_writable()
            self.reconcile_locked(state, repair_rollout)
            yield state

    def record(self, action: Action, outcome: str, reason: str = "", **details) -> dict:
        """Append one event to the history; return it as written."""
        return self.store.append(Event(action, outcome, reason, details))

    def repair(self, reason: str, **details) -> dict:
        self.say(f"repaired: {reason}")
        return self.record(Action.RECONCILE, "repaired", reason, **details)

    # -- reconcile --------------------------------------------------------------------------
    def interrupted(self, state: RolloutState) -> str:
        """Why the current rollout can make no progress (its deploy process is gone); "" otherwise."""
        rollout = state.rollout
        if rollout is None or not rollout.phase.running or process_alive(rollout.pid, rollout.pid_started):
            return ""
        doing = "in a canary step" if rollout.phase is Phase.CANARY else f"while {rollout.phase.value}"
        return f"the deploy of {rollout.version} (pid {rollout.pid}) ended {doing}"

    def running_rollout(self, state: RolloutState) -> str:
        """A description of a rollout whose deploy is still running; "" when none is."""
        rollout = state.rollout
        if rollout is None or not rollout.phase.running or self.interrupted(state):
            return ""
        return f"a deploy of {rollout.version} is {rollout.phase.value} (pid {rollout.pid})"

    def reconcile_locked(self, state: RolloutState, repair_rollout: bool = True) -> list[dict]:
        """Repair the record from what is observed, each repair a recorded step (lock held).

        The route marker is the truth about the active color; what each color's servers
        answer is the truth about its version; a rollout whose deploy process is gone is
        ended (and traffic returned to the stable version when it had moved).
        """
        repairs = []
        routed = self.proxy.routed_color()
        if routed != state.active:
            repairs.append(self.repair(f"nginx serves {routed} but the record said {state.active} "
                                       "(a controller was interrupted mid-switch)",
                                       **{"from": state.active, "to": routed}))
            state.previous, state.active = state.active, routed
        for color in COLORS:
            probes = self.runtime.probe_color(color)
            observed = _observed_version(probes)
            if observed and observed != state.versions[color]:
                repairs.append(self.repair(f"{color} serves {observed} but the record said {state.versions[color]}",
                                           color=color, **{"from": state.versions[color], "to": observed}))
                state.versions[color] = observed
            self.note_failovers(color, probes)
        why = self.interrupted(state) if repair_rollout else ""
        if why:
            repairs.append(self._end_interrupted(state, why))
        if repairs:
            self.store.save(state)
        return repairs

    def note_failovers(self, color: str, probes: list[ServerProbe]) -> int:
        """Record, as a history line, requests ``color`` answered that nginx meant for the other
        color (its active color failed them) since the last look; return how many."""
        new = 0
        for server in probes:
            live = (server.health or {}).get("live") or {}
            count, since = live.get("failovers"), live.get("since")
            if isinstance(count, int) and count > 0 and isinstance(since, str):
                new += self.store.note_failovers(f"{color}@{server.address}", since, count)
        if new:
            meant_for = other_color(color)
            self.record(Action.FAILOVER, "observed", f"{new} requests meant for {meant_for} were answered by "
                                                     f"{color}: every server of {meant_for} failed them",
                        **{"from": meant_for, "to": color, "requests": new})
            self.say(f"failover: {new} requests meant for {meant_for} were answered by {color}")
        return new

    def _end_interrupted(self, state: RolloutState, why: str) -> dict:
        rollout = state.rollout
        if state.active == rollout.target and state.stable and state.versions[state.active] != state.stable:
            self.return_to_stable(state, f"{why}; its version had the traffic", automatic=False)
            outcome = f"{why}; traffic returned to {state.stable}"
        elif self.proxy.split_share()[1]:
            self.clear_split(why)
            outcome = f"{why}; its canary share went back to 0%, all traffic on {state.versions[state.active]}"
        else:
            outcome = f"{why}; traffic never left {state.versions[state.active]}"
        if Phase.ABORTED in TRANSITIONS[rollout.phase]:
            rollout.advance(Phase.ABORTED, outcome)
        return self.repair(outcome, rollout=rollout.id, version=rollout.version)

    def reconcile(self) -> str:
        with self.locked() as state:
            pass
        return f"the record matches what is observed: {state.active} ({state.versions[state.active]}) is active"

    # -- up / down --------------------------------------------------------------------------
    def prepare_models(self, versions) -> None:
        """Train the shipped versions when missing (offline, in its own process); verify all."""
        missing = [v for v in SHIPPED_VERSIONS if v in versions and not card_path(self.config.models_dir, v).exists()]
        if missing:
            self.say(f"training the shipped versions {', '.join(missing)} into {self.config.models_dir} "
                     "(offline training, once)")
            offline.run_training(self.config.models_dir, "train")
        for version in versions:
            try:
                verify_artifact(self.config.models_dir, version)
            except ModelLoadError as exc:
                raise ControllerError(str(exc)) from exc

    def ensure_color(self, color: str, version: str) -> str:
        """Leave a healthy color alone; (re)start one that is down or wrong."""
        probes = self.runtime.probe_color(color)
        serving = gates.color_serving(probes, version)
        if serving.passed:
            return "running"
        foreign = [f"{p.address} is answered by {p.foreign}" for p in probes if p.foreign]
        if foreign:
            raise ControllerError(f"refusing to start {color}: {'; '.join(foreign)}, which bluegreen did not start; "
                                  "stop it or give the color another port")
        if any(p.pid for p in probes):
            self.say(f"{color}: not healthy ({serving.reason}); restarting")
            self.runtime.stop_color(color)
        self.say(f"{color}: starting {version} on {', '.join(self.config.servers(color))}")
        self.runtime.start_color(color, version)
        return "started"

    def up(self) -> dict:
        with self.locked() as state:
            self.prepare_models([state.versions[c] for c in COLORS])
            result = {color: self.ensure_color(color, state.versions[color]) for color in COLORS}
            result["nginx"] = self.apply_proxy_config(state)
            fresh = not self.store.exists()
            if fresh:
                state.promote(state.versions[state.active])  # the first version is the stable one
            if fresh or "started" in result.values():
                self.record(Action.UP, "succeeded", **result)
            self.store.save(state)
        self.say(f"front door {self.config.front_url()} -> {state.active} ({state.versions[state.active]}); "
                 f"preview {self.config.preview_url()} -> {state.idle} ({state.versions[state.idle]})")
        return {"active": state.active, **result}

    def down(self) -> None:
        with self.store.locked(self.config.switch.lock_timeout):
            self.proxy.stop()
            for color in COLORS:
                self.runtime.stop_color(color)
            stopped = self.proxy.cleanup()
        if stopped:
            self.record(Action.DOWN, "repaired", f"stopped nginx processes no master owned: {', '.join(stopped)}")
        left = self.proxy.leftovers() + self.runtime.leftovers()
        if left:
            self.record(Action.DOWN, "failed", f"still listening: {', '.join(left)}")
            raise ControllerError(f"stopped nginx and both colors, but something still listens: {', '.join(left)}")
        self.record(Action.DOWN, "succeeded")
        self.say("stopped nginx and both colors; nothing of the stack listens any more")

    # -- status / history / models (read only) ---------------------------------------------
    def status(self) -> dict:
        state = self.read_state()
        routed = self.proxy.routed_color()
        colors = {}
        for color in COLORS:
            probes = self.runtime.probe_color(color)
            serving = gates.color_serving(probes, state.versions[color])
            colors[color] = {"version": state.versions[color], "state": "up" if serving.passed else "down",
                             "reason": serving.reason, "servers": [p.as_dict() for p in probes]}
        warnings = []
        if routed != state.active:
            warnings.append(f"nginx serves {routed} but the record says {state.active}; the next command that "
                            "changes something repairs the record (or run `bluegreen reconcile`)")
        interrupted = self.interrupted(state)
        if interrupted:
            warnings.append(f"{interrupted}; `bluegreen reconcile` ends it (and returns traffic to "
                            f"{state.stable or 'the stable version'} if it had moved)")
        return {
            "active": routed,
            "recorded_active": state.active,
            "drift": warnings[0] if routed != state.active else "",
            "warnings": warnings,
            "previous": state.previous,
            "stable": state.stable,
            "rollback_target": state.rollback_target(),
            "phase": state.phase.value,
            "rollout": state.rollout.to_json() if state.rollout else None,
            "front_door": self.config.front_url(),
            "preview": self.config.preview_url(),
            "nginx_pid": self.proxy.pid(),
            "canary": dict(zip(("color", "weight"), self.proxy.split_share())),
            "shadow": {"color": other_color(routed), "sample": self.proxy.mirrored()},
            "colors": colors,
        }

    def history(self, limit: int | None = None) -> list[dict]:
        return self.store.history(limit)

    def models(self) -> list[dict]:
        state = self.read_state()
        rows = []
        for card in list_versions(self.config.models_dir):
            colors = [c for c in COLORS if state.versions[c] == card["version"]]
            rows.append({
                "version": card["version"], "algorithm": card.get("algorithm"),
                "metrics": card.get("metrics") or {}, "created_at": card.get("created_at"),
                "colors": colors, "active": state.active in colors, "stable": card["version"] == state.stable,
                "promoted": card["version"] in state.promoted, "rejected": card["version"] in state.rejected,
                "fast_path": (card.get("fast_path") or {}).get("format") or "sklearn",
            })
        return rows

    # -- reload -----------------------------------------------------------------------------
    def apply_proxy_config(self, state: RolloutState) -> str:
        """Install the rendered config, start or reload the proxy, and check it serves it (lock held)."""
        text = self.proxy.render()
        previous = self.proxy.live_config()
        changed = self.proxy.apply(text)
        stopped = self.proxy.cleanup()
        if stopped:
            self.repair(f"stopped nginx processes no master owned (its master was killed): {', '.join(stopped)}")
        was_running = not self.proxy.down_reason()
        self.proxy.route(state.active)
        self.proxy.start()
        if was_running and changed:
            self.proxy.reload()
            self.verify_or_restore(text, previous, state.active)
            return "reloaded"
        self.verify_proxy(text, state.active)
        return "running" if was_running else "started"

    def verify_proxy(self, text: str, color: str) -> None:
        """The front door serves the config ``text`` (its generation) and answers with ``color``."""
        expected = self.generation(text)
        if expected:
            deadline = self.clock.monotonic() + self.config.switch.verify_timeout
            seen = self.doors.front_generation()
            while seen != expected and self.clock.monotonic() < deadline:
                self.clock.sleep(0.05)
                seen = self.doors.front_generation()
            if seen != expected:
                complaint = self.proxy.complaint()
                raise ControllerError(f"the front door serves config generation {seen}, not the new {expected}"
                                      + (f" (nginx: {complaint})" if complaint else ""))
        self.wait_front_door(color, expected)

    def generation(self, text: str) -> str | None:
        """The generation of config ``text`` the front door will report (None: this proxy reports none)."""
        return generation_of(text) if self.proxy.serves_generations() else None

    def serves(self, text: str) -> bool:
        """Whether the front door reports the generation of config ``text`` right now."""
        expected = self.generation(text)
        return bool(expected) and self.doors.front_generation() == expected

    def verify_or_restore(self, text: str, previous: str | None, color: str) -> None:
        """After a reload: check it took; otherwise put the previous config back, and say so."""
        try:
            self.verify_proxy(text, color)
        except ControllerError as exc:
            if previous is None:
                raise ControllerError(f"nginx did not take the new config: {exc}") from exc
            try:
                self.proxy.apply(previous)
                # nginx that refused the new config (a port it could not bind) still runs the
                # previous one: putting the file back is enough, and a reload would only cost
                # keep-alive clients a connection each. Otherwise reload the previous config.
                if not self.serves(previous):
                    self.proxy.reload()
                self.verify_proxy(previous, color)
            except ControllerError as again:
                raise ControllerError(f"nginx did not take the new config ({exc}), and the previous one could not "
                                      f"be restored: {again}") from again
            raise ControllerError(f"nginx did not take the new config ({exc}); the previous config is back "
                                  "in place and serving") from exc

    def reload(self) -> str:
        with self.locked() as state:
            text = self.proxy.render()
            previous = self.proxy.live_config()
            if not self.proxy.apply(text):
                down = self.proxy.down_reason()
                if down:
                    raise ControllerError(f"nginx config unchanged, but {down}")
                return "nginx config unchanged; nothing to reload"
            if self.proxy.down_reason():
                outcome = "nginx config replaced (nginx is not running)"
            else:
                self.proxy.reload()
                try:
                    self.verify_or_restore(text, previous, state.active)
                except ControllerError as exc:
                    self.record(Action.RELOAD, "failed", str(exc))
                    raise
                outcome = "nginx config replaced and reloaded; the front door serves it"
            self.record(Action.RELOAD, "succeeded", outcome)
            return outcome

    # -- switch -----------------------------------------------------------------------------
    def wait_front_door(self, color: str, generation: str | None = None) -> float:
        """Wait until ``verify_responses`` fresh requests in a row are answered by ``color``
        (through the config ``generation``, when given: not by a worker of the old one)."""
        needed, timeout = self.config.switch.verify_responses, self.config.switch.verify_timeout
        started = self.clock.monotonic()
        streak, last = 0, "no answer"
        while self.clock.monotonic() - started < timeout:
            last = self.doors.front_color(generation)
            streak = streak + 1 if last == color else 0
            if streak >= needed:
                return self.clock.monotonic() - started
            self.clock.sleep(0.02 if streak else 0.05)
        raise ControllerError(f"the front door is not answered by {color} after {timeout:g}s (last: {last})")

    def switch(self, target: str, force: bool = False) -> dict:
        if target not in COLORS:
            raise ControllerError(f"unknown color {target!r}: expected blue or green")
        with self.locked() as state:
            if target == state.active:
                return self.switch_traffic(state, target)
            busy = self.running_rollout(state)
            if busy:
                raise ControllerError(f"refusing to switch to {target}: {busy}; `bluegreen abort` ends it, "
                                      f"traffic stays on {state.active}")
            version = state.versions[target]
            if not force and not state.trusted(version, self.configured_versions()):
                refusal = (f"{target} runs {version}, which was never promoted (a dry run or a deploy that did not "
                           "finish loaded it); deploy it through the gates, or switch with --force")
                self.record(Action.SWITCH, "refused", refusal, **{"from": state.active, "to": target})
                raise ControllerError(f"refusing to switch to {target}: {refusal}; traffic stays on {state.active}")
            entry = self.switch_traffic(state, target, force=force)
            state.promote(version)  # the operator chose it: traffic returns here on an abort
            self.store.save(state)
            return entry

    def switch_traffic(self, state: RolloutState, target: str, *, force: bool = False,
                       reason: str = "manual switch", action: Action = Action.SWITCH,
                       since: float | None = None) -> dict:
        """Move the front door to ``target``, gated and verified; the caller holds the lock.

        Idempotent: a switch to the active color does nothing. A refused or unconfirmed
        switch leaves (or puts back) the front door on the color it was on. ``since`` (a
        ``clock.monotonic()`` value, such as a first failed poll) adds ``since_ms``: how
        long from then until the front door was seen serving the target.
        """
        source = state.active
        details = {"from": source, "to": target, "from_version": state.versions[source],
                   "to_version": state.versions[target]}
        if target == source:
            self.say(f"{target} is already active ({state.versions[target]}); nothing to do")
            return {"outcome": "noop", **details}
        refusal = self.proxy.down_reason() or gates.color_serving(self.runtime.probe_color(target),
                                                                  state.versions[target]).reason
        if refusal and not force:
            self.record(action, "refused", f"{reason}: {refusal}", **details)
            raise ControllerError(f"refusing to switch to {target}: {refusal}; traffic stays on {source}")
        started = self.clock.monotonic()
        try:
            self.proxy.route(target)
        except ControllerError as exc:
            if self.proxy.routed_color() != source:
                self.proxy.route(source)
            self.record(action, "failed", f"{reason}: {exc}", **details)
            raise ControllerError(f"switch to {target} failed: {exc}; traffic stays on {source}") from exc
        try:
            self.wait_front_door(target)
        except ControllerError as exc:
            if not force:
                self.proxy.route(source)
                self.record(action, "failed", f"{reason}: {exc}", **details)
                raise ControllerError(f"switch to {target} not confirmed ({exc}); traffic back on {source}") from exc
            self.say(f"warning: forced switch to {target} not confirmed: {exc}")
        elapsed = self.clock.monotonic() - started
        if since is not None:
            details["since_ms"] = round((self.clock.monotonic() - since) * 1000, 1)
        state.previous, state.active = source, target
        self.store.save(state)
        entry = self.record(action, "succeeded", reason + (" (forced)" if force else ""),
                            duration_ms=round(elapsed * 1000, 1), **details)
        self.say(f"switched from {source} ({details['from_version']}) to {target} ({details['to_version']}) "
                 f"in {elapsed * 1000:.0f} ms")
        return entry

    # -- rollback and abort -----------------------------------------------------------------
    def load_color(self, state: RolloutState, color: str, version: str) -> None:
        """Start ``version`` on ``color`` (not the active one) and gate it; the caller holds the lock."""
        if color == state.active:
            raise ControllerError(f"refusing to reload {color}: it has the traffic")
        self.say(f"{color}: loading {version}")
        self.runtime.stop_color(color)
        self.runtime.start_color(color, version)
        state.versions[color] = version
        self.store.save(state)
        serving = gates.color_serving(self.runtime.probe_color(color), version)
        if not serving.passed:
            raise ControllerError(f"{color} does not serve {version}: {serving.reason}")

    def roll_back_to(self, state: RolloutState, version: str, reason: str, *, automatic: bool = False,
                     force: bool = False, since: float | None = None) -> dict:
        """Put ``version`` on the front door: switch when the other color runs it, load it there first
        otherwise (lock held). An automatic rollback rejects the version it leaves. The caller
        says what became of the rollout."""
        leaving_color, leaving = state.active, state.versions[state.active]
        other = other_color(state.active)
        if state.versions[other] != version or not gates.color_serving(self.runtime.probe_color(other),
                                                                         version).passed:
            try:
                self.load_color(state, other, version)
            except ControllerError as exc:
                self.record(Action.ROLLBACK, "failed", f"{reason}: {exc}", to_version=version)
                raise ControllerError(f"rollback to {version} failed: {exc}; traffic stays on {leaving_color} "
                                      f"({leaving})") from exc
        entry = self.switch_traffic(state, other, force=force, reason=reason, action=Action.ROLLBACK, since=since)
        if automatic:
            state.reject(leaving)
        state.promote(version)
        self.store.save(state)
        return entry

    def return_to_stable(self, state: RolloutState, reason: str, *, automatic: bool,
                         since: float | None = None) -> dict | None:
        """Traffic back on the stable version, if it is not there (lock held); None when it was.

        A canary's share of the idle color goes back to 0% first, whichever version is active."""
        self.clear_split(reason)
        if not state.stable or state.versions[state.active] == state.stable:
            return None
        return self.roll_back_to(state, state.stable, reason, automatic=automatic, since=since)

    def clear_split(self, reason: str) -> None:
        """A canary's share back to 0% at once (recorded when there was one)."""
        color, percent = self.proxy.split_share()
        if percent:
            self.proxy.split(color, 0)
            self.record(Action.CANARY, "cleared", f"{reason}: {color}'s {percent}% of the front door back to 0%",
                        color=color, weight=0, **{"from_weight": percent})
            self.say(f"canary: {color} back to 0% of the front door (it had {percent}%)")

    def rollback_locked(self, state: RolloutState, reason: str, *, automatic: bool = False, force: bool = False,
                        since: float | None = None) -> dict:
        """Back to the most recently promoted version other than the one serving (lock held)."""
        target = state.rollback_target()
        if target is None:
            serving = state.versions[state.active]
            raise ControllerError(f"nothing to roll back to: {serving} is the only promoted version")
        down = self.proxy.down_reason()
        if down and not force:  # refuse before loading anything: the switch could not happen
            raise ControllerError(f"refusing to roll back: {down}; traffic stays on {state.active}")
        leaving = state.active
        entry = self.roll_back_to(state, target, reason, automatic=automatic, force=force, since=since)
        rollout = state.rollout
        if rollout and rollout.target == leaving and Phase.ROLLED_BACK in TRANSITIONS[rollout.phase]:
            rollout.advance(Phase.ROLLED_BACK, reason)  # the promoted (or degraded) rollout is undone
            self.store.save(state)
        return entry

    def rollback(self, force: bool = False) -> dict:
        """The operator's rollback: ends a running rollout, or returns to the previous promoted version."""
        state = self.read_state()
        if self.running_rollout(state):
            return self.abort(Action.ROLLBACK)
        with self.locked() as state:
            return self.rollback_locked(state, "manual rollback", force=force)

    def abort(self, action: Action = Action.ABORT) -> dict:
        """Stop the running rollout; traffic back on the stable version at once if it had moved.

        The deploy holds the lock only while it loads, gates and switches (never during
        the bake), and checks for an abort request between its steps and at each poll.
        """
        asked = self.clock.monotonic()
        state = self.read_state()
        rollout = state.rollout
        if rollout is None or not rollout.phase.running:
            last = f" (the last one, {rollout.version}, is {rollout.phase.value})" if rollout else ""
            raise ControllerError(f"no rollout is running{last}: nothing to abort")
        self.store.request_abort(rollout.id, action.value)
        self.record(action, "requested", f"operator {action.value} of the rollout of {rollout.version} "
                                         f"while {rollout.phase.value}", version=rollout.version, rollout=rollout.id)
        if rollout.phase in (Phase.GATING, Phase.LOADING) and not self.interrupted(state):
            self.say(f"{action.value}: the deploy of {rollout.version} stops after its current step "
                     f"({rollout.phase.value}); traffic stays on {state.active} ({state.versions[state.active]})")
            return {"outcome": "requested", "rollout": rollout.id}
        with self.locked(repair_rollout=False) as state:
            current = state.rollout
            if current is None or current.id != rollout.id or not current.phase.running:
                ended = current.phase.value if current and current.id == rollout.id else "replaced"
                self.say(f"the rollout of {rollout.version} already ended ({ended})")
                return {"outcome": "noop", "rollout": rollout.id}
            entry = self.return_to_stable(state, f"operator {action.value} of {rollout.version}", automatic=False,
                                          since=asked)
            if current.phase.running:
                current.advance(Phase.ABORTED, f"operator {action.value}")
            self.store.save(state)
        where = f"{state.active} ({state.versions[state.active]})"
        took = f" in {entry['since_ms']:.0f} ms" if entry else ""
        self.say(f"aborted the rollout of {rollout.version}: traffic on {where}{took}")
        return entry or {"outcome": "aborted", "rollout": rollout.id}

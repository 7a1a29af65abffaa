"""The controller: the steps behind each `bluegreen` command, over small interfaces.

A ``Stack`` wires the parts once: a ``Runtime`` (the colors), a ``Proxy`` (the front
door), the ``Doors`` (what the front door answers), the ``StateStore`` and a clock. The
``Controller`` holds the lock for every command that changes something, reconciles the
record with what nginx serves first (and says so in the history), and never writes when
it only reads. A switch moves the front door without a reload (docs/adr/0003-switching.md)
and counts as done only once the front door is seen answering with the target.
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
from app.control.config import COLORS, StackConfig
from app.control.doors import Doors, HttpDoors
from app.control.proxies import CommandProxy, LocalNginx, Proxy
from app.control.rollout import TRANSITIONS, Action, Event, Phase, RolloutState
from app.control.runtimes import CommandRuntime, LocalRuntime, Runtime
from app.control.store import StateStore
from app.errors import ControllerError, ModelLoadError


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

    @contextmanager
    def locked(self) -> Iterator[RolloutState]:
        """Hold the controller lock; yield the state, reconciled with what nginx serves."""
        with self.store.locked(self.config.switch.lock_timeout):
            state = self.read_state()
            self.reconcile_locked(state)
            yield state

    def record(self, action: Action, outcome: str, reason: str = "", **details) -> dict:
        """Append one event to the history; return it as written."""
        return self.store.append(Event(action, outcome, reason, details))

    def reconcile_locked(self, state: RolloutState) -> dict | None:
        """Repair the record from what nginx serves, as its own recorded step (lock held)."""
        routed = self.proxy.routed_color()
        if routed == state.active:
            return None
        entry = self.record(Action.RECONCILE, "repaired",
                            f"nginx serves {routed} but the record said {state.active} "
                            "(a controller was interrupted mid-switch)", **{"from": state.active, "to": routed})
        state.previous, state.active = state.active, routed
        self.store.save(state)
        self.say(f"repaired the record: nginx serves {routed}")
        return entry

    def reconcile(self) -> str:
        with self.locked() as state:
            pass
        return f"the record matches what nginx serves ({state.active})"

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
            changed = self.proxy.apply(self.proxy.render())
            was_running = not self.proxy.down_reason()
            self.proxy.route(state.active)
            self.proxy.start()
            if not was_running:
                result["nginx"] = "started"
            elif changed:
                self.proxy.reload()
                result["nginx"] = "reloaded"
            else:
                result["nginx"] = "running"
            self.wait_front_door(state.active)
            if not self.store.exists() or "started" in result.values():
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
        self.say("stopped nginx and both colors")

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
        drift = "" if routed == state.active else (
            f"nginx serves {routed} but the record says {state.active}; the next command that changes "
            "something repairs the record (or run `bluegreen reconcile`)")
        return {
            "active": routed,
            "recorded_active": state.active,
            "drift": drift,
            "previous": state.previous,
            "stable": state.stable,
            "phase": state.phase.value,
            "rollout": state.rollout.to_json() if state.rollout else None,
            "front_door": self.config.front_url(),
            "preview": self.config.preview_url(),
            "nginx_pid": self.proxy.pid(),
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
                "fast_path": (card.get("fast_path") or {}).get("format") or "sklearn",
            })
        return rows

    # -- reload -----------------------------------------------------------------------------
    def reload(self) -> str:
        with self.locked():
            if not self.proxy.apply(self.proxy.render()):
                return "nginx config unchanged; nothing to reload"
            if self.proxy.down_reason():
                outcome = "nginx config replaced (nginx is not running)"
            else:
                self.proxy.reload()
                outcome = "nginx config replaced and reloaded"
            self.record(Action.RELOAD, "succeeded", outcome)
            return outcome

    # -- switch / rollback ------------------------------------------------------------------
    def wait_front_door(self, color: str) -> float:
        """Wait until ``verify_responses`` fresh requests in a row are answered by ``color``."""
        needed, timeout = self.config.switch.verify_responses, self.config.switch.verify_timeout
        started = self.clock.monotonic()
        streak, last = 0, "no answer"
        while self.clock.monotonic() - started < timeout:
            last = self.doors.front_color()
            streak = streak + 1 if last == color else 0
            if streak >= needed:
                return self.clock.monotonic() - started
            self.clock.sleep(0.02 if streak else 0.05)
        raise ControllerError(f"the front door is not answered by {color} after {timeout:g}s (last: {last})")

    def switch(self, target: str, force: bool = False) -> dict:
        if target not in COLORS:
            raise ControllerError(f"unknown color {target!r}: expected blue or green")
        with self.locked() as state:
            return self.switch_traffic(state, target, force=force)

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

    def roll_back(self, state: RolloutState, reason: str, force: bool = False, since: float | None = None) -> dict:
        """Switch back to the previously active color; the caller holds the lock.

        A rollout whose version was on the color traffic leaves ends rolled back.
        """
        if not state.previous:
            raise ControllerError("nothing to roll back to: no switch has happened yet")
        leaving = state.active
        entry = self.switch_traffic(state, state.previous, force=force, reason=reason, action=Action.ROLLBACK,
                                    since=since)
        rollout = state.rollout
        if rollout and rollout.target == leaving and Phase.ROLLED_BACK in TRANSITIONS[rollout.phase]:
            rollout.advance(Phase.ROLLED_BACK, reason)
            self.store.save(state)
        return entry

    def rollback(self, force: bool = False) -> dict:
        with self.locked() as state:
            return self.roll_back(state, "manual rollback", force)

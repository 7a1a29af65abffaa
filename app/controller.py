"""The controller: the steps behind each `bluegreen` command.

A switch moves the front door by flipping nginx's route marker (no reload: see
docs/adr/0003-switching.md), and counts as done only once requests through the front door
are answered by the target color. Mutating commands hold the state lock.
"""

from __future__ import annotations

import time

import requests

from app import gates
from app.errors import ControllerError, ModelLoadError
from app.model_files import SHIPPED_VERSIONS, card_path
from app.model_store import verify_artifact
from app.nginx_ctl import Nginx
from app.rollout import RolloutState, StateStore
from app.runtime import LocalRuntime
from app.stack_config import COLORS, StackConfig


class Controller:
    """Drives one stack: its colors (through a runtime), nginx and the rollout state."""

    def __init__(self, config: StackConfig, runtime=None, nginx=None, say=print):
        self.config = config
        if config.section("runtime")["kind"] == "commands":
            from app.commands_runtime import CommandProxy, CommandRuntime

            runtime = runtime or CommandRuntime(config)
            nginx = nginx or CommandProxy(config, runtime.runner)
        self.runtime = runtime or LocalRuntime(config)
        self.nginx = nginx or Nginx(config)
        self.store = StateStore(config.run_dir)
        self.say = say

    def _default_versions(self) -> dict:
        return {color: self.config.data["colors"][color]["version"] for color in COLORS}

    def _load(self) -> RolloutState:
        return self.store.load(self.nginx.routed_color(), self._default_versions())

    def _lock(self):
        return self.store.locked(float(self.config.section("switch")["lock_timeout"]))

    # -- up / down ------------------------------------------------------------------
    def prepare_models(self, versions) -> None:
        missing = [v for v in versions if not card_path(self.config.models_dir, v).exists()]
        if any(v in SHIPPED_VERSIONS for v in missing):
            from app.training import train_shipped

            self.say(f"training shipped models into {self.config.models_dir}")
            train_shipped(self.config.models_dir)
        for version in versions:
            try:
                verify_artifact(self.config.models_dir, version)
            except ModelLoadError as exc:
                raise ControllerError(str(exc)) from None

    def ensure_color(self, color: str, version: str) -> str:
        """Leave a healthy color alone; (re)start one that is down or wrong."""
        probes = self.runtime.probe_color(color)
        if not gates.color_serving(probes, version):
            return "running"
        if any(p.pid for p in probes):
            self.say(f"{color}: not healthy ({gates.color_serving(probes, version)}); restarting")
            self.runtime.stop_color(color)
        self.say(f"{color}: starting {version} on {', '.join(self.config.servers(color))}")
        self.runtime.start_color(color, version)
        return "started"

    def up(self) -> dict:
        with self._lock():
            state = self._load()
            self.prepare_models([state.versions[c] for c in COLORS])
            result = {color: self.ensure_color(color, state.versions[color]) for color in COLORS}
            changed = self.nginx.install()
            if not self.nginx.pid():
                self.nginx.route(state.active)
            result["nginx"] = self.nginx.ensure_running(changed)
            self.wait_front_door(state.active)
            if not self.store.exists() or "started" in result.values():
                state.record("up", "succeeded", "", **{k: v for k, v in result.items()})
            self.store.save(state)
        self.say(f"front door {self.config.front_url()} -> {state.active} ({state.versions[state.active]}); "
                 f"preview {self.config.preview_url()} -> {state.idle} ({state.versions[state.idle]})")
        return {"active": state.active, **result}

    def down(self) -> None:
        with self._lock():
            self.nginx.stop()
            for color in COLORS:
                self.runtime.stop_color(color)
        self.say("stopped nginx and both colors")

    # -- status / history -----------------------------------------------------------
    def status(self) -> dict:
        state = self.store.load(None, self._default_versions())
        colors = {}
        for color in COLORS:
            probes = self.runtime.probe_color(color)
            reason = gates.color_serving(probes, state.versions[color])
            colors[color] = {
                "version": state.versions[color],
                "state": "up" if not reason else "down",
                "reason": reason,
                "servers": [p.as_dict() for p in probes],
            }
        return {
            "active": self.nginx.routed_color(),
            "previous": state.previous,
            "phase": state.phase,
            "front_door": self.config.front_url(),
            "preview": self.config.preview_url(),
            "nginx_pid": self.nginx.pid(),
            "colors": colors,
        }

    def history(self) -> list:
        return self.store.load(None, self._default_versions()).history

    # -- reload ---------------------------------------------------------------------
    def reload(self) -> str:
        with self._lock():
            changed = self.nginx.install()
            if not changed:
                return "nginx config unchanged; nothing to reload"
            if self.nginx.pid():
                self.nginx.reload()
                return "nginx config replaced and reloaded"
            return "nginx config replaced (nginx is not running)"

    # -- switch / rollback ----------------------------------------------------------
    def wait_front_door(self, color: str) -> float:
        """Wait until ``verify_responses`` fresh requests in a row are answered by ``color``."""
        settings = self.config.section("switch")
        needed, timeout = int(settings["verify_responses"]), float(settings["verify_timeout"])
        started = time.monotonic()
        streak, last = 0, "no answer"
        while time.monotonic() - started < timeout:
            try:
                response = requests.get(self.config.front_url() + "/ready", timeout=1.0,
                                        headers={"Connection": "close"})
                last = response.headers.get("X-Color", f"HTTP {response.status_code}")
                streak = streak + 1 if response.status_code == 200 and last == color else 0
            except requests.RequestException as exc:
                last, streak = type(exc).__name__, 0
            if streak >= needed:
                return time.monotonic() - started
            time.sleep(0.02 if streak else 0.05)
        raise ControllerError(f"the front door is not answered by {color} after {timeout:g}s (last: {last})")

    def switch(self, target: str, force: bool = False, reason: str = "manual switch",
               action: str = "switch") -> dict:
        if target not in COLORS:
            raise ControllerError(f"unknown color {target!r}: expected blue or green")
        with self._lock():
            return self._switch_locked(self._load(), target, force, reason, action)

    def _switch_locked(self, state: RolloutState, target: str, force: bool, reason: str, action: str,
                       phase: str = "healthy") -> dict:
        source = state.active
        details = {"from": source, "to": target, "from_version": state.versions[source],
                   "to_version": state.versions[target]}
        if target == source:
            self.say(f"{target} is already active ({state.versions[target]}); nothing to do")
            return {"outcome": "noop", **details}
        refusal = self.nginx.down_reason() or gates.color_serving(self.runtime.probe_color(target),
                                                                  state.versions[target])
        if refusal and not force:
            state.record(action, "refused", f"{reason}: {refusal}", **details)
            self.store.save(state)
            raise ControllerError(f"refusing to switch to {target}: {refusal}; traffic stays on {source}")
        started = time.monotonic()
        try:
            self.nginx.route(target)
        except ControllerError as exc:
            if self.nginx.routed_color() != source:
                self.nginx.route(source)
            state.record(action, "failed", f"{reason}: {exc}", **details)
            self.store.save(state)
            raise ControllerError(f"switch to {target} failed: {exc}; traffic stays on {source}") from None
        try:
            self.wait_front_door(target)
        except ControllerError as exc:
            if not force:
                self.nginx.route(source)
                state.record(action, "failed", f"{reason}: {exc}", **details)
                self.store.save(state)
                raise ControllerError(f"switch to {target} not confirmed ({exc}); traffic back on {source}") from None
            self.say(f"warning: forced switch to {target} not confirmed: {exc}")
        elapsed = time.monotonic() - started
        state.previous, state.active = source, target
        state.phase = phase
        entry = state.record(action, "succeeded", reason + (" (forced)" if force else ""),
                             duration_ms=round(elapsed * 1000, 1), **details)
        self.store.save(state)
        self.say(f"switched from {source} ({details['from_version']}) to {target} ({details['to_version']}) "
                 f"in {elapsed * 1000:.0f} ms")
        return entry

    def rollback(self, force: bool = False, reason: str = "manual rollback") -> dict:
        with self._lock():
            state = self._load()
            if not state.previous:
                raise ControllerError("nothing to roll back to: no switch has happened yet")
            return self._switch_locked(state, state.previous, force, reason, "rollback")

"""The stack's lifecycle: `up`, `down` and `reload`.

`up` is idempotent: a color that serves its recorded version is left alone, one that is
down or wrong is (re)started, nginx is started or reloaded only when its config changed,
and the first `up` makes the active color's version the stable one. `down` stops nginx
gracefully, then both colors, then checks that nothing of the stack still listens.
"""

from __future__ import annotations

from app.artifacts.cards import verify_artifact
from app.artifacts.versions import SHIPPED_VERSIONS, card_path
from app.control import gates, offline
from app.control.config import COLORS
from app.control.context import Context
from app.control.events import Action, Event, Outcome, repair
from app.control.frontdoor import FrontDoor
from app.control.reconcile import Reconciler
from app.control.tokens import token_warning
from app.errors import ControllerError, ModelLoadError


class Lifecycle:
    """Starts, stops and reconfigures the whole stack."""

    def __init__(self, ctx: Context, front: FrontDoor, reconciler: Reconciler):
        self.ctx = ctx
        self.front = front
        self.reconciler = reconciler

    def prepare_models(self, versions: list[str]) -> None:
        """Train the shipped versions when missing (offline, in its own process); verify all."""
        models_dir = self.ctx.config.models_dir
        missing = [v for v in SHIPPED_VERSIONS if v in versions and not card_path(models_dir, v).exists()]
        if missing:
            self.ctx.say(f"training the shipped versions {', '.join(missing)} into {models_dir} "
                         "(offline training, once)")
            offline.run_training(models_dir, "train")
        for version in versions:
            try:
                verify_artifact(models_dir, version)
            except ModelLoadError as exc:
                raise ControllerError(self.ctx.config.unknown_version(version) or str(exc)) from exc

    def ensure_color(self, color: str, version: str) -> str:
        """Leave a healthy color alone ("running"); (re)start one that is down or wrong ("started")."""
        runtime = self.ctx.runtime
        probes = runtime.probe_color(color)
        serving = gates.color_serving(probes, version)
        if serving.passed:
            return "running"
        foreign = [f"{p.address} is answered by {p.foreign}" for p in probes if p.foreign]
        if foreign:
            raise ControllerError(f"refusing to start {color}: {'; '.join(foreign)}, which bluegreen did not start; "
                                  "stop it or give the color another port")
        if any(p.pid for p in probes):
            self.ctx.say(f"{color}: not healthy ({serving.reason}); restarting")
            runtime.stop_color(color)
        self.ctx.say(f"{color}: starting {version} on {', '.join(self.ctx.config.servers(color))}")
        runtime.start_color(color, version)
        return "started"

    def up(self) -> dict:
        config = self.ctx.config
        with self.reconciler.locked() as state:
            warning = token_warning(config.run_dir) if config.runtime.kind == "local" else ""
            if warning:
                self.ctx.say(f"warning: {warning}")
            stopped = self.ctx.runtime.cleanup()
            if stopped:
                reason = f"stopped gunicorn processes left by a killed master or command: {', '.join(stopped)}"
                self.ctx.say(f"repaired: {reason}")
                self.ctx.record(repair(reason))
            self.prepare_models([state.versions[c] for c in COLORS])
            result = {color: self.ensure_color(color, state.versions[color]) for color in COLORS}
            result["nginx"] = self.front.apply(state)
            fresh = not self.ctx.store.exists()
            if fresh:
                state.promote(state.versions[state.active])  # the first version is the stable one
            self.ctx.store.save(state)
            if fresh or "started" in result.values():
                self.ctx.record(Event(action=Action.UP, outcome=Outcome.SUCCEEDED, details=result))
        self.ctx.say(f"front door {config.front_url()} -> {state.active} ({state.versions[state.active]}); "
                     f"preview {config.preview_url()} -> {state.idle} ({state.versions[state.idle]})")
        return {"active": state.active, **result}

    def down(self) -> None:
        proxy, runtime = self.ctx.proxy, self.ctx.runtime
        with self.ctx.store.locked(self.ctx.config.switch.lock_timeout):
            proxy.stop()
            for color in COLORS:
                runtime.stop_color(color)
            stopped, orphans = proxy.cleanup(), runtime.cleanup()
        if stopped:
            self.ctx.record(Event(action=Action.DOWN, outcome=Outcome.REPAIRED,
                                  reason=f"stopped nginx processes no master owned: {', '.join(stopped)}"))
        if orphans:
            self.ctx.record(Event(action=Action.DOWN, outcome=Outcome.REPAIRED,
                                  reason="stopped gunicorn processes left by a killed master or command: "
                                         + ", ".join(orphans)))
        left = proxy.leftovers() + runtime.leftovers()
        if left:
            self.ctx.record(Event(action=Action.DOWN, outcome=Outcome.FAILED,
                                  reason=f"still listening: {', '.join(left)}"))
            raise ControllerError(f"stopped nginx and both colors, but something still listens: {', '.join(left)}",
                                  recorded=True)
        self.ctx.record(Event(action=Action.DOWN, outcome=Outcome.SUCCEEDED))
        self.ctx.say("stopped nginx and both colors; nothing of the stack listens any more")

    def reload(self) -> str:
        with self.reconciler.locked() as state:
            return self.front.reload(state)

"""The front door's config: install, reload, verify through the door itself, restore.

A config counts as applied only once the front door reports its generation (a digest of
the text, ``nginx_render.generation_of``) and answers with the active color. A reload
nginx did not take is undone: the previous file is put back (and reloaded only when nginx
had taken the new one), so a failed reload never leaves the door on a config nobody
checked. The wait for the door to answer with a color is the switch's confirmation too.
"""

from __future__ import annotations

from app.control.context import Context
from app.control.events import Action, Event, Outcome, repair
from app.control.nginx_render import generation_of
from app.control.rollout import RolloutState
from app.errors import ControllerError

RELOADED = "nginx config replaced and reloaded; the front door serves it"
# nginx 1.22 closes its old workers' idle keep-alive connections at a reload; a client that
# reuses one at that instant gets it reset (nginx 1.27.4's keepalive_min_timeout is the fix).
RELOAD_NOTE = ("note: a reload closes idle keep-alive client connections; a client that reuses one at that instant "
               "may see it reset (most clients do not send a POST again): docs/PERFORMANCE.md, \"Reloads\"")


class FrontDoor:
    """Applies and verifies the front door's config; confirms which color it answers with."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.proxy = ctx.proxy

    def apply(self, state: RolloutState) -> str:
        """Install the rendered config, start or reload the proxy, and check it serves it
        (lock held); say what happened: "started", "reloaded" or "running"."""
        text = self.proxy.render()
        previous = self.proxy.live_config()
        changed = self.proxy.apply(text)
        stopped = self.proxy.cleanup()
        if stopped:
            reason = f"stopped nginx processes no master owned (its master was killed): {', '.join(stopped)}"
            self.ctx.say(f"repaired: {reason}")
            self.ctx.record(repair(reason))
        was_running = not self.proxy.down_reason()
        self.proxy.route(state.active)
        self.proxy.start()
        if was_running and changed:
            self.proxy.reload()
            self.verify_or_restore(text, previous, state.active)
            return "reloaded"
        self.verify(text, state.active)
        return "running" if was_running else "started"

    def reload(self, state: RolloutState) -> str:
        """`bluegreen reload` (lock held): install the rendered config and reload if it changed."""
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
                self.ctx.record(Event(action=Action.RELOAD, outcome=Outcome.FAILED, reason=str(exc)))
                exc.recorded = True
                raise
            outcome = RELOADED
        self.ctx.record(Event(action=Action.RELOAD, outcome=Outcome.SUCCEEDED, reason=outcome))
        return outcome

    def generation(self, text: str) -> str | None:
        """The generation of config ``text`` the front door will report (None: this proxy reports none)."""
        return generation_of(text) if self.proxy.serves_generations() else None

    def serves(self, text: str) -> bool:
        """Whether the front door reports the generation of config ``text`` right now."""
        expected = self.generation(text)
        return bool(expected) and self.ctx.doors.front_generation() == expected

    def verify(self, text: str, color: str) -> None:
        """The front door serves the config ``text`` (its generation) and answers with ``color``."""
        expected = self.generation(text)
        if expected:
            clock = self.ctx.clock
            deadline = clock.monotonic() + self.ctx.config.switch.verify_timeout
            seen = self.ctx.doors.front_generation()
            while seen != expected and clock.monotonic() < deadline:
                clock.sleep(0.05)
                seen = self.ctx.doors.front_generation()
            if seen != expected:
                complaint = self.proxy.complaint()
                raise ControllerError(f"the front door serves config generation {seen}, not the new {expected}"
                                      + (f" (nginx: {complaint})" if complaint else ""))
        self.wait_for(color, expected)

    def verify_or_restore(self, text: str, previous: str | None, color: str) -> None:
        """After a reload: check it took; otherwise put the previous config back, and say so."""
        try:
            self.verify(text, color)
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
                self.verify(previous, color)
            except ControllerError as again:
                raise ControllerError(f"nginx did not take the new config ({exc}), and the previous one could not "
                                      f"be restored: {again}") from again
            raise ControllerError(f"nginx did not take the new config ({exc}); the previous config is back "
                                  "in place and serving") from exc

    def wait_for(self, color: str, generation: str | None = None) -> float:
        """Wait until ``verify_responses`` fresh requests in a row are answered by ``color``
        (through the config ``generation``, when given: not by a worker of the old one);
        return how long it took."""
        clock, settings = self.ctx.clock, self.ctx.config.switch
        started = clock.monotonic()
        streak, last = 0, "no answer"
        while clock.monotonic() - started < settings.verify_timeout:
            last = self.ctx.doors.front_color(generation)
            streak = streak + 1 if last == color else 0
            if streak >= settings.verify_responses:
                return clock.monotonic() - started
            clock.sleep(0.02 if streak else 0.05)
        raise ControllerError(f"the front door is not answered by {color} after {settings.verify_timeout:g}s "
                              f"(last: {last})")

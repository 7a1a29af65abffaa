"""The parts every controller service works through, wired once per command.

A ``Context`` holds the ``Runtime`` (the colors), the ``Proxy`` (the front door), the
``Doors`` (what the front door answers), the ``StateStore``, the ``Clock``, where lines
for the operator go, and this process's ``Lease``. Each service (``frontdoor``, ``traffic``, ``reconcile``,
``lifecycle``, ``operations``, ``views``, the rollouts) takes a context and talks to the
world only through it, so the reconciler tests swap the world for a fake one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from app.control.clock import Clock
from app.control.commands import ShellRunner
from app.control.config import StackConfig
from app.control.doors import Doors, HttpDoors
from app.control.events import Event
from app.control.lease import Lease
from app.control.proxies import CommandProxy, LocalNginx, Proxy
from app.control.rollout import RolloutState
from app.control.runtimes import CommandRuntime, LocalRuntime, Runtime
from app.control.store import StateStore
from app.errors import ControllerError

E = TypeVar("E", bound=Event)


@dataclass
class Context:
    """The controller's parts, and the events this command could not record yet."""

    config: StackConfig
    runtime: Runtime
    proxy: Proxy
    doors: Doors
    store: StateStore
    clock: Clock
    say: Callable[[str], None] = print
    unrecorded: list[Event] = field(default_factory=list)
    record_error: ControllerError | None = None
    # Why the judged window's metrics could not be written last time, once said (``show_window``).
    window_metrics_error: str | None = None
    # This process's lease on what a judged window exposes users to (``lease.py``).
    lease: Lease = field(init=False)

    def __post_init__(self):
        self.lease = Lease(self.proxy, self.config.bake.lease)

    def read_state(self) -> RolloutState:
        """The recorded state, as is (reading never writes)."""
        return self.store.read(self.config.default_versions())

    def record(self, event: E) -> E:
        """Append ``event`` to the history; return it.

        A history that cannot be written does not stop the step that is recording (its state
        change must be finished and saved, or the record would lie elsewhere): the event waits
        in ``unrecorded``, ``flush`` writes it at the end of the command, and the command
        fails saying so."""
        if self.unrecorded:
            self.unrecorded.append(event)  # keep the order
            return event
        try:
            self.store.append(event)
        except ControllerError as exc:
            self.unrecorded.append(event)
            self.record_error = exc
        return event

    def publish_window(self, document: dict) -> None:
        """A poll of a judged window, or its end: ``window.json`` (for the dashboard), and its
        paired figures in ``rollout.prom`` (for a scraper, ``show_window``)."""
        self.store.save_window(document)
        self.show_window(document)

    def show_window(self, document: dict | None) -> None:
        """Put the judged window's paired figures into ``rollout.prom`` (take them out for
        None or an ended window). Never raises: a file a scraper reads must not stop a
        rollout or its judge. A write that fails is said once, with what it means; the next
        poll tries again."""
        try:
            self.store.save_window_metrics(document)
        except Exception as exc:  # a bug here must not cost a rollout either: it says so
            error = str(exc) if isinstance(exc, ControllerError) else \
                f"{self.store.rollout_metrics_path}: the judged window's metrics failed ({type(exc).__name__}: {exc})"
            if error != self.window_metrics_error:
                self.say(f"warning: {error}; the judged window goes on, and a scraper reads what the file said "
                         "before")
            self.window_metrics_error = error
            return
        self.window_metrics_error = None

    def flush(self) -> bool:
        """Write the events that waited; False when the history still cannot be written."""
        while self.unrecorded:
            try:
                self.store.append(self.unrecorded[0])
            except ControllerError:
                return False
            self.unrecorded.pop(0)
        return True


def build_context(config: StackConfig, say: Callable[[str], None] = print) -> Context:
    """The parts ``runtime.kind`` asks for: local processes, or configured commands."""
    clock = Clock()
    if config.runtime.kind == "commands":
        runner = ShellRunner(config.runtime.command_timeout, config.runtime.workdir)
        runtime, proxy = CommandRuntime(config, runner, clock), CommandProxy(config, runner)
    else:
        runtime, proxy = LocalRuntime(config, clock), LocalNginx(config, clock)
    doors = HttpDoors(config.front_url(), config.preview_url())
    return Context(config, runtime, proxy, doors, StateStore(config.run_dir, clock=clock), clock, say)

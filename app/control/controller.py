"""The controller: the services behind the `bluegreen` commands, wired once per command.

Each service is one concern over one ``Context`` (docs/adr/0013-controller-services.md):

- ``FrontDoor`` (``frontdoor.py``): the front door's config, applied and verified;
- ``Traffic`` (``traffic.py``): switch, load, rollback, the canary share (lock held);
- ``Reconciler`` (``reconcile.py``): the lock, and the repairs made under it first;
- ``Lifecycle`` (``lifecycle.py``): `up`, `down`, `reload`;
- ``Operations`` (``operations.py``): `switch`, `rollback`, `abort`;
- ``Views`` (``views.py``): `status`, `history`, `models` (they never write);
- deploys (``deploy.py``, ``canary.py``, ``bake.py``) run as a ``RolloutRun`` over these.

``Controller.command`` wraps a command that changes something: when it fails, the history
says so (unless the step that failed recorded it), so every failed command leaves its line
in the history as well as on stderr.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from app.control.context import Context
from app.control.events import Action, Event, Outcome
from app.control.frontdoor import FrontDoor
from app.control.lifecycle import Lifecycle
from app.control.operations import Operations
from app.control.reconcile import Reconciler
from app.control.traffic import Traffic
from app.control.views import Views
from app.errors import ControllerError


class Controller:
    """One stack's services, sharing one context."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.front = FrontDoor(ctx)
        self.traffic = Traffic(ctx, self.front)
        self.reconciler = Reconciler(ctx, self.traffic)
        self.lifecycle = Lifecycle(ctx, self.front, self.reconciler)
        self.operations = Operations(ctx, self.traffic, self.reconciler)
        self.views = Views(ctx)

    @contextmanager
    def command(self, action: Action) -> Iterator[None]:
        """Run a command that changes something. Its failure goes into the history unless the
        step that failed recorded it; events that could not be written when they happened are
        written now, and a command that could not record everything when it happened fails
        (one line: what was not written, and whether it is now)."""
        try:
            yield
        except ControllerError as exc:
            if not exc.recorded:
                self.ctx.record(Event(action=action, outcome=Outcome.FAILED, reason=str(exc)))
            self.ctx.flush()
            raise
        if self.ctx.record_error is not None:
            late = "every event is recorded now" if self.ctx.flush() else "some events are missing from it"
            failure = (f"the history could not be written when the {action.value} recorded it "
                       f"({self.ctx.record_error}); {late}")
            self.ctx.record(Event(action=action, outcome=Outcome.FAILED, reason=failure))
            self.ctx.flush()
            raise ControllerError(failure, recorded=True)

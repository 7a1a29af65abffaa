"""The controller's lease: nginx lets users reach a version being judged only while it lives.

A judged window exposes users to a version nobody has decided on yet: a canary's share of
the front door, a bake's whole front door, paired copies sent to the other color. The
process judging the window holds a lease and renews it every second from a thread of its
own; the proxy turns the lease into files nginx tests on each request (one per second,
``<run_dir>/nginx/lease/<unix second>``, see the template), and the markers of a judged
window apply only while the file of the current second exists. A controller killed or
frozen renews nothing: at most ``bake.lease`` seconds (and the second it was in) later,
nginx sends every user back to the stable version by itself, with no process of ours
running (docs/adr/0017-a-lease-on-exposure.md).

A lease that lapsed while its holder was stopped is not taken up again: ``lapsed`` says
why, and the rollout ends on it (its judged window saw a hole).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

from app.errors import ControllerError

# How often the holder renews the files; a lease shorter than two renewals could lapse
# between them (config.py checks bake.lease against it).
RENEW_SECONDS = 1.0


class LeaseFiles(Protocol):
    def lease(self, until: float | None) -> None:
        """Make the lease live until ``until`` (a Unix time); None: end it now."""


class Lease:
    """One process's lease, renewed in the background while anything holds it."""

    def __init__(self, proxy: LeaseFiles, seconds: float, now: Callable[[], float] = time.time,
                 every: float = RENEW_SECONDS):
        self.proxy = proxy
        self.seconds = seconds
        self.now = now
        self.every = every
        self.holders = 0
        self.until = 0.0
        self.failure: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @contextmanager
    def held(self) -> Iterator[Lease]:
        """Hold the lease for the block (taken when nothing held it; a ControllerError when
        it cannot be written)."""
        self.take()
        try:
            yield self
        finally:
            self.release()

    def take(self) -> None:
        if self.holders == 0:
            until = self.now() + self.seconds
            self.proxy.lease(until)
            self.until, self.failure = until, None
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._renew, args=(self._stop,), daemon=True,
                                            name="bluegreen-lease")
            self._thread.start()
        self.holders += 1

    def release(self) -> str | None:
        """Let go; the last holder ends the lease. Return a warning when its files could not be
        removed (they lapse by themselves within the lease's seconds), None otherwise."""
        self.holders = max(0, self.holders - 1)
        if self.holders:
            return None
        self.drop()
        try:
            self.proxy.lease(None)
        except ControllerError as exc:
            return f"the lease could not be ended at once ({exc}); it lapses by itself within {self.seconds:g}s"
        return None

    def drop(self) -> None:
        """Stop renewing and forget the holders, leaving the files to lapse by themselves (what
        a killed process leaves behind)."""
        self.holders = 0
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def lapsed(self) -> str | None:
        """Why the lease no longer protects what it held (None while it lives, or when not held)."""
        if not self.holders:
            return None
        if self.failure:
            return self.failure
        if self.now() >= self.until:
            return self._lapse_reason()
        return None

    def _lapse_reason(self) -> str:
        at = time.strftime("%H:%M:%S", time.localtime(self.until))
        return (f"the controller's lease lapsed at {at} ({self.now() - self.until + self.seconds:.0f}s without a "
                "renewal: this process was stopped or starved), so nginx had sent users back to the stable version")

    def _renew(self, stop: threading.Event) -> None:
        while not stop.wait(self.every):
            if self.now() >= self.until:  # stopped longer than the lease: what it held is gone
                self.failure = self._lapse_reason()
                return
            until = self.now() + self.seconds
            try:
                self.proxy.lease(until)
            except ControllerError as exc:
                self.failure = f"the controller's lease could not be renewed ({exc})"
                return
            self.until = until

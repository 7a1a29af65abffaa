"""Time, behind one small object, so the reconciler tests can run a 30 s bake instantly."""

from __future__ import annotations

import time


class Clock:
    """The real clock: ``monotonic`` for durations, ``time`` for timestamps, ``sleep`` to wait."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

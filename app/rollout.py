"""The rollout state: one small record, persisted atomically, changed under a lock.

Which color takes the front door is decided by nginx's marker file (``Nginx.route``);
the record mirrors it. A controller killed between flipping the marker and writing the
record leaves the marker as the truth: ``StateStore.load`` adopts it and notes the repair
in the history, so the record always matches what nginx serves.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from app.errors import ControllerError
from app.fsutil import atomic_write_json

PHASES = ("healthy", "progressing", "degraded", "aborted")


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class RolloutState:
    """Active and previous color, the version on each, the phase, and the history."""

    active: str = "blue"
    previous: str | None = None
    versions: dict = field(default_factory=dict)
    stable: str = "blue"
    phase: str = "healthy"
    history: list = field(default_factory=list)

    @property
    def idle(self) -> str:
        return "green" if self.active == "blue" else "blue"

    def record(self, action: str, outcome: str, reason: str = "", **details) -> dict:
        entry = {"time": now_iso(), "action": action, "outcome": outcome, "reason": reason, **details}
        self.history.append(entry)
        return entry


class StateStore:
    """Reads and writes ``<run_dir>/state.json``; serializes commands with a file lock."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / "state.json"
        self.lock_path = self.run_dir / "controller.lock"

    def exists(self) -> bool:
        return self.path.is_file()

    def load(self, routed_color: str | None = None, default_versions: dict | None = None) -> RolloutState:
        """Read the record; adopt ``routed_color`` (what nginx serves) if they disagree."""
        if self.path.is_file():
            try:
                state = RolloutState(**json.loads(self.path.read_text()))
            except (ValueError, TypeError) as exc:
                raise ControllerError(f"{self.path}: unreadable state ({exc}); remove it and run `up`") from None
        else:
            state = RolloutState(versions=dict(default_versions or {}))
        if routed_color and routed_color != state.active:
            state.record("reconcile", "repaired",
                         f"nginx serves {routed_color} but the record said {state.active} "
                         "(a controller was interrupted mid-switch)",
                         **{"from": state.active, "to": routed_color})
            state.previous, state.active = state.active, routed_color
            self.save(state)
        return state

    def save(self, state: RolloutState) -> None:
        atomic_write_json(self.path, asdict(state))

    @contextmanager
    def locked(self, timeout: float):
        """Hold the controller lock; wait up to ``timeout`` s, then fail clearly."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout
        with open(self.lock_path, "a+") as handle:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        handle.seek(0)
                        holder = handle.read().strip() or "unknown"
                        raise ControllerError(
                            f"another bluegreen command is running (pid {holder}); waited {timeout:g}s"
                        ) from None
                    time.sleep(0.05)
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            yield

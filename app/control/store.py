"""Where the rollout state and its history live, and the lock that serializes commands.

``<run_dir>/state.json`` holds the small ``RolloutState`` and is replaced atomically when
the state changes, and with it ``<run_dir>/nginx/rollout.prom``, the rollout as nginx serves
it to a scraper (``exposition.py``); while this process judges a window, that file also
carries the window's paired figures, rewritten at every poll (``save_window_metrics``).
``<run_dir>/history.jsonl`` is an append-only log of ``Event``s, rotated by size
(``history.jsonl.1`` ... ``.3``). Reading never writes: a command that only looks
(``status``, ``history``, ``models``) changes no file.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.artifacts.fsutil import atomic_write_bytes, atomic_write_json
from app.control.clock import Clock
from app.control.events import Event
from app.control.exposition import rollout_exposition, window_exposition
from app.control.permissions import check_run_dir, make_private_dir
from app.control.rollout import RolloutState
from app.errors import ControllerError

HISTORY_MAX_BYTES = 1 << 20
HISTORY_KEEP = 3


class StateStore:
    """Reads and writes ``state.json`` and ``history.jsonl`` under one run directory."""

    def __init__(self, run_dir: Path, history_max_bytes: int = HISTORY_MAX_BYTES, history_keep: int = HISTORY_KEEP,
                 clock: Clock | None = None):
        self.run_dir = Path(run_dir)
        self.clock = clock or Clock()
        self.path = self.run_dir / "state.json"
        self.history_path = self.run_dir / "history.jsonl"
        self.lock_path = self.run_dir / "controller.lock"
        self.abort_path = self.run_dir / "abort.json"
        self.promote_path = self.run_dir / "promote.json"
        self.window_path = self.run_dir / "window.json"
        self.failovers_path = self.run_dir / "failovers.json"
        self.rollout_metrics_path = self.run_dir / "nginx" / "rollout.prom"
        self.history_max_bytes = history_max_bytes
        self.history_keep = history_keep
        self._legacy_history: list[dict] = []
        # The paired figures of the window this process judges now, as rollout.prom carries them.
        self._window_metrics = ""

    def exists(self) -> bool:
        return self.path.is_file()

    def _raw(self) -> dict | None:
        try:
            if self.path.exists() and not self.path.is_file():
                raise ControllerError(f"{self.path}: not a regular file; move it aside and run `bluegreen up`")
            text = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ControllerError(f"{self.path}: cannot read the state ({exc.strerror})") from exc
        try:
            data = json.loads(text.decode("utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except RecursionError as exc:
            raise ControllerError(f"{self.path}: unreadable state (nested too deeply); move it aside and run "
                                  "`bluegreen up`, which records what it finds") from exc
        except ValueError as exc:  # JSON errors and bytes that are not UTF-8 alike
            raise ControllerError(f"{self.path}: unreadable state ({exc}); move it aside and run `bluegreen up`, "
                                  "which records what it finds") from exc
        return data

    def read(self, default_versions: dict[str, str]) -> RolloutState:
        """The recorded state, or a fresh one with ``default_versions``; never writes."""
        return self._read(default_versions)

    def _read(self, default_versions: dict[str, str]) -> RolloutState:
        # The window's metrics read the state through this at every poll: not a read of the command's own.
        data = self._raw()
        if data is None:
            return RolloutState(versions=dict(default_versions))
        fmt = data.get("format")
        if fmt == 2:
            data = _from_format_2(data)
        elif fmt in (None, 1):
            self._legacy_history = [e for e in data.get("history") or [] if isinstance(e, dict)]
            data = _from_format_1(data)
        elif fmt != 3:
            raise ControllerError(f"{self.path}: state format {fmt!r} is not one this bluegreen reads (1 to 3); "
                                  "it is left as it is: use the bluegreen that wrote it, or move it aside")
        try:
            return RolloutState.from_json(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            what = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
            raise ControllerError(f"{self.path}: unreadable state ({what}); move it aside and run "
                                  "`bluegreen up`, which records what it finds") from exc

    def save(self, state: RolloutState) -> None:
        """Replace the state file atomically (a reader sees the old state or the new one)."""
        for entry in self._legacy_history:
            self._append_line(entry)  # a format-1 file kept its history inline: move it to the log once
        self._legacy_history = []
        try:
            atomic_write_json(self.path, state.to_json())
        except OSError as exc:
            raise ControllerError(f"{self.path}: cannot write the state ({exc.strerror})") from exc
        try:  # what nginx serves a scraper about the rollout (exposition.py)
            self._write_metrics(state)
        except OSError as exc:
            raise ControllerError(f"{self.rollout_metrics_path}: cannot write the rollout's metrics ({exc.strerror}); "
                                  "the state was saved") from exc

    def _write_metrics(self, state: RolloutState) -> None:
        text = rollout_exposition(state) + self._window_metrics
        atomic_write_bytes(self.rollout_metrics_path, text.encode())

    # -- abort requests -----------------------------------------------------------------
    def request_abort(self, rollout_id: str, action: str) -> None:
        """Ask the deploy driving ``rollout_id`` to stop (it need not hold the lock to see it)."""
        self._request(self.abort_path, "abort", rollout=rollout_id, action=action)

    def _request(self, path: Path, what: str, **fields) -> None:
        try:
            atomic_write_json(path, {**fields, "pid": os.getpid(), "time": self.clock.time()})
        except OSError as exc:
            raise ControllerError(f"{path}: cannot write the {what} request ({exc.strerror})") from exc

    def abort_request(self, rollout_id: str) -> dict | None:
        """The abort request for ``rollout_id``, if one was made."""
        return _request(self.abort_path, rollout_id)

    def request_promote(self, rollout_id: str, reason: str) -> None:
        """Ask the deploy driving ``rollout_id`` to take its paused window as passed."""
        self._request(self.promote_path, "promote", rollout=rollout_id, reason=reason)

    def promote_request(self, rollout_id: str) -> dict | None:
        """The promote request for ``rollout_id``, if one was made."""
        return _request(self.promote_path, rollout_id)

    def take_promote_request(self, rollout_id: str) -> dict | None:
        """The promote request for ``rollout_id``, used up: the next pause waits for its own."""
        request = self.promote_request(rollout_id)
        if request:
            try:
                self.promote_path.unlink(missing_ok=True)
            except OSError as exc:
                raise ControllerError(f"{self.promote_path}: cannot be removed ({exc.strerror})") from exc
        return request

    def save_window(self, document: dict) -> None:
        """The judged window as it stands (``window.json``, for the dashboard)."""
        try:
            atomic_write_json(self.window_path, document)
        except OSError as exc:
            raise ControllerError(f"{self.window_path}: cannot be written ({exc.strerror})") from exc

    def save_window_metrics(self, document: dict | None) -> None:
        """Put the judged window's paired figures into ``rollout.prom``, beside the rollout as
        recorded now (read from ``state.json``); none when ``document`` is None or the window
        ended. Every later ``save`` of this store keeps them until the next call."""
        metrics = window_exposition(document)
        if metrics == self._window_metrics == "":
            return  # nothing shown, nothing to show
        self._window_metrics = metrics
        try:
            self._write_metrics(self._read({}))
        except OSError as exc:
            raise ControllerError(f"{self.rollout_metrics_path}: cannot write the judged window's metrics "
                                  f"({exc.strerror})") from exc

    # -- failovers seen -----------------------------------------------------------------
    def note_failovers(self, color: str, since: str, count: int) -> int:
        """Remember that ``color``'s servers (started at ``since``) counted ``count`` failovers;
        return how many of them are new since the last note (under a lock of its own)."""
        try:
            make_private_dir(self.run_dir)
            with open(self.failovers_path.with_suffix(".lock"), "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    seen = json.loads(self.failovers_path.read_text())
                except (OSError, ValueError):
                    seen = {}
                before = seen.get(color) if isinstance(seen, dict) else None
                same_servers = isinstance(before, dict) and before.get("since") == since
                new = count - before.get("count", 0) if same_servers else count
                if new:
                    seen = seen if isinstance(seen, dict) else {}
                    seen[color] = {"since": since, "count": count}
                    atomic_write_json(self.failovers_path, seen)
                return max(0, new)
        except OSError as exc:
            raise ControllerError(f"{self.failovers_path}: cannot record failovers ({exc.strerror})") from exc

    # -- history ------------------------------------------------------------------------
    def append(self, event: Event) -> Event:
        """Add ``event`` to the history log; return it."""
        self._append_line(event.to_json())
        return event

    def _append_line(self, entry: dict) -> None:
        line = (json.dumps(entry, sort_keys=True) + "\n").encode()
        try:
            make_private_dir(self.run_dir)
            if self.history_path.is_file() and self.history_path.stat().st_size + len(line) > self.history_max_bytes:
                self._rotate()
            fd = os.open(self.history_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    line = b"\n" + line  # a crash cut the last line short: never glue onto it
                os.write(fd, line)  # one write of one line with O_APPEND: lines never interleave
            finally:
                os.close(fd)
        except OSError as exc:
            raise ControllerError(f"{self.history_path}: cannot write the history ({exc.strerror})") from exc

    def check_writable(self) -> None:
        """Fail now, before a command changes anything, if its outcome could not be recorded, or
        if other users could write the run directory (and plant what the stack trusts)."""
        check_run_dir(self.run_dir)
        for path in (self.history_path, self.path):
            try:
                if path.exists() and not path.is_file():
                    raise ControllerError(f"{path}: not a regular file, so nothing could be recorded; move it "
                                          "aside (nothing was changed)")
                if path.exists():  # opened to append, nothing written; a missing file needs the directory
                    os.close(os.open(path, os.O_WRONLY | os.O_APPEND))
            except OSError as exc:
                raise ControllerError(f"{path}: cannot be written ({exc.strerror}), so nothing could be recorded; "
                                      "nothing was changed") from exc
        if not os.access(self.run_dir, os.W_OK):
            raise ControllerError(f"{self.run_dir}: cannot be written, so nothing could be recorded; nothing was "
                                  "changed")

    def _rotated(self, n: int) -> Path:
        return self.history_path.with_name(f"{self.history_path.name}.{n}")

    def _rotate(self) -> None:
        self._rotated(self.history_keep).unlink(missing_ok=True)
        for n in range(self.history_keep - 1, 0, -1):
            if self._rotated(n).is_file():
                os.replace(self._rotated(n), self._rotated(n + 1))
        os.replace(self.history_path, self._rotated(1))

    def history(self, limit: int | None = None) -> list[dict]:
        """The recorded events, oldest first (the last ``limit`` when given); never writes."""
        try:  # a format-1 state kept its history inline; a broken state file has none to give
            inline = (self._raw() or {}).get("history") or []
        except ControllerError:
            inline = []
        entries: list[dict] = [e for e in inline if _is_event(e)] if isinstance(inline, list) else []
        for path in [self._rotated(n) for n in range(self.history_keep, 0, -1)] + [self.history_path]:
            try:
                lines = path.read_bytes().splitlines()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise ControllerError(f"{path}: cannot read the history ({exc.strerror})") from exc
            for line in lines:
                try:
                    entry = json.loads(line.decode("utf-8"))
                except (ValueError, RecursionError):
                    continue  # a line cut short by a crash mid-write (or not ours) is skipped, not fatal
                if _is_event(entry):
                    entries.append(entry)
        return entries[-limit:] if limit else entries

    # -- lock -----------------------------------------------------------------------------
    @contextmanager
    def locked(self, timeout: float) -> Iterator[None]:
        """Hold the controller lock; wait up to ``timeout`` s, then fail clearly."""
        try:
            make_private_dir(self.run_dir)
            handle = open(self.lock_path, "a+")  # noqa: SIM115 (closed by the `with` below)
        except OSError as exc:
            raise ControllerError(f"{self.lock_path}: cannot take the controller lock ({exc.strerror})") from exc
        deadline = self.clock.monotonic() + timeout
        with handle:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if self.clock.monotonic() >= deadline:
                        handle.seek(0)
                        holder = handle.read().strip() or "unknown"
                        raise ControllerError(
                            f"another bluegreen command is running (pid {holder}); waited {timeout:g}s"
                        ) from None
                    self.clock.sleep(0.05)
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            yield


def _from_format_1(data: dict) -> dict:
    """The first state format (history inline, ``stable`` a color) in today's shape."""
    versions = data.get("versions") or {}
    stable_color = data.get("stable")
    healthy = data.get("phase") == "healthy" and isinstance(versions, dict) and stable_color in versions
    return {"active": data.get("active"), "previous": data.get("previous"), "versions": versions,
            "promoted": [versions[stable_color]] if healthy else [], "rejected": [], "rollout": None}


def _from_format_2(data: dict) -> dict:
    """The second format (one ``stable`` version, rollouts without an id) in today's shape."""
    rollout = data.get("rollout")
    if isinstance(rollout, dict):
        rollout = {"id": "earlier", "pid": None, "pid_started": None, **rollout}
    stable = data.get("stable")
    return {**{k: v for k, v in data.items() if k != "stable"}, "promoted": [stable] if stable else [],
            "rejected": [], "rollout": rollout}


def _request(path: Path, rollout_id: str) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("rollout") == rollout_id else None


def _is_event(entry) -> bool:
    """A history line the commands can show: an object with an action and an outcome."""
    return (isinstance(entry, dict) and isinstance(entry.get("action"), str)
            and isinstance(entry.get("outcome"), str))

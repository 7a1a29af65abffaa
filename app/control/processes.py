"""Pid files and process checks for the local runtime and the local nginx."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def read_pid(path: Path) -> int | None:
    try:
        return int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None


def process_matches(pid: int | None, name: str) -> bool:
    """True when ``pid`` is alive and its command line mentions ``name`` (not a reused pid)."""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state != "Z" and name in cmdline


def live_pid(pid_file: Path, name: str) -> int | None:
    """The pid in ``pid_file`` if that process is alive and is ``name``; else None."""
    pid = read_pid(pid_file)
    return pid if process_matches(pid, name) else None


def wait_gone(pid: int, name: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process_matches(pid, name):
            return True
        time.sleep(0.05)
    return not process_matches(pid, name)


def terminate(pid: int, name: str, sig: int, timeout: float) -> None:
    """Send ``sig``; if the process is still there after ``timeout``, kill it."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    if not wait_gone(pid, name, timeout):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        wait_gone(pid, name, 5)


def tail(path: Path, lines: int = 20) -> list[str]:
    try:
        return Path(path).read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []

"""Pid files and process checks for the local runtime, the local nginx and rollouts.

Everything here reads ``/proc``: which process holds a port, which processes still have
files open under a run directory (an nginx worker orphaned by a killed master), whether a
pid still names the process it named when it was recorded (its start time).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from app.control.clock import Clock

REAL_TIME = Clock()


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


def wait_gone(pid: int, name: str, timeout: float, clock: Clock = REAL_TIME) -> bool:
    deadline = clock.monotonic() + timeout
    while clock.monotonic() < deadline:
        if not process_matches(pid, name):
            return True
        clock.sleep(0.05)
    return not process_matches(pid, name)


def terminate(pid: int, name: str, sig: int, timeout: float, clock: Clock = REAL_TIME) -> None:
    """Send ``sig``; if the process is still there after ``timeout``, kill it."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    if not wait_gone(pid, name, timeout, clock):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        wait_gone(pid, name, 5, clock)


def tail(path: Path, lines: int = 20) -> list[str]:
    try:
        return Path(path).read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def process_started(pid: int | None) -> int | None:
    """When ``pid`` started (clock ticks since boot), to tell it from a later process with its pid."""
    if not pid:
        return None
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def process_alive(pid: int | None, started: int | None) -> bool:
    """True while the process recorded as (``pid``, ``started``) runs (a reused pid does not count)."""
    if not pid:
        return False
    now = process_started(pid)
    if now is None:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z" and (started is None or now == started)


def _pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _open_links(pid: int) -> list[str]:
    links = []
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                links.append(os.readlink(fd))
            except OSError:
                continue
    except OSError:
        pass
    return links


def listeners(port: int) -> list[tuple[int, str]]:
    """(pid, command line) of each process with a TCP socket listening on ``port``."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return []
    return [(pid, command_line(pid)) for pid in _pids() if inodes & set(_open_links(pid))]


def started_with(matches) -> list[int]:
    """Pids of live (not zombie) processes whose command line ``matches`` accepts."""
    return [pid for pid in _pids() if pid != os.getpid() and process_matches(pid, "")
            and matches(command_line(pid))]


def holding_files_under(directory: Path, name: str) -> list[int]:
    """Pids of live ``name`` processes with a file open under ``directory``."""
    prefix = str(Path(directory).resolve()) + "/"
    return [pid for pid in _pids() if process_matches(pid, name)
            and any(link.startswith(prefix) for link in _open_links(pid))]


def parent_pid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def describe(pid: int) -> str:
    """"pid N (its command line)", for a one-line message."""
    return f"pid {pid} ({command_line(pid) or 'gone'})"

"""Runtimes: how a color's servers are started, stopped and observed.

One interface (``Runtime``), two implementations: ``LocalRuntime`` runs each server as a
gunicorn daemon on this machine; ``CommandRuntime`` runs the configured commands (docker
compose, kubectl, ...). Both observe a color the same way, over HTTP: ``/ready`` and
``/health`` on each of its probe addresses.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from app.control.clock import Clock
from app.control.commands import run_configured
from app.control.config import COLORS, ROOT, StackConfig
from app.control.permissions import make_private_dir
from app.control.probes import ServerProbe, accepts_connections, fetch_records, probe, serving_version
from app.control.processes import describe, listeners, live_pid, started_with, tail, terminate
from app.control.tokens import server_environment
from app.errors import ControllerError

GUNICORN_CONF = ROOT / "app" / "server" / "gunicorn_conf.py"
# How long an orphaned worker gets to finish its requests before it is killed.
ORPHAN_STOP_SECONDS = 5.0


class Runtime(Protocol):
    """Starts, stops and observes the servers of a color."""

    def start_color(self, color: str, version: str) -> None:
        """Start every server of ``color`` serving ``version``; return once all are ready."""

    def stop_color(self, color: str) -> None:
        """Stop every server of ``color`` gracefully."""

    def probe_color(self, color: str) -> list[ServerProbe]:
        """What each server of ``color`` answers right now."""

    def records(self, color: str, cursor: object | None) -> tuple[list[dict], object]:
        """The answers ``color``'s servers kept (``app/server/records.py``) since ``cursor``
        (None: all they have), and the cursor to read on from."""

    def leftovers(self) -> list[str]:
        """What still listens on the colors' addresses (after a stop: should be nothing)."""

    def cleanup(self) -> list[str]:
        """Stop what an earlier run of ours left holding a color's port (workers whose master
        was killed); say what was stopped."""


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


class LocalRuntime:
    """Each server of a color is a gunicorn daemon here, one per configured port.

    Each has its pid file, log and Prometheus directory under ``<run_dir>/<color>-<port>.*``.
    gunicorn's own ``--daemon`` and ``--pid`` do the daemonizing.
    """

    def __init__(self, config: StackConfig, clock: Clock):
        self.config = config
        self.clock = clock
        self.run_dir = config.run_dir
        self.gunicorn = config.gunicorn

    def _paths(self, color: str, address: str) -> dict:
        stem = f"{color}-{address.rsplit(':', 1)[1]}"
        return {
            "pid": self.run_dir / f"{stem}.pid",
            "log": self.run_dir / f"{stem}.log",
            "metrics": self.run_dir / "metrics" / stem,
        }

    def server_pids(self, color: str) -> dict[str, int | None]:
        return {address: live_pid(self._paths(color, address)["pid"], "gunicorn")
                for address in self.config.servers(color)}

    def probe_color(self, color: str) -> list[ServerProbe]:
        probes = []
        for address, pid in self.server_pids(color).items():
            answer = probe(address, pid)
            if pid is None and answer.health is not None:
                holders = [p for p, _ in listeners(_port(address))]
                orphans = self.orphans(color, address)
                if holders and set(holders) <= set(orphans):
                    answer = replace(answer, ready=False, health=None,
                                     error=f"only workers left by a killed gunicorn master hold it "
                                           f"(pid {', '.join(map(str, orphans))}); `bluegreen up` stops them")
                else:
                    answer = replace(answer, foreign=", ".join(describe(p) for p in holders) or "an unknown process")
            probes.append(answer)
        return probes

    def orphans(self, color: str, address: str) -> list[int]:
        """Pids with the command line this runtime gave the color's gunicorn there (its pid file
        and its address) while no live master is on record in that pid file: workers orphaned
        by a kill -9 of their master (they still listen until they notice, seconds later), or a
        gunicorn still booting, before its pid file, when the command starting it was killed."""
        pid_file = self._paths(color, address)["pid"]
        if live_pid(pid_file, "gunicorn"):
            return []
        return started_with(lambda cmdline: _started_as(cmdline, pid_file, address))

    def cleanup(self) -> list[str]:
        stopped = []
        for color in COLORS:
            for address in self.config.servers(color):
                stopped += self._stop_orphans(color, address)
        return stopped

    def _stop_orphans(self, color: str, address: str) -> list[str]:
        orphans = self.orphans(color, address)
        stopped = [describe(pid) for pid in orphans]
        for pid in orphans:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)  # a stopped worker would never act on the TERM
            # TERM: a gunicorn worker finishes the requests it has, then exits.
            terminate(pid, "gunicorn", signal.SIGTERM, ORPHAN_STOP_SECONDS, self.clock)
        return stopped

    def leftovers(self) -> list[str]:
        return [f"{address} ({describe(pid)})" for color in COLORS for address in self.config.servers(color)
                for pid, _ in listeners(_port(address))]

    def records(self, color: str, cursor: dict | None) -> tuple[list[dict], dict]:
        """Read straight from the files each worker appends to, beside the color's metrics: a
        color that is frozen or dead still gives what it wrote. The cursor is each file's
        offset after its last whole line."""
        offsets = dict(cursor or {})
        found: list[dict] = []
        for address in self.config.servers(color):
            directory = self._paths(color, address)["metrics"] / "records"
            for path in sorted(directory.glob("records-*.jsonl")) if directory.is_dir() else []:
                found += read_lines(path, offsets)
        return found, offsets

    def start_color(self, color: str, version: str) -> None:
        try:
            make_private_dir(self.run_dir)
        except OSError as exc:
            raise ControllerError(f"{self.run_dir}: cannot create the run directory ({exc.strerror})") from exc
        started = [(address, self._start_server(color, version, address)) for address in self.config.servers(color)]
        for address, paths in started:
            self._wait_ready(color, version, address, paths)

    def _start_server(self, color: str, version: str, address: str) -> dict:
        paths = self._paths(color, address)
        if live_pid(paths["pid"], "gunicorn"):
            raise ControllerError(f"{color} ({address}) is already running; stop it first")
        self._stop_orphans(color, address)
        holders = listeners(_port(address))
        if holders:
            raise ControllerError(f"{color} cannot start on {address}: the port is held by "
                                  f"{', '.join(describe(p) for p, _ in holders)}, which bluegreen did not start")
        try:
            paths["pid"].unlink(missing_ok=True)
            shutil.rmtree(paths["metrics"], ignore_errors=True)
            paths["metrics"].mkdir(parents=True)
            paths["log"].write_text("")
        except OSError as exc:
            raise ControllerError(f"{color} ({address}) cannot start: {exc.filename}: {exc.strerror}") from exc
        env = {k: v for k, v in os.environ.items() if k not in ("FEEDBACK_TOKEN", "FEEDBACK_TOKEN_FILE")}
        env.update(server_environment(self.run_dir))
        env.update(
            MODEL_VERSION=version, COLOR=color, MODELS_DIR=str(self.config.models_dir),
            PROMETHEUS_MULTIPROC_DIR=str(paths["metrics"]),
            WEB_CONCURRENCY=str(self.gunicorn.workers), GUNICORN_THREADS=str(self.gunicorn.threads),
            GUNICORN_KEEPALIVE=str(self.gunicorn.keepalive),
        )
        command = [
            sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), "app.wsgi:app",
            "--daemon", "--pid", str(paths["pid"]), "--bind", address,
            "--error-logfile", str(paths["log"]), "--capture-output",
        ]
        result = subprocess.run(command, env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise ControllerError(f"{color} ({address}) did not start: {result.stderr.strip()}")
        return paths

    def _wait_ready(self, color: str, version: str, address: str, paths: dict) -> None:
        deadline = self.clock.monotonic() + self.gunicorn.start_timeout
        seen_pid = False
        while self.clock.monotonic() < deadline:
            pid = live_pid(paths["pid"], "gunicorn")
            if pid:
                seen_pid = True
                state = probe(address, pid, timeout=1.0)
                if state.ready and state.health and state.health.get("version") == version:
                    return
            elif seen_pid or _exited_early(paths["log"]):
                break
            self.clock.sleep(0.1)
        self.stop_server(color, address)
        reason = _failure_reason(paths["log"]) or f"not ready within {self.gunicorn.start_timeout:g}s"
        raise ControllerError(f"{color} ({address}) did not start: {reason}")

    def stop_server(self, color: str, address: str) -> None:
        paths = self._paths(color, address)
        pid = live_pid(paths["pid"], "gunicorn")
        if pid:
            # TERM is gunicorn's graceful stop: in-flight requests finish first.
            terminate(pid, "gunicorn", signal.SIGTERM, self.gunicorn.stop_timeout, self.clock)
        paths["pid"].unlink(missing_ok=True)

    def stop_color(self, color: str) -> None:
        for address in self.config.servers(color):
            self.stop_server(color, address)


def _started_as(cmdline: str, pid_file: Path, address: str) -> bool:
    """Whether ``cmdline`` is the gunicorn command line ``_start_server`` writes for this pid
    file and address (its workers share it)."""
    padded = f" {cmdline} "
    return "gunicorn" in cmdline and f" --pid {pid_file} " in padded and f" --bind {address} " in padded


def read_lines(path: Path, offsets: dict) -> list[dict]:
    """The JSON objects on whole lines of ``path`` after ``offsets[path]``; moves the offset on."""
    key = str(path)
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            start = offsets.get(key, 0) if offsets.get(key, 0) <= size else 0  # cut short: a new file
            handle.seek(start)
            data = handle.read(size - start)
    except OSError:
        return []
    end = data.rfind(b"\n") + 1  # a line being written now is read next time
    offsets[key] = start + end
    records = []
    for line in data[:end].splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def _exited_early(log: Path) -> bool:
    return any("refusing to serve" in line or "Shutting down" in line for line in tail(log, 50))


def _failure_reason(log: Path) -> str:
    lines = tail(log, 50)
    for line in lines:
        if "refusing to serve:" in line:
            return line.split("refusing to serve:", 1)[1].strip()
    errors = [line for line in lines if "[ERROR]" in line or "Error" in line]
    return (errors or [""])[-1].strip()


class CommandRuntime:
    """Colors started and stopped by configured commands, observed on their probe addresses."""

    def __init__(self, config: StackConfig, runner, clock: Clock):
        self.config = config
        self.clock = clock
        self.commands = config.runtime.commands
        self.runner = runner
        self.start_timeout = config.gunicorn.start_timeout

    def probe_color(self, color: str) -> list[ServerProbe]:
        return [probe(address) for address in self.config.probe_addresses(color)]

    def start_color(self, color: str, version: str) -> None:
        run_configured(self.runner, self.commands, "start_color", color=color, version=version)
        deadline = self.clock.monotonic() + self.start_timeout
        while self.clock.monotonic() < deadline:
            probes = self.probe_color(color)
            if all(p.ready and (p.health or {}).get("version") == version for p in probes):
                return
            self.clock.sleep(0.2)
        raise ControllerError(f"{color} did not become ready with {version} within {self.start_timeout:g}s")

    def stop_color(self, color: str) -> None:
        run_configured(self.runner, self.commands, "stop_color", color=color, version="")

    def records(self, color: str, cursor: float | None) -> tuple[list[dict], float]:
        """Over HTTP (``GET /records?since=``) from each probe address; the cursor is a time.
        A server that cannot give its records gives none this time."""
        since = cursor or 0.0
        found: list[dict] = []
        for address in self.config.probe_addresses(color):
            found += fetch_records(address, since)
        latest = max((r["t"] for r in found if isinstance(r.get("t"), (int, float))), default=since)
        return found, max(since, latest + 0.0005)

    def cleanup(self) -> list[str]:
        return []  # the platform restarts its own processes

    def leftovers(self) -> list[str]:
        # A model server still answering, not a port that accepts: a kubectl port-forward
        # or an ingress keeps listening after the colors were scaled to zero.
        left = []
        for color in COLORS:
            for address in self.config.probe_addresses(color):
                if accepts_connections(address):
                    version = serving_version(address)
                    if version:
                        left.append(f"{address} (a {color} server answering {version})")
        return left

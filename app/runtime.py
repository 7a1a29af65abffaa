"""The local process runtime: each color's servers are gunicorn daemons on loopback.

One gunicorn (with its workers) per configured port of a color; each has its pid file,
log and Prometheus directory under ``<run_dir>/<color>-<port>.*``. gunicorn's own
``--daemon`` and ``--pid`` do the daemonizing; this module starts, checks and stops them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from app.errors import ControllerError
from app.processes import live_pid, tail, terminate
from app.stack_config import StackConfig

GUNICORN_CONF = Path(__file__).resolve().parent / "gunicorn_conf.py"


@dataclass
class ServerProbe:
    """What one server of a color answers right now."""

    address: str
    pid: int | None
    ready: bool
    health: dict | None
    error: str = ""

    def as_dict(self) -> dict:
        return {"address": self.address, "pid": self.pid, "ready": self.ready,
                "health": self.health, "error": self.error}


def probe(address: str, pid: int | None = None, timeout: float = 2.0) -> ServerProbe:
    """Ask one server for /ready and /health."""
    base = f"http://{address}"
    try:
        ready = requests.get(base + "/ready", timeout=timeout).status_code == 200
        health = requests.get(base + "/health", timeout=timeout).json()
        return ServerProbe(address, pid, ready, health)
    except (requests.RequestException, ValueError) as exc:
        return ServerProbe(address, pid, False, None, f"{type(exc).__name__}")


class LocalRuntime:
    """Starts and stops colors as gunicorn daemons on this machine."""

    def __init__(self, config: StackConfig):
        self.config = config
        self.run_dir = config.run_dir
        self.gunicorn = config.section("gunicorn")

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
        return [probe(address, pid) for address, pid in self.server_pids(color).items()]

    def start_color(self, color: str, version: str) -> None:
        """Start every server of ``color`` serving ``version`` and wait until all are ready."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        started = [(address, self._start_server(color, version, address)) for address in self.config.servers(color)]
        for address, paths in started:
            self._wait_ready(color, version, address, paths)

    def _start_server(self, color: str, version: str, address: str) -> dict:
        paths = self._paths(color, address)
        if live_pid(paths["pid"], "gunicorn"):
            raise ControllerError(f"{color} ({address}) is already running; stop it first")
        paths["pid"].unlink(missing_ok=True)
        shutil.rmtree(paths["metrics"], ignore_errors=True)
        paths["metrics"].mkdir(parents=True)
        paths["log"].write_text("")
        env = dict(os.environ)
        env.update(
            MODEL_VERSION=version, COLOR=color, MODELS_DIR=str(self.config.models_dir),
            PROMETHEUS_MULTIPROC_DIR=str(paths["metrics"]),
            WEB_CONCURRENCY=str(self.gunicorn["workers"]), GUNICORN_THREADS=str(self.gunicorn["threads"]),
        )
        command = [
            sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), "app.wsgi:app",
            "--daemon", "--pid", str(paths["pid"]), "--bind", address,
            "--error-logfile", str(paths["log"]), "--capture-output",
        ]
        result = subprocess.run(command, env=env, cwd=str(GUNICORN_CONF.parent.parent),
                                capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise ControllerError(f"{color} ({address}) did not start: {result.stderr.strip()}")
        return paths

    def _wait_ready(self, color: str, version: str, address: str, paths: dict) -> None:
        deadline = time.monotonic() + float(self.gunicorn["start_timeout"])
        seen_pid = False
        while time.monotonic() < deadline:
            pid = live_pid(paths["pid"], "gunicorn")
            if pid:
                seen_pid = True
                state = probe(address, pid, timeout=1.0)
                if state.ready and state.health and state.health.get("version") == version:
                    return
            elif seen_pid or _exited_early(paths["log"]):
                break
            time.sleep(0.1)
        self.stop_server(color, address)
        reason = _failure_reason(paths["log"]) or f"not ready within {self.gunicorn['start_timeout']}s"
        raise ControllerError(f"{color} ({address}) did not start: {reason}")

    def stop_server(self, color: str, address: str) -> None:
        paths = self._paths(color, address)
        pid = live_pid(paths["pid"], "gunicorn")
        if pid:
            # TERM is gunicorn's graceful stop: in-flight requests finish first.
            terminate(pid, "gunicorn", signal.SIGTERM, float(self.gunicorn["stop_timeout"]))
        paths["pid"].unlink(missing_ok=True)

    def stop_color(self, color: str) -> None:
        for address in self.config.servers(color):
            self.stop_server(color, address)


def _exited_early(log: Path) -> bool:
    return any("refusing to serve" in line or "Shutting down" in line for line in tail(log, 50))


def _failure_reason(log: Path) -> str:
    lines = tail(log, 50)
    for line in lines:
        if "refusing to serve:" in line:
            return line.split("refusing to serve:", 1)[1].strip()
    errors = [line for line in lines if "[ERROR]" in line or "Error" in line]
    return (errors or [""])[-1].strip()

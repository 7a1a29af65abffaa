"""Helpers for tests that start real processes on loopback."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from utils.local_stack import ROOT, ClientThreads, LocalStack, free_ports, pids_matching  # noqa: F401 (re-exported)

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    return free_ports(1)[0]


def wait_until(check, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    """Call ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # the process may not be up yet
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_error})")


def http_ok(url: str) -> bool:
    return requests.get(url, timeout=2).status_code == 200


class Gunicorn:
    """One color under real gunicorn in the foreground, stopped by ``stop``."""

    def __init__(self, models_dir, version="v1.0.0", color="blue", workers=2, metrics_dir=None, extra_env=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.metrics_dir = Path(metrics_dir) if metrics_dir else None
        env = dict(os.environ)
        env.update(
            MODEL_VERSION=version, COLOR=color, MODELS_DIR=str(models_dir),
            BIND=f"127.0.0.1:{self.port}", WEB_CONCURRENCY=str(workers),
        )
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        if metrics_dir:
            env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        env.update(extra_env or {})
        self.process = subprocess.Popen(
            [str(VENV_BIN / "gunicorn"), "-c", "app/server/gunicorn_conf.py", "app.wsgi:app"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )

    def wait_ready(self, timeout: float = 30.0):
        wait_until(lambda: self.process.poll() is None and http_ok(self.url + "/ready"),
                   timeout, what=f"gunicorn on {self.url}")
        return self

    def worker_pids(self) -> set[int]:
        """The pids of gunicorn's live workers: the children of its master, from /proc."""
        workers = set()
        for entry in Path("/proc").iterdir():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
            except (OSError, ValueError):
                continue  # not a process, or one that just ended
            if entry.name.isdigit() and int(fields[1]) == self.process.pid and fields[0] != "Z":
                workers.add(int(entry.name))
        return workers

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.stdout.read() if self.process.stdout else ""


class Stack(LocalStack):
    """A whole local stack (nginx + both colors) driven through the real `bluegreen` CLI."""

    def front_color(self) -> str:
        return requests.get(self.front + "/health", timeout=5).headers["X-Color"]

    def kill_color(self, color: str, sig: int = signal.SIGKILL) -> list[int]:
        """Send ``sig`` to every process of the color (gunicorn's master and workers). One
        that has ended meanwhile is no error: a worker leaves by itself once its master is
        gone, sometimes before its own turn comes."""
        pids = self.gunicorn_pids(color)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        return pids


class Traffic(ClientThreads):
    """Several keep-alive clients posting predictions until stopped; counts every outcome
    and keeps the slowest request's time."""

    def failures_after(self, moment: float) -> list[str]:
        """Failures seen later than ``moment`` (a time.monotonic() value)."""
        return [f for f, t in zip(self.failures, self.failure_times) if t > moment]

    def __init__(self, url: str, clients: int = 6, body=None, timeout: float = 10):
        self.url = url + "/predict"
        self.body = body or {"x": [5.9, 3.0, 5.1, 1.8]}
        self.timeout = timeout
        self.sent = 0
        self.slowest = 0.0
        self.failures: list[str] = []
        self.failure_times: list[float] = []  # time.monotonic() when each failure was seen
        self.versions: dict[str, int] = {}
        super().__init__(clients)

    def _client(self):
        with requests.Session() as session:
            while not self.stop_event.is_set():
                started, failure, version = time.monotonic(), None, None
                try:
                    response = session.post(self.url, json=self.body, timeout=self.timeout)
                    body = response.json()
                    if response.status_code != 200 or "prediction" not in body:
                        failure = f"HTTP {response.status_code}: {body}"
                    version = body.get("version")
                except Exception as exc:  # every kind of failure is counted, not raised
                    failure = f"{type(exc).__name__}: {exc}"
                with self.lock:
                    self.slowest = max(self.slowest, time.monotonic() - started)
                    self.sent += 1
                    if failure:
                        self.failures.append(failure)
                        self.failure_times.append(time.monotonic())
                    if version:
                        self.versions[version] = self.versions.get(version, 0) + 1

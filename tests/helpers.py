"""Helpers for tests that start real processes on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
            [str(VENV_BIN / "gunicorn"), "-c", "app/gunicorn_conf.py", "app.wsgi:app"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )

    def wait_ready(self, timeout: float = 30.0):
        wait_until(lambda: self.process.poll() is None and http_ok(self.url + "/ready"),
                   timeout, what=f"gunicorn on {self.url}")
        return self

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.stdout.read() if self.process.stdout else ""

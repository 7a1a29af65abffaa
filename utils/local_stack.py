"""A private local stack driven through the `bluegreen` CLI.

Free loopback ports, its own run directory and config file, so runs never collide. Shared
by the switch-under-load scenario, the benchmarks and the test suites, with the base of
their background clients (``ClientThreads``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


class CommandFailed(Exception):
    """A `bluegreen` command exited non-zero."""


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports on 127.0.0.1 that nobody listens on right now, sorted."""
    ports: set[int] = set()
    while len(ports) < n:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            ports.add(sock.getsockname()[1])
    return sorted(ports)


def cli_env() -> dict:
    """This environment without overrides that would beat the stack's own config file."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith("BLUEGREEN_") and k != "PROMETHEUS_MULTIPROC_DIR"}


def pids_matching(text: str) -> list[int]:
    """Pids of live processes whose command line contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


class ClientThreads:
    """Client threads running ``_client`` until stopped: ``with`` starts them; leaving the
    block sets ``stop_event`` and joins them. Subclasses count what their clients see
    under ``lock``; ``threads`` may be extended before the start."""

    join_timeout = 15.0

    def __init__(self, count: int):
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(count)]

    def _client(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        for thread in self.threads:
            thread.join(self.join_timeout)


class LocalStack:
    """nginx and both colors on free loopback ports, configured by ``<directory>/bluegreen.toml``."""

    def __init__(self, directory: Path, models_dir: Path = ROOT / "models", extra_toml: str = ""):
        self.port, self.preview_port, self.blue_port, self.green_port = free_ports(4)
        self.dir = Path(directory)
        self.run_dir = self.dir / "run"
        self.config = self.dir / "bluegreen.toml"
        self.config.write_text(
            f'run_dir = "run"\nmodels_dir = "{models_dir}"\n\n'
            f"[nginx]\nport = {self.port}\npreview_port = {self.preview_port}\n\n"
            f"[colors.blue]\nports = [{self.blue_port}]\n\n[colors.green]\nports = [{self.green_port}]\n\n"
            + extra_toml
        )
        self.front = f"http://127.0.0.1:{self.port}"
        self.preview = f"http://127.0.0.1:{self.preview_port}"

    def _command(self, args) -> list[str]:
        return [str(BIN / "bluegreen"), "--config", str(self.config), *args]

    def cli(self, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
        result = subprocess.run(self._command(args), cwd=self.dir, env=cli_env(), capture_output=True,
                                text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise CommandFailed(f"bluegreen {' '.join(args)} exited {result.returncode}:\n"
                                f"{result.stdout}\n{result.stderr}")
        return result

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(self._command(args), cwd=self.dir, env=cli_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def status(self) -> dict:
        return json.loads(self.cli("status", "--json").stdout)

    def history(self) -> list:
        return json.loads(self.cli("history", "--json").stdout)

    def feedback_token(self) -> str:
        """The bearer token the colors require on POST /feedback (`bluegreen up` made it)."""
        return (self.run_dir / "feedback.token").read_text().strip()

    def feedback_auth(self) -> dict:
        """The Authorization header for POST /feedback."""
        return {"Authorization": f"Bearer {self.feedback_token()}"}

    def gunicorn_pids(self, color: str) -> list[int]:
        """The color's gunicorn master and workers (they share its command line)."""
        port = self.blue_port if color == "blue" else self.green_port
        return pids_matching(f"127.0.0.1:{port}")

    def down(self) -> None:
        self.cli("down", check=False)

    def __enter__(self):
        """``with LocalStack(...) as stack``: the stack is up inside the block, down after it."""
        try:
            self.cli("up")
        except BaseException:
            self.down()  # whatever half of it started
            raise
        return self

    def __exit__(self, *exc):
        self.down()

"""nginx side effects around the pure renderer: write, test, start, reload, stop, route.

nginx runs unprivileged under ``<run_dir>/nginx`` (its own prefix, pid file, logs and
temp paths). Every config change goes through ``install``: render, write to a new file,
``nginx -t`` it, replace the live file atomically, reload. On any failure the live
config is untouched and nginx keeps serving it.
"""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
from pathlib import Path

from app.errors import ControllerError
from app.fsutil import atomic_write_bytes
from app.nginx_render import render_config, render_context
from app.processes import live_pid, tail, terminate, wait_gone
from app.stack_config import COLORS, StackConfig

TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


class Nginx:
    """The front door of one stack."""

    def __init__(self, config: StackConfig):
        self.config = config
        self.dir = config.run_dir / "nginx"
        self.conf = self.dir / "nginx.conf"
        self.pid_file = self.dir / "nginx.pid"
        self.error_log = self.dir / "error.log"
        # The marker's existence routes the front door to green (see the template).
        self.marker = self.dir / "active-green"

    # -- config ---------------------------------------------------------------------
    def render(self) -> str:
        template = Path(self.config.nginx["template"])
        try:
            text = template.read_text()
        except OSError as exc:
            raise ControllerError(f"nginx template {template}: {exc.strerror}") from None
        proxy_dir = self.config.nginx["proxy_dir"] or str(self.dir)
        marker = f"{proxy_dir}/{self.marker.name}"
        context = render_context(self.config, proxy_dir, marker, self.worker_user())
        return render_config(text, context)

    def worker_user(self) -> str:
        """The ``user`` directive's value: only needed when nginx starts as root.

        A root master runs its workers as nobody, who may not even reach a run directory
        under a private home (and then cannot stat the route marker); the workers run as
        the run directory's owner instead. Unprivileged, nginx ignores ``user`` anyway.
        """
        if os.geteuid() != 0:
            return ""
        self.dir.mkdir(parents=True, exist_ok=True)
        info = self.dir.stat()
        return f"{pwd.getpwuid(info.st_uid).pw_name} {grp.getgrgid(info.st_gid).gr_name}"

    def _prepare_dirs(self) -> None:
        for name in TEMP_DIRS:
            (self.dir / "tmp" / name).mkdir(parents=True, exist_ok=True)

    def _run(self, *args: str, conf: Path | None = None) -> subprocess.CompletedProcess:
        command = [self.config.nginx_binary(), "-p", str(self.dir), "-c", str(conf or self.conf),
                   "-e", str(self.error_log), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=30)

    def test(self, conf: Path) -> None:
        """``nginx -t`` on ``conf``; raise with nginx's own complaint when it fails."""
        result = self._run("-t", conf=conf)
        if result.returncode != 0:
            complaint = [line for line in result.stderr.splitlines() if "[emerg]" in line or "[alert]" in line]
            reason = (complaint or result.stderr.strip().splitlines() or ["unknown error"])[0]
            raise ControllerError(f"nginx rejected the new config: {reason}")

    def ensure_running(self, changed: bool) -> str:
        """Start nginx, or reload it when its config changed; say which."""
        if self.pid():
            if changed:
                self.reload()
                return "reloaded"
            return "running"
        self.start()
        return "started"

    def install(self) -> bool:
        """Render, test and put the config in place; return True when it changed."""
        self._prepare_dirs()
        text = self.render()
        if self.conf.is_file() and self.conf.read_text() == text:
            return False
        candidate = self.dir / "nginx.conf.new"
        atomic_write_bytes(candidate, text.encode())
        try:
            self.test(candidate)
            os.replace(candidate, self.conf)
        finally:
            candidate.unlink(missing_ok=True)
        return True

    # -- process --------------------------------------------------------------------
    def pid(self) -> int | None:
        return live_pid(self.pid_file, "nginx")

    def down_reason(self) -> str:
        """Why the front door cannot take a switch right now ("" when it can)."""
        return "" if self.pid() else "nginx is not running (run `bluegreen up`)"

    def start(self) -> None:
        if self.pid():
            return
        self.pid_file.unlink(missing_ok=True)
        result = self._run()
        if result.returncode != 0 or not self.pid():
            lines = result.stderr.strip().splitlines() or tail(self.error_log, 1) or ["no output"]
            raise ControllerError(f"nginx did not start: {lines[-1]}")

    def reload(self) -> None:
        """Graceful reload: nginx re-tests the config and keeps the old one if it fails."""
        if not self.pid():
            raise ControllerError("nginx is not running: run `bluegreen up`")
        result = self._run("-s", "reload")
        if result.returncode != 0:
            raise ControllerError(f"nginx reload failed: {result.stderr.strip()}")

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful stop (QUIT: finish in-flight requests), then make sure it is gone."""
        pid = self.pid()
        if not pid:
            self.pid_file.unlink(missing_ok=True)
            return
        self._run("-s", "quit")
        if not wait_gone(pid, "nginx", timeout):
            terminate(pid, "nginx", 15, 5)
        self.pid_file.unlink(missing_ok=True)

    # -- routing --------------------------------------------------------------------
    def routed_color(self) -> str:
        return "green" if self.marker.exists() else "blue"

    def route(self, color: str) -> None:
        """Point the front door at ``color`` (atomic: create by rename, or unlink)."""
        if color not in COLORS:
            raise ControllerError(f"unknown color {color!r}")
        if color == "green":
            atomic_write_bytes(self.marker, b"green\n")
        else:
            self.marker.unlink(missing_ok=True)

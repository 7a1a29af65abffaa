"""Proxies: the front door's side effects around the pure renderer.

One interface (``Proxy``), two implementations: ``LocalNginx`` runs nginx here,
unprivileged, under ``<run_dir>/nginx`` (its own prefix, pid file, logs and temp paths);
``CommandProxy`` drives an nginx container or a Kubernetes Service through configured
commands. Both keep the rendered config in ``<run_dir>/nginx`` (``NginxFiles``), install
a change the same way (render, write ``nginx.conf.new``, test it, replace the live file
atomically; on failure the live config is untouched) and, unless a route command is
configured, route with the same marker file (docs/adr/0003-switching.md).
"""

from __future__ import annotations

import grp
import os
import pwd
import signal
import stat
import subprocess
import time
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from app.artifacts.fsutil import atomic_write_bytes
from app.control.clock import Clock
from app.control.commands import run_configured
from app.control.config import COLORS, StackConfig, other_color
from app.control.nginx_render import BUCKETS, render_config, render_context
from app.control.permissions import make_private_dir
from app.control.probes import accepts_connections, serving_version
from app.control.processes import (
    describe,
    holding_files_under,
    listeners,
    live_pid,
    parent_pid,
    tail,
    terminate,
    wait_gone,
)
from app.errors import ControllerError

TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
# The suffix of a marker that applies when no lease lives (see the template).
LAPSED = ".lapsed"


class Proxy(Protocol):
    """The front door: its config, its process, and which color it routes to."""

    def render(self) -> str:
        """The config text for the current configuration."""

    def apply(self, text: str) -> bool:
        """Test ``text`` and make it the live config file; False when it already was."""

    def reload(self) -> None:
        """Make the running proxy read the live config file."""

    def start(self) -> None:
        """Make sure the proxy runs (a running one is left alone)."""

    def stop(self) -> None:
        """Stop the proxy gracefully."""

    def route(self, color: str) -> None:
        """Send the front door to ``color`` (and the preview door to the other one)."""

    def routed_color(self) -> str:
        """The color the front door routes to right now (the other one when the routed color
        is on probation and no lease lives)."""

    def set_probation(self, color: str | None) -> None:
        """Put ``color`` on probation (a bake's new color): routed to, it keeps the front door
        only while a controller's lease lives. None: no color is on probation."""

    def on_probation(self) -> str | None:
        """The color on probation (whether a lease lives or not); None when none is."""

    def lease(self, until: float | None) -> None:
        """Keep the markers of a judged window (a canary's share, paired copies, a color on
        probation) in force until ``until`` (a Unix time); None: no longer (``lease.py``)."""

    def leased(self) -> bool:
        """Whether a controller's lease lives right now."""

    def split(self, color: str, percent: int, sticky: bool = False) -> None:
        """Send ``percent`` of the front door's /predict and /feedback to ``color`` while it is
        the idle one (0: none), by request id or, ``sticky``, by client; no reload."""

    def split_share(self) -> tuple[str, int]:
        """The idle color a canary sends requests to and its percentage (0 when none)."""

    def mirror(self, percent: int, leased: bool = False) -> None:
        """Mirror ``percent`` of the front door's /predict to the other color (0: stop); no
        reload. ``leased`` copies (a judged window's pairs) stop when the lease lapses."""

    def mirrored(self) -> int:
        """The percentage of /predict mirrored to the idle color right now."""

    def buckets(self) -> bool:
        """Whether the front door has per-request buckets (a canary, a shadow, paired answers)."""

    def canary_mark(self) -> int | None:
        """Where nginx's log of canary requests ends now (None when the proxy keeps no such
        log here); ``canary_requests`` counts from such a mark."""

    def canary_requests(self, color: str, mark: int) -> int | None:
        """Front-door requests a canary sent to ``color`` since ``mark``, as nginx logged
        them; None when the proxy keeps no such log here."""

    def down_reason(self) -> str:
        """Why the proxy cannot take a switch right now; "" when it can (or cannot be observed)."""

    def pid(self) -> int | None:
        """The proxy's process id, when it runs here."""

    def live_config(self) -> str | None:
        """The live config file's text (None before the first ``apply``)."""

    def serves_generations(self) -> bool:
        """Whether the front door reports the config generation it serves (nginx does)."""

    def complaint(self) -> str:
        """The proxy's latest error line about its config, if it keeps one ("" otherwise)."""

    def cleanup(self) -> list[str]:
        """Stop leftovers of an earlier proxy that would keep its ports; say what was stopped."""

    def leftovers(self) -> list[str]:
        """What still listens on the doors (after a stop: should be nothing)."""


class NginxFiles:
    """``<run_dir>/nginx``: the live config, the candidate, and the route marker.

    ``mode`` is the directory's: 0700 when nginx runs here as the directory's owner (the relay
    socket in it, which nginx makes 0666, is then out of other users' reach), 0755 for an
    nginx container whose workers run as another user."""

    def __init__(self, config: StackConfig, mode: int = 0o755):
        self.config = config
        self.mode = mode
        self.dir = config.run_dir / "nginx"
        self.conf = self.dir / "nginx.conf"
        self.candidate = self.dir / "nginx.conf.new"
        # The marker's existence routes the front door to green (see the template).
        self.marker = self.dir / "active-green"
        # Per-bucket markers: a canary's share of the idle color, and a shadow's sample.
        self.canary_dir = self.dir / "canary"
        self.shadow_dir = self.dir / "shadow"
        # The controller's lease (a file per second) and the color on probation (lease.py).
        self.lease_dir = self.dir / "lease"
        self.probation_dir = self.dir / "probation"
        # Where the proxy itself sees this directory (a container mounts it elsewhere).
        self.seen_as = config.nginx.proxy_dir or str(self.dir)

    def render(self, worker_user: str = "") -> str:
        template = Path(self.config.nginx.template)
        try:
            text = template.read_text()
        except OSError as exc:
            raise ControllerError(f"nginx template {template}: {exc.strerror}") from exc
        context = render_context(self.config, self.seen_as, f"{self.seen_as}/{self.marker.name}", worker_user)
        return render_config(text, context)

    def live_config(self) -> str | None:
        try:
            return self.conf.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ControllerError(f"{self.conf}: {exc.strerror}") from exc

    def differs(self, text: str) -> bool:
        try:
            return self.conf.read_text() != text
        except FileNotFoundError:
            return True
        except OSError as exc:
            raise ControllerError(f"{self.conf}: {exc.strerror}") from exc

    def prepare(self) -> None:
        """The directory, with its mode (an existing one is narrowed to it)."""
        try:
            make_private_dir(self.config.run_dir)
            self.dir.mkdir(mode=self.mode, exist_ok=True)
            if stat.S_IMODE(self.dir.stat().st_mode) & ~self.mode:
                os.chmod(self.dir, self.mode)
        except OSError as exc:
            raise ControllerError(f"{self.dir}: cannot prepare nginx's directory ({exc.strerror})") from exc

    def install(self, text: str, test) -> bool:
        """Write the candidate, ``test(candidate)``, then replace the live file; False if unchanged."""
        self.prepare()
        if not self.differs(text):
            return False
        try:
            for name in TEMP_DIRS:
                (self.dir / "tmp" / name).mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.candidate, text.encode())
        except OSError as exc:
            raise ControllerError(f"{self.dir}: cannot write the nginx config ({exc.strerror})") from exc
        try:
            test(self.candidate)
            os.replace(self.candidate, self.conf)
        finally:
            self.candidate.unlink(missing_ok=True)
        return True

    def marked_color(self) -> str:
        """The color the route marker names."""
        return "green" if self.marker.exists() else "blue"

    def routed_color(self) -> str:
        """What nginx serves: the marked color, unless it is on probation and no lease lives."""
        marked = self.marked_color()
        if (self.probation_dir / f"{marked}{LAPSED}").exists() and not self.leased():
            return other_color(marked)
        return marked

    def on_probation(self) -> str | None:
        return next((color for color in COLORS if (self.probation_dir / f"{color}{LAPSED}").exists()), None)

    def set_probation(self, color: str | None) -> None:
        """``probation/<color>.lapsed``: nginx leaves ``color`` when no lease lives (the template)."""
        if color is not None and color not in COLORS:
            raise ControllerError(f"unknown color {color!r}")
        self._set_markers(self.probation_dir, {f"{color}{LAPSED}"} if color else set(),
                          what="put the color on probation" if color else "end the probation")

    def leased(self) -> bool:
        """The file of the current second exists (what nginx tests on each request)."""
        return (self.lease_dir / str(int(time.time()))).exists()

    def lease(self, until: float | None) -> None:
        """A file for each second from the last one until ``until``; None: none."""
        now = int(time.time())
        self._set_markers(self.lease_dir, set() if until is None else {str(s) for s in range(now - 1, int(until) + 1)},
                          what="renew the lease")

    @staticmethod
    def _set_markers(directory: Path, wanted: set[str], what: str = "move the share") -> None:
        """Make exactly ``wanted`` exist in ``directory``: new ones first, then the rest go.

        A marker is an empty file, so creating or removing one is atomic by itself; the
        whole move is made durable by one fsync of the directory at the end, not one per
        marker. A share being raised or lowered never jumps past either end."""
        try:
            directory.mkdir(parents=True, exist_ok=True)
            present = {path.name for path in directory.iterdir()}
            for name in sorted(wanted - present):
                os.close(os.open(directory / name, os.O_WRONLY | os.O_CREAT, 0o644))
            for name in sorted(present - wanted):
                (directory / name).unlink(missing_ok=True)
            if wanted != present:
                handle = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(handle)
                finally:
                    os.close(handle)
        except OSError as exc:
            raise ControllerError(f"{directory}: cannot {what} ({exc.strerror})") from exc

    def split(self, color: str, percent: int, sticky: bool = False) -> None:
        """Bucket markers ``<color>-bNN`` for the first ``percent`` buckets (see the template)."""
        if color not in COLORS or not 0 <= percent <= 100:
            raise ControllerError(f"cannot send {percent}% to {color!r}")
        wanted = {f"{color}-{bucket}" for bucket in BUCKETS[:percent]}
        if sticky and percent:
            wanted.add("sticky")
        self._set_markers(self.canary_dir, wanted)

    def split_share(self) -> tuple[str, int]:
        idle = other_color(self.marked_color())
        try:
            names = {path.name for path in self.canary_dir.iterdir()}
        except FileNotFoundError:
            names = set()
        return idle, sum(f"{idle}-{bucket}" in names for bucket in BUCKETS)

    def canary_mark(self) -> int:
        """The size of ``canary.log`` (see the template). With no canary share live, nothing
        writes to it, so an earlier canary's lines are dropped first (their counts are in the
        history): the log never grows past one canary."""
        log = self.dir / "canary.log"
        try:
            if not self.split_share()[1] and log.stat().st_size:
                os.truncate(log, 0)  # nginx appends (O_APPEND): its next line starts at 0
            return log.stat().st_size
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise ControllerError(f"{log}: {exc.strerror}") from exc

    def canary_requests(self, color: str, mark: int) -> int:
        """Lines of ``canary.log`` for ``color`` after ``mark``, reading only what follows it."""
        log, wanted = self.dir / "canary.log", color.encode()
        try:
            with open(log, "rb") as handle:
                handle.seek(0 if mark > os.fstat(handle.fileno()).st_size else mark)  # truncated since
                return sum(1 for line in handle if line.split(b" ", 2)[1:2] == [wanted])
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise ControllerError(f"{log}: {exc.strerror}") from exc

    def mirror(self, percent: int, leased: bool = False) -> None:
        """Bucket markers ``bNN`` apply while a lease lives; a shadow's also exist as
        ``bNN.lapsed``, which apply when none does (see the template)."""
        if not 0 <= percent <= 100:
            raise ControllerError(f"cannot mirror {percent}%")
        wanted = set(BUCKETS[:percent])
        self._set_markers(self.shadow_dir, wanted if leased else wanted | {f"{b}{LAPSED}" for b in wanted})

    def mirrored(self) -> int:
        try:
            names = {path.name for path in self.shadow_dir.iterdir()}
        except FileNotFoundError:
            return 0
        return sum(bucket in names for bucket in BUCKETS)

    def route(self, color: str) -> None:
        """Point the front door at ``color`` (atomic: create by rename, or unlink)."""
        if color not in COLORS:
            raise ControllerError(f"unknown color {color!r}")
        try:
            if color == "green":
                atomic_write_bytes(self.marker, b"green\n")
            else:
                self.marker.unlink(missing_ok=True)
        except OSError as exc:
            raise ControllerError(f"{self.marker}: cannot move the route ({exc.strerror})") from exc


class LocalNginx:
    """nginx on this machine, started and signalled with its own prefix and pid file."""

    def __init__(self, config: StackConfig, clock: Clock):
        self.config = config
        self.clock = clock
        self.files = NginxFiles(config, mode=0o700)
        self.dir = self.files.dir
        self.pid_file = self.dir / "nginx.pid"
        self.error_log = self.dir / "error.log"

    def worker_user(self) -> str:
        """The ``user`` directive's value: only needed when nginx starts as root.

        A root master runs its workers as nobody, who may not even reach a run directory
        under a private home (and then cannot stat the route marker); the workers run as
        the run directory's owner instead. Unprivileged, nginx ignores ``user`` anyway.
        """
        if os.geteuid() != 0:
            return ""
        self.files.prepare()
        info = self.dir.stat()
        return f"{pwd.getpwuid(info.st_uid).pw_name} {grp.getgrgid(info.st_gid).gr_name}"

    def render(self) -> str:
        return self.files.render(self.worker_user())

    def _run(self, *args: str, conf: Path | None = None) -> subprocess.CompletedProcess:
        command = [self.config.nginx_binary(), "-p", str(self.dir), "-c", str(conf or self.files.conf),
                   "-e", str(self.error_log), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=30)

    def test(self, conf: Path) -> None:
        """``nginx -t`` on ``conf``; raise with nginx's own complaint when it fails."""
        result = self._run("-t", conf=conf)
        if result.returncode != 0:
            complaint = [line for line in result.stderr.splitlines() if "[emerg]" in line or "[alert]" in line]
            reason = (complaint or result.stderr.strip().splitlines() or ["unknown error"])[0]
            raise ControllerError(f"nginx rejected the new config: {reason}")

    def apply(self, text: str) -> bool:
        return self.files.install(text, self.test)

    def live_config(self) -> str | None:
        return self.files.live_config()

    def serves_generations(self) -> bool:
        return True

    def complaint(self) -> str:
        lines = [line for line in tail(self.error_log, 50) if "[emerg]" in line or "[alert]" in line]
        return lines[-1].split("] ", 2)[-1] if lines else ""

    def cleanup(self) -> list[str]:
        """nginx processes of this run directory that no running master owns (a master killed
        with -9 leaves its workers holding the ports): asked to quit, then killed."""
        master = self.pid()
        orphans = [pid for pid in holding_files_under(self.dir, "nginx")
                   if pid != master and (master is None or parent_pid(pid) != master)]
        stopped = [describe(pid) for pid in orphans]
        for pid in orphans:
            terminate(pid, "nginx", signal.SIGQUIT, 5, self.clock)
        return stopped

    def leftovers(self) -> list[str]:
        ports = (self.config.nginx.port, self.config.nginx.preview_port)
        return [f"port {port} ({describe(pid)})" for port in ports for pid, _ in listeners(port)]

    def pid(self) -> int | None:
        return live_pid(self.pid_file, "nginx")

    def down_reason(self) -> str:
        return "" if self.pid() else "nginx is not running (run `bluegreen up`)"

    def start(self) -> None:
        if self.pid():
            return
        self.pid_file.unlink(missing_ok=True)
        # The shadow relay's socket (see the template) outlives a master killed with -9, and
        # nginx cannot bind a socket file that exists; no nginx of this directory runs now.
        (self.dir / "shadow.sock").unlink(missing_ok=True)
        result = self._run()
        if result.returncode != 0 or not self.pid():
            lines = result.stderr.strip().splitlines() or tail(self.error_log, 1) or ["no output"]
            ports = (self.config.nginx.port, self.config.nginx.preview_port)
            held = [f"port {port} is held by {describe(pid)}" for port in ports for pid, _ in listeners(port)]
            raise ControllerError(f"nginx did not start: {lines[-1]}" + (f" ({'; '.join(held)})" if held else ""))

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
        if not wait_gone(pid, "nginx", timeout, self.clock):
            terminate(pid, "nginx", signal.SIGTERM, 5, self.clock)
        self.pid_file.unlink(missing_ok=True)

    def route(self, color: str) -> None:
        self.files.route(color)

    def routed_color(self) -> str:
        return self.files.routed_color()

    def set_probation(self, color: str | None) -> None:
        self.files.set_probation(color)

    def on_probation(self) -> str | None:
        return self.files.on_probation()

    def lease(self, until: float | None) -> None:
        self.files.lease(until)

    def leased(self) -> bool:
        return self.files.leased()

    def split(self, color: str, percent: int, sticky: bool = False) -> None:
        self.files.split(color, percent, sticky)

    def split_share(self) -> tuple[str, int]:
        return self.files.split_share()

    def mirror(self, percent: int, leased: bool = False) -> None:
        self.files.mirror(percent, leased)

    def mirrored(self) -> int:
        return self.files.mirrored()

    def buckets(self) -> bool:
        return True

    def canary_mark(self) -> int:
        return self.files.canary_mark()

    def canary_requests(self, color: str, mark: int) -> int:
        return self.files.canary_requests(color, mark)


class CommandProxy:
    """An nginx container or a Kubernetes Service, driven by the configured commands.

    Its process is not observable from here: ``down_reason`` is always "", and a switch
    is judged by what the front door answers (``switch.front_url``).
    """

    def __init__(self, config: StackConfig, runner):
        self.config = config
        self.files = NginxFiles(config)
        self.runner = runner
        self.commands = config.runtime.commands

    def _run(self, name: str, **values) -> str:
        return run_configured(self.runner, self.commands, name, **values)

    def render(self) -> str:
        return self.files.render()

    def test(self, conf: Path) -> None:
        if self.commands.proxy_test:
            try:
                self._run("proxy_test", conf=f"{self.files.seen_as}/{conf.name}")
            except ControllerError as exc:
                raise ControllerError(f"nginx rejected the new config: {exc}") from exc

    def apply(self, text: str) -> bool:
        return self.files.install(text, self.test)

    def live_config(self) -> str | None:
        return self.files.live_config()

    def serves_generations(self) -> bool:
        # An nginx container reads the rendered config; a route command means another proxy
        # (a Kubernetes Service), which has no generation to report.
        return not self.commands.route

    def complaint(self) -> str:
        return ""

    def cleanup(self) -> list[str]:
        return []

    def leftovers(self) -> list[str]:
        # A front door still answering with a model server, not one that only accepts: an
        # ingress or a port-forward keeps listening after the colors are gone.
        address = urlsplit(self.config.front_url()).netloc
        if ":" not in address or not accepts_connections(address):
            return []
        version = serving_version(address)
        return [f"{address} (answering {version})"] if version else []

    def pid(self) -> int | None:
        return None

    def down_reason(self) -> str:
        return ""

    def start(self) -> None:
        if self.commands.proxy_start:
            self._run("proxy_start")

    def reload(self) -> None:
        if self.commands.proxy_reload:
            self._run("proxy_reload")

    def stop(self) -> None:
        if self.commands.proxy_stop:
            self._run("proxy_stop")

    def route(self, color: str) -> None:
        if not self.commands.route:
            self.files.route(color)  # the marker file, in the directory the proxy mounts
            return
        if color not in COLORS:
            raise ControllerError(f"unknown color {color!r}")
        self._run("route", color=color, other=other_color(color))

    def routed_color(self) -> str:
        if not self.commands.routed:
            return self.files.routed_color()
        color = self._run("routed").strip()
        if color not in COLORS:
            raise ControllerError(f"runtime.commands.routed printed {color!r}, not blue or green")
        return color

    # Another proxy (a route command: a Kubernetes Service) has no lease: a bake's color is not
    # on probation there, and only the next command's reconcile ends a rollout whose controller died.
    def set_probation(self, color: str | None) -> None:
        if not self.commands.route:
            self.files.set_probation(color)

    def on_probation(self) -> str | None:
        return None if self.commands.route else self.files.on_probation()

    def lease(self, until: float | None) -> None:
        if not self.commands.route:
            self.files.lease(until)

    def leased(self) -> bool:
        return False if self.commands.route else self.files.leased()

    def _markers(self, what: str) -> NginxFiles:
        # The markers are the nginx container's; another proxy (a route command) has none.
        if self.commands.route:
            raise ControllerError(f"{what} needs the nginx front door: runtime.commands.route routes through "
                                  "another proxy, which has no per-request buckets")
        return self.files

    def split(self, color: str, percent: int, sticky: bool = False) -> None:
        if percent or not self.commands.route:
            self._markers("a canary").split(color, percent, sticky)

    def split_share(self) -> tuple[str, int]:
        if self.commands.route:
            return other_color(self.routed_color()), 0
        return self.files.split_share()

    def mirror(self, percent: int, leased: bool = False) -> None:
        if percent or not self.commands.route:
            self._markers("a shadow").mirror(percent, leased)

    def mirrored(self) -> int:
        return 0 if self.commands.route else self.files.mirrored()

    def buckets(self) -> bool:
        return not self.commands.route

    def canary_mark(self) -> int | None:
        return None if self.commands.route else self.files.canary_mark()

    def canary_requests(self, color: str, mark: int) -> int | None:
        return None if self.commands.route else self.files.canary_requests(color, mark)

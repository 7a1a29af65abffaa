"""A runtime made of configured commands: docker compose, kubectl, or anything else.

The controller's steps stay the same (gates, verification through the front door, state,
history); only the side effects change: starting and stopping a color, testing and
reloading the proxy, and moving the route are the commands in ``[runtime.commands]``,
with ``$color``, ``$other`` (the other color), ``$version`` and ``$conf`` substituted. A command that fails stops the
step with its output, and a failed route change leaves the previous color active.
"""

from __future__ import annotations

import os
import string
import subprocess
import time

from app.errors import ControllerError
from app.nginx_ctl import Nginx
from app.runtime import probe
from app.stack_config import COLORS, StackConfig


class ShellRunner:
    """Runs one configured command line with ``sh -c``."""

    def __init__(self, timeout: float, workdir: str):
        self.timeout = timeout
        self.workdir = workdir

    def __call__(self, command: str, env: dict) -> tuple[int, str]:
        result = subprocess.run(["sh", "-c", command], capture_output=True, text=True, cwd=self.workdir,
                                env={**os.environ, **env}, timeout=self.timeout)
        return result.returncode, (result.stdout + result.stderr).strip()


def run_configured(runner, commands: dict, name: str, **values) -> str:
    """Run the command configured as ``name``; return its output or raise with it."""
    template = commands.get(name) or ""
    if not template:
        raise ControllerError(f"runtime.commands.{name} is not configured")
    try:
        command = string.Template(template).substitute(**values)
    except (KeyError, ValueError) as exc:
        raise ControllerError(f"runtime.commands.{name}: bad placeholder {exc}") from None
    env = {key.upper(): str(value) for key, value in values.items()}
    code, output = runner(command, env)
    if code != 0:
        last = output.splitlines()[-1] if output else "no output"
        raise ControllerError(f"`{command}` exited {code}: {last}")
    return output


class CommandRuntime:
    """Colors started and stopped by commands, checked over HTTP on their probe addresses."""

    def __init__(self, config: StackConfig, runner=None):
        self.config = config
        self.commands = config.section("runtime")["commands"]
        settings = config.section("runtime")
        self.runner = runner or ShellRunner(float(settings["command_timeout"]), settings["workdir"])
        self.start_timeout = float(config.section("gunicorn")["start_timeout"])

    def probe_color(self, color: str):
        return [probe(address) for address in self.config.probe_addresses(color)]

    def start_color(self, color: str, version: str) -> None:
        run_configured(self.runner, self.commands, "start_color", color=color, version=version)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            probes = self.probe_color(color)
            if all(p.ready and (p.health or {}).get("version") == version for p in probes):
                return
            time.sleep(0.2)
        raise ControllerError(f"{color} did not become ready with {version} within {self.start_timeout:g}s")

    def stop_color(self, color: str) -> None:
        run_configured(self.runner, self.commands, "stop_color", color=color, version="")


class CommandProxy(Nginx):
    """nginx (or a Kubernetes Service) driven by commands instead of local processes."""

    def __init__(self, config: StackConfig, runner):
        super().__init__(config)
        self.runner = runner
        self.commands = config.section("runtime")["commands"]

    def worker_user(self) -> str:
        return ""

    def _proxy_path(self, path) -> str:
        return f"{self.config.nginx['proxy_dir'] or self.dir}/{path.name}"

    def test(self, conf) -> None:
        if self.commands["proxy_test"]:
            try:
                run_configured(self.runner, self.commands, "proxy_test", conf=self._proxy_path(conf))
            except ControllerError as exc:
                raise ControllerError(f"nginx rejected the new config: {exc}") from None

    def pid(self):
        return None

    def down_reason(self) -> str:
        return ""  # not observable here; the switch's verification through front_url decides

    def ensure_running(self, changed: bool) -> str:
        if self.commands["proxy_start"]:
            run_configured(self.runner, self.commands, "proxy_start")
        if changed and self.commands["proxy_reload"]:
            self.reload()
            return "reloaded"
        return "started"

    def reload(self) -> None:
        run_configured(self.runner, self.commands, "proxy_reload")

    def stop(self, timeout: float = 30.0) -> None:
        if self.commands["proxy_stop"]:
            run_configured(self.runner, self.commands, "proxy_stop")

    def route(self, color: str) -> None:
        if not self.commands["route"]:
            super().route(color)  # the marker file, in the directory the proxy mounts
            return
        if color not in COLORS:
            raise ControllerError(f"unknown color {color!r}")
        other = COLORS[1 - COLORS.index(color)]
        run_configured(self.runner, self.commands, "route", color=color, other=other)

    def routed_color(self) -> str:
        if not self.commands["routed"]:
            return super().routed_color()
        color = run_configured(self.runner, self.commands, "routed").strip()
        if color not in COLORS:
            raise ControllerError(f"runtime.commands.routed printed {color!r}, not blue or green")
        return color

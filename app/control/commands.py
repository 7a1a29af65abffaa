"""Configured command lines (docker compose, kubectl, ...), run for the commands runtime.

``[runtime.commands]`` in bluegreen.toml names each side effect; ``$color``, ``$other``
(the other color), ``$version`` and ``$conf`` are substituted. A command that fails
stops the step with its last line of output.
"""

from __future__ import annotations

import os
import string
import subprocess

from app.errors import ControllerError


class ShellRunner:
    """Runs one configured command line with ``sh -c``; returns (exit code, output)."""

    def __init__(self, timeout: float, workdir: str):
        self.timeout = timeout
        self.workdir = workdir

    def __call__(self, command: str, env: dict) -> tuple[int, str]:
        try:
            result = subprocess.run(["sh", "-c", command], capture_output=True, text=True, cwd=self.workdir,
                                    env={**os.environ, **env}, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            return 124, f"timed out after {self.timeout:g}s"
        except OSError as exc:
            return 127, f"cannot run it in {self.workdir}: {exc.strerror}"
        return result.returncode, (result.stdout + result.stderr).strip()


def run_configured(runner, commands, name: str, **values) -> str:
    """Run ``commands.<name>`` (a ``RuntimeCommands``); return its output or raise with it."""
    template = getattr(commands, name)
    if not template:
        raise ControllerError(f"runtime.commands.{name} is not configured")
    try:
        command = string.Template(template).substitute(**values)
    except (KeyError, ValueError) as exc:
        raise ControllerError(f"runtime.commands.{name}: bad placeholder {exc}") from exc
    env = {key.upper(): str(value) for key, value in values.items()}
    code, output = runner(command, env)
    if code != 0:
        last = output.splitlines()[-1] if output else "no output"
        raise ControllerError(f"`{command}` exited {code}: {last}")
    return output

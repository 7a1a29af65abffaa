"""The feedback token the local colors require on POST /feedback, and the dashboard's.

POST /feedback moves live accuracy, which can roll a version back, so the colors accept
it only with a bearer token (docs/adr/0011-trust-boundary.md). Locally the token is
``<run_dir>/feedback.token`` (mode 0600, random, made once and kept across restarts), or
the value of ``BLUEGREEN_FEEDBACK_TOKEN`` when that is set. ``bluegreen token`` prints it.
`bluegreen dashboard` off loopback asks for a token made the same way (``secret``).
A token file other users can write, or one in a run directory they can write, is refused:
they could have chosen it; one they can read is a warning.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from app.control.permissions import check_run_dir, check_token_file, make_private_dir
from app.errors import ControllerError

ENV = "BLUEGREEN_FEEDBACK_TOKEN"
MIN_LENGTH = 16  # the server's minimum too (app/server/config.py)


def token_path(run_dir: Path) -> Path:
    return Path(run_dir) / "feedback.token"


def _check(token: str, where: str) -> str:
    if len(token) < MIN_LENGTH or not all(33 <= ord(c) <= 126 for c in token):
        raise ControllerError(f"{where}: the token must be at least {MIN_LENGTH} printable ASCII "
                              "characters without spaces")
    return token


def server_environment(run_dir: Path, environ=None) -> dict[str, str]:
    """The environment that gives a local color its token: the variable, or the file (made if missing)."""
    environ = os.environ if environ is None else environ
    if environ.get(ENV):
        return {"FEEDBACK_TOKEN": _check(environ[ENV], ENV)}
    return {"FEEDBACK_TOKEN_FILE": str(ensure_token_file(run_dir))}


def ensure_token_file(run_dir: Path) -> Path:
    """``<run_dir>/feedback.token``, created with a random token (mode 0600) when missing; a run
    directory or a token file others can write is refused (``permissions.py``)."""
    return ensure_secret_file(token_path(run_dir))


def ensure_secret_file(path: Path) -> Path:
    """``path``, created with a random token (mode 0600) when missing, in a directory others
    cannot write; checked when present."""
    check_run_dir(path.parent)
    try:
        make_private_dir(path.parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        read_token_file(path)
        return path
    except OSError as exc:
        raise ControllerError(f"{path}: cannot create the token ({exc.strerror})") from exc
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(32) + "\n")
    return path


def read_token_file(path: Path) -> str:
    check_token_file(path)
    try:
        return _check(Path(path).read_text().strip(), str(path))
    except OSError as exc:
        raise ControllerError(f"{path}: cannot read the token ({exc.strerror})") from exc


def secret(env: str, path: Path, environ=None) -> str:
    """The value of the variable ``env`` when set, else the token in ``path`` (made when missing)."""
    environ = os.environ if environ is None else environ
    if environ.get(env):
        return _check(environ[env], env)
    return read_token_file(ensure_secret_file(path))


def token_warning(run_dir: Path, environ=None) -> str:
    """A warning when other users can read the token file the colors use ("" otherwise)."""
    environ = os.environ if environ is None else environ
    return "" if environ.get(ENV) else check_token_file(token_path(run_dir))


def current_token(run_dir: Path, environ=None) -> str:
    """The token the local colors accept (the file is made when missing, as ``up`` would)."""
    return secret(ENV, token_path(run_dir), environ)

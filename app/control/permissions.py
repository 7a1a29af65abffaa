"""Who else may write the files the controller trusts: the run directory and the feedback token.

Everything under ``<run_dir>`` steers the stack: the token a color accepts feedback with,
the state, the markers nginx routes by, the relay socket. A run directory another user can
write (or one they own), or a token file they can write, lets them plant those: the
controller refuses both, in one line naming the file and the fix. A token others can only
read is a warning. What the controller creates itself gets the narrowest mode that works:
the run directory 0700, the token 0600 (docs/adr/0011-trust-boundary.md).
"""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

from app.errors import ControllerError

PRIVATE_DIR = 0o700


def _owner(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _foreign(info: os.stat_result) -> bool:
    """Owned by another user. Root may run the stack in an operator's own run directory
    (nginx's workers then run as its owner)."""
    euid = os.geteuid()
    return euid != 0 and info.st_uid != euid


def check_run_dir(run_dir: Path) -> None:
    """Refuse a run directory that other users can write, or that another user owns."""
    try:
        info = Path(run_dir).stat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ControllerError(f"{run_dir}: {exc.strerror}") from exc
    if _foreign(info):
        raise ControllerError(f"{run_dir}: the run directory belongs to {_owner(info.st_uid)}, not to you, who "
                              "could plant its files (the feedback token, the state, nginx's markers): use a run "
                              "directory of your own (run_dir in the config, or BLUEGREEN_RUN_DIR)")
    if info.st_mode & 0o022:
        raise ControllerError(f"{run_dir}: other users can write the run directory (mode "
                              f"{stat.S_IMODE(info.st_mode):04o}) and plant its files (the feedback token, the state, "
                              f"nginx's markers): `chmod go-w {run_dir}` (bluegreen makes it 0700)")


def check_token_file(path: Path) -> str:
    """Refuse a token file that others can write (or another user owns); return a warning
    when others can read it ("" otherwise)."""
    try:
        info = Path(path).stat()
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise ControllerError(f"{path}: cannot read the feedback token ({exc.strerror})") from exc
    mode = stat.S_IMODE(info.st_mode)
    if _foreign(info):
        raise ControllerError(f"{path}: the feedback token belongs to {_owner(info.st_uid)}, not to you: remove it, "
                              "and `bluegreen up` makes a new one (mode 0600)")
    if mode & 0o022:
        raise ControllerError(f"{path}: other users can write the feedback token (mode {mode:04o}), so it may not "
                              f"be yours: remove it (`bluegreen up` makes a new one, mode 0600), or `chmod 600 {path}` "
                              "if you wrote it")
    if mode & 0o044:
        return (f"{path}: other users can read the feedback token (mode {mode:04o}) and move live accuracy with it: "
                f"`chmod 600 {path}`")
    return ""


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and its missing parents) as a directory only its owner can use."""
    path = Path(path)
    if not path.is_dir():
        path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)

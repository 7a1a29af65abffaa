"""Version pins: which color serves which version, as files nginx tests on each request.

A request pinned to a version (``/v2/models/{name}/versions/{version}/...``, or an
``X-Model-Version`` header on a prediction path) goes to whichever color serves that
version, active or idle, without a reload: nginx tests ``<run_dir>/nginx/pins/<color>-<version>``
per request (one ``stat`` per color, like the route marker of docs/adr/0003), and answers
a pin no color serves with ``pins/unserved.json``, a JSON 404 naming the versions served.
``publish`` makes the directory say what the record says, each marker created or removed
by itself (atomic), the 404's body replaced by rename. It is called wherever a color's
recorded version can change: under the controller lock after the record is reconciled
(every command that changes something, ``up`` included), and around loading a version
onto the idle color (docs/adr/0016-inference-protocols-pins-and-the-hot-path.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from app.artifacts.fsutil import atomic_write_bytes
from app.control.config import StackConfig
from app.errors import ControllerError

UNSERVED = "unserved.json"


def unserved_body(versions: Mapping[str, str | None]) -> bytes:
    """The JSON 404 nginx answers for a pin no color serves."""
    served = sorted({version for version in versions.values() if version})
    named = ", ".join(f"{version} ({', '.join(c for c, v in sorted(versions.items()) if v == version)})"
                      for version in served) or "none"
    return (json.dumps({"error": "no color serves the model version this request pins (X-Model-Version, or "
                                 f"/v2/models/<name>/versions/<version>/...); served: {named}",
                        "status": 404, "versions": served}) + "\n").encode()


def publish(config: StackConfig, versions: Mapping[str, str | None]) -> None:
    """Make ``<run_dir>/nginx/pins`` route each pin to the color serving that version.

    Args:
        config: the stack's configuration (where the run directory is).
        versions: color -> the version it serves, or None for a color that serves none
            right now (being stopped or loaded).
    """
    directory = config.run_dir / "nginx" / "pins"
    wanted = {f"{color}-{version}" for color, version in versions.items() if version}
    body = unserved_body(versions)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        present = {path.name for path in directory.iterdir()} - {UNSERVED}
        for name in sorted(wanted - present):
            os.close(os.open(directory / name, os.O_WRONLY | os.O_CREAT, 0o644))
        for name in sorted(present - wanted):
            (directory / name).unlink(missing_ok=True)
        unserved = directory / UNSERVED
        if not unserved.exists() or unserved.read_bytes() != body:
            atomic_write_bytes(unserved, body)
    except OSError as exc:
        raise ControllerError(f"{directory}: cannot publish which color serves which version ({exc.strerror})") \
            from exc

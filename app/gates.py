"""Gates: functions that return a reason to stop, or "" when there is none.

A gate never raises for a failed check and never passes on missing data: no answer, no
samples, a NaN, all count as a reason (inconclusive is not a pass).
"""

from __future__ import annotations


def color_serving(probes, version: str) -> str:
    """Every server of the color is ready, healthy, and serves ``version``."""
    if not probes:
        return "the color has no servers"
    for server in probes:
        if server.health is None:
            return f"{server.address} does not answer ({server.error or 'no response'})"
        if not server.ready:
            return f"{server.address} is not ready"
        if server.health.get("status") != "ok":
            return f"{server.address} reports status {server.health.get('status')!r}"
        if server.health.get("version") != version:
            return f"{server.address} serves {server.health.get('version')}, expected {version}"
    return ""

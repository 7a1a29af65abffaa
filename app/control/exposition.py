"""The rollout as Prometheus text, for the stack's scraper (docs/adr/0014-seeing-a-rollout.md).

The controller is a command, not a process a scraper can reach, so each time it saves the
state (``store.py``) it also writes ``<run_dir>/nginx/rollout.prom``, which nginx serves on
the preview door as ``/__bluegreen/rollout``. It says what the record says, like
`bluegreen status`: a deploy whose process was killed still shows its phase until a
command repairs it, which is what an alert on a rollout that runs too long should see.
"""

from __future__ import annotations

import calendar
import time

from app.control.rollout import RolloutState

HELP = {
    "bluegreen_rollout_running": "1 while the recorded rollout is in a running phase (gating, loading, canary, "
                                 "switching, baking), else 0.",
    "bluegreen_rollout_phase_since_seconds": "When the recorded rollout entered its phase (Unix time), while it runs.",
    "bluegreen_rollout_canary_weight": "Percent of the front door's /predict and /feedback a running canary gives "
                                       "the new version.",
}
HEADER = "".join(f"# HELP {name} {text}\n# TYPE {name} gauge\n" for name, text in HELP.items())


def _epoch(iso: str) -> float | None:
    try:
        return float(calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ")))
    except (TypeError, ValueError):
        return None


def _labels(values: dict[str, str]) -> str:
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{key}="{escape(value)}"' for key, value in values.items()) + "}"


def rollout_exposition(state: RolloutState) -> str:
    """The text exposition of ``state``'s rollout (a running 0 with phase "idle" when none ran)."""
    rollout = state.rollout
    if rollout is None:
        labels = _labels({"phase": "idle", "version": "", "source": "", "target": ""})
        return HEADER + f"bluegreen_rollout_running{labels} 0\n"
    labels = _labels({"phase": rollout.phase.value, "version": rollout.version, "source": rollout.source,
                      "target": rollout.target})
    running = rollout.phase.running
    lines = [f"bluegreen_rollout_running{labels} {1 if running else 0}"]
    since = _epoch(rollout.updated)
    if running and since is not None:
        lines.append(f"bluegreen_rollout_phase_since_seconds{labels} {since:.0f}")
        if rollout.canary:
            lines.append(f"bluegreen_rollout_canary_weight{labels} {rollout.weight}")
    return HEADER + "\n".join(lines) + "\n"

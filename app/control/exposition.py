"""The rollout as Prometheus text, for the stack's scraper (docs/adr/0015-seeing-a-rollout.md).

The controller is a command, not a process a scraper can reach, so each time it saves the
state (``store.py``) it also writes ``<run_dir>/nginx/rollout.prom``, which nginx serves on
the preview door as ``/__bluegreen/rollout``. It says what the record says, like
`bluegreen status`: a deploy whose process was killed still shows its phase until a
command repairs it, which is what an alert on a rollout that runs too long should see.

While a window is judged (a bake, a canary step, `watch`), the same file also carries that
window's paired figures (``window_exposition``), rewritten at every poll from the document
the poll writes to ``<run_dir>/window.json``: how often the judged version predicts another
class than the stable one, the bounds the disagreement gate decides on, and its limit.
"""

from __future__ import annotations

import calendar
import time

from app.control import gates
from app.control.rollout import RolloutState

HELP = {
    "bluegreen_rollout_running": "1 while the recorded rollout is in a running phase (gating, loading, canary, "
                                 "switching, baking), else 0.",
    "bluegreen_rollout_phase_since_seconds": "When the recorded rollout entered its phase (Unix time), while it runs.",
    "bluegreen_rollout_canary_weight": "Percent of the front door's /predict and /feedback a running canary gives "
                                       "the new version.",
}
WINDOW_HELP = {
    "bluegreen_rollout_paired_requests": "Requests both the judged version and the stable version answered in the "
                                         "judged window (a bake, a canary step or watch), while pairing is on.",
    "bluegreen_rollout_paired_rows": "Paired rows the disagreement is a share of, in the judged window.",
    "bluegreen_rollout_disagreement": "Share of paired rows on which the judged version predicts another class "
                                      "than the stable version, in the judged window.",
    "bluegreen_rollout_disagreement_low": "Lower end of the disagreement gate's anytime-valid bounds (at "
                                          "bake.confidence), once the window has bake.min_pairs paired rows.",
    "bluegreen_rollout_disagreement_high": "Upper end of the disagreement gate's anytime-valid bounds (at "
                                           "bake.confidence), once the window has bake.min_pairs paired rows.",
    "bluegreen_rollout_disagreement_limit": "The disagreement gate's limit (bake.max_disagreement): it fails a "
                                            "version at or above it, and passes one at half of it.",
}
# The disagreement check as a window document names it (judge.window_document).
DISAGREEMENT_CHECK = gates.POLL_DISAGREEMENT.removeprefix(f"{gates.BAKE_POLL}: ")
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


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return None
    return float(value)


def _text(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def window_exposition(document: dict | None) -> str:
    """The paired figures of the window ``document`` describes (``judge.window_document``),
    while it is judged; nothing for no window, an ended one, or one without paired answers.

    Each series is labelled with the window's kind, the judged color and version, and the
    stable version it is compared with. The bounds appear once the gate has its minimum
    sample (``bake.min_pairs`` rows), the estimate once there is a paired row."""
    if not document or document.get("ended") or document.get("paired") is None:
        return ""
    stable = document.get("stable") or {}
    labels = _labels({"kind": str(document.get("kind") or ""), "color": str(document.get("color") or ""),
                      "version": str(document.get("version") or ""),
                      "stable_version": str(stable.get("version") or "")})
    figures = {"paired_requests": _number(document.get("paired"))}
    check = next((c for c in document.get("checks") or () if c.get("name") == DISAGREEMENT_CHECK), None)
    if check is not None:
        figures.update(paired_rows=_number(check.get("n")), disagreement=_number(check.get("estimate")),
                       disagreement_low=_number(check.get("low")), disagreement_high=_number(check.get("high")),
                       disagreement_limit=_number(check.get("limit")))
    # Each family's HELP and TYPE right above its sample, so every parser types it.
    return "".join(f"# HELP {name} {WINDOW_HELP[name]}\n# TYPE {name} gauge\n{name}{labels} {_text(value)}\n"
                   for name, value in ((f"bluegreen_rollout_{key}", value) for key, value in figures.items())
                   if value is not None)

"""What the read-only commands show: `status`, `history` and `models`. Nothing here writes.

Status is recomputed from what is observed (the route marker, each color's servers) and
set beside the record; where they disagree it warns, and the next command that changes
something repairs the record (``reconcile.py``).
"""

from __future__ import annotations

from app.artifacts.cards import list_versions
from app.control import gates
from app.control.config import COLORS, other_color
from app.control.context import Context
from app.control.reconcile import interrupted


class Views:
    """Reads the record and the world; never writes either."""

    def __init__(self, ctx: Context):
        self.ctx = ctx

    def status(self) -> dict:
        ctx, proxy = self.ctx, self.ctx.proxy
        state = ctx.read_state()
        routed = proxy.routed_color()
        colors = {}
        for color in COLORS:
            probes = ctx.runtime.probe_color(color)
            serving = gates.color_serving(probes, state.versions[color])
            colors[color] = {"version": state.versions[color], "state": "up" if serving.passed else "down",
                             "reason": serving.reason, "servers": [p.as_dict() for p in probes]}
        warnings = []
        if routed != state.active:
            warnings.append(f"nginx serves {routed} but the record says {state.active}; the next command that "
                            "changes something repairs the record (or run `bluegreen reconcile`)")
        stopped = interrupted(state)
        if stopped:
            warnings.append(f"{stopped}; `bluegreen reconcile` ends it (and returns traffic to "
                            f"{state.stable or 'the stable version'} if it had moved)")
        leased, probation, (_, split) = proxy.leased(), proxy.on_probation(), proxy.split_share()
        if (split or probation or state.pairing) and not leased:
            warnings.append(f"no controller holds the lease, so nginx applies no canary share, sends no paired "
                            f"copies and keeps no color on probation: users are on {routed} "
                            f"({state.versions[routed]})")
        return {
            "active": routed,
            "recorded_active": state.active,
            "drift": warnings[0] if routed != state.active else "",
            "warnings": warnings,
            "previous": state.previous,
            "stable": state.stable,
            "rollback_target": state.rollback_target(),
            "phase": state.phase.value,
            "rollout": state.rollout.to_json() if state.rollout else None,
            "front_door": ctx.config.front_url(),
            "preview": ctx.config.preview_url(),
            "nginx_pid": proxy.pid(),
            "canary": dict(zip(("color", "weight"), proxy.split_share())),
            "shadow": {"color": other_color(routed), "sample": 0 if state.pairing else proxy.mirrored()},
            "pairing": state.pairing,
            "lease": {"live": leased, "probation": probation},
            "colors": colors,
        }

    def history(self, limit: int | None = None) -> list[dict]:
        return self.ctx.store.history(limit)

    def models(self) -> list[dict]:
        state = self.ctx.read_state()
        rows = []
        for card in list_versions(self.ctx.config.models_dir):
            colors = [c for c in COLORS if state.versions[c] == card["version"]]
            rows.append({
                "version": card["version"], "algorithm": card.get("algorithm"),
                "metrics": card.get("metrics") or {}, "created_at": card.get("created_at"),
                "colors": colors, "active": state.active in colors, "stable": card["version"] == state.stable,
                "promoted": card["version"] in state.promoted, "rejected": card["version"] in state.rejected,
                "fast_path": (card.get("fast_path") or {}).get("format") or "sklearn",
            })
        return rows

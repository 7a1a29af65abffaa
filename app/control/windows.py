"""What a color saw in a judged window: its servers' counters since the window began.

Each server reports cumulative counters in ``/health`` (``live``): requests, server
errors, labels and correct answers, failovers it answered for the other color, and latency
buckets. A window is the difference between the counters at its start and at the last
poll the servers answered; a server that restarted begins the window again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from app.control import gates
from app.control.probes import ServerProbe

COUNTERS = ("requests", "server_errors", "labelled", "correct", "failovers", "timed")


def _count(live: dict, key: str) -> int:
    value = live.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _bucket_bound(le: str) -> float | None:
    try:
        bound = float(le)
    except (TypeError, ValueError):
        return None
    return bound if bound == bound else None


def slow_counts(live: dict, slow_ms: float) -> tuple[int, int, float] | None:
    """(requests timed, requests slower than the bucket bound, that bound in ms) from one
    server's cumulative ``latency_buckets`` ({"0.25": n, ..., "+Inf": total}); the bound is
    the smallest bucket at or above ``slow_ms``. None when the server reports no usable buckets."""
    buckets = live.get("latency_buckets")
    if not isinstance(buckets, dict):
        return None
    counts = {}
    for le, count in buckets.items():
        bound = _bucket_bound(le)
        if bound is None or isinstance(count, bool) or not isinstance(count, int) or count < 0:
            return None
        counts[bound] = count
    total = counts.get(math.inf)
    bounds = [b for b in counts if b != math.inf and b * 1000 >= slow_ms - 1e-9]
    if total is None or not bounds:
        return None
    bound = min(bounds)
    return total, max(0, total - counts[bound]), bound * 1000


def color_totals(probes: list[ServerProbe], other: list[ServerProbe], slow_ms: float = 250.0) -> gates.Window:
    """What a color's servers counted since they started, and the other color's failovers
    (requests it answered for this one)."""
    totals = dict.fromkeys(COUNTERS, 0)
    slow, bound = 0, 0.0
    for server in probes:
        live = (server.health or {}).get("live") or {}
        for key in ("requests", "server_errors", "labelled", "correct"):
            totals[key] += _count(live, key)
        latency = slow_counts(live, slow_ms)
        if latency is None or slow is None:
            slow = None
            continue
        totals["timed"] += latency[0]
        slow += latency[1]
        bound = max(bound, latency[2])
    totals["failovers"] = sum(_count((server.health or {}).get("live") or {}, "failovers") for server in other)
    return gates.Window(**totals, slow=slow if probes else None, slow_over_ms=bound)


def _since(totals: gates.Window, start: gates.Window) -> gates.Window:
    counts = {key: max(0, getattr(totals, key) - getattr(start, key)) for key in COUNTERS}
    # Replicas polled a moment apart can disagree by a request: a part never exceeds its whole.
    counts["server_errors"] = min(counts["server_errors"], counts["requests"])
    counts["correct"] = min(counts["correct"], counts["labelled"])
    slow = None if totals.slow is None or start.slow is None else min(max(0, totals.slow - start.slow),
                                                                      counts["timed"])
    return gates.Window(**counts, slow=slow, slow_over_ms=totals.slow_over_ms)


@dataclass
class Counters:
    """One color's counters at the start of the window and at the last poll its servers answered."""

    start: gates.Window
    last: gates.Window = field(init=False)

    def __post_init__(self):
        self.last = self.start

    def window(self, totals: gates.Window, answered: bool) -> gates.Window:
        """Since the window began. A poll its servers did not answer changes nothing; counters
        that went down mean a server restarted and began again: the window restarts with it."""
        if answered:
            if any(getattr(totals, key) < getattr(self.last, key) for key in COUNTERS if key != "failovers"):
                self.start = gates.Window(failovers=self.start.failovers,
                                          slow=None if totals.slow is None else 0)
            if totals.failovers < self.last.failovers:
                self.start = gates.Window(**{**self.start.__dict__, "failovers": 0})
            if (totals.slow is None) != (self.start.slow is None):  # latency buckets appeared or went away
                self.start = gates.Window(**{**self.start.__dict__, "slow": totals.slow, "timed": totals.timed})
            self.last = totals
        return _since(self.last, self.start)


def answered(probes: list[ServerProbe]) -> bool:
    return bool(probes) and all(server.health is not None for server in probes)

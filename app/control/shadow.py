"""Shadow traffic: a version on the idle color answers a sample of the front door's /predict, unseen.

`bluegreen shadow start VERSION [--sample PCT]` loads VERSION into the idle color through
the deploy's own pre-promotion gates (a dry run: artifact, card, serving, smoke), then
turns on the sample's bucket markers: nginx mirrors those requests to the idle color
through its relay, which answers nginx at once, so a slow shadow never holds a user's
connection (docs/adr/0012-shadow-and-canary.md); users only ever get the active color's
answers. Both colors keep their answers to the sampled requests (``GET /records``), and
`bluegreen shadow report` pairs them by request id: agreement with a 95% Wilson interval
(``stats``), the per-class disagreement matrix, each side's latency and errors, and
both versions' accuracy on the paired requests that got feedback labels. Mirrored copies
are counted apart on the shadow color, never as its traffic, so a later bake is not fooled.
`bluegreen shadow stop` turns the markers off; the report stays readable afterwards.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

from app.artifacts.fsutil import atomic_write_bytes
from app.control import stats
from app.control.controller import Controller
from app.control.events import Action, Event, Outcome
from app.control.reconcile import running_rollout
from app.control.rollout import Phase
from app.errors import ControllerError

CONFIDENCE = 0.95


def percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank percentile ``q`` (0-100) of ``values``; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(-(-q * len(ordered) // 100)) - 1))]


def compare(active: list[dict], shadow: list[dict]) -> dict:
    """The report's figures from both sides' records (``app/server/records.py``)."""
    served = {r["id"]: r for r in active if "predictions" in r and not r.get("shadow")}
    copies = {r["id"]: r for r in shadow if r.get("shadow")}
    labels = {r["id"]: r["labels"] for r in active if isinstance(r.get("labels"), list)}
    paired_ids = [i for i in served if i in copies]
    agree = rows = 0
    matrix: Counter = Counter()
    labelled = {"rows": 0, "active_correct": 0, "shadow_correct": 0}
    for request_id in paired_ids:
        ours, theirs = served[request_id].get("predictions"), copies[request_id].get("predictions")
        if not isinstance(ours, list) or not isinstance(theirs, list) or len(ours) != len(theirs):
            continue
        for a, b in zip(ours, theirs):
            rows += 1
            agree += a == b
            matrix[(a, b)] += 1
        truth = labels.get(request_id)
        if isinstance(truth, list) and len(truth) == len(ours):
            labelled["rows"] += len(truth)
            labelled["active_correct"] += sum(a == t for a, t in zip(ours, truth))
            labelled["shadow_correct"] += sum(b == t for b, t in zip(theirs, truth))
    interval = stats.wilson_interval(agree, rows, CONFIDENCE) if rows else None

    def side(records: dict) -> dict:
        latencies = [r["ms"] for r in records.values() if isinstance(r.get("ms"), (int, float))]
        return {"answers": len(records), "errors": sum(1 for r in records.values() if r.get("status") != 200),
                "server_errors": sum(1 for r in records.values() if int(r.get("status") or 0) >= 500),
                "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
                "version": next((r.get("version") for r in records.values()), None)}

    def accuracy(correct: int) -> float | None:
        return round(correct / labelled["rows"], 6) if labelled["rows"] else None

    return {
        "paired": len(paired_ids),
        "sampled": len(served),
        "not_mirrored": len(served) - len(paired_ids),   # over the relay's limit, or the shadow did not answer
        "rows": rows,
        "agreement": round(agree / rows, 6) if rows else None,
        "agreement_low": round(interval.low, 6) if interval else None,
        "agreement_high": round(interval.high, 6) if interval else None,
        "confidence": CONFIDENCE,
        "matrix": [{"active": a, "shadow": b, "rows": n} for (a, b), n in sorted(matrix.items())],
        "active": side(served),
        "shadow": side(copies),
        "labelled": {"rows": labelled["rows"], "active_accuracy": accuracy(labelled["active_correct"]),
                     "shadow_accuracy": accuracy(labelled["shadow_correct"])},
    }


class ShadowControl:
    """`bluegreen shadow start|report|stop`, through the controller's and the deployer's steps."""

    def __init__(self, controller: Controller):
        self.controller = controller
        self.ctx = controller.ctx
        self.proxy = controller.ctx.proxy
        self.path = Path(controller.ctx.config.run_dir) / "shadow.json"

    def _saved(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ControllerError(f"{self.path}: cannot be read ({exc})") from exc

    def _save(self, shadow: dict) -> None:
        try:
            atomic_write_bytes(self.path, json.dumps(shadow, indent=2).encode())
        except OSError as exc:
            raise ControllerError(f"{self.path}: cannot be written ({exc.strerror})") from exc

    def start(self, version: str, sample: int) -> dict:
        from app.control.deploy import Deployer

        if not 1 <= sample <= 100:
            raise ControllerError(f"--sample {sample}: expected a whole percentage from 1 to 100")
        running = self.proxy.mirrored()
        if running:
            raise ControllerError(f"a shadow already mirrors {running}% of /predict; `bluegreen shadow stop` it first")
        # The deploy's own gates, as a dry run: nothing switches, the idle color serves it after.
        result = Deployer(self.controller).deploy(version, dry_run=True, replace_idle=True)
        if result.phase is not Phase.VERIFIED:
            raise ControllerError(f"shadow of {version} refused: {result.message}")
        with self.controller.reconciler.locked() as state:
            if running_rollout(state) or state.versions[state.idle] != version:
                raise ControllerError(f"shadow of {version} refused: the idle color changed meanwhile")
            color = state.idle
            shadow = {"version": version, "color": color, "active": state.active,
                      "active_version": state.versions[state.active], "sample": sample,
                      "started": self.ctx.clock.time(), "stopped": None}
            self._save(shadow)
            self.proxy.mirror(sample)
            self.ctx.record(Event(action=Action.SHADOW, outcome=Outcome.STARTED,
                                  reason=f"{sample}% of /predict mirrored to {color} ({version}); users keep "
                                         f"{state.active} ({shadow['active_version']})",
                                  details={"version": version, "color": color, "sample": sample}))
        self.ctx.say(f"shadow: {sample}% of the front door's /predict mirrored to {color} ({version}); "
                            f"answers from {state.active} only")
        return shadow

    def stop(self) -> dict:
        shadow = self._saved()
        with self.controller.reconciler.locked():
            was = self.proxy.mirrored()
            self.proxy.mirror(0)
            if shadow and shadow.get("stopped") is None:
                shadow["stopped"] = self.ctx.clock.time()
                self._save(shadow)
            if was:
                self.ctx.record(Event(action=Action.SHADOW, outcome=Outcome.STOPPED,
                                      reason=f"no more mirroring of /predict (it was {was}%)",
                                      details={"version": (shadow or {}).get("version"),
                                               "color": (shadow or {}).get("color")}))
        self.ctx.say("shadow stopped" if was else "no shadow was running")
        return shadow or {}

    def _records(self, color: str, since: float) -> list[dict]:
        """What ``color``'s servers kept since ``since``, read where they wrote it (the local
        runtime reads the files beside their metrics, so a dead or frozen color still gives
        everything it wrote; over ``/records`` otherwise, where one that does not answer gives
        nothing)."""
        records, _ = self.ctx.runtime.records(color, None)
        return [r for r in records if isinstance(r.get("id"), str) and isinstance(r.get("t"), (int, float))
                and r["t"] >= since]

    def _missing(self, side: str, color: str, records: list[dict]) -> dict | None:
        """``side`` ("active" or "shadow") when a server of ``color`` does not answer now: why,
        and the time of the last answer it kept (None when it kept none)."""
        silent = [f"{p.address}: {p.error or 'no answer'}" for p in self.ctx.runtime.probe_color(color)
                  if p.health is None]
        if not silent:
            return None
        last = max((r["t"] for r in records), default=None)
        return {"side": side, "color": color, "reason": "; ".join(silent), "last_answer": last}

    def report(self) -> dict:
        shadow = self._saved()
        if not shadow:
            raise ControllerError("no shadow has run: `bluegreen shadow start VERSION` first")
        since = float(shadow["started"])
        active, copies = self._records(shadow["active"], since), self._records(shadow["color"], since)
        figures = compare(active, copies)
        missing = [m for m in (self._missing("active", shadow["active"], active),
                               self._missing("shadow", shadow["color"], copies)) if m]
        # The figures' "active" is the active side's numbers; the color it ran on stays as active_color.
        return {**shadow, "active_color": shadow["active"], "running": self.proxy.mirrored() > 0, **figures,
                "missing": missing}


def _ms(value) -> str:
    return "-" if value is None else f"{value:.2f} ms"


def _share(value) -> str:
    return "-" if value is None else f"{value:.2%}"


def describe(report: dict) -> str:
    """The report as text, one figure a line."""
    active, shadow, labelled = report["active"], report["shadow"], report["labelled"]
    lines = [
        f"shadow {report['version']} on {report['color']} against {report['active_version']} on "
        f"{report['active_color']}, "
        f"{report['sample']}% of /predict ({'running' if report['running'] else 'stopped'})",
        f"paired requests: {report['paired']} of {report['sampled']} sampled ({report['not_mirrored']} without a "
        f"shadow answer); {report['rows']} rows",
        f"agreement: {_share(report['agreement'])} ({report['confidence']:.0%} interval "
        f"{_share(report['agreement_low'])}-{_share(report['agreement_high'])})",
    ]
    disagreements = [m for m in report["matrix"] if m["active"] != m["shadow"]]
    lines.append("disagreements (active -> shadow): " + (", ".join(
        f"{m['active']} -> {m['shadow']}: {m['rows']}" for m in disagreements) or "none"))
    for name, side in (("active", active), ("shadow", shadow)):
        lines.append(f"{name} {side['version'] or '-'}: {side['answers']} answers, {side['errors']} errors "
                     f"({side['server_errors']} 5xx), latency p50 {_ms(side['p50_ms'])} p99 {_ms(side['p99_ms'])}")
    lines.append(f"labelled paired rows: {labelled['rows']}; accuracy active {_share(labelled['active_accuracy'])}, "
                 f"shadow {_share(labelled['shadow_accuracy'])}")
    for gone in report.get("missing", []):
        last = gone["last_answer"]
        since = (f"its last kept answer at {time.strftime('%H:%M:%S', time.localtime(last))}" if last is not None
                 else "no answer kept since the shadow started")
        lines.append(f"missing: the {gone['side']} side, {gone['color']}, does not answer ({gone['reason']}); "
                     f"{since}; the figures above are what it kept until then")
    return "\n".join(lines)


"""Gated deploys, the post-promotion bake, and `watch`.

The gate order (docs/adr/0004-gated-deploys.md): the card gates first, because they need
nothing running and a refused version then never displaces the warm rollback target; then
the idle color is loaded and must serve the version; then the smoke evaluation through the
preview door, the only gate that costs real requests. Each gate returns a reason, and
every result goes into the history.
"""

from __future__ import annotations

import time

import requests

from app import gates
from app.controller import Controller
from app.errors import ControllerError, ModelLoadError
from app.model_store import list_versions, read_card, verify_artifact
from app.rollout import RolloutState


class BakeFailed(ControllerError):
    """The new color failed its bake or watch and was rolled back."""


class DeployBlocked(ControllerError):
    """A gate refused the version; traffic did not move."""


class Deployer:
    """Runs `deploy` and `watch` on top of a Controller."""

    def __init__(self, controller: Controller, say=print):
        self.c = controller
        self.config = controller.config
        self.say = say
        self.gates = self.config.section("gates")
        self.bake = self.config.section("bake")

    # -- deploy ---------------------------------------------------------------------
    def deploy(self, version: str, dry_run: bool = False) -> dict:
        started = time.monotonic()
        steps: list[dict] = []
        self.last_result = {"version": version, "steps": steps}

        def step(name: str, outcome: str, reason: str = "", **extra) -> dict:
            entry = {"step": name, "outcome": outcome, "reason": reason,
                     "seconds": round(time.monotonic() - started, 3), **extra}
            steps.append(entry)
            self.say(f"[{entry['seconds']:7.2f}s] {name}: {outcome}" + (f" ({reason})" if reason else ""))
            return entry

        with self.c._lock():
            state = self.c._load()
            target, source = state.idle, state.active
            result = self.last_result
            result.update({"from": source, "to": target, "dry_run": dry_run})
            try:
                card = verify_artifact(self.config.models_dir, version)
            except ModelLoadError as exc:
                step("verify artifact", "failed", str(exc))
                self._finish(state, result, "refused", str(exc))
                raise DeployBlocked(f"deploy {version} refused: {exc}; traffic stays on {source}") from None
            step("verify artifact", "passed", f"{version} ({card['algorithm']}), sha256 {card['sha256'][:12]}")
            active_card = read_card(self.config.models_dir, state.versions[source])
            for name, reason in (
                ("gate: holdout metrics meet thresholds", gates.card_meets_thresholds(card, self.gates)),
                (f"gate: not worse than active {active_card['version']}",
                 gates.card_not_worse(card, active_card, self.gates)),
            ):
                self._gate(state, step, name, reason, version, result)
            self._load_idle(state, target, version, step)
            self._gate(state, step, f"gate: {target} ready and serving {version}",
                       gates.color_serving(self.c.runtime.probe_color(target), version), version, result)
            smoke = self._smoke(version)
            self._gate(state, step, "gate: smoke evaluation through the preview door",
                       gates.smoke_evaluation(smoke, card["metrics"]["accuracy"],
                                              self.gates["smoke_max_latency_ms"]),
                       version, result, detail=f"{len(smoke)} holdout rows")
            if dry_run:
                step("plan", "dry run", f"would switch {source} -> {target} ({version}), "
                     f"then bake {self.bake['period']:g}s polling every {self.bake['interval']:g}s")
                self._finish(state, result, "dry-run", "all gates passed")
                return result
            entry = self.c._switch_locked(state, target, False, f"deploy {version}", "switch", phase="progressing")
            step(f"switch {source} -> {target}", "done", f"{entry['duration_ms']} ms")
            outcome, reason = self._bake(state, target, version, step)
            self._finish(state, result, outcome, reason)
            if outcome == "rolled back":
                raise BakeFailed(f"deploy {version} rolled back: {reason}")
            if outcome == "inconclusive":
                raise ControllerError(f"deploy {version}: bake inconclusive ({reason}); {target} keeps "
                                      "the traffic but is not marked stable")
            self._scale_down_later(source, step)
            return result

    def _gate(self, state: RolloutState, step, name: str, reason: str, version: str, result: dict,
              detail: str = "") -> None:
        step(name, "failed" if reason else "passed", reason or detail)
        state.record("gate", "failed" if reason else "passed", reason, gate=name, version=version)
        if reason:
            self._finish(state, result, "blocked", f"{name}: {reason}")
            raise DeployBlocked(f"deploy {version} blocked by {name}: {reason}; traffic stays on {state.active}")
        self.c.store.save(state)

    def _finish(self, state: RolloutState, result: dict, outcome: str, reason: str) -> None:
        result["outcome"], result["reason"] = outcome, reason
        state.record("deploy", outcome, reason, version=result["version"], **{"from": result["from"],
                     "to": result["to"]})
        self.c.store.save(state)

    def _load_idle(self, state: RolloutState, color: str, version: str, step) -> None:
        previous_version = state.versions[color]
        if not gates.color_serving(self.c.runtime.probe_color(color), version):
            step(f"load {version} into {color}", "skipped", f"{color} already serves {version}")
        else:
            self.c.runtime.stop_color(color)
            try:
                self.c.runtime.start_color(color, version)
            except ControllerError as exc:
                step(f"load {version} into {color}", "failed", str(exc))
                self._restore_idle(color, previous_version)
                raise DeployBlocked(f"{exc}; traffic stays on {state.active}") from None
            step(f"load {version} into {color}", "ready")
        state.versions[color] = version
        self.c.store.save(state)

    def _restore_idle(self, color: str, version: str) -> None:
        try:
            self.c.runtime.start_color(color, version)
            self.say(f"{color}: restored {version}")
        except ControllerError as exc:
            self.say(f"{color}: could not restore {version}: {exc}")

    def _smoke(self, version: str) -> list:
        from app.training import holdout

        rows, labels = holdout()
        results = []
        with requests.Session() as session:
            for row, label in zip(rows.tolist(), labels):
                began = time.perf_counter()
                try:
                    response = session.post(self.config.preview_url() + "/predict", json={"x": row}, timeout=5)
                    body = response.json()
                    results.append((response.status_code, body.get("prediction"), label,
                                    (time.perf_counter() - began) * 1000, body.get("version")))
                except (requests.RequestException, ValueError) as exc:
                    results.append((type(exc).__name__, None, label, 0.0, None))
        return results

    def _scale_down_later(self, color: str, step) -> None:
        delay = float(self.bake["scale_down_delay"])
        if delay <= 0:
            step(f"keep {color}", "running", "warm for an instant rollback until the next deploy")
            return
        step(f"keep {color}", "running", f"for {delay:g}s")
        time.sleep(delay)
        self.c.runtime.stop_color(color)
        step(f"stop {color}", "done", f"after the scale-down delay of {delay:g}s")

    # -- bake / watch ---------------------------------------------------------------
    def _bake(self, state: RolloutState, color: str, version: str, step) -> tuple[str, str]:
        period, interval = float(self.bake["period"]), float(self.bake["interval"])
        monitor = Monitor(self, color, version)
        deadline = time.monotonic() + period
        while time.monotonic() < deadline:
            time.sleep(interval)
            verdict = monitor.poll()
            if verdict == "rollback":
                rolled = self._roll_back(state, monitor)
                step(f"rollback {color} -> {state.active}", "done",
                     f"{rolled['rollback_ms']} ms from the first failed poll; {monitor.last_reason}")
                return "rolled back", monitor.last_reason
        if monitor.passed == 0:
            state.phase = "degraded"
            step("bake", "inconclusive", f"{monitor.polls} polls, none with traffic to judge")
            return "inconclusive", f"{monitor.polls} polls in {period:g}s, none saw a request to {color}"
        state.phase, state.stable = "healthy", color
        step("bake", "passed", f"{monitor.passed} polls passed, {monitor.failed} failed, "
             f"{monitor.inconclusive} inconclusive")
        return "promoted", f"bake passed ({monitor.passed} of {monitor.polls} polls)"

    def _roll_back(self, state: RolloutState, monitor: Monitor) -> dict:
        entry = self.c._switch_locked(state, state.previous, False,
                                      f"automatic rollback: {monitor.last_reason}", "rollback", phase="aborted")
        entry["rollback_ms"] = round((time.monotonic() - monitor.first_failure) * 1000, 1)
        self.c.store.save(state)
        return entry

    def watch(self, duration: float | None = None) -> int:
        """Poll the active color until stopped; roll back and return 1 when it fails."""
        interval = float(self.bake["interval"])
        state = self.c._load()
        color = state.active
        monitor = Monitor(self, color, state.versions[color])
        self.say(f"watching {color} ({state.versions[color]}) every {interval:g}s; "
                 f"rollback after {int(self.bake['failure_limit']) + 1} failed polls")
        deadline = None if duration is None else time.monotonic() + duration
        while deadline is None or time.monotonic() < deadline:
            time.sleep(interval)
            if monitor.poll() == "rollback":
                with self.c._lock():
                    state = self.c._load()
                    if state.active != color:
                        self.say(f"{color} is no longer active; stopping")
                        return 0
                    entry = self._roll_back(state, monitor)
                self.say(f"rolled back {color} -> {state.active} in {entry['rollback_ms']} ms "
                         f"from the first failed poll: {monitor.last_reason}")
                return 1
        return 0

    # -- versions -------------------------------------------------------------------
    def models(self) -> list[dict]:
        state = self.c.store.load(None, self.c._default_versions())
        rows = []
        for card in list_versions(self.config.models_dir):
            colors = [c for c, v in state.versions.items() if v == card["version"]]
            rows.append({
                "version": card["version"], "algorithm": card.get("algorithm"),
                "metrics": card.get("metrics", {}), "created_at": card.get("created_at"),
                "colors": colors, "active": state.active in colors,
                "fast_path": (card.get("fast_path") or {}).get("format") or "sklearn",
            })
        return rows


class Monitor:
    """Polls one color and counts pass / fail / inconclusive; says when to roll back."""

    def __init__(self, deployer: Deployer, color: str, version: str):
        self.deployer = deployer
        self.color, self.version = color, version
        self.thresholds = deployer.bake
        self.failure_limit = int(self.thresholds["failure_limit"])
        self.polls = self.passed = self.failed = self.inconclusive = 0
        self.first_failure: float | None = None
        self.last_reason = ""
        self.last_outcome = ""
        self.baseline = self._totals(deployer.c.runtime.probe_color(color))

    @staticmethod
    def _totals(probes) -> dict:
        totals = {"requests": 0, "server_errors": 0}
        for server in probes:
            live = (server.health or {}).get("live") or {}
            for key in totals:
                totals[key] += live.get(key) or 0
        return totals

    def poll(self) -> str:
        probes = self.deployer.c.runtime.probe_color(self.color)
        totals = self._totals(probes)
        window = {k: max(0, totals[k] - self.baseline[k]) for k in totals}
        self.baseline = totals
        outcome, reason = gates.bake_poll(probes, self.version, window, self.thresholds)
        self.polls += 1
        if outcome == "fail":
            self.failed += 1
            self.first_failure = self.first_failure or time.monotonic()
            self.last_reason = reason
        elif outcome == "pass":
            self.passed += 1
        else:
            self.inconclusive += 1
        if outcome != self.last_outcome or outcome == "fail":
            detail = f" ({reason})" if reason else ""
            self.deployer.say(f"{time.strftime('%H:%M:%S')} poll {self.polls} of {self.color}: {outcome}{detail}")
        self.last_outcome = outcome
        return "rollback" if self.failed > self.failure_limit else outcome

"""Gated deploys: a rollout of one version onto the idle color, phase by phase.

The gate order (docs/adr/0004-gated-deploys.md): the artifact and card gates first,
because they need nothing running and a refused version then never displaces the warm
rollback target; then the idle color is loaded and must serve the version; then the
smoke evaluation through the preview door, the only gate that costs real requests. Then
the switch, and the bake. Every gate's verdict goes into the history with its reason and
numbers; the rollout's phase is saved at each step, so `status` shows where it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.artifacts.cards import read_card, verify_artifact
from app.control import gates
from app.control.bake import BakeMonitor, run_bake
from app.control.controller import Controller
from app.control.rollout import Action, GateResult, Phase, Rollout, RolloutState, Verdict
from app.errors import ControllerError, ModelLoadError

OUTCOMES = {Verdict.PASS: "passed", Verdict.FAIL: "failed", Verdict.INCONCLUSIVE: "inconclusive"}


@dataclass(frozen=True)
class Step:
    """One printed and returned step of a deploy."""

    name: str
    outcome: str
    reason: str
    seconds: float


@dataclass
class DeployResult:
    """What a deploy did: its final phase, why, a one-line message, and every step."""

    version: str
    source: str
    target: str
    dry_run: bool
    phase: Phase = Phase.GATING
    reason: str = ""
    message: str = ""
    steps: list[Step] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return self.phase in (Phase.PROMOTED, Phase.VERIFIED)

    def to_json(self) -> dict:
        return {"version": self.version, "from": self.source, "to": self.target, "dry_run": self.dry_run,
                "phase": self.phase.value, "outcome": self.phase.value, "reason": self.reason,
                "message": self.message,
                "steps": [{"step": s.name, "outcome": s.outcome, "reason": s.reason, "seconds": s.seconds}
                          for s in self.steps]}


class Deployer:
    """Runs `deploy` through the controller's public steps."""

    def __init__(self, controller: Controller):
        self.controller = controller
        self.config = controller.config
        self.runtime = controller.runtime
        self.clock = controller.clock
        self.say = controller.say

    def deploy(self, version: str, dry_run: bool = False) -> DeployResult:
        """Gate, load, gate, switch and bake ``version``; the result says how it ended."""
        self._started = self.clock.monotonic()
        with self.controller.locked() as state:
            rollout = Rollout(version, source=state.active, target=state.idle, dry_run=dry_run)
            result = DeployResult(version, rollout.source, rollout.target, dry_run)
            state.rollout = rollout
            self.controller.store.save(state)
            try:
                self._run(state, rollout, result)
            except ControllerError as exc:
                # A step that could not finish (a stop command failed, the disk is full):
                # the rollout ends aborted, with the reason, wherever traffic is now.
                where = "" if "traffic" in str(exc) else f"; traffic is on {state.active}"
                self._end(state, result, Phase.ABORTED, str(exc), f"deploy {version} failed: {exc}{where}")
            self.controller.record(Action.DEPLOY, rollout.phase.value, result.reason, version=version,
                                   **{"from": rollout.source, "to": rollout.target, "dry_run": dry_run})
            self.controller.store.save(state)
        return result

    # -- the steps ----------------------------------------------------------------------------
    def _step(self, result: DeployResult, name: str, outcome: str, reason: str = "") -> None:
        step = Step(name, outcome, reason, round(self.clock.monotonic() - self._started, 3))
        result.steps.append(step)
        self.say(f"[{step.seconds:7.2f}s] {name}: {outcome}" + (f" ({reason})" if reason else ""))

    def _end(self, state: RolloutState, result: DeployResult, phase: Phase, reason: str, message: str) -> None:
        state.rollout.advance(phase, reason)
        result.phase, result.reason, result.message = phase, reason, message

    def _gate(self, state: RolloutState, result: DeployResult, name: str, gate: GateResult) -> bool:
        """Print and record one gate; on a failure end the rollout (aborted: nothing switched)."""
        self._step(result, name, OUTCOMES[gate.verdict], gate.reason)
        self.controller.record(Action.GATE, OUTCOMES[gate.verdict], gate.reason, gate=name, version=result.version,
                               numbers=gate.numbers)
        if gate.passed:
            return True
        self._end(state, result, Phase.ABORTED, f"{name}: {gate.reason}",
                  f"deploy {result.version} blocked by {name}: {gate.reason}; traffic stays on {state.active}")
        return False

    def _run(self, state: RolloutState, rollout: Rollout, result: DeployResult) -> None:
        version, source, target = rollout.version, rollout.source, rollout.target
        try:
            card = verify_artifact(self.config.models_dir, version)
            active_card = read_card(self.config.models_dir, state.versions[source])
        except ModelLoadError as exc:
            self._step(result, "verify artifact", "failed", str(exc))
            self._end(state, result, Phase.ABORTED, str(exc),
                      f"deploy {version} refused: {exc}; traffic stays on {source}")
            return
        self._step(result, "verify artifact", "passed",
                   f"{version} ({card.get('algorithm')}), sha256 {card['sha256'][:12]}")
        for name, gate in (
            ("gate: holdout metrics meet thresholds", gates.card_meets_thresholds(card, self.config.gates)),
            (f"gate: not worse than active {active_card['version']}",
             gates.card_not_worse(card, active_card, self.config.gates)),
        ):
            if not self._gate(state, result, name, gate):
                return
        rollout.advance(Phase.LOADING)
        self.controller.store.save(state)
        if not self._load_idle(state, result, target, version):
            return
        rollout.advance(Phase.GATING)
        self.controller.store.save(state)
        if not self._gate(state, result, f"gate: {target} ready and serving {version}",
                          gates.color_serving(self.runtime.probe_color(target), version)):
            return
        if not self._gate(state, result, "gate: smoke evaluation through the preview door", self._smoke(card)):
            return
        if rollout.dry_run:
            plan = (f"would switch {source} -> {target} ({version}), then bake {self.config.bake.period:g}s "
                    f"polling every {self.config.bake.interval:g}s")
            self._step(result, "plan", "dry run", plan)
            self._end(state, result, Phase.VERIFIED, "all gates passed", f"deploy {version}: dry run passed; {plan}")
            return
        rollout.advance(Phase.SWITCHING)
        self.controller.store.save(state)
        try:
            entry = self.controller.switch_traffic(state, target, reason=f"deploy {version}")
        except ControllerError as exc:
            self._step(result, f"switch {source} -> {target}", "failed", str(exc))
            self._end(state, result, Phase.ABORTED, str(exc), f"deploy {version}: {exc}")
            return
        self._step(result, f"switch {source} -> {target}", "done", f"{entry['duration_ms']} ms")
        rollout.advance(Phase.BAKING)
        self.controller.store.save(state)
        self._bake(state, result, target, version)

    def _load_idle(self, state: RolloutState, result: DeployResult, color: str, version: str) -> bool:
        name = f"load {version} into {color}"
        previous_version = state.versions[color]
        if gates.color_serving(self.runtime.probe_color(color), version).passed:
            self._step(result, name, "skipped", f"{color} already serves {version}")
        else:
            self.runtime.stop_color(color)
            try:
                self.runtime.start_color(color, version)
            except ControllerError as exc:
                self._step(result, name, "failed", str(exc))
                self._restore_idle(color, previous_version)
                self._end(state, result, Phase.ABORTED, str(exc), f"{exc}; traffic stays on {state.active}")
                return False
            self._step(result, name, "ready")
        state.versions[color] = version
        self.controller.store.save(state)
        return True

    def _restore_idle(self, color: str, version: str) -> None:
        try:
            self.runtime.start_color(color, version)
            self.say(f"{color}: restored {version}")
        except ControllerError as exc:
            self.say(f"{color}: could not restore {version}: {exc}")

    def _smoke(self, card: dict) -> GateResult:
        reference = card.get("reference") or {}
        rows, labels = reference.get("rows"), reference.get("labels")
        if not rows or not labels or len(rows) != len(labels):
            return GateResult(gates.SMOKE, Verdict.FAIL, f"the card of {card['version']} has no holdout rows with "
                                                         "labels to send (run `make models` to add them)")
        answers = self.controller.doors.smoke(rows, labels)
        return gates.smoke_evaluation(answers, card["metrics"]["accuracy"], self.config.gates.smoke_max_latency_ms)

    def _bake(self, state: RolloutState, result: DeployResult, color: str, version: str) -> None:
        settings = self.config.bake
        monitor = BakeMonitor(self.runtime, color, version, settings, self.clock, self.say)
        outcome = run_bake(monitor, settings, self.clock)
        if outcome.verdict is Verdict.FAIL:
            entry = self.controller.roll_back(state, f"automatic rollback: {outcome.reason}",
                                              since=monitor.first_failure)
            self._step(result, f"rollback {color} -> {state.active}", "done",
                       f"{entry['since_ms']} ms from the first failed poll; {outcome.reason}")
            result.phase, result.reason = Phase.ROLLED_BACK, outcome.reason
            result.message = f"deploy {version} rolled back: {outcome.reason}"
            return
        if outcome.verdict is Verdict.INCONCLUSIVE:
            self._step(result, "bake", "inconclusive", f"{monitor.polls} polls, none with traffic to judge")
            self._end(state, result, Phase.DEGRADED, outcome.reason,
                      f"deploy {version}: bake inconclusive ({outcome.reason}); {color} keeps the traffic but "
                      "is not marked stable")
            return
        self._step(result, "bake", "passed", monitor.summary())
        state.stable = version
        self._end(state, result, Phase.PROMOTED, outcome.reason, f"deploy {version}: promoted on {color}")
        self._scale_down_later(result, state.previous)

    def _scale_down_later(self, result: DeployResult, color: str) -> None:
        delay = self.config.bake.scale_down_delay
        if delay <= 0:
            self._step(result, f"keep {color}", "running", "warm for an instant rollback until the next deploy")
            return
        self._step(result, f"keep {color}", "running", f"for {delay:g}s")
        self.clock.sleep(delay)
        self.runtime.stop_color(color)
        self._step(result, f"stop {color}", "done", f"after the scale-down delay of {delay:g}s")

"""Gated deploys: a rollout of one version onto the idle color, phase by phase.

The gate order (docs/adr/0004-gated-deploys.md): the artifact and card gates first,
because they need nothing running and a refused version then never displaces the warm
rollback target; then the idle color is loaded and must serve the version; then the
smoke evaluation through the preview door, the only gate that costs real requests. Then
the switch, and the bake. Every gate's verdict goes into the history with its reason and
numbers; the rollout's phase is saved at each step, so `status` shows where it is.

The deploy holds the controller lock while it gates, loads and switches, and releases it
for the bake (docs/adr/0008): `abort` and `rollback` can then preempt it at once. It
looks for an abort request between steps and during the bake, and takes the lock again
for its decision, which it makes only if the rollout is still its own and still baking.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from app.artifacts.cards import read_card, verify_artifact
from app.control import gates
from app.control.bake import BakeMonitor, BakeOutcome, run_bake
from app.control.config import BakeSettings
from app.control.controller import Controller
from app.control.processes import process_started
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
    bake: dict | None = None        # the bake's verdict, reason and the numbers of its last poll
    canary: list[dict] = field(default_factory=list)   # each judged canary step: weight, verdict, exposure
    exposure: int | None = None     # requests that reached the version during its canary steps

    @property
    def succeeded(self) -> bool:
        return self.phase in (Phase.PROMOTED, Phase.VERIFIED)

    def to_json(self) -> dict:
        return {"version": self.version, "from": self.source, "to": self.target, "dry_run": self.dry_run,
                "phase": self.phase.value, "outcome": self.phase.value, "reason": self.reason,
                "message": self.message,
                "steps": [{"step": s.name, "outcome": s.outcome, "reason": s.reason, "seconds": s.seconds}
                          for s in self.steps],
                **({"canary": self.canary, "exposure": self.exposure} if self.exposure is not None else {})}


class Deployer:
    """Runs `deploy` through the controller's public steps."""

    def __init__(self, controller: Controller):
        self.controller = controller
        self.config = controller.config
        self.runtime = controller.runtime
        self.store = controller.store
        self.clock = controller.clock
        self.say = controller.say
        self.started = self.clock.monotonic()

    def deploy(self, version: str, dry_run: bool = False, force: bool = False, replace_idle: bool = False,
               canary: list[int] | None = None, step_seconds: float | None = None,
               sticky: bool = False) -> DeployResult:
        """Gate, load, gate, switch and bake ``version``; the result says how it ended. With
        ``canary`` (weights ending with 100), the switch is reached step by step instead
        (``app/control/canary.py``), each step judged for ``step_seconds``."""
        self.started = self.clock.monotonic()
        with self.controller.locked(repair_rollout=force) as state:
            refusal = self._refusal(state, version, dry_run, force, replace_idle)
            if refusal:
                raise ControllerError(f"refusing to deploy {version}: {refusal}")
            rollout = Rollout(version, source=state.active, target=state.idle, dry_run=dry_run, pid=os.getpid(),
                              pid_started=process_started(os.getpid()), canary=list(canary or []))
            result = DeployResult(version, rollout.source, rollout.target, dry_run)
            state.rollout = rollout
            self.store.save(state)
            self._guarded(state, result, lambda: self._gate_load_switch(state, rollout, result))
            if rollout.phase not in (Phase.BAKING, Phase.CANARY):
                return self._finish(state, result)
        if rollout.phase is Phase.CANARY:
            from app.control.canary import Canary

            result.exposure = 0
            Canary(self, step_seconds or self.config.bake.period, sticky).run(rollout, result)
        else:
            self._bake(rollout, result)
        return result

    def _refusal(self, state: RolloutState, version: str, dry_run: bool, force: bool, replace_idle: bool) -> str:
        busy = self.controller.running_rollout(state)
        if busy:
            return f"{busy}; wait for it, or `bluegreen abort` it"
        down = self.controller.proxy.down_reason()
        if down:  # before anything is loaded: the smoke gate and the switch both need nginx
            return down
        interrupted = self.controller.interrupted(state)
        if interrupted and not force:
            return (f"{interrupted}; `bluegreen reconcile` ends it (traffic back on the stable version if it "
                    "had moved), or pass --force")
        mirrored = self.controller.proxy.mirrored()
        if mirrored:
            return (f"a shadow mirrors {mirrored}% of /predict to {state.idle}; `bluegreen shadow stop` it first "
                    "(a deploy would load or switch that color under it)")
        if not force and version == state.versions[state.active]:
            return (f"{state.active} already serves {version}; deploying it again would run it on both colors "
                    "(pass --force to do that)")
        target = state.rollback_target()
        if dry_run and not replace_idle and target and state.versions[state.idle] == target != version:
            return (f"{state.idle} runs {target}, the version a rollback returns to; a dry run would replace it "
                    "(pass --replace-idle: a rollback then loads it back first)")
        return ""

    # -- the steps ----------------------------------------------------------------------------
    def _step(self, result: DeployResult, name: str, outcome: str, reason: str = "") -> None:
        step = Step(name, outcome, reason, round(self.clock.monotonic() - self.started, 3))
        result.steps.append(step)
        self.say(f"[{step.seconds:7.2f}s] {name}: {outcome}" + (f" ({reason})" if reason else ""))

    def _end(self, state: RolloutState, result: DeployResult, phase: Phase, reason: str, message: str) -> None:
        if state.rollout.phase is not phase:
            state.rollout.advance(phase, reason)
        result.phase, result.reason, result.message = phase, reason, message

    def _finish(self, state: RolloutState, result: DeployResult) -> DeployResult:
        rollout = state.rollout
        self.controller.record(Action.DEPLOY, rollout.phase.value, result.reason, version=rollout.version,
                               rollout=rollout.id, **{"from": rollout.source, "to": rollout.target,
                                                      "dry_run": rollout.dry_run},
                               **({"bake": result.bake} if result.bake else {}),
                               **({"exposure": result.exposure} if result.exposure is not None else {}))
        self.store.save(state)
        return result

    def _guarded(self, state: RolloutState, result: DeployResult, step) -> None:
        """Run ``step``; a step that could not finish (a stop command failed, the disk is full)
        ends the rollout aborted, with the reason, wherever traffic is now."""
        try:
            step()
        except ControllerError as exc:
            if not state.rollout.phase.running:
                raise
            where = "" if "traffic" in str(exc) else f"; traffic is on {state.active}"
            self._end(state, result, Phase.ABORTED, str(exc), f"deploy {result.version} failed: {exc}{where}")

    def _aborted(self, state: RolloutState, result: DeployResult) -> bool:
        """An operator asked to stop before the switch: end here; traffic never moved."""
        request = self.store.abort_request(state.rollout.id)
        if not request:
            return False
        self._step(result, "abort", "requested", f"by `bluegreen {request.get('action', 'abort')}`")
        self._end(state, result, Phase.ABORTED, f"operator {request.get('action', 'abort')}",
                  f"deploy {result.version} aborted by the operator before the switch; traffic stays on "
                  f"{state.active} ({state.versions[state.active]})")
        return True

    def _gate(self, state: RolloutState, result: DeployResult, name: str, gate: GateResult) -> bool:
        """Print and record one gate; on a failure end the rollout (aborted: nothing switched)."""
        self._step(result, name, OUTCOMES[gate.verdict], gate.reason)
        self.controller.record(Action.GATE, OUTCOMES[gate.verdict], gate.reason, gate=name, version=result.version,
                               numbers=gate.numbers)
        if gate.passed:
            return not self._aborted(state, result)
        self._end(state, result, Phase.ABORTED, f"{name}: {gate.reason}",
                  f"deploy {result.version} blocked by {name}: {gate.reason}; traffic stays on {state.active}")
        return False

    def _gate_load_switch(self, state: RolloutState, rollout: Rollout, result: DeployResult) -> None:
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
        self.store.save(state)
        if not self._load_idle(state, result, target, version) or self._aborted(state, result):
            return
        rollout.advance(Phase.GATING)
        self.store.save(state)
        if not self._gate(state, result, f"gate: {target} ready and serving {version}",
                          gates.color_serving(self.runtime.probe_color(target), version)):
            return
        if not self._gate(state, result, "gate: smoke evaluation through the preview door", self._smoke(card)):
            return
        if rollout.dry_run:
            steps = f"canary {', '.join(f'{w}%' for w in rollout.canary)}, " if rollout.canary else ""
            plan = (f"would {steps}switch {source} -> {target} ({version}), then bake {self.config.bake.period:g}s "
                    f"polling every {self.config.bake.interval:g}s")
            self._step(result, "plan", "dry run", plan)
            self._end(state, result, Phase.VERIFIED, "all gates passed", f"deploy {version}: dry run passed; {plan}")
            return
        if rollout.canary:  # the canary moves the share step by step, without the lock
            rollout.advance(Phase.CANARY)
            self.store.save(state)
            return
        rollout.advance(Phase.SWITCHING)
        self.store.save(state)
        try:
            entry = self.controller.switch_traffic(state, target, reason=f"deploy {version}")
        except ControllerError as exc:
            self._step(result, f"switch {source} -> {target}", "failed", str(exc))
            self._end(state, result, Phase.ABORTED, str(exc), f"deploy {version}: {exc}")
            return
        self._step(result, f"switch {source} -> {target}", "done", f"{entry['duration_ms']} ms")
        rollout.advance(Phase.BAKING)
        self.store.save(state)

    def _load_idle(self, state: RolloutState, result: DeployResult, color: str, version: str) -> bool:
        name = f"load {version} into {color}"
        previous_version = state.versions[color]
        if gates.color_serving(self.runtime.probe_color(color), version).passed:
            self._step(result, name, "skipped", f"{color} already serves {version}")
            return True
        try:
            self.controller.load_color(state, color, version)
        except ControllerError as exc:
            self._step(result, name, "failed", str(exc))
            self._restore_idle(state, color, previous_version)
            self._end(state, result, Phase.ABORTED, str(exc), f"{exc}; traffic stays on {state.active}")
            return False
        self._step(result, name, "ready")
        return True

    def _restore_idle(self, state: RolloutState, color: str, version: str) -> None:
        try:
            self.controller.load_color(state, color, version)
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

    # -- the bake (without the lock) -----------------------------------------------------------
    def _preempted(self, rollout: Rollout) -> str:
        """Why this bake must stop now ("" to go on): an abort request, the rollout replaced or
        ended by another command, or the front door moved away from the new color."""
        request = self.store.abort_request(rollout.id)
        if request:
            return f"operator {request.get('action', 'abort')}"
        state = self.controller.read_state()
        current = state.rollout
        if current is None or current.id != rollout.id or current.phase is not Phase.BAKING:
            return "the rollout was ended by another command"
        if state.active != rollout.target:
            return f"the front door was moved away from {rollout.target} by another command"
        return ""

    # -- what the canary drives (app/control/canary.py) ------------------------------------------
    def step(self, result: DeployResult, name: str, outcome: str, reason: str = "") -> None:
        """Print and keep one step of the deploy."""
        self._step(result, name, outcome, reason)

    def finish(self, state: RolloutState, result: DeployResult) -> DeployResult:
        """Record how the deploy ended and save the state (lock held)."""
        return self._finish(state, result)

    def bake(self, rollout: Rollout, result: DeployResult, settings: BakeSettings) -> None:
        """The bake after a switch, with ``settings`` (a canary's step length)."""
        self._bake(rollout, result, settings)

    def _bake(self, rollout: Rollout, result: DeployResult, settings: BakeSettings | None = None) -> None:
        settings = settings or self.config.bake
        monitor = BakeMonitor(self.runtime, rollout.target, rollout.version, settings, self.clock, self.say,
                              on_poll=lambda m: self.controller.note_failovers(rollout.source, m.other_probes))

        def record_recovery(reason: str) -> None:
            self.controller.record(Action.RECONCILE, "recovered", f"{rollout.target} answered again before the "
                                   f"rollback decision (it had failed: {reason})", version=rollout.version)

        try:
            outcome = run_bake(monitor, settings, self.clock, lambda: self._preempted(rollout), record_recovery)
        except ControllerError as exc:  # the bake could not observe the color: never a pass
            outcome = BakeOutcome(Verdict.FAIL, f"the bake could not go on: {exc}")
        with self.controller.locked(repair_rollout=False) as state:
            current = state.rollout
            if current is None or current.id != rollout.id or current.phase is not Phase.BAKING:
                phase = current.phase if current is not None and current.id == rollout.id else Phase.ABORTED
                result.phase, result.reason = phase, "ended by another command"
                result.message = (f"deploy {rollout.version} {phase.value} by another command (`bluegreen abort` "
                                  f"or `rollback`); traffic on {state.active} ({state.versions[state.active]})")
                self._step(result, "bake", "preempted", result.reason)
                self.controller.record(Action.DEPLOY, result.phase.value, result.reason, version=rollout.version,
                                       rollout=rollout.id, **{"from": rollout.source, "to": rollout.target})
                return
            if outcome.preempted:
                self._decide_preempted(state, result, outcome.reason)
            else:
                self._guarded(state, result, lambda: self._decide(state, result, monitor, outcome))
            self._finish(state, result)
        if result.phase is Phase.PROMOTED:
            self._scale_down_later(result, rollout.source, rollout.id)

    def _decide_preempted(self, state: RolloutState, result: DeployResult, why: str) -> None:
        entry = self.controller.return_to_stable(state, f"{why} during the bake of {result.version}",
                                                 automatic=False, since=self.clock.monotonic())
        where = f"{state.active} ({state.versions[state.active]})"
        self._step(result, "bake", "preempted", why)
        if state.rollout.phase.running:
            self._end(state, result, Phase.ABORTED, why, f"deploy {result.version} aborted: {why}; traffic on {where}")
        else:
            result.phase, result.reason = state.rollout.phase, why
            result.message = f"deploy {result.version} {state.rollout.phase.value}: {why}; traffic on {where}"
        if entry:
            self._step(result, f"rollback to {state.stable}", "done", f"{entry['duration_ms']} ms")

    def _decide(self, state: RolloutState, result: DeployResult, monitor: BakeMonitor, outcome) -> None:
        color, version = result.target, result.version
        result.bake = {"verdict": outcome.verdict.value, "reason": outcome.reason, "numbers": outcome.numbers}
        if outcome.verdict is Verdict.FAIL:
            entry = self.controller.return_to_stable(state, f"automatic rollback: {outcome.reason}", automatic=True,
                                                     since=monitor.first_failure)
            self._step(result, f"rollback {color} -> {state.active}", "done",
                       f"{entry['since_ms'] if entry else 0} ms from the first failed poll; {outcome.reason}")
            if state.rollout.phase is Phase.BAKING:
                state.rollout.advance(Phase.ROLLED_BACK, outcome.reason)
            result.phase, result.reason = Phase.ROLLED_BACK, outcome.reason
            result.message = f"deploy {version} rolled back: {outcome.reason}"
        elif outcome.verdict is Verdict.INCONCLUSIVE:
            self._step(result, "bake", "inconclusive", outcome.reason)
            self._end(state, result, Phase.DEGRADED, outcome.reason,
                      f"deploy {version}: bake inconclusive ({outcome.reason}); {color} keeps the traffic but "
                      "is not marked stable")
        else:
            self._step(result, "bake", "passed", monitor.summary())
            state.promote(version)
            self._end(state, result, Phase.PROMOTED, outcome.reason, f"deploy {version}: promoted on {color}")

    def _scale_down_later(self, result: DeployResult, color: str, rollout_id: str) -> None:
        delay = self.config.bake.scale_down_delay
        if delay <= 0:
            self._step(result, f"keep {color}", "running", "warm for an instant rollback until the next deploy")
            return
        self._step(result, f"keep {color}", "running", f"for {delay:g}s")
        self.clock.sleep(delay)
        with self.controller.locked() as state:
            if state.active == color or state.rollout is None or state.rollout.id != rollout_id:
                self._step(result, f"stop {color}", "skipped", "traffic or the rollout changed meanwhile")
                return
            self.runtime.stop_color(color)
        self._step(result, f"stop {color}", "done", f"after the scale-down delay of {delay:g}s")

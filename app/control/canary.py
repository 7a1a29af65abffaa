"""A progressive canary: a share of the front door on the new version, step by step, each step judged.

`bluegreen deploy VERSION --canary 10,50,100` runs the same pre-promotion gates as a
deploy, then, instead of switching, sends 10% of the front door's /predict and /feedback
to the idle color (per-bucket markers, no reload: docs/adr/0012-shadow-and-canary.md) and
judges that step with the bake's own monitor and gates (docs/adr/0010): minimum samples,
bounds valid at every poll, the error rate, latency and live accuracy of the new version
against the stable one *in the same window*, since both serve at once. A step that fails
puts the share back to 0% at once and rejects the version; a step still inconclusive at
its end also goes back to 0% (a canary never moves on without a verdict), without
rejecting it. The last weight is always 100: the switch itself (the marker, verified
through the front door), followed by the bake of the whole traffic.

Like the bake, the canary holds the controller lock only to move the share and to decide,
never while it waits: `abort` or `rollback` preempt it at any step. Each step is recorded
in the history with its verdict and its exposure: the requests the new version answered
(and those nginx had to send back to the stable color for it).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING

from app.control.bake import BakeMonitor, BakeOutcome, run_bake
from app.control.config import BakeSettings
from app.control.rollout import Action, Phase, Rollout, Verdict
from app.errors import ControllerError

if TYPE_CHECKING:
    from app.control.deploy import Deployer, DeployResult

OUTCOMES = {Verdict.PASS: "passed", Verdict.FAIL: "failed", Verdict.INCONCLUSIVE: "inconclusive"}


def parse_weights(text: str) -> list[int]:
    """``"10,50,100"`` -> ``[10, 50, 100]``: whole percentages, rising, ending with 100."""
    try:
        weights = [int(part) for part in text.split(",")]
    except ValueError:
        raise ControllerError(f"--canary {text!r}: expected rising whole percentages ending with 100, "
                              "like 10,50,100") from None
    if not weights or weights[-1] != 100 or any(not 0 < w <= 100 for w in weights) or \
            any(a >= b for a, b in zip(weights, weights[1:])):
        raise ControllerError(f"--canary {text!r}: expected rising whole percentages from 1 to 100, ending with "
                              "100 (the switch), like 10,50,100")
    return weights


def step_settings(settings: BakeSettings, seconds: float) -> BakeSettings:
    """The bake's settings for one step of ``seconds``: polled at least twice."""
    return replace(settings, period=seconds, interval=min(settings.interval, seconds / 2))


class Canary:
    """The steps of one canary rollout, driven through the deployer's and the controller's steps."""

    def __init__(self, deployer: Deployer, step_seconds: float, sticky: bool = False):
        self.deployer = deployer
        self.controller = deployer.controller
        self.proxy = self.controller.proxy
        self.settings = step_settings(deployer.config.bake, step_seconds)
        self.sticky = sticky
        self.exposure = 0

    def run(self, rollout: Rollout, result: DeployResult) -> None:
        """Every partial step, then the switch and the bake (no lock held while waiting)."""
        for step, weight in enumerate(rollout.canary[:-1]):
            began = time.time()
            if not self._move(rollout, result, step, weight):
                return
            outcome, exposed = self._judge(rollout, step, weight, began)
            self.exposure += exposed
            result.canary.append({"step": step + 1, "weight": weight, "verdict": outcome.verdict.value,
                                  "reason": outcome.reason, "exposure": exposed})
            result.exposure = self.exposure
            if outcome.preempted or outcome.verdict is not Verdict.PASS:
                self._stop(rollout, result, step, weight, outcome)
                return
        if self._switch(rollout, result):
            self.deployer.bake(rollout, result, self.settings)

    # -- one step ---------------------------------------------------------------------------
    def _ours(self, state, rollout: Rollout, phase: Phase = Phase.CANARY) -> bool:
        current = state.rollout
        return current is not None and current.id == rollout.id and current.phase is phase

    def _move(self, rollout: Rollout, result: DeployResult, step: int, weight: int) -> bool:
        """Give the new version ``weight`` percent (lock held for the move only)."""
        with self.controller.locked(repair_rollout=False) as state:
            if not self._ours(state, rollout) or self.deployer.store.abort_request(rollout.id):
                self._preempted_locked(state, rollout, result, "the rollout was aborted or ended by another command")
                return False
            self.proxy.split(rollout.target, weight, self.sticky)
            current = state.rollout
            current.step, current.weight = step, weight
            self.deployer.store.save(state)
            of = len(rollout.canary)
            self.controller.record(Action.CANARY, "step", f"step {step + 1} of {of}: {weight}% of the front door "
                                   f"on {rollout.version} ({rollout.target})" + (", sticky per client" if self.sticky
                                                                                  else ""),
                                   version=rollout.version, rollout=rollout.id, color=rollout.target, step=step + 1,
                                   weight=weight)
        self.deployer.step(result, f"canary step {step + 1}: {weight}% to {rollout.target}", "started",
                           f"judged for {self.settings.period:g}s")
        return True

    def _preempted(self, rollout: Rollout) -> str:
        request = self.deployer.store.abort_request(rollout.id)
        if request:
            return f"operator {request.get('action', 'abort')}"
        state = self.controller.read_state()
        if not self._ours(state, rollout):
            return "the rollout was ended by another command"
        if state.active != rollout.source:
            return f"the front door was moved away from {rollout.source} by another command"
        return ""

    def _judge(self, rollout: Rollout, step: int, weight: int, began: float | None = None) -> tuple[BakeOutcome, int]:
        """The bake's monitor on the new color for the step; its exposure (requests meant for it
        since ``began``, a time.time() taken before the share moved)."""
        monitor = BakeMonitor(self.deployer.runtime, rollout.target, rollout.version, self.settings,
                              self.deployer.clock, self.deployer.say,
                              on_poll=lambda m: self.controller.note_failovers(rollout.source, m.other_probes))

        def record_recovery(reason: str) -> None:
            self.controller.record(Action.RECONCILE, "recovered", f"{rollout.target} answered again before the "
                                   f"canary's decision (it had failed: {reason})", version=rollout.version)

        try:
            outcome = run_bake(monitor, self.settings, self.deployer.clock, lambda: self._preempted(rollout),
                               record_recovery)
        except ControllerError as exc:  # the step could not observe the color: never a pass
            outcome = BakeOutcome(Verdict.FAIL, f"the canary could not go on: {exc}")
        numbers = outcome.numbers or (monitor.last.numbers if monitor.last else {})
        # nginx's own count when it keeps one (a version that died took its counters with
        # it); otherwise what the color answered and what was failed over for it.
        logged = self.proxy.canary_requests(rollout.target, began) if began is not None else None
        exposed = logged if logged is not None else int(numbers.get("requests", 0)) + int(numbers.get("failovers", 0))
        self.controller.record(Action.CANARY, OUTCOMES[outcome.verdict] if not outcome.preempted else "preempted",
                               outcome.reason, version=rollout.version, rollout=rollout.id, step=step + 1,
                               weight=weight, exposure=exposed, numbers=numbers)
        return outcome, exposed

    # -- how it ends ------------------------------------------------------------------------
    def _preempted_locked(self, state, rollout: Rollout, result: DeployResult, why: str) -> None:
        """Another command ended the rollout, or an abort is asked: 0%, and say where traffic is."""
        current = state.rollout
        if current is not None and current.id == rollout.id and current.phase.running:
            self.controller.return_to_stable(state, f"{why} during the canary of {result.version}", automatic=False)
            current.advance(Phase.ABORTED, why)
            self.deployer.store.save(state)
        else:
            self.controller.clear_split(why)
        phase = current.phase if current is not None and current.id == rollout.id else Phase.ABORTED
        result.phase, result.reason = phase, why
        result.message = (f"deploy {result.version} {phase.value}: {why}; traffic on {state.active} "
                          f"({state.versions[state.active]}); {self.exposure} requests reached {result.version}")
        self.deployer.step(result, "canary", "preempted", why)
        self.controller.record(Action.DEPLOY, phase.value, why, version=result.version, exposure=self.exposure,
                               **{"from": result.source, "to": result.target})

    def _stop(self, rollout: Rollout, result: DeployResult, step: int, weight: int, outcome: BakeOutcome) -> None:
        with self.controller.locked(repair_rollout=False) as state:
            if outcome.preempted or not self._ours(state, rollout):
                self._preempted_locked(state, rollout, result, outcome.reason if outcome.preempted
                                       else "the rollout was ended by another command")
                return
            failed = outcome.verdict is Verdict.FAIL
            why = (f"canary step {step + 1} ({weight}%) failed: {outcome.reason}" if failed else
                   f"canary step {step + 1} ({weight}%) inconclusive after {self.settings.period:g}s: "
                   f"{outcome.reason}; a canary never moves on without a verdict")
            self.controller.return_to_stable(state, f"automatic rollback: {why}", automatic=failed)
            if failed:
                state.reject(rollout.version)
            state.rollout.advance(Phase.ROLLED_BACK, why)
            result.phase, result.reason = Phase.ROLLED_BACK, why
            result.bake = {"verdict": outcome.verdict.value, "reason": outcome.reason, "numbers": outcome.numbers}
            result.message = (f"deploy {rollout.version} rolled back to 0% at {why}; {self.exposure} requests "
                              f"reached it")
            self.deployer.step(result, f"canary step {step + 1}: {weight}% to {rollout.target}",
                               OUTCOMES[outcome.verdict], f"{outcome.reason}; back to 0%, exposure "
                                                          f"{self.exposure} requests")
            self.deployer.finish(state, result)

    def _switch(self, rollout: Rollout, result: DeployResult) -> bool:
        """The last step: the whole front door, by the marker (verified), then the bake."""
        with self.controller.locked(repair_rollout=False) as state:
            if not self._ours(state, rollout) or self.deployer.store.abort_request(rollout.id):
                self._preempted_locked(state, rollout, result, "the rollout was aborted or ended by another command")
                return False
            current = state.rollout
            current.advance(Phase.SWITCHING)
            self.deployer.store.save(state)
            name = f"canary step {len(rollout.canary)}: switch {rollout.source} -> {rollout.target}"
            try:
                entry = self.controller.switch_traffic(state, rollout.target,
                                                       reason=f"deploy {rollout.version}: canary at 100%")
            except ControllerError as exc:
                self.controller.return_to_stable(state, f"switch failed: {exc}", automatic=False)
                self.deployer.step(result, name, "failed", str(exc))
                current.advance(Phase.ABORTED, str(exc))
                result.phase, result.reason = Phase.ABORTED, str(exc)
                result.message = f"deploy {rollout.version}: {exc}; its canary share is back to 0%"
                self.deployer.finish(state, result)
                return False
            # The markers name the color that is now active: they no longer apply; tidy them.
            self.proxy.split(rollout.target, 0)
            current.step, current.weight = len(rollout.canary) - 1, 100
            current.advance(Phase.BAKING)
            self.deployer.store.save(state)
            self.controller.record(Action.CANARY, "step", f"step {len(rollout.canary)} of {len(rollout.canary)}: "
                                   f"100% of the front door on {rollout.version} ({rollout.target}), baking",
                                   version=rollout.version, rollout=rollout.id, color=rollout.target,
                                   step=len(rollout.canary), weight=100)
        self.deployer.step(result, name, "done", f"{entry['duration_ms']} ms; baking {self.settings.period:g}s")
        return True

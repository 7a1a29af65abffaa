"""Gated deploys: a rollout of one version onto the idle color, phase by phase.

The gate order (docs/adr/0004-gated-deploys.md): the artifact and card gates first,
because they need nothing running and a refused version then never displaces the warm
rollback target; then the idle color is loaded and must serve the version; then the
smoke evaluation through the preview door, the only gate that costs real requests. Then
the switch and the bake (``bake.py``), or the canary's steps (``canary.py``). Every gate's
verdict goes into the history with its reason and numbers; the rollout's phase is saved at
each step, so `status` shows where it is.

The deploy holds the controller lock while it gates, loads and switches, and releases it
for the bake and each canary step (docs/adr/0008): `abort` and `rollback` can then preempt
it at once. A controller error at any step ends the rollout through ``RolloutRun.abandon``:
traffic back on the stable version, the rollout aborted, both recorded.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from app.artifacts.cards import read_card, verify_artifact
from app.control import gates
from app.control.bake import bake, scale_down_later
from app.control.canary import Canary
from app.control.events import GateEvent, Outcome
from app.control.processes import process_started
from app.control.reconcile import interrupted, running_rollout
from app.control.rollout import GateResult, Phase, Rollout, RolloutState, Verdict
from app.control.run import DeployResult, RolloutRun
from app.errors import ControllerError, ModelLoadError

if TYPE_CHECKING:
    from app.control.controller import Controller


class Deployer:
    """Runs `deploy` over the controller's services."""

    def __init__(self, controller: Controller):
        self.ctx = controller.ctx
        self.traffic = controller.traffic
        self.reconciler = controller.reconciler
        self.config = controller.ctx.config

    def deploy(self, version: str, dry_run: bool = False, force: bool = False, replace_idle: bool = False,
               canary: list[int] | None = None, step_seconds: float | None = None,
               sticky: bool = False) -> DeployResult:
        """Gate, load, gate, switch and bake ``version``; the result says how it ended. With
        ``canary`` (weights ending with 100), the switch is reached step by step instead,
        each step judged for ``step_seconds``."""
        started = self.ctx.clock.monotonic()
        run = None
        try:
            with self.reconciler.locked(repair_rollout=force) as state:
                refusal = self._refusal(state, version, dry_run, force, replace_idle)
                if refusal:
                    raise ControllerError(f"refusing to deploy {version}: {refusal}")
                rollout = Rollout(version, source=state.active, target=state.idle, dry_run=dry_run,
                                  pid=os.getpid(), pid_started=process_started(os.getpid()),
                                  canary=list(canary or []))
                run = RolloutRun(self.ctx, self.traffic, self.reconciler, rollout,
                                 DeployResult(version, rollout.source, rollout.target, dry_run), started)
                state.rollout = rollout
                self.ctx.store.save(state)
                if not dry_run:  # before users can reach the version: the switch or a canary's share
                    run.hold_lease()
                self._gate_load_switch(state, run)
                if rollout.phase not in (Phase.BAKING, Phase.CANARY):
                    return run.finish(state)
            if rollout.phase is Phase.CANARY:
                Canary(run, step_seconds or self.config.bake.period, sticky).run_steps()
            else:
                bake(run, self.config.bake)
        except ControllerError as exc:
            if run is None:  # refused, or the lock or the state could not be had: nothing began
                raise
            return run.abandon(exc)
        except BaseException:  # interrupted (Ctrl-C): nothing more runs, the lease lapses by itself
            if run is not None:
                run.drop_lease()
            raise
        finally:
            if run is not None:
                run.release_lease()
        if run.result.phase is Phase.PROMOTED:
            scale_down_later(run, rollout.source)
        return run.result

    def _refusal(self, state: RolloutState, version: str, dry_run: bool, force: bool,
                 replace_idle: bool) -> str | None:
        busy = running_rollout(state)
        if busy:
            return f"{busy}; wait for it, or `bluegreen abort` it"
        down = self.ctx.proxy.down_reason()
        if down:  # before anything is loaded: the smoke gate and the switch both need nginx
            return down
        stopped = interrupted(state)
        if stopped and not force:
            return (f"{stopped}; `bluegreen reconcile` ends it (traffic back on the stable version if it "
                    "had moved), or pass --force")
        mirrored = self.ctx.proxy.mirrored()
        if mirrored and state.pairing:
            return (f"pid {state.pairing.get('pid')} pairs {mirrored}% of the front door's requests with {state.idle} "
                    "for a judged window (a running `bluegreen watch`); stop it first")
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
        return None

    # -- before the switch (lock held) ----------------------------------------------------------
    def _aborted(self, state: RolloutState, run: RolloutRun) -> bool:
        """An operator asked to stop before the switch: end here; traffic never moved."""
        request = self.ctx.store.abort_request(run.rollout.id)
        if not request:
            return False
        action = request.get("action", "abort")
        run.step("abort", Outcome.REQUESTED, f"by `bluegreen {action}`")
        run.end(state, Phase.ABORTED, f"operator {action}",
                f"deploy {run.rollout.version} aborted by the operator before the switch; traffic stays on "
                f"{state.active} ({state.versions[state.active]})")
        return True

    def _gate(self, state: RolloutState, run: RolloutRun, name: str, gate: GateResult) -> bool:
        """Print and record one gate; on a failure end the rollout (aborted: nothing switched)."""
        version = run.rollout.version
        run.step(name, Outcome.of(gate.verdict), gate.reason)
        self.ctx.record(GateEvent(outcome=Outcome.of(gate.verdict), reason=gate.reason, gate=name, version=version,
                                  numbers=gate.numbers))
        if gate.passed:
            return not self._aborted(state, run)
        run.end(state, Phase.ABORTED, f"{name}: {gate.reason}",
                f"deploy {version} blocked by {name}: {gate.reason}; traffic stays on {state.active}")
        return False

    def _advance(self, state: RolloutState, phase: Phase) -> None:
        state.rollout.advance(phase)
        self.ctx.store.save(state)

    def _gate_load_switch(self, state: RolloutState, run: RolloutRun) -> None:
        rollout = run.rollout
        version, source, target = rollout.version, rollout.source, rollout.target
        try:
            card = verify_artifact(self.config.models_dir, version)
            active_card = read_card(self.config.models_dir, state.versions[source])
        except ModelLoadError as exc:
            why = self.config.unknown_version(version) or str(exc)
            run.step("verify artifact", Outcome.FAILED, why)
            run.end(state, Phase.ABORTED, why, f"deploy {version} refused: {why}; traffic stays on {source}")
            return
        run.step("verify artifact", Outcome.PASSED,
                 f"{version} ({card.get('algorithm')}), sha256 {card['sha256'][:12]}")
        for name, gate in (
            ("gate: holdout metrics meet thresholds", gates.card_meets_thresholds(card, self.config.gates)),
            (f"gate: not worse than active {active_card['version']}",
             gates.card_not_worse(card, active_card, self.config.gates)),
        ):
            if not self._gate(state, run, name, gate):
                return
        self._advance(state, Phase.LOADING)
        if not self._load_idle(state, run, target, version) or self._aborted(state, run):
            return
        self._advance(state, Phase.GATING)
        if not self._gate(state, run, f"gate: {target} ready and serving {version}",
                          gates.color_serving(self.ctx.runtime.probe_color(target), version)):
            return
        if not self._gate(state, run, "gate: smoke evaluation through the preview door", self._smoke(card)):
            return
        if rollout.dry_run:
            steps = f"canary {', '.join(f'{w}%' for w in rollout.canary)}, " if rollout.canary else ""
            plan = (f"would {steps}switch {source} -> {target} ({version}), then bake {self.config.bake.period:g}s "
                    f"polling every {self.config.bake.interval:g}s")
            run.step("plan", Outcome.DRY_RUN, plan)
            run.end(state, Phase.VERIFIED, "all gates passed", f"deploy {version}: dry run passed; {plan}")
            return
        if rollout.canary:  # the canary moves the share step by step, without the lock
            self._advance(state, Phase.CANARY)
            return
        self._advance(state, Phase.SWITCHING)
        try:
            moved = self.traffic.switch(state, target, reason=f"deploy {version}", probation=True)
        except ControllerError as exc:
            run.step(f"switch {source} -> {target}", Outcome.FAILED, str(exc))
            run.end(state, Phase.ABORTED, str(exc), f"deploy {version}: {exc}")
            return
        run.step(f"switch {source} -> {target}", Outcome.DONE, f"{moved.duration_ms} ms")
        self._advance(state, Phase.BAKING)

    def _load_idle(self, state: RolloutState, run: RolloutRun, color: str, version: str) -> bool:
        name = f"load {version} into {color}"
        previous_version = state.versions[color]
        if gates.color_serving(self.ctx.runtime.probe_color(color), version).passed:
            run.step(name, Outcome.SKIPPED, f"{color} already serves {version}")
            return True
        try:
            self.traffic.load_color(state, color, version)
        except ControllerError as exc:
            run.step(name, Outcome.FAILED, str(exc))
            self._restore_idle(state, color, previous_version)
            run.end(state, Phase.ABORTED, str(exc), f"{exc}; traffic stays on {state.active}")
            return False
        run.step(name, Outcome.READY)
        return True

    def _restore_idle(self, state: RolloutState, color: str, version: str) -> None:
        try:
            self.traffic.load_color(state, color, version)
            self.ctx.say(f"{color}: restored {version}")
        except ControllerError as exc:
            self.ctx.say(f"{color}: could not restore {version}: {exc}")

    def _smoke(self, card: dict) -> GateResult:
        reference = card.get("reference") or {}
        rows, labels = reference.get("rows"), reference.get("labels")
        if not rows or not labels or len(rows) != len(labels):
            return GateResult(gates.SMOKE, Verdict.FAIL, f"the card of {card['version']} has no holdout rows with "
                                                         "labels to send (run `make models` to add them)")
        answers = self.ctx.doors.smoke(rows, labels)
        return gates.smoke_evaluation(answers, card["metrics"]["accuracy"], self.config.gates.smoke_max_latency_ms)

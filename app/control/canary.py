"""A progressive canary: a share of the front door on the new version, step by step, each step judged.

`bluegreen deploy VERSION --canary 10,50,100` runs the same pre-promotion gates as a
deploy, then, instead of switching, sends 10% of the front door's /predict and /feedback
to the idle color (per-bucket markers, no reload: docs/adr/0012-shadow-and-canary.md) and
judges that step with the one judge (``judge.py``) and the bake's gates (docs/adr/0010):
minimum samples, bounds valid at every poll, the error rate, latency and live accuracy of
the new version against the stable one *in the same window*, since both serve at once. A
step that fails puts the share back to 0% at once and rejects the version; a step still
inconclusive at its end also goes back to 0% (a canary never moves on without a verdict),
without rejecting it. The last weight is always 100: the switch itself (the marker,
verified through the front door), followed by the bake of the whole traffic.

Like the bake, the canary holds the controller lock only to move the share and to decide,
never while it waits: `abort` or `rollback` preempt it at any step. Each step is recorded
in the history with its verdict and its exposure: the requests the new version answered
(and those nginx had to send back to the stable color for it).
"""

from __future__ import annotations

from dataclasses import replace

from app.control.bake import bake
from app.control.config import BakeSettings
from app.control.events import CanaryEvent, Outcome
from app.control.judge import Judgment
from app.control.pause import judged_window
from app.control.rollout import Phase, Verdict
from app.control.run import CanaryStep, RolloutRun
from app.errors import ControllerError


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
    """The steps of one canary rollout."""

    def __init__(self, run: RolloutRun, step_seconds: float, sticky: bool = False):
        self.run = run
        self.ctx = run.ctx
        self.rollout = run.rollout
        self.settings = step_settings(run.ctx.config.bake, step_seconds)
        self.sticky = sticky

    def run_steps(self) -> None:
        """Every partial step, then the switch and the bake (no lock held while waiting)."""
        result = self.run.result
        result.exposure = 0
        with self.run.paired(self.settings) as paired:
            for index, weight in enumerate(self.rollout.canary[:-1]):
                mark = self.ctx.proxy.canary_mark()  # before the share moves: the step's requests follow it
                if not self._move(index, weight):
                    return
                judgment, exposed = self._judge(index, weight, mark, paired)
                result.exposure += exposed
                result.canary.append(CanaryStep(index + 1, weight, judgment.verdict, judgment.reason, exposed))
                if judgment.preempted or judgment.verdict is not Verdict.PASS:
                    self._stop(index, weight, judgment)
                    return
        if self._switch():
            bake(self.run, self.settings)

    # -- one step ---------------------------------------------------------------------------
    def _move(self, index: int, weight: int) -> bool:
        """Give the new version ``weight`` percent (lock held for the move only)."""
        run, rollout = self.run, self.rollout
        with run.reconciler.locked(repair_rollout=False) as state:
            why = run.stopped(state, Phase.CANARY, Phase.PAUSED)
            if why:
                run.end_preempted(state, why, "canary")
                return False
            if state.rollout.phase is Phase.PAUSED:  # its last step passed, or an operator promoted it
                state.rollout.advance(Phase.CANARY)
            self.ctx.proxy.split(rollout.target, weight, self.sticky)
            state.rollout.step, state.rollout.weight = index, weight
            self.ctx.store.save(state)
            self.ctx.record(CanaryEvent(outcome=Outcome.STEP, color=rollout.target, weight=weight,
                                        version=rollout.version, rollout=rollout.id, step=index + 1,
                                        reason=f"step {index + 1} of {len(rollout.canary)}: {weight}% of the front "
                                               f"door on {rollout.version} ({rollout.target})"
                                               + (", sticky per client" if self.sticky else "")))
        run.step(f"canary step {index + 1}: {weight}% to {rollout.target}", Outcome.STARTED,
                 f"judged for {self.settings.period:g}s")
        return True

    def _judge(self, index: int, weight: int, mark: int | None, paired: bool) -> tuple[Judgment, int]:
        """The judge on the new color for the step, and the step's exposure: nginx's count of
        the requests it sent there when it keeps one (a version that died took its counters
        with it), otherwise what the color answered and what was failed over for it."""
        run, rollout = self.run, self.rollout
        judge = run.judge(rollout.target, self.settings, paired)
        judgment = judged_window(run, judge, self.settings, "canary", Phase.CANARY, rollout.source)
        numbers = judgment.numbers
        logged = self.ctx.proxy.canary_requests(rollout.target, mark) if mark is not None else None
        exposed = logged if logged is not None else int(numbers.get("requests", 0)) + int(numbers.get("failovers", 0))
        self.ctx.record(CanaryEvent(outcome=Outcome.PREEMPTED if judgment.preempted else Outcome.of(judgment.verdict),
                                    reason=judgment.reason, color=rollout.target, weight=weight,
                                    version=rollout.version, rollout=rollout.id, step=index + 1, exposure=exposed,
                                    numbers=numbers))
        return judgment, exposed

    # -- how it ends ------------------------------------------------------------------------
    def _stop(self, index: int, weight: int, judgment: Judgment) -> None:
        """A step that did not pass: back to 0% and to the stable version (rejected if it failed)."""
        run, rollout, result = self.run, self.rollout, self.run.result
        with run.reconciler.locked(repair_rollout=False) as state:
            if judgment.preempted or not run.ours(state, Phase.CANARY, Phase.PAUSED):
                run.end_preempted(state, judgment.preempted or "the rollout was ended by another command", "canary")
                return
            failed = judgment.verdict is Verdict.FAIL
            why = (f"canary step {index + 1} ({weight}%) failed: {judgment.reason}" if failed else
                   f"canary step {index + 1} ({weight}%) inconclusive: {judgment.reason}; a canary never moves "
                   "on without a verdict (its own or an operator's `bluegreen promote`)")
            run.traffic.return_to_stable(state, f"automatic rollback: {why}", automatic=failed)
            if failed:
                state.reject(rollout.version)
            result.bake = judgment
            run.step(f"canary step {index + 1}: {weight}% to {rollout.target}", Outcome.of(judgment.verdict),
                     f"{judgment.reason}; back to 0%, exposure {result.exposure} requests")
            run.end(state, Phase.ROLLED_BACK, why,
                    f"deploy {rollout.version} rolled back to 0% at {why}; {result.exposure} requests reached it")
            run.finish(state)

    def _switch(self) -> bool:
        """The last step: the whole front door, by the marker (verified), then the bake."""
        run, rollout = self.run, self.rollout
        steps = len(rollout.canary)
        name = f"canary step {steps}: switch {rollout.source} -> {rollout.target}"
        with run.reconciler.locked(repair_rollout=False) as state:
            why = run.stopped(state, Phase.CANARY, Phase.PAUSED)
            if why:
                run.end_preempted(state, why, "canary")
                return False
            state.rollout.advance(Phase.SWITCHING)
            self.ctx.store.save(state)
            try:
                moved = run.traffic.switch(state, rollout.target, reason=f"deploy {rollout.version}: canary at 100%",
                                           probation=True)
            except ControllerError as exc:
                run.traffic.return_to_stable(state, f"switch failed: {exc}", automatic=False)
                run.step(name, Outcome.FAILED, str(exc))
                run.end(state, Phase.ABORTED, str(exc),
                        f"deploy {rollout.version}: {exc}; its canary share is back to 0%")
                run.finish(state)
                return False
            # The markers name the color that is now active: they no longer apply; tidy them.
            self.ctx.proxy.split(rollout.target, 0)
            state.rollout.step, state.rollout.weight = steps - 1, 100
            state.rollout.advance(Phase.BAKING)
            self.ctx.store.save(state)
            self.ctx.record(CanaryEvent(outcome=Outcome.STEP, color=rollout.target, weight=100,
                                        version=rollout.version, rollout=rollout.id, step=steps,
                                        reason=f"step {steps} of {steps}: 100% of the front door on "
                                               f"{rollout.version} ({rollout.target}), baking"))
        run.step(name, Outcome.DONE, f"{moved.duration_ms} ms; baking {self.settings.period:g}s")
        return True

"""The bake after a switch, and `watch`: the judge (``judge.py``) on the active color, then a decision.

The bake judges the new color for ``bake.period`` without the lock, then takes the lock to
decide, only if the rollout is still its own and still baking: a failed window rolls back
to the stable version (and rejects the version), a passed one promotes it, an undecided
one leaves it serving but not stable (``degraded``). An abort, a rollback or a moved route
preempts the bake at once. `watch` runs the same judgment on the active color until
stopped, and rolls back when it fails.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.control.config import BakeSettings
from app.control.events import GateEvent, Outcome
from app.control.judge import Judge, Judgment, judge_window, window_document
from app.control.pause import judged_window
from app.control.rollout import Phase, RolloutState, Verdict
from app.control.run import RolloutRun
from app.errors import TrafficError

if TYPE_CHECKING:
    from app.control.controller import Controller


def bake(run: RolloutRun, settings: BakeSettings) -> None:
    """Judge the new color (no lock held; paired with the stable color when nginx can), then
    decide under the lock."""
    rollout = run.rollout
    with run.paired(settings) as paired:
        judge = run.judge(rollout.target, settings, paired)
        judgment = judged_window(run, judge, settings, "bake", Phase.BAKING, rollout.target)
    with run.reconciler.locked(repair_rollout=False) as state:
        if judgment.preempted or not run.ours(state, Phase.BAKING, Phase.PAUSED):
            run.end_preempted(state, judgment.preempted or "the rollout was ended by another command", "bake")
            return
        decide(run, state, judge, judgment)
        run.finish(state)


def decide(run: RolloutRun, state: RolloutState, judge: Judge, judgment: Judgment) -> None:
    """Roll back a failed bake, promote a passed one (or one an operator promoted), send a
    pause that ran out back to the stable version, and leave an undecided bake that could not
    pause serving, `degraded` (lock held)."""
    result = run.result
    color, version = result.target, result.version
    result.bake = judgment
    if judgment.timed_out:
        run.traffic.return_to_stable(state, f"{judgment.reason}; back to the stable version", automatic=False)
        run.step("bake", Outcome.INCONCLUSIVE, judgment.reason)
        run.end(state, Phase.ROLLED_BACK, judgment.reason, f"deploy {version} rolled back: {judgment.reason} "
                                                           "(not rejected: it was not shown bad)")
    elif judgment.verdict is Verdict.FAIL:
        try:
            moved = run.traffic.return_to_stable(state, f"automatic rollback: {judgment.reason}", automatic=True,
                                                 since=judgment.first_failure)
        except TrafficError as exc:  # the rollback could not happen: the message says where traffic is
            run.step(f"rollback {color} -> {state.stable}", Outcome.FAILED, str(exc))
            run.end(state, Phase.ABORTED, str(exc), f"deploy {version} failed: {exc}")
            return
        run.step(f"rollback {color} -> {state.active}", Outcome.DONE,
                 f"{moved.took_ms if moved else 0:.0f} ms from the first failed poll; {judgment.reason}")
        run.end(state, Phase.ROLLED_BACK, judgment.reason, f"deploy {version} rolled back: {judgment.reason}")
    elif judgment.verdict is Verdict.INCONCLUSIVE:
        run.traffic.end_probation()  # the rollout ends: no process renews a lease for it any more
        run.step("bake", Outcome.INCONCLUSIVE, judgment.reason)
        state.rollout.judgment = judgment.to_json()
        run.end(state, Phase.DEGRADED, judgment.reason,
                f"deploy {version}: bake inconclusive ({judgment.reason}); {color} keeps the traffic but "
                "is not marked stable (`bluegreen promote` makes it stable)")
    else:
        run.traffic.end_probation()  # judged: the front door is the version's, lease or not
        run.step("bake", Outcome.PASSED, judgment.reason if judgment.promoted else judge.summary())
        state.promote(version)
        run.end(state, Phase.PROMOTED, judgment.reason, f"deploy {version}: promoted on {color}")


def scale_down_later(run: RolloutRun, color: str) -> None:
    """Stop the old color after ``bake.scale_down_delay`` (0: keep it warm until the next deploy)."""
    delay = run.ctx.config.bake.scale_down_delay
    if delay <= 0:
        run.step(f"keep {color}", Outcome.RUNNING, "warm for an instant rollback until the next deploy")
        return
    run.step(f"keep {color}", Outcome.RUNNING, f"for {delay:g}s")
    run.ctx.clock.sleep(delay)
    with run.reconciler.locked() as state:
        if state.active == color or not run.ours(state):
            run.step(f"stop {color}", Outcome.SKIPPED, "traffic or the rollout changed meanwhile")
            return
        run.ctx.runtime.stop_color(color)
    run.step(f"stop {color}", Outcome.DONE, f"after the scale-down delay of {delay:g}s")


def watch(controller: Controller, duration: float | None = None) -> int:
    """Judge the active color until stopped (or for ``duration`` s), paired with the idle
    color when it runs the version a rollback returns to; roll back and return 1 when it
    fails."""
    ctx, settings = controller.ctx, controller.ctx.config.bake
    state = ctx.read_state()
    color, version = state.active, state.versions[state.active]

    def pairable(now: RolloutState) -> bool:
        target = now.rollback_target()
        idle_rollout = now.rollout is None or not now.rollout.phase.running
        return now.active == color and idle_rollout and target is not None and now.versions[now.idle] == target

    ctx.say(f"watching {color} ({version}) every {settings.interval:g}s; rollback at the first failed check, "
            f"or once {settings.failure_limit + 1} polls find it not serving")

    def moved() -> str | None:
        return None if ctx.read_state().active == color else f"{color} is no longer active"

    def publish(judge: Judge, judgment: Judgment | None) -> None:
        ctx.publish_window(window_document(judge, "watch", None, duration, judgment))

    with controller.reconciler.pairing(settings.paired_sample, pairable) as paired:
        judge = Judge(ctx.runtime, color, version, settings, ctx.clock, ctx.say, paired=paired,
                      on_poll=lambda j: controller.reconciler.note_failovers(j.stable_color, j.other_probes))
        try:
            judgment = judge_window(judge, duration, moved, ctx.record, publish=publish)
        finally:  # stopped by Ctrl-C or an error, the window is no longer judged either
            ctx.show_window(None)
    if judgment.verdict is not Verdict.FAIL:
        if judgment.preempted:
            ctx.say(f"{judgment.preempted}; stopping")
        return 0
    with controller.reconciler.locked() as state:
        if state.active != color:
            ctx.say(f"{color} is no longer active; stopping")
            return 0
        ctx.record(GateEvent(outcome=Outcome.FAILED, reason=judgment.reason, gate=f"watch: {judge.last.gate}",
                             version=version, numbers=judgment.numbers))
        moved_back = controller.traffic.roll_back(state, f"automatic rollback: {judgment.reason}", automatic=True,
                                                  since=judgment.first_failure)
    ctx.say(f"rolled back {color} -> {state.active} in {moved_back.took_ms:.0f} ms from the first failed poll: "
            f"{judgment.reason}")
    return 1

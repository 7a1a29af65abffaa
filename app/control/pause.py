"""A judged window of a rollout, and the pause that follows one still undecided (docs/adr/0014).

``judged_window`` runs the one judge (``judge.py``) for a bake or a canary step: for
``period``, longer while evidence arrives (up to ``max_period``), publishing every poll in
``<run_dir>/window.json`` and its paired figures in ``<run_dir>/nginx/rollout.prom``. Still
undecided, the rollout pauses: it keeps its share, the judge keeps judging (a late verdict
decides), and it waits for `bluegreen promote` (a human's pass), `abort`, or
``pause_timeout`` (then back to the stable version). Each pause and each promote is
recorded with the verdict it stood on.
"""

from __future__ import annotations

from app.control.config import BakeSettings
from app.control.events import Action, Event, Outcome
from app.control.judge import Judge, Judgment, judge_window, window_document
from app.control.rollout import Phase, Verdict
from app.control.run import RolloutRun


def judged_window(run: RolloutRun, judge: Judge, settings: BakeSettings, kind: str, phase: Phase,
                  active: str) -> Judgment:
    """Judge a window for ``settings.period`` (longer while evidence arrives, up to
    ``max_period``); still undecided then, pause on it (``pause``)."""
    publish = publisher(run, kind, settings.period)
    try:
        judgment = judge_window(judge, settings.period, lambda: run.preempted((phase,), active), run.ctx.record,
                                longest=settings.max_period, publish=publish)
        if judgment.verdict is Verdict.INCONCLUSIVE and not judgment.preempted and settings.pause_timeout > 0:
            return pause(run, judge, judgment, settings, phase, active, publish)
        return judgment
    finally:  # a window that ended by an error or an interrupt is no longer judged either
        run.ctx.show_window(None)


def publisher(run: RolloutRun, kind: str, period: float):
    """What writes each poll of the window to ``window.json`` and its paired figures to ``rollout.prom``."""

    def publish(judge: Judge, judgment: Judgment | None) -> None:
        run.ctx.publish_window(window_document(judge, kind, run.rollout.id, period, judgment))
    return publish


def pause(run: RolloutRun, judge: Judge, judgment: Judgment, settings: BakeSettings, phase: Phase, active: str,
          publish) -> Judgment:
    """Keep the share, and judging, until a verdict, `bluegreen promote` (a human's pass),
    `abort`, or ``pause_timeout`` (then back to the stable version, not rejected)."""
    timeout, missing = settings.pause_timeout, judgment.reason
    with run.reconciler.locked(repair_rollout=False) as state:
        if not run.ours(state, phase):
            return judgment  # the caller finds it ended by another command
        state.rollout.advance(Phase.PAUSED, missing)
        state.rollout.judgment = judgment.to_json()
        run.ctx.store.save(state)
    run.ctx.record(Event(action=Action.PAUSE, outcome=Outcome.STARTED, reason=missing,
                         details={"version": run.rollout.version, "rollout": run.rollout.id,
                                  "timeout": timeout, "numbers": judgment.numbers}))
    run.step("pause", Outcome.PAUSED, f"undecided: {missing}; `bluegreen promote` moves on, `bluegreen abort` "
                                      f"stops; back to the stable version after {timeout:g}s")

    def stop() -> str | None:
        if run.ctx.store.promote_request(run.rollout.id):
            return "promoted by the operator"
        return run.preempted((Phase.PAUSED,), active)

    ended = judge_window(judge, 0.0, stop, run.ctx.record, longest=timeout, while_growing=False,
                         publish=publish)
    request = run.ctx.store.take_promote_request(run.rollout.id) if ended.preempted else None
    if request:
        why = request.get("reason") or "no reason given"
        ended = Judgment(Verdict.PASS, f"promoted by the operator ({why}) over: {missing}", ended.numbers,
                         promoted=why)
    elif ended.verdict is Verdict.INCONCLUSIVE and not ended.preempted:
        ended = Judgment(Verdict.INCONCLUSIVE, f"paused {timeout:g}s without a verdict: {ended.reason}",
                         ended.numbers, timed_out=True)
    details = {"version": run.rollout.version, "rollout": run.rollout.id}
    if ended.promoted:
        run.ctx.record(Event(action=Action.PROMOTE, outcome=Outcome.SUCCEEDED, reason=ended.reason,
                             details={**details, "overrode": judgment.to_json()}))
    else:
        run.ctx.record(Event(action=Action.PAUSE, outcome=Outcome.STOPPED, reason=ended.reason, details=details))
    return ended

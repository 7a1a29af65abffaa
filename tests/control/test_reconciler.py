"""The reconciler against a fake world: exact state transitions and history records.

No process, no socket, no real time: ``tests/control/fakes.py`` plays the colors, the
front door and the clock. The same behaviours are proven against real gunicorn and nginx
in ``tests/integration/``.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from app.control.bake import watch
from app.control.deploy import Deployer
from app.control.events import Action, Outcome
from app.control.rollout import Phase, Rollout
from app.errors import ControllerError
from tests.control.fakes import World, make_controller, write_card

# These tests are about the rollout, not the statistics: 20 requests/s for 10 s is enough
# for a 10% error limit, and the bake does not wait for labels (tests/control/test_gates.py
# and test_judge.py cover the statistics). An undecided window goes on for 10 s more at
# most, then pauses for a minute.
BAKE = """
[bake]
period = 10.0
interval = 1.0
failure_limit = 1
min_labelled = 10
min_requests = 20
max_error_rate = 0.1
require_labels = false
max_period = 20.0
pause_timeout = 60.0
"""


@pytest.fixture
def world(tmp_path):
    models = tmp_path / "models"
    write_card(models, "v1.0.0", accuracy=0.95)
    write_card(models, "v1.1.0", accuracy=0.95)
    write_card(models, "v1.2.0", accuracy=1.0)
    write_card(models, "v2.0.0", accuracy=0.5)
    return World(models)


@pytest.fixture
def controller(tmp_path, world):
    controller = make_controller(tmp_path, world, BAKE)
    controller.lifecycle.up()
    world.log.clear()
    return controller


def phases_saved(controller) -> list[str]:
    """Wrap the store so each distinct rollout phase written to disk is remembered, in order."""
    seen: list[str] = []
    save = controller.ctx.store.save

    def spy(state):
        phase = state.phase.value
        if not seen or seen[-1] != phase:
            seen.append(phase)
        save(state)

    controller.ctx.store.save = spy
    return seen


def events(controller, action=None) -> list[dict]:
    return [e for e in controller.views.history() if action is None or e["action"] == action]


# -- up, switch, rollback, reconcile ------------------------------------------------------------
def test_up_starts_both_colors_and_the_proxy_routed_to_blue(tmp_path, world):
    controller = make_controller(tmp_path, world)
    result = controller.lifecycle.up()
    assert result == {"active": "blue", "blue": "started", "green": "started", "nginx": "started"}
    assert world.log == ["start blue v1.0.0", "start green v1.1.0", "route blue", "proxy start"]
    assert [(e["action"], e["outcome"]) for e in events(controller)] == [("up", "succeeded")]
    assert controller.lifecycle.up()["nginx"] == "running"
    assert len(events(controller)) == 1  # a second `up` that changed nothing records nothing


def test_switch_moves_the_front_door_and_records_from_and_to(controller, world):
    entry = controller.operations.switch("green")
    assert world.routed == "green"
    state = controller.ctx.read_state()
    assert (state.active, state.previous) == ("green", "blue")
    assert (entry.action, entry.outcome, entry.source, entry.target, entry.from_version, entry.to_version) == (
        Action.SWITCH, Outcome.SUCCEEDED, "blue", "green", "v1.0.0", "v1.1.0")
    recorded = events(controller, "switch")[-1]
    assert {k: recorded[k] for k in ("action", "outcome", "from", "to", "from_version", "to_version")} == {
        "action": "switch", "outcome": "succeeded", "from": "blue", "to": "green",
        "from_version": "v1.0.0", "to_version": "v1.1.0"}
    assert "switched from blue (v1.0.0) to green (v1.1.0)" in controller.lines[-1]


def test_a_switch_to_the_active_color_does_nothing(controller, world):
    assert controller.operations.switch("blue").outcome is Outcome.NOOP
    assert world.log == [] and events(controller, "switch") == []


@pytest.mark.parametrize("fault, reason", [
    (lambda w: w.stop_color("green"), "green:8080 does not answer (connection refused)"),
    (lambda w: w.stop(), "nginx is not running (run `bluegreen up`)"),
])
def test_a_switch_is_refused_when_the_target_or_the_proxy_is_down(controller, world, fault, reason):
    fault(world)
    with pytest.raises(ControllerError, match="refusing to switch to green: "):
        controller.operations.switch("green")
    assert world.routed == "blue" and controller.ctx.read_state().active == "blue"
    assert events(controller, "switch")[-1]["outcome"] == "refused"
    assert reason in events(controller, "switch")[-1]["reason"]


def test_a_target_that_answers_its_probe_late_is_asked_again_not_refused(controller, world):
    # A color busy with load (a rollback during a bake, its paired copies) can miss one 2 s
    # probe; a dead one refuses at once, and one that stays silent is refused after the wait.
    world.colors["green"].silent_probes = 2
    assert controller.operations.switch("green").outcome is Outcome.SUCCEEDED
    assert world.routed == "green"
    world.colors["blue"].silent_probes = 10_000
    with pytest.raises(ControllerError, match="refusing to switch to blue: blue:8080 does not answer \\(timed out\\)"):
        controller.operations.switch("blue")
    assert world.routed == "green"


def test_a_deploy_of_the_version_already_serving_is_refused_without_force(controller, world):
    with pytest.raises(ControllerError, match="blue already serves v1.0.0; deploying it again would run it on both"):
        Deployer(controller).deploy("v1.0.0")
    assert world.log == [] and controller.ctx.read_state().versions["green"] == "v1.1.0"


@pytest.mark.parametrize("command", ["deploy", "rollback"])
def test_with_nginx_down_deploy_and_rollback_load_nothing_before_refusing(controller, world, command):
    world.traffic = 20
    Deployer(controller).deploy("v1.2.0")                 # v1.2.0 promoted on green, v1.0.0 warm on blue
    world.stop_color("blue")                              # a rollback would have to load v1.0.0 again
    world.stop()
    world.log.clear()
    before = controller.ctx.read_state().versions
    with pytest.raises(ControllerError, match="nginx is not running"):
        Deployer(controller).deploy("v1.1.0") if command == "deploy" else controller.operations.rollback()
    assert world.log == [] and controller.ctx.read_state().versions == before


def test_an_unconfirmed_switch_puts_the_route_back(controller, world):
    world.front_answers = False
    with pytest.raises(ControllerError, match=r"switch to green not confirmed .*; traffic back on blue"):
        controller.operations.switch("green")
    assert world.routed == "blue" and controller.ctx.read_state().active == "blue"
    assert events(controller, "switch")[-1]["outcome"] == "failed"


def test_rollback_returns_to_the_previous_color(controller, world):
    with pytest.raises(ControllerError, match="nothing to roll back to"):
        controller.operations.rollback()
    controller.operations.switch("green")
    controller.operations.rollback()
    assert world.routed == "blue"
    assert events(controller)[-1]["action"] == "rollback"


def test_status_reads_without_writing_and_reports_drift(controller, world):
    world.routed = "green"  # a controller killed between the route change and the record
    state_file = controller.ctx.store.path
    before = (state_file.read_text(), len(events(controller)))
    status = controller.views.status()
    assert status["active"] == "green" and status["recorded_active"] == "blue"
    assert status["drift"].startswith("nginx serves green but the record says blue")
    assert (state_file.read_text(), len(events(controller))) == before


def test_the_next_command_repairs_the_record_as_its_own_step(controller, world):
    world.routed = "green"
    assert controller.reconciler.reconcile() == "the record matches what is observed: green (v1.1.0) is active"
    repair = events(controller, "reconcile")[-1]
    assert (repair["outcome"], repair["from"], repair["to"]) == ("repaired", "blue", "green")
    assert (controller.ctx.read_state().active, controller.ctx.read_state().previous) == ("green", "blue")
    controller.reconciler.reconcile()
    assert len(events(controller, "reconcile")) == 1


# -- deploy ---------------------------------------------------------------------------------------
def test_a_good_version_moves_through_every_phase_to_promoted(controller, world):
    world.traffic = 20
    seen = phases_saved(controller)
    result = Deployer(controller).deploy("v1.2.0")
    assert result.phase is Phase.PROMOTED and result.succeeded
    assert seen == ["gating", "loading", "gating", "switching", "baking", "promoted"]
    state = controller.ctx.read_state()
    assert (state.active, state.stable, state.versions) == ("green", "v1.2.0", {"blue": "v1.0.0", "green": "v1.2.0"})
    # The bake's paired answers: on for its window, off before the decision.
    assert world.log == ["stop green", "start green v1.2.0", "route green", "mirror 100%", "mirror 0%"]
    assert state.pairing is None
    gates = [(e["gate"], e["outcome"]) for e in events(controller, "gate")]
    assert gates == [("gate: holdout metrics meet thresholds", "passed"), ("gate: not worse than active v1.0.0",
                     "passed"), ("gate: green ready and serving v1.2.0", "passed"),
                     ("gate: smoke evaluation through the preview door", "passed")]
    smoke = events(controller, "gate")[-1]
    assert smoke["numbers"] == {"rows": 20, "accuracy": 1.0, "p95_ms": 2.0}
    deploy = events(controller, "deploy")[-1]
    assert (deploy["outcome"], deploy["version"], deploy["from"], deploy["to"]) == ("promoted", "v1.2.0", "blue",
                                                                                   "green")
    assert [s.name for s in result.steps][-3:] == ["switch blue -> green", "bake", "keep blue"]


def test_a_card_gate_failure_aborts_before_anything_is_touched(controller, world):
    seen = phases_saved(controller)
    result = Deployer(controller).deploy("v2.0.0")
    assert result.phase is Phase.ABORTED
    assert result.message == ("deploy v2.0.0 blocked by gate: holdout metrics meet thresholds: v2.0.0 holdout "
                              "accuracy 0.5000 is below the threshold 0.9000; traffic stays on blue")
    assert seen == ["gating", "aborted"]
    assert world.log == [] and world.colors["green"].version == "v1.1.0"
    assert events(controller, "deploy")[-1]["outcome"] == "aborted"


def test_an_unknown_version_is_refused(controller, world):
    result = Deployer(controller).deploy("v9.9.9")
    assert result.phase is Phase.ABORTED
    assert result.message.startswith("deploy v9.9.9 refused: ") and "unknown version v9.9.9" in result.message
    assert world.log == []


def test_a_version_that_fails_to_load_aborts_and_the_idle_color_is_restored(controller, world):
    world.fail_start.add("green")
    seen = phases_saved(controller)
    result = Deployer(controller).deploy("v1.2.0")
    assert result.phase is Phase.ABORTED and seen == ["gating", "loading", "aborted"]
    assert result.message == "green did not start: simulated failure; traffic stays on blue"
    assert world.log == ["stop green", "start green v1.2.0", "stop green", "start green v1.1.0"]
    assert controller.ctx.read_state().versions["green"] == "v1.1.0"


def test_a_card_that_lies_is_caught_by_the_smoke_gate(controller, world):
    card_path = world.models_dir / "iris_model_v1.2.0.json"
    card = json.loads(card_path.read_text())
    card["metrics"]["accuracy"] = 0.99
    card_path.write_text(json.dumps(card))
    seen = phases_saved(controller)
    result = Deployer(controller).deploy("v1.2.0")
    assert result.phase is Phase.ABORTED and seen == ["gating", "loading", "gating", "aborted"]
    assert "smoke accuracy 1.0000 does not match the card's 0.9900" in result.message
    assert world.routed == "blue"


def test_a_dry_run_passes_the_gates_and_switches_nothing(controller, world):
    seen = phases_saved(controller)
    result = Deployer(controller).deploy("v1.2.0", dry_run=True)
    assert result.phase is Phase.VERIFIED and result.succeeded
    assert seen == ["gating", "loading", "gating", "verified"]
    assert world.routed == "blue" and controller.ctx.read_state().stable == "v1.0.0"
    assert "route green" not in world.log


def test_a_switch_that_is_not_confirmed_aborts_the_deploy(controller, world):
    world.front_answers = False
    seen = phases_saved(controller)
    result = Deployer(controller).deploy("v1.2.0")
    assert result.phase is Phase.ABORTED
    assert seen == ["gating", "loading", "gating", "switching", "aborted"]
    assert result.message.startswith("deploy v1.2.0: switch to green not confirmed")
    assert world.routed == "blue" and controller.ctx.read_state().active == "blue"


def unreadable_state(controller, world, at: float, seconds: float) -> None:
    """From ``at`` (world time) for ``seconds``, and at least once, every read of state.json
    fails, as a state file that cannot be read (replaced by another program, a disk error) does."""
    store, read = controller.ctx.store, controller.ctx.store.read
    window = {"until": 0.0, "failed": 0}

    def failing(*args):
        if window["failed"] and world.now >= window["until"]:
            store.read = read
            return read(*args)
        window["failed"] += 1
        raise ControllerError(f"{store.path}: unreadable state (Expecting value: line 1 column 1 (char 0)); "
                              "move it aside and run `bluegreen up`, which records what it finds")

    def begin(w):
        window["until"] = w.now + seconds
        store.read = failing

    world.at.append((at, begin))


@pytest.mark.parametrize("seconds", [0.0, 3.0])  # one read, or every read for 3 s
def test_a_controller_error_in_the_bake_ends_the_deploy_aborted_recorded_with_traffic_back(controller, world,
                                                                                           seconds):
    # Before any poll failed (no first failure to time the rollback from): this once ended in
    # KeyError 'since_ms' after traffic had moved back, with the state left `baking`.
    world.traffic = 20
    unreadable_state(controller, world, at=2.0, seconds=seconds)
    result = Deployer(controller).deploy("v1.2.0")
    assert result.phase is Phase.ABORTED and not result.succeeded
    assert result.message.startswith("deploy v1.2.0 failed: ") and "unreadable state" in result.message
    assert result.message.endswith("; traffic back on blue (v1.0.0)")
    assert world.routed == "blue"
    state = controller.ctx.read_state()
    assert state.active == "blue" and state.phase is Phase.ABORTED and state.stable == "v1.0.0"
    assert "v1.2.0" not in state.rejected  # not shown bad: the bake could not go on
    deploy = events(controller, "deploy")[-1]
    assert deploy["outcome"] == "aborted" and "unreadable state" in deploy["reason"]
    assert events(controller, "rollback")[-1]["outcome"] == "succeeded"


def test_a_bake_whose_rollback_cannot_happen_ends_aborted_and_says_where_traffic_is(controller, world):
    world.traffic = 20

    def both_colors_fail(w):
        w.stop_color("green")
        w.stop_color("blue")
        w.fail_start.add("blue")

    world.at.append((1.5, both_colors_fail))
    seen = phases_saved(controller)
    result = Deployer(controller).deploy("v1.2.0")
    assert seen[-2:] == ["baking", "aborted"]
    assert result.phase is Phase.ABORTED
    # The deploy's lease ends with it: green was on probation, so nginx routes to blue again
    # (docs/adr/0017), and the record says so.
    assert result.message == ("deploy v1.2.0 failed: rollback to v1.0.0 failed: blue did not start: simulated "
                              "failure; traffic stays on green (v1.2.0); but its lease has ended, so nginx routes "
                              "to blue (v1.0.0) again")
    assert controller.ctx.read_state().active == "blue" == world.routed_color()


def test_a_rollback_reloads_the_stable_version_when_the_other_color_lost_it(controller, world):
    world.traffic = 20
    world.at.append((1.5, lambda w: (w.stop_color("green"), w.stop_color("blue"))))
    result = Deployer(controller).deploy("v1.2.0")
    assert result.phase is Phase.ROLLED_BACK
    assert world.routed == "blue" and world.colors["blue"].version == "v1.0.0"
    assert world.log[-3:] == ["stop blue", "start blue v1.0.0", "route blue"]


def test_a_bake_that_fails_rolls_back_to_the_previous_color(controller, world):
    world.traffic, world.error_rate = 20, 0.5
    seen = phases_saved(controller)
    result = Deployer(controller).deploy("v1.2.0")
    assert result.phase is Phase.ROLLED_BACK and not result.succeeded
    assert seen == ["gating", "loading", "gating", "switching", "baking", "rolled-back"]
    assert result.message.startswith("deploy v1.2.0 rolled back: error rate 50.00% over 20 requests since the bake "
                                     "began is above 10.00%")
    state = controller.ctx.read_state()
    assert world.routed == "blue" and (state.stable, state.rejected) == ("v1.0.0", ["v1.2.0"])
    rollback = events(controller, "rollback")[-1]
    assert rollback["outcome"] == "succeeded" and rollback["reason"].startswith("automatic rollback: error rate")
    assert 0 <= rollback["since_ms"] < 1000  # from the failed poll to the old color serving
    # A failed check rolls back at once, at the first poll (failure_limit is for polls the
    # color does not answer): its bounds already allow for chance and repeated looks.
    assert 1.0 <= world.now < 2.0


def test_a_new_color_that_dies_during_the_bake_is_rolled_back(controller, world):
    world.traffic = 20
    world.at.append((3.5, lambda w: w.stop_color("green")))
    result = Deployer(controller).deploy("v1.2.0")
    assert result.phase is Phase.ROLLED_BACK
    assert "green:8080 does not answer" in result.reason
    assert world.routed == "blue"


def test_a_bake_that_sees_no_traffic_pauses_then_goes_back_to_the_stable_version_never_a_pass(controller, world):
    seen = phases_saved(controller)
    result = Deployer(controller).deploy("v1.2.0")
    assert result.phase is Phase.ROLLED_BACK and not result.succeeded
    assert seen[-3:] == ["baking", "paused", "rolled-back"]
    assert result.reason.startswith("paused 60s without a verdict: ")
    assert "error rate: 0 of the 20 requests needed before a verdict" in result.reason
    state = controller.ctx.read_state()
    assert world.routed == "blue" and state.stable == "v1.0.0"
    assert "v1.2.0" not in state.rejected  # not shown bad: only not shown good
    assert 10.0 + 60.0 <= world.now < 10.0 + 60.0 + 5.0  # nothing arrives: no longer than its period, then the pause
    pause = [(e["outcome"], e["reason"][:30]) for e in events(controller, "pause")]
    assert [outcome for outcome, _ in pause] == ["started", "stopped"]


def without_pauses(tmp_path, world):
    controller = make_controller(tmp_path, world, BAKE.replace("pause_timeout = 60.0", "pause_timeout = 0"))
    controller.lifecycle.up()
    return controller


def test_without_pauses_an_undecided_bake_ends_degraded_serving_but_not_stable(tmp_path, world):
    controller = without_pauses(tmp_path, world)
    result = Deployer(controller).deploy("v1.2.0")
    assert result.phase is Phase.DEGRADED and not result.succeeded
    assert "bake inconclusive" in result.message and "green keeps the traffic" in result.message
    assert world.routed == "green" and controller.ctx.read_state().stable == "v1.0.0"


def test_live_accuracy_below_the_limit_fails_the_bake(controller, world):
    world.traffic = 20
    world.at.append((1.5, lambda w: w.label("green", correct=2, wrong=10)))
    result = Deployer(controller).deploy("v1.2.0")
    assert result.phase is Phase.ROLLED_BACK
    assert result.reason.startswith("live accuracy 16.67% over 12 labelled samples since the bake began is below "
                                    "80.00%: its 99% upper bound is ")


def test_a_manual_rollback_after_promotion_ends_the_rollout_rolled_back(controller, world):
    world.traffic = 20
    Deployer(controller).deploy("v1.2.0")
    controller.operations.rollback()
    state = controller.ctx.read_state()
    assert state.phase is Phase.ROLLED_BACK and state.active == "blue"
    assert state.rollout.reasons[-1] == "rolled-back: manual rollback"


def test_a_degraded_rollout_can_be_rolled_back(tmp_path, world):
    controller = without_pauses(tmp_path, world)
    Deployer(controller).deploy("v1.2.0")
    assert controller.ctx.read_state().phase is Phase.DEGRADED
    controller.operations.rollback()
    assert controller.ctx.read_state().phase is Phase.ROLLED_BACK


def test_watch_rolls_back_when_the_active_color_fails(controller, world):
    controller.operations.switch("green")
    world.traffic = 10
    world.at.append((2.5, lambda w: setattr(w, "error_rate", 1.0)))
    assert watch(controller, duration=30) == 1
    assert world.routed == "blue"
    # Judged on everything since the watch began: 100% errors from 2.5 s on, after good traffic.
    assert events(controller)[-1]["reason"].startswith("automatic rollback: error rate ")
    assert events(controller, "gate")[-1]["gate"] == "watch: bake poll: error rate"


def test_watch_returns_0_when_nothing_fails(controller, world):
    world.traffic = 10
    assert watch(controller, duration=5) == 0
    assert world.routed == "blue"


def test_a_dry_run_of_the_version_the_idle_color_already_runs_displaces_nothing(controller, world):
    write_card(world.models_dir, "v9.9.9", accuracy=0.97)
    controller.operations.switch("green")
    controller.operations.switch("blue")                             # green keeps v1.1.0, the rollback target
    with pytest.raises(ControllerError, match="a dry run would replace it"):
        Deployer(controller).deploy("v9.9.9", dry_run=True)
    assert Deployer(controller).deploy("v1.1.0", dry_run=True).phase is Phase.VERIFIED  # nothing to replace
    assert world.colors["green"].version == "v1.1.0"


# -- rollback goes to a promoted version, never to a slot -----------------------------------------
def test_rollback_never_serves_a_version_that_was_never_promoted(controller, world):
    write_card(world.models_dir, "v9.9.8", accuracy=0.97)
    controller.operations.switch("green")
    controller.operations.switch("blue")
    assert Deployer(controller).deploy("v9.9.8", dry_run=True, replace_idle=True).phase is Phase.VERIFIED
    assert world.colors["green"].version == "v9.9.8"
    controller.operations.rollback()
    assert world.routed == "green" and world.colors["green"].version == "v1.1.0"  # loaded back, then switched
    assert events(controller, "rollback")[-1]["to_version"] == "v1.1.0"


def test_a_dry_run_does_not_displace_the_rollback_target_unless_asked(controller, world):
    controller.operations.switch("green")
    controller.operations.switch("blue")
    world.log.clear()
    with pytest.raises(ControllerError, match=r"refusing to deploy v1.2.0: green runs v1.1.0, the version a "
                                              r"rollback returns to; a dry run would replace it \(pass --replace"):
        Deployer(controller).deploy("v1.2.0", dry_run=True)
    assert world.log == [] and world.colors["green"].version == "v1.1.0"


def test_after_a_blocked_deploy_rollback_returns_to_the_promoted_version_not_the_candidate(controller, world):
    card_path = world.models_dir / "iris_model_v1.2.0.json"
    card = json.loads(card_path.read_text())
    card["metrics"]["accuracy"] = 0.99  # the smoke gate blocks it after it was loaded on green
    card_path.write_text(json.dumps(card))
    controller.operations.switch("green")
    controller.operations.switch("blue")
    assert Deployer(controller).deploy("v1.2.0").phase is Phase.ABORTED
    assert world.colors["green"].version == "v1.2.0"
    controller.operations.rollback()
    assert world.routed == "green" and world.colors["green"].version == "v1.1.0"


def test_a_switch_to_a_version_that_was_never_promoted_needs_force(controller, world):
    Deployer(controller).deploy("v1.2.0", dry_run=True)
    with pytest.raises(ControllerError, match="refusing to switch to green: green runs v1.2.0, which was never "
                                              "promoted"):
        controller.operations.switch("green")
    assert world.routed == "blue"
    controller.operations.switch("green", force=True)
    assert controller.ctx.read_state().stable == "v1.2.0"


def test_rollback_with_nothing_promoted_before_says_so(controller, world):
    with pytest.raises(ControllerError, match="nothing to roll back to: v1.0.0 is the only promoted version"):
        controller.operations.rollback()


# -- abort and rollback preempt a running deploy ---------------------------------------------------
@pytest.mark.parametrize("command", ["abort", "rollback"])
def test_abort_and_rollback_preempt_a_bake_at_once(controller, world, command):
    world.traffic = 20
    world.at.append((3.0, lambda w: getattr(controller.operations, command)()))
    result = Deployer(controller).deploy("v1.2.0")
    assert result.phase is Phase.ABORTED and not result.succeeded
    assert world.routed == "blue" and 3.0 <= world.now < 3.5
    request = events(controller, command)[0]
    assert (request["outcome"], request["version"]) == ("requested", "v1.2.0")
    back = events(controller, "rollback")[-1]
    assert back["to_version"] == "v1.0.0" and back["since_ms"] < 1000
    state = controller.ctx.read_state()
    assert state.phase is Phase.ABORTED and state.stable == "v1.0.0"


def test_abort_while_loading_stops_the_deploy_before_any_switch(controller, world):
    world.on_start = lambda w: (setattr(w, "on_start", None), controller.operations.abort())
    result = Deployer(controller).deploy("v1.2.0")
    assert result.phase is Phase.ABORTED
    assert result.message == ("deploy v1.2.0 aborted by the operator before the switch; traffic stays on blue "
                              "(v1.0.0)")
    assert "route green" not in world.log


def test_abort_with_no_rollout_running_says_so(controller, world):
    with pytest.raises(ControllerError, match="no rollout is running: nothing to abort"):
        controller.operations.abort()


# -- the bake judges only its own window ------------------------------------------------------------
def test_feedback_from_before_the_bake_does_not_count(controller, world):
    world.colors["green"].version = "v1.1.0"
    world.label("green", correct=0, wrong=50)  # bad labels on green long before this deploy
    world.traffic = 20
    result = Deployer(controller).deploy("v1.1.0")
    assert result.phase is Phase.PROMOTED, result.message
    assert result.steps[3].outcome == "skipped"  # green already served v1.1.0: its counters were not reset


# -- an interrupted deploy is seen, refused over, and repaired ---------------------------------------
class Killed(BaseException):
    """Stands for a SIGKILL of the deploy process: nothing after it runs."""


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def kill_deploy_at(controller, world, when: float) -> None:
    def kill(w):
        raise Killed

    world.at.append((when, kill))
    with pytest.raises(Killed):
        Deployer(controller).deploy("v1.2.0")
    state = controller.ctx.read_state()
    state.rollout.pid = dead_pid()
    controller.ctx.store.save(state)


def test_a_deploy_killed_during_the_bake_is_seen_refused_over_and_rolled_back(controller, world):
    world.traffic = 20
    kill_deploy_at(controller, world, 2.0)
    assert world.routed == "green"
    warnings = controller.views.status()["warnings"]
    assert len(warnings) == 1 and " ended while baking; `bluegreen reconcile` ends it" in warnings[0]
    with pytest.raises(ControllerError, match=r"refusing to deploy v1.1.0: the deploy of v1.2.0 \(pid \d+\) "
                                              r"ended while baking; .* or pass --force"):
        Deployer(controller).deploy("v1.1.0")
    controller.reconciler.reconcile()
    state = controller.ctx.read_state()
    assert world.routed == "blue" and state.phase is Phase.ABORTED
    assert state.rollout.reasons[-1].endswith("traffic returned to v1.0.0")
    assert events(controller, "reconcile")[-1]["outcome"] == "repaired"


def test_a_deploy_killed_while_loading_leaves_traffic_and_the_record_true(controller, world):
    def kill(w):
        raise Killed

    world.on_start = kill
    with pytest.raises(Killed):
        Deployer(controller).deploy("v1.2.0")
    world.on_start = None
    state = controller.ctx.read_state()
    state.rollout.pid = dead_pid()
    controller.ctx.store.save(state)
    assert controller.ctx.read_state().phase is Phase.LOADING
    world.traffic = 20
    result = Deployer(controller).deploy("v1.2.0", force=True)  # --force ends the old rollout first
    assert result.phase is Phase.PROMOTED
    repair = [e for e in events(controller, "reconcile") if "ended while loading" in e["reason"]]
    assert repair and repair[0]["reason"].endswith("traffic never left v1.0.0")


def test_the_record_of_a_color_follows_what_it_serves(controller, world):
    world.colors["green"].version = "v1.2.0"  # changed behind the controller's back
    controller.reconciler.reconcile()
    assert controller.ctx.read_state().versions["green"] == "v1.2.0"
    repair = events(controller, "reconcile")[-1]
    assert repair["reason"] == "green serves v1.2.0 but the record said v1.1.0"


def test_a_rollout_of_a_live_deploy_is_not_taken_for_interrupted(controller, world):
    state = controller.ctx.read_state()
    state.rollout = Rollout("v1.2.0", "blue", "green", phase=Phase.BAKING, pid=1)  # pid 1 runs, since long ago
    state.rollout.pid_started = None
    controller.ctx.store.save(state)
    assert controller.views.status()["warnings"] == []
    with pytest.raises(ControllerError, match=r"refusing to deploy v1.1.0: a deploy of v1.2.0 is baking \(pid 1\)"):
        Deployer(controller).deploy("v1.1.0")
    with pytest.raises(ControllerError, match="refusing to switch to green: a deploy of v1.2.0 is baking"):
        controller.operations.switch("green")


# -- a color that recovers before the decision is not rolled back ------------------------------------
def test_a_color_that_answers_again_before_the_decision_is_not_rolled_back(controller, world):
    world.traffic = 20
    world.at.append((1.5, lambda w: setattr(w.colors["green"], "silent_probes", 2)))
    result = Deployer(controller).deploy("v1.2.0")
    assert result.phase is Phase.PROMOTED, result.message
    recovered = events(controller, "reconcile")[-1]
    assert recovered["outcome"] == "recovered" and "answered again before the rollback decision" in recovered["reason"]


def test_watch_does_not_roll_back_a_color_that_recovered(controller, world):
    world.traffic = 10
    world.at.append((2.5, lambda w: setattr(w.colors["blue"], "silent_probes", 2)))
    assert watch(controller, duration=8) == 0
    assert world.routed == "blue"
    assert events(controller)[-1]["outcome"] == "recovered"


def test_a_switch_whose_outcome_could_not_be_recorded_moves_no_traffic(controller, world):
    controller.lifecycle.up()
    history = controller.ctx.store.history_path
    history.unlink()
    history.mkdir()
    with pytest.raises(ControllerError, match="nothing could be recorded; move it aside"):
        controller.operations.switch("green")
    assert world.routed == "blue" and controller.ctx.read_state().active == "blue"


def test_watch_forgets_a_failed_poll_once_the_color_answers_again(controller, world):
    # Two blips far apart are not two failures in a row: an unbounded watch must not add them up.
    world.traffic = 10
    world.at.append((2.5, lambda w: setattr(w.colors["blue"], "silent_probes", 1)))
    world.at.append((8.5, lambda w: setattr(w.colors["blue"], "silent_probes", 2)))  # one poll, one recheck
    assert controller.ctx.config.bake.failure_limit == 1
    assert watch(controller, duration=14) == 0
    assert world.routed == "blue"
    assert [e for e in events(controller) if e["action"] == "rollback"] == []


def test_watch_rejects_the_version_it_rolls_back(controller, world):
    controller.operations.switch("green")
    world.traffic = 10
    world.at.append((2.5, lambda w: setattr(w, "error_rate", 1.0)))
    assert watch(controller, duration=30) == 1
    state = controller.ctx.read_state()
    assert (world.routed, state.stable, state.rejected) == ("blue", "v1.0.0", ["v1.1.0"])
    with pytest.raises(ControllerError, match="green runs v1.1.0, which was never promoted"):
        controller.operations.switch("green")


# -- reload and down check what they claim -----------------------------------------------------------
def test_a_reload_that_nginx_does_not_apply_is_undone_and_fails(controller, world):
    before = world.config_text
    world.settings_generation, world.reload_ignored = "000000000002", True
    with pytest.raises(ControllerError) as caught:
        controller.lifecycle.reload()
    assert str(caught.value) == (
        "nginx did not take the new config (the front door serves config generation 000000000001, not the new "
        "000000000002 (nginx: bind() to 127.0.0.1:8080 failed (98: Address already in use))); the previous config "
        "is back in place and serving")
    assert world.config_text == before
    assert events(controller, "reload")[-1]["outcome"] == "failed"
    world.reload_ignored = False
    assert controller.lifecycle.reload() == "nginx config replaced and reloaded; the front door serves it"


def test_a_reload_whose_front_door_does_not_answer_the_active_color_is_undone(controller, world):
    before = world.config_text
    world.settings_generation = world.misrouting_generation = "000000000003"  # a template that lost the route
    with pytest.raises(ControllerError, match=r"nginx did not take the new config \(the front door is not answered "
                                              r"by blue after 5s \(last: HTTP 502\)\); the previous config is back"):
        controller.lifecycle.reload()
    assert world.config_text == before and world.front_color() == "blue"


def test_down_says_when_something_still_listens(controller, world):
    world.stop = lambda: None  # a proxy that does not stop
    with pytest.raises(ControllerError, match=r"stopped nginx and both colors, but something still listens: "
                                              r"port 8080 \(pid 77: nginx: worker process\)"):
        controller.lifecycle.down()
    assert events(controller, "down")[-1]["outcome"] == "failed"


def test_failovers_become_history_lines_once(controller, world):
    world.colors["green"].failovers = 37  # green answered 37 requests meant for blue
    controller.reconciler.reconcile()
    controller.reconciler.reconcile()
    lines = events(controller, "failover")
    assert len(lines) == 1
    assert (lines[0]["from"], lines[0]["to"], lines[0]["requests"]) == ("blue", "green", 37)
    world.colors["green"].failovers = 40
    controller.reconciler.reconcile()
    assert [e["requests"] for e in events(controller, "failover")] == [37, 3]


def test_a_new_color_whose_requests_fail_over_is_rolled_back_and_the_failover_recorded(controller, world):
    world.traffic = 20

    def failing_over(w):  # green's workers reset connections: nginx answers from blue instead
        w.colors["blue"].failovers += 15

    for t in (1.5, 2.5, 3.5):
        world.at.append((t, failing_over))
    result = Deployer(controller).deploy("v1.2.0")
    assert result.phase is Phase.ROLLED_BACK
    assert "answered by the other color" in result.reason
    assert events(controller, "failover")[0]["to"] == "blue"


# -- paired answers, pauses and promote (docs/adr/0014) ---------------------------------------------
def test_a_version_that_disagrees_with_the_stable_one_is_rolled_back_without_labels(controller, world):
    world.traffic = 20
    world.version_disagreement["v1.2.0"] = 0.3
    result = Deployer(controller).deploy("v1.2.0")
    assert result.phase is Phase.ROLLED_BACK and world.routed == "blue"
    assert result.reason.startswith("disagreement: green (v1.2.0) predicts another class than blue (v1.0.0) on ")
    assert "paired rows" in result.reason and "99% bounds " in result.reason
    assert "the sequential test of 'at most 5.50%' against 'at least 11.00%' decided 'at least 11.00%'" in result.reason
    state = controller.ctx.read_state()
    assert "v1.2.0" in state.rejected and world.mirror_percent == 0 and state.pairing is None
    deploy = events(controller, "deploy")[-1]
    assert deploy["bake"]["numbers"]["llr"] >= deploy["bake"]["numbers"]["llr_fail"]


def test_a_version_that_agrees_with_the_stable_one_is_promoted_without_labels(controller, world):
    world.traffic = 20
    world.version_disagreement["v1.2.0"] = 0.01
    result = Deployer(controller).deploy("v1.2.0")
    assert result.phase is Phase.PROMOTED, result.message
    numbers = result.bake.numbers
    assert numbers["labelled"] == 0 and numbers["paired_rows"] >= 50 and numbers["llr"] <= numbers["llr_pass"]


def test_without_paired_answers_the_bake_says_the_paired_checks_were_not_judged(tmp_path, world):
    controller = make_controller(tmp_path, world, BAKE + "paired_sample = 0\n")
    controller.lifecycle.up()
    world.traffic = 20
    result = Deployer(controller).deploy("v1.2.0")
    assert result.phase is Phase.PROMOTED
    assert "paired checks not judged" in result.bake.reason and "mirror 100%" not in world.log


def test_promote_ends_a_degraded_rollout_recorded_with_what_it_overrode(tmp_path, world):
    controller = without_pauses(tmp_path, world)
    Deployer(controller).deploy("v1.2.0")
    assert controller.ctx.read_state().phase is Phase.DEGRADED
    assert controller.operations.promote("labels come next week; the canary dashboards looked fine") is Phase.PROMOTED
    state = controller.ctx.read_state()
    assert state.phase is Phase.PROMOTED and state.stable == "v1.2.0" and world.routed == "green"
    promote = events(controller, "promote")[-1]
    assert promote["outcome"] == "succeeded" and "labels come next week" in promote["reason"]
    assert promote["overrode"]["verdict"] == "inconclusive" and "error rate" in promote["overrode"]["reason"]


def test_promote_of_a_paused_bake_promotes_it(controller, world):
    world.at.append((40.0, lambda w: controller.operations.promote("checked by hand")))
    result = Deployer(controller).deploy("v1.2.0")
    assert result.phase is Phase.PROMOTED and result.succeeded and 40.0 <= world.now < 41.0
    assert result.reason.startswith("promoted by the operator (checked by hand) over: ")
    assert controller.ctx.read_state().stable == "v1.2.0"


def test_pairing_left_on_by_a_dead_process_is_turned_off_by_the_next_command(controller, world):
    with controller.reconciler.locked() as state:
        world.mirror(100)
        state.pairing = {"pid": dead_pid(), "pid_started": 1, "percent": 100}
        controller.ctx.store.save(state)
    controller.reconciler.reconcile()
    assert world.mirror_percent == 0 and controller.ctx.read_state().pairing is None
    assert "which is gone: turned off" in events(controller, "reconcile")[-1]["reason"]


def test_watch_pairs_the_active_color_with_the_version_a_rollback_returns_to(controller, world):
    world.traffic = 20
    Deployer(controller).deploy("v1.2.0")              # v1.2.0 on green, v1.0.0 warm on blue
    world.log.clear()
    world.version_disagreement["v1.2.0"] = 0.3          # it starts answering differently
    assert watch(controller, duration=60) == 1
    assert world.routed == "blue" and world.log[0] == "mirror 100%"
    assert events(controller, "gate")[-1]["gate"] == "watch: bake poll: disagreement with the stable version"

"""The canary's state machine against a fake world: shares, step verdicts, rollback to 0%, abort.

Traffic in ``tests/control/fakes.py`` reaches the idle color in the canary's share, so the
bake's own monitor judges each step on what that color answered. The same behaviours are
proven against real nginx and gunicorn in ``tests/integration/test_canary.py``.
"""

from __future__ import annotations

import json

import pytest

from app.control.canary import parse_weights
from app.control.deploy import Deployer
from app.control.rollout import Phase, Verdict
from app.errors import ControllerError
from tests.control.fakes import World, make_controller, write_card

# 100 requests/s: 10% of it is 100 requests in a 10 s step, above min_requests. An undecided
# step goes on for 10 s more at most, then pauses for a minute.
BAKE = """
[bake]
period = 10.0
interval = 1.0
failure_limit = 1
min_labelled = 10
min_requests = 40
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
    world = World(models)
    world.traffic = 100.0
    return world


@pytest.fixture
def controller(tmp_path, world):
    controller = make_controller(tmp_path, world, BAKE)
    controller.lifecycle.up()
    world.log.clear()
    return controller


def canary_events(controller) -> list[tuple]:
    return [(e["outcome"], e.get("weight"), e.get("step")) for e in controller.views.history()
            if e["action"] == "canary"]


@pytest.mark.parametrize("text, weights", [("10,50,100", [10, 50, 100]), ("100", [100]), ("1,2,100", [1, 2, 100])])
def test_weights_rise_and_end_with_the_switch(text, weights):
    assert parse_weights(text) == weights


@pytest.mark.parametrize("text", ["10,50", "50,10,100", "0,100", "10,10,100", "10,abc,100", "", "10,150"])
def test_other_weights_are_refused_in_one_line(text):
    with pytest.raises(ControllerError, match="--canary") as caught:
        parse_weights(text)
    assert "\n" not in str(caught.value)


def test_a_healthy_canary_moves_step_by_step_then_switches_and_bakes(controller, world):
    phases = []
    save = controller.ctx.store.save
    controller.ctx.store.save = lambda state: (
        phases.append((state.phase.value, state.rollout and state.rollout.weight)), save(state))[1]
    result = Deployer(controller).deploy("v1.1.0", canary=[10, 50, 100], step_seconds=10)
    assert result.phase is Phase.PROMOTED, result.message
    assert [(s.weight, s.verdict) for s in result.canary] == [(10, Verdict.PASS), (50, Verdict.PASS)]
    # The shares the world saw, in order, and the switch once the last partial step passed.
    assert [line for line in world.log if line.startswith(("split", "route"))] == [
        "split green 10%", "split green 50%", "route green", "split green 0%"]
    assert ("canary", 10) in phases and ("canary", 50) in phases and ("baking", 100) in phases
    assert phases[-1][0] == "promoted"
    # Exposure: 10% then 50% of 100 requests/s for 10 s each, give or take a poll.
    assert 500 <= result.exposure <= 700
    assert canary_events(controller) == [("step", 10, 1), ("passed", 10, 1), ("step", 50, 2), ("passed", 50, 2),
                                         ("step", 100, 3)]
    state = controller.ctx.read_state()
    assert state.active == "green" and state.stable == "v1.1.0"
    assert state.rollout.step == 2 and state.rollout.weight == 100 and state.rollout.canary == [10, 50, 100]
    deploy = [e for e in controller.views.history() if e["action"] == "deploy"][-1]
    assert deploy["outcome"] == "promoted" and deploy["exposure"] == result.exposure
    assert json.loads(json.dumps(result.to_json()))["exposure"] == result.exposure


def test_a_broken_canary_goes_back_to_zero_at_the_first_step_and_is_rejected(controller, world):
    world.version_error_rates["v1.1.0"] = 0.5
    result = Deployer(controller).deploy("v1.1.0", canary=[10, 50, 100], step_seconds=10)
    assert result.phase is Phase.ROLLED_BACK
    assert [s.weight for s in result.canary] == [10] and result.canary[0].verdict is Verdict.FAIL
    assert world.split_share() == ("green", 0) and world.routed == "blue"
    assert [line for line in world.log if line.startswith(("split", "route"))] == ["split green 10%",
                                                                                   "split green 0%"]
    # Only its 10% share reached it, and only until the first failing poll.
    assert 0 < result.exposure <= 100
    assert "reached it" in result.message and str(result.exposure) in result.message
    state = controller.ctx.read_state()
    assert "v1.1.0" in state.rejected and state.rollout.phase is Phase.ROLLED_BACK
    cleared = [e for e in controller.views.history() if e["action"] == "canary" and e["outcome"] == "cleared"]
    assert cleared and cleared[0]["from_weight"] == 10


def test_a_step_without_enough_requests_never_moves_on(controller, world):
    world.traffic = 2.0  # 10% of it: 2 requests in the step, far below min_requests, 16 by the pause's end
    result = Deployer(controller).deploy("v1.1.0", canary=[10, 100], step_seconds=10)
    assert result.phase is Phase.ROLLED_BACK
    assert result.canary[0].verdict is Verdict.INCONCLUSIVE and "never moves on" in result.reason
    assert "paused 60s without a verdict" in result.reason
    assert world.routed == "blue" and world.split_share()[1] == 0
    assert "v1.1.0" not in controller.ctx.read_state().rejected  # not shown bad: only not shown good


def test_an_undecided_step_pauses_with_its_share_until_promote_moves_it_on(controller, world):
    world.traffic = 2.0
    seen = []
    save = controller.ctx.store.save
    controller.ctx.store.save = lambda state: (seen.append((state.phase.value, world.split_share()[1])),
                                               save(state))[1]
    world.at.append((40.0, lambda w: controller.operations.promote("the step looked fine on the dashboard")))
    result = Deployer(controller).deploy("v1.1.0", canary=[10, 50, 100], step_seconds=10)
    assert ("paused", 10) in seen                       # the share stayed on while paused
    assert ("canary", 50) in seen                       # then the next step
    assert result.canary[0].verdict is Verdict.PASS and "promoted by the operator" in result.canary[0].reason
    promotes = [(e["outcome"], e["reason"]) for e in controller.views.history() if e["action"] == "promote"]
    assert promotes[0][0] == "requested" and "the step looked fine on the dashboard" in promotes[0][1]
    assert promotes[1][0] == "succeeded"
    overrode = [e for e in controller.views.history() if e["action"] == "promote"][1]["overrode"]
    assert overrode["verdict"] == "inconclusive" and "error rate" in overrode["reason"]


def test_an_abort_during_a_pause_ends_it_at_once(controller, world):
    world.traffic = 2.0
    world.at.append((40.0, lambda w: controller.operations.abort()))
    result = Deployer(controller).deploy("v1.1.0", canary=[10, 100], step_seconds=10)
    assert result.phase is Phase.ABORTED and 40.0 <= world.now < 41.0
    assert world.split_share()[1] == 0 and world.routed == "blue"


def test_a_verdict_that_arrives_during_a_pause_decides(controller, world):
    world.traffic = 2.0
    world.at.append((35.0, lambda w: setattr(w, "traffic", 100.0)))  # the canary's share gets busy
    result = Deployer(controller).deploy("v1.1.0", canary=[10, 100], step_seconds=10)
    assert result.phase is Phase.PROMOTED
    assert result.canary[0].verdict is Verdict.PASS and "promoted by the operator" not in result.canary[0].reason
    assert world.now < 40.0 + 60.0  # long before the pause would have run out


def test_promote_refuses_a_rollout_that_is_not_paused_or_degraded(controller, world):
    with pytest.raises(ControllerError, match="nothing to promote: no rollout has run"):
        controller.operations.promote()
    world.traffic = 100.0
    Deployer(controller).deploy("v1.1.0", canary=[10, 100], step_seconds=10)
    with pytest.raises(ControllerError, match="the rollout of v1.1.0 is promoted; only a paused or degraded"):
        controller.operations.promote()


def test_abort_at_a_step_puts_the_share_back_at_once(controller, world):
    world.at.append((15.0, lambda w: controller.operations.abort()))  # during the second step (50%)
    result = Deployer(controller).deploy("v1.1.0", canary=[10, 50, 100], step_seconds=10)
    assert result.phase is Phase.ABORTED
    assert world.split_share()[1] == 0 and world.routed == "blue"
    state = controller.ctx.read_state()
    assert state.rollout.phase is Phase.ABORTED and state.versions["blue"] == "v1.0.0"
    assert [s.weight for s in result.canary] == [10, 50] and result.canary[1].verdict is Verdict.INCONCLUSIVE
    outcomes = [(e["action"], e["outcome"]) for e in controller.views.history()]
    assert ("abort", "requested") in outcomes and ("canary", "cleared") in outcomes


def test_sticky_assignment_is_off_by_default_and_asked_for_explicitly(controller, world):
    Deployer(controller).deploy("v1.1.0", canary=[10, 100], step_seconds=10, sticky=True)
    assert "split green 10% sticky" in world.log


def test_an_interrupted_canary_is_repaired_back_to_zero(controller, world):
    world.on_start = None
    state = controller.ctx.read_state()
    controller.ctx.store.save(state)
    world.split("green", 50)
    from app.control.rollout import Rollout

    with controller.ctx.store.locked(5):
        state = controller.ctx.read_state()
        rollout = Rollout("v1.1.0", "blue", "green", phase=Phase.CANARY, pid=2 ** 22 + 12345, pid_started=1,
                          canary=[10, 50, 100], step=1, weight=50)
        state.rollout = rollout
        controller.ctx.store.save(state)
    controller.reconciler.reconcile()
    assert world.split_share()[1] == 0
    state = controller.ctx.read_state()
    assert state.rollout.phase is Phase.ABORTED
    assert "canary share went back to 0%" in state.rollout.reasons[-1]


def test_a_deploy_is_refused_while_a_shadow_runs(controller, world):
    world.mirror(25)
    with pytest.raises(ControllerError, match="shadow stop"):
        Deployer(controller).deploy("v1.1.0", canary=[10, 100])

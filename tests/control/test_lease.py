"""The controller's lease: renewed while held, lapsing by itself, and what the record makes of a lapse.

The bound itself (users back on the stable version within the lease after a kill -9 or a
SIGSTOP of the controller) is measured against real nginx and gunicorn in
tests/integration/test_faults.py; here the lease's own logic and the repairs over the fakes.
"""

from __future__ import annotations

import threading
import time

import pytest

from app.control.deploy import Deployer
from app.control.lease import Lease
from app.control.rollout import Phase
from app.errors import ControllerError
from tests.control.fakes import World, make_controller, write_card
from tests.control.test_reconciler import BAKE, Killed, dead_pid


class Files:
    """The proxy's side of a lease: the last ``until`` it was given, and a switch to fail."""

    def __init__(self):
        self.until: float | None = None
        self.renewals = 0
        self.failing = False

    def lease(self, until):
        if self.failing and until is not None:
            raise ControllerError("lease/: cannot renew the lease (No space left on device)")
        self.until = until
        self.renewals += until is not None


def test_a_held_lease_is_renewed_and_ended_when_released():
    files = Files()
    lease = Lease(files, seconds=0.5, every=0.05)
    with lease.held():
        first = files.until
        time.sleep(0.3)
        assert files.until > first and files.renewals >= 3 and lease.lapsed() is None
        with lease.held():  # a second holder (a judged window's pairs) shares it
            pass
        assert files.until is not None
    assert files.until is None and lease.lapsed() is None


def test_a_lease_that_cannot_be_renewed_says_why():
    files = Files()
    lease = Lease(files, seconds=0.5, every=0.05)
    lease.take()
    files.failing = True
    time.sleep(0.2)
    assert "could not be renewed" in lease.lapsed() and "No space left on device" in lease.lapsed()
    lease.release()


def test_a_lease_whose_holder_was_stopped_longer_than_the_lease_is_not_taken_up_again():
    files = Files()
    clock = [1000.0]
    lease = Lease(files, seconds=3.0, now=lambda: clock[0], every=0.05)
    lease.take()
    clock[0] += 5.0  # the process was stopped (SIGSTOP) for 5 s: nothing renewed meanwhile
    time.sleep(0.2)
    renewals = files.renewals
    time.sleep(0.2)
    assert files.renewals == renewals  # the renewing thread gave up
    assert "lease lapsed" in lease.lapsed() and "5s without a renewal" in lease.lapsed()
    lease.release()
    assert all(thread.name != "bluegreen-lease" for thread in threading.enumerate())


@pytest.fixture
def world(tmp_path):
    models = tmp_path / "models"
    for version in ("v1.0.0", "v1.1.0", "v1.2.0"):
        write_card(models, version, accuracy=0.95)
    return World(models)


@pytest.fixture
def controller(tmp_path, world):
    controller = make_controller(tmp_path, world, BAKE)
    controller.lifecycle.up()
    return controller


def killed_at(controller, world, when: float, canary=None) -> None:
    world.traffic = 20
    world.at.append((when, lambda w: (_ for _ in ()).throw(Killed)))
    with pytest.raises(Killed):
        Deployer(controller).deploy("v1.2.0", canary=canary, step_seconds=10 if canary else None)
    state = controller.ctx.read_state()
    state.rollout.pid = dead_pid()
    controller.ctx.store.save(state)


def test_a_bake_whose_lease_lapsed_is_served_by_the_stable_color_and_the_record_follows(controller, world):
    killed_at(controller, world, 2.0)
    assert world.routed_color() == "green" and world.probation == "green"  # the lease has not lapsed yet
    world.lease_lapsed = True  # bake.lease seconds later
    assert world.routed_color() == "blue"
    status = controller.views.status()
    assert status["active"] == "blue" and status["lease"] == {"live": False, "probation": "green"}
    assert any("no controller holds the lease" in w and "users are on blue (v1.0.0)" in w for w in status["warnings"])
    controller.reconciler.reconcile()
    state = controller.ctx.read_state()
    assert (state.active, world.routed, world.probation, state.phase) == ("blue", "blue", None, Phase.ABORTED)
    reasons = [e["reason"] for e in controller.views.history() if e["action"] == "reconcile"]
    assert any("green (v1.2.0) was on probation for a judged window, and the lease of the controller judging it "
               "lapsed" in r for r in reasons)


def test_a_canary_whose_lease_lapsed_sends_no_request_to_the_new_version(controller, world):
    killed_at(controller, world, 3.0, canary=[20, 100])
    assert world.split_share() == ("green", 20)
    world.lease_lapsed = True
    before = world.colors["green"].requests
    world.sleep(5.0)
    assert world.colors["green"].requests == before  # the markers are there; nginx no longer applies them
    controller.reconciler.reconcile()
    assert world.split_share() == ("green", 0) and controller.ctx.read_state().phase is Phase.ABORTED


def test_a_promoted_bake_leaves_no_color_on_probation(controller, world):
    world.traffic = 20
    assert Deployer(controller).deploy("v1.2.0").phase is Phase.PROMOTED
    assert world.probation is None and world.lease_until is None  # ended and released
    world.lease_lapsed = True
    assert world.routed_color() == "green"

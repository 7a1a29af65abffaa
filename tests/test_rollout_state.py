"""The rollout record: atomic, locked, and repaired from what nginx serves."""

from __future__ import annotations

import pytest

from app.errors import ControllerError
from app.rollout import RolloutState, StateStore


def test_a_new_store_starts_blue_with_the_configured_versions(tmp_path):
    state = StateStore(tmp_path).load("blue", {"blue": "v1.0.0", "green": "v1.1.0"})
    assert (state.active, state.idle, state.previous) == ("blue", "green", None)
    assert state.versions == {"blue": "v1.0.0", "green": "v1.1.0"}


def test_a_record_that_disagrees_with_nginx_is_repaired(tmp_path):
    store = StateStore(tmp_path)
    store.save(RolloutState(active="blue", versions={"blue": "v1", "green": "v2"}))
    state = store.load("green")
    assert (state.active, state.previous) == ("green", "blue")
    assert state.history[-1]["action"] == "reconcile"
    assert store.load("green").active == "green"  # persisted


def test_an_unreadable_record_is_a_clear_error(tmp_path):
    (tmp_path / "state.json").write_text("{half")
    with pytest.raises(ControllerError, match="unreadable state"):
        StateStore(tmp_path).load("blue")


def test_the_lock_is_exclusive(tmp_path):
    store = StateStore(tmp_path)
    with store.locked(1), pytest.raises(ControllerError, match="another bluegreen command is running"), \
            StateStore(tmp_path).locked(0.2):
        pass
    with store.locked(0.2):
        pass

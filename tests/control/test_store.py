"""The state file and the history log: small, atomic, locked, read without writing."""

from __future__ import annotations

import json

import pytest

from app.control.events import Action, Event, Outcome
from app.control.rollout import Phase, Rollout, RolloutState
from app.control.store import StateStore
from app.errors import ControllerError

VERSIONS = {"blue": "v1.0.0", "green": "v1.1.0"}
GOOD = {"format": 3, "active": "blue", "previous": None, "versions": VERSIONS, "promoted": [], "rejected": [],
        "rollout": None}


def test_a_new_store_starts_blue_with_the_configured_versions(tmp_path):
    state = StateStore(tmp_path).read(VERSIONS)
    assert (state.active, state.idle, state.previous, state.stable, state.phase) == (
        "blue", "green", None, None, Phase.IDLE)
    assert state.versions == VERSIONS


def test_reading_never_writes(tmp_path):
    store = StateStore(tmp_path / "run")
    store.read(VERSIONS)
    store.history()
    assert not (tmp_path / "run").exists()


def test_state_round_trips_with_its_rollout(tmp_path):
    store = StateStore(tmp_path)
    rollout = Rollout("v1.2.0", source="blue", target="green")
    rollout.advance(Phase.LOADING)
    store.save(RolloutState(active="blue", versions=dict(VERSIONS), promoted=["v0.9.0", "v1.0.0"],
                            rejected=["v0.9.5"], rollout=rollout))
    state = store.read(VERSIONS)
    assert state.rollout == rollout and state.phase is Phase.LOADING and state.stable == "v1.0.0"
    assert (state.promoted, state.rejected) == (["v0.9.0", "v1.0.0"], ["v0.9.5"])
    assert "history" not in json.loads((tmp_path / "state.json").read_text())


@pytest.mark.parametrize("content, error", [
    ("{half", "unreadable state (Expecting property name"),
    ("[]", "unreadable state (not a JSON object)"),
    (json.dumps({"format": 3, "active": "blue"}), "unreadable state (missing key 'previous')"),
    (json.dumps({**GOOD, "active": "red"}), "unreadable state (unknown color 'red')"),
    (json.dumps({**GOOD, "versions": 3}), "unreadable state ("),
    (json.dumps({**GOOD, "promoted": [1]}), "unreadable state (promoted and rejected must list version strings)"),
    (json.dumps({**GOOD, "rollout": {"version": "v1"}}), "unreadable state (missing key 'source')"),
    (json.dumps({**GOOD, "promoted": "v1.2.0"}), "unreadable state (promoted has the wrong type (str))"),
    (json.dumps({**GOOD, "rollout": [1, 2]}), "unreadable state (rollout has the wrong type (list))"),
    ("[" * 100_000 + "]" * 100_000, "unreadable state (nested too deeply)"),
    (b"\xff\xfe{}", "unreadable state ("),
])
def test_an_unreadable_record_is_one_clear_line(tmp_path, content, error):
    if isinstance(content, bytes):
        (tmp_path / "state.json").write_bytes(content)
    else:
        (tmp_path / "state.json").write_text(content)
    with pytest.raises(ControllerError) as caught:
        StateStore(tmp_path).read(VERSIONS)
    assert error in str(caught.value) and "\n" not in str(caught.value)


def test_a_first_format_record_is_read_and_its_history_moved_to_the_log_once(tmp_path):
    old = {"active": "green", "previous": "blue", "versions": VERSIONS, "stable": "green", "phase": "healthy",
           "history": [{"time": "t", "action": "switch", "outcome": "succeeded", "reason": "", "to": "green"}]}
    (tmp_path / "state.json").write_text(json.dumps(old))
    store = StateStore(tmp_path)
    state = store.read(VERSIONS)
    assert (state.active, state.previous, state.stable) == ("green", "blue", "v1.1.0")
    assert [e["to"] for e in store.history()] == ["green"]
    store.save(state)
    store.save(state)
    assert [e["to"] for e in store.history()] == ["green"]


def test_a_second_format_record_is_read(tmp_path):
    rollout = {"version": "v1.2.0", "source": "blue", "target": "green", "phase": "promoted", "started": "t",
               "updated": "t", "dry_run": False, "reasons": []}
    (tmp_path / "state.json").write_text(json.dumps({"format": 2, "active": "green", "previous": "blue",
                                                     "versions": VERSIONS, "stable": "v1.2.0", "rollout": rollout}))
    state = StateStore(tmp_path).read(VERSIONS)
    assert (state.stable, state.rollout.phase, state.rollout.pid) == ("v1.2.0", Phase.PROMOTED, None)


def test_history_is_an_append_only_log_that_rotates(tmp_path):
    store = StateStore(tmp_path, history_max_bytes=400, history_keep=2)
    for i in range(20):
        store.append(Event(action=Action.SWITCH, outcome=Outcome.SUCCEEDED, reason=f"switch {i}"))
    kept = [e["reason"] for e in store.history()]
    assert kept == [f"switch {i}" for i in range(20 - len(kept), 20)]
    assert 3 <= len(kept) < 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.jsonl", "history.jsonl.1", "history.jsonl.2"]
    assert [e["reason"] for e in store.history(limit=2)] == ["switch 18", "switch 19"]


def test_a_state_of_a_format_this_version_does_not_know_is_refused_and_left_as_it_is(tmp_path):
    text = json.dumps({**GOOD, "format": 4, "promoted": ["v1.0.0", "v1.2.0"]})
    (tmp_path / "state.json").write_text(text)
    with pytest.raises(ControllerError, match="state format 4 is not one this bluegreen reads"):
        StateStore(tmp_path).read(VERSIONS)
    assert (tmp_path / "state.json").read_text() == text


def test_history_lines_that_are_not_events_are_skipped_and_a_broken_state_does_not_hide_the_history(tmp_path):
    store = StateStore(tmp_path)
    store.append(Event(action=Action.UP, outcome=Outcome.SUCCEEDED))
    with open(tmp_path / "history.jsonl", "ab") as handle:
        for line in (b"\xff\xfe not utf-8", b"[" * 50_000 + b"]" * 50_000, b"[1, 2, 3]", b'"a string"', b"{}",
                     b'{"action": 3, "outcome": "x"}'):
            handle.write(line + b"\n")
    store.append(Event(action=Action.DOWN, outcome=Outcome.SUCCEEDED))
    (tmp_path / "state.json").write_text("{half")
    assert [e["action"] for e in store.history()] == ["up", "down"]


def test_nothing_is_changed_when_the_outcome_could_not_be_recorded(tmp_path):
    store = StateStore(tmp_path)
    store.append(Event(action=Action.UP, outcome=Outcome.SUCCEEDED))
    (tmp_path / "history.jsonl").unlink()
    (tmp_path / "history.jsonl").mkdir()
    with pytest.raises(ControllerError, match="history.jsonl: not a regular file, so nothing could be recorded"):
        store.check_writable()


def test_a_line_cut_short_by_a_crash_is_skipped(tmp_path):
    store = StateStore(tmp_path)
    store.append(Event(action=Action.UP, outcome=Outcome.SUCCEEDED))
    with open(tmp_path / "history.jsonl", "a") as handle:
        handle.write('{"time": "t", "act')
    store.append(Event(action=Action.DOWN, outcome=Outcome.SUCCEEDED))
    assert [e["action"] for e in store.history()] == ["up", "down"]


def test_the_lock_is_exclusive(tmp_path):
    store = StateStore(tmp_path)
    with store.locked(1), pytest.raises(ControllerError, match="another bluegreen command is running"), \
            StateStore(tmp_path).locked(0.2):
        pass
    with store.locked(0.2):
        pass


def test_a_run_directory_that_cannot_be_written_is_one_line(tmp_path):
    # A regular file where the run directory should be: no write below it can succeed,
    # whoever runs the test (root ignores permission bits).
    (tmp_path / "run").write_text("")
    store = StateStore(tmp_path / "run")
    with pytest.raises(ControllerError, match=r"run/state.json: cannot write the state \("):
        store.save(RolloutState(versions=dict(VERSIONS)))
    with pytest.raises(ControllerError, match=r"run/history.jsonl: cannot write the history \("):
        store.append(Event(action=Action.UP, outcome=Outcome.SUCCEEDED))

"""A rollout moves along the transition table only."""

from __future__ import annotations

import pytest

from app.control.rollout import TRANSITIONS, InvalidTransition, Phase, Rollout


def rollout_in(phase: Phase) -> Rollout:
    rollout = Rollout("v1.2.0", source="blue", target="green")
    rollout.phase = phase
    return rollout


P = Phase
# The allowed moves, written out here rather than read from TRANSITIONS: a change to the
# table must change this list too.
ALLOWED = [
    (P.GATING, P.LOADING), (P.GATING, P.CANARY), (P.GATING, P.SWITCHING), (P.GATING, P.VERIFIED),
    (P.GATING, P.ABORTED),
    (P.LOADING, P.GATING), (P.LOADING, P.ABORTED),
    (P.CANARY, P.SWITCHING), (P.CANARY, P.PAUSED), (P.CANARY, P.ROLLED_BACK), (P.CANARY, P.ABORTED),
    (P.SWITCHING, P.BAKING), (P.SWITCHING, P.ABORTED),
    (P.BAKING, P.PROMOTED), (P.BAKING, P.PAUSED), (P.BAKING, P.ROLLED_BACK), (P.BAKING, P.DEGRADED),
    (P.BAKING, P.ABORTED),
    (P.PAUSED, P.CANARY), (P.PAUSED, P.SWITCHING), (P.PAUSED, P.PROMOTED), (P.PAUSED, P.ROLLED_BACK),
    (P.PAUSED, P.ABORTED),
    (P.DEGRADED, P.PROMOTED), (P.DEGRADED, P.ROLLED_BACK),
    (P.PROMOTED, P.ROLLED_BACK),
]
FORBIDDEN = [(a, b) for a in Phase for b in Phase if (a, b) not in ALLOWED]


def test_the_table_is_exactly_the_allowed_moves():
    assert sorted((a, b) for a, targets in TRANSITIONS.items() for b in targets) == sorted(ALLOWED)


@pytest.mark.parametrize("start, end", ALLOWED, ids=[f"{a.value}->{b.value}" for a, b in ALLOWED])
def test_each_allowed_transition(start, end):
    rollout = rollout_in(start)
    rollout.advance(end, "why")
    assert rollout.phase is end and rollout.reasons[-1] == f"{end.value}: why"


@pytest.mark.parametrize("start, end", FORBIDDEN, ids=[f"{a.value}->{b.value}" for a, b in FORBIDDEN])
def test_each_other_transition_is_refused(start, end):
    rollout = rollout_in(start)
    with pytest.raises(InvalidTransition, match=f"{start.value} -> {end.value} is not a valid transition"):
        rollout.advance(end)
    assert rollout.phase is start


def test_a_new_rollout_starts_gating_and_only_terminal_phases_end_it():
    assert Rollout("v1.2.0", "blue", "green").phase is Phase.GATING
    finished = {p for p in Phase if not p.running}
    assert finished == {Phase.IDLE, Phase.PROMOTED, Phase.VERIFIED, Phase.ROLLED_BACK, Phase.ABORTED,
                        Phase.DEGRADED}
    assert Phase.PAUSED.running  # a paused rollout is still driven (and judged) by its deploy

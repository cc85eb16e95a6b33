"""Work orders and runs: the run state machine, a work order's state from its
runs (Lightning's update_state), and a run's state from its finished case."""

from __future__ import annotations

from itertools import permutations

import pytest

from petriflow.engine.errors import IllegalTransition, Invalid
from petriflow.engine.states import FINAL_RUN_STATES, RunState, WorkOrderState, advance
from petriflow.engine.workorders import run_state_of_case, update_state

R = RunState

# -- update_state: every (other run, given run) pair ------------------------------

GIVEN = "available claimed started success failed crashed cancelled killed exception lost".split()

# Lightning's rule (docs/architecture.md, "Work orders, runs and steps"), by hand:
# an unfinished other run decides (started ->
# running, available/claimed -> pending); a finished one is skipped, so the
# given run decides: unfinished as above, else its own final state.
EXPECTED = {
    # other run     given: available claimed started success failed crashed cancelled killed exception lost
    "available": "pending pending pending pending pending pending pending pending pending pending",
    "claimed": "pending pending pending pending pending pending pending pending pending pending",
    "started": "running running running running running running running running running running",
    "success": "pending pending running success failed crashed cancelled killed exception lost",
    "failed": "pending pending running success failed crashed cancelled killed exception lost",
    "crashed": "pending pending running success failed crashed cancelled killed exception lost",
    "cancelled": "pending pending running success failed crashed cancelled killed exception lost",
    "killed": "pending pending running success failed crashed cancelled killed exception lost",
    "exception": "pending pending running success failed crashed cancelled killed exception lost",
    "lost": "pending pending running success failed crashed cancelled killed exception lost",
}
PAIRS = [
    (other, given, expected)
    for other, row in EXPECTED.items()
    for given, expected in zip(GIVEN, row.split(), strict=True)
]


def test_the_expectation_table_covers_every_pair():
    assert set(EXPECTED) == set(GIVEN) == {state.value for state in RunState}
    assert len(PAIRS) == 100


@pytest.mark.parametrize("other,given,expected", PAIRS)
def test_update_state_for_every_pair(other, given, expected):
    assert update_state([RunState(other)], RunState(given)) == WorkOrderState(expected)


SEVERAL = [
    ([], R.SUCCESS, "success"),
    ([], R.AVAILABLE, "pending"),
    ([], R.STARTED, "running"),
    ([R.CLAIMED, R.STARTED], R.SUCCESS, "running"),  # started before claimed
    ([R.CLAIMED, R.AVAILABLE], R.FAILED, "pending"),
    ([R.AVAILABLE, R.STARTED], R.AVAILABLE, "running"),
    ([R.AVAILABLE], R.STARTED, "pending"),  # the given run comes last, even when started
    ([R.SUCCESS, R.FAILED], R.CRASHED, "crashed"),  # finished runs are not considered
    ([R.FAILED, R.FAILED, R.LOST], R.SUCCESS, "success"),
    ([R.LOST, R.CLAIMED, R.SUCCESS], R.KILLED, "pending"),
    ([R.CANCELLED, R.STARTED, R.CLAIMED, R.AVAILABLE], R.EXCEPTION, "running"),
]


@pytest.mark.parametrize("others,given,expected", SEVERAL)
def test_update_state_with_several_other_runs(others, given, expected):
    for order in permutations(others):
        assert update_state(list(order), given) == WorkOrderState(expected)


def test_rejected_is_never_derived_from_runs():
    assert all(update_state([other], given) is not WorkOrderState.REJECTED for other in R for given in R)


# -- the run state machine --------------------------------------------------------

FINALS = "success failed crashed cancelled killed exception lost".split()
LEGAL = (
    {("available", "claimed"), ("claimed", "started")}
    | {("available", s) for s in ("cancelled", "lost", "exception")}
    | {("claimed", s) for s in ("cancelled", "lost", "exception")}
    | {("started", s) for s in FINALS}
)


def test_final_run_states():
    assert FINAL_RUN_STATES == {RunState(s) for s in FINALS}


@pytest.mark.parametrize("current,target", sorted(LEGAL))
def test_run_machine_allows(current, target):
    assert advance(RunState(current), RunState(target)) is RunState(target)


@pytest.mark.parametrize(
    "current,target", sorted((c.value, t.value) for c in R for t in R if (c.value, t.value) not in LEGAL)
)
def test_run_machine_refuses_everything_else(current, target):
    with pytest.raises(IllegalTransition, match=f"run: illegal transition {current} -> {target}$"):
        advance(RunState(current), RunState(target))


# -- a run's state from its case ------------------------------------------------------

CASE_ENDINGS = [
    ("finished", None, R.SUCCESS),
    ("terminated", "failed", R.FAILED),
    ("terminated", "timeout", R.KILLED),
    ("terminated", "crashed", R.CRASHED),
    ("terminated", "exception", R.EXCEPTION),
    ("terminated", "abandoned", R.FAILED),
    ("terminated", None, R.CANCELLED),
    ("created", None, None),
    ("active", None, None),
]


@pytest.mark.parametrize("case_state,failure_kind,expected", CASE_ENDINGS)
def test_run_state_of_case(case_state, failure_kind, expected):
    assert run_state_of_case(case_state, failure_kind) == expected


@pytest.mark.parametrize(
    "case_state,failure_kind,message",
    [
        ("terminated", "gremlins", "unknown failure kind 'gremlins'"),
        ("sleeping", None, "unknown case state 'sleeping'"),
    ],
)
def test_run_state_of_case_refuses_unknown_values(case_state, failure_kind, message):
    with pytest.raises(Invalid, match=message):
        run_state_of_case(case_state, failure_kind)

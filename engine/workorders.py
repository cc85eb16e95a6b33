"""Work orders and runs, after OpenFn Lightning (DESIGN.md section 4).

A work order is one input (a webhook call, a cron tick, a manual
submission); each run is one case of the workflow for it, and a retry adds a
run to the same work order. The work order's state follows its runs.

This module must not import `engine.records`: the records import it.
"""

from __future__ import annotations

from enum import StrEnum

from petriflow.engine.errors import IllegalTransition, Invalid
from petriflow.engine.states import CaseState


class RunState(StrEnum):
    AVAILABLE = "available"
    CLAIMED = "claimed"
    STARTED = "started"
    SUCCESS = "success"
    FAILED = "failed"
    CRASHED = "crashed"
    CANCELLED = "cancelled"
    KILLED = "killed"
    EXCEPTION = "exception"
    LOST = "lost"


class WorkOrderState(StrEnum):
    REJECTED = "rejected"
    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    CRASHED = "crashed"
    CANCELLED = "cancelled"
    KILLED = "killed"
    EXCEPTION = "exception"
    LOST = "lost"


_R = RunState

FINAL_RUN_STATES: frozenset[RunState] = frozenset(
    {_R.SUCCESS, _R.FAILED, _R.CRASHED, _R.CANCELLED, _R.KILLED, _R.EXCEPTION, _R.LOST}
)

_ENDINGS_BEFORE_START = frozenset({_R.CANCELLED, _R.LOST, _R.EXCEPTION})
"""A run that never started can be cancelled, lost or fail in the engine;
it cannot succeed, fail, crash or time out, since none of its steps ran."""

RUN_TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    _R.AVAILABLE: frozenset({_R.CLAIMED}) | _ENDINGS_BEFORE_START,
    _R.CLAIMED: frozenset({_R.STARTED}) | _ENDINGS_BEFORE_START,
    _R.STARTED: FINAL_RUN_STATES,
    **{final: frozenset() for final in FINAL_RUN_STATES},
}


def advance_run(current: RunState, target: RunState) -> RunState:
    """Return `target` if a run may move from `current` to it, else raise."""
    if target not in RUN_TRANSITIONS[current]:
        raise IllegalTransition(f"run: illegal transition {current} -> {target}")
    return target


_UNFINISHED_PRECEDENCE = (_R.STARTED, _R.AVAILABLE, _R.CLAIMED)
_STATE_OF_UNFINISHED = {
    _R.STARTED: WorkOrderState.RUNNING,
    _R.AVAILABLE: WorkOrderState.PENDING,
    _R.CLAIMED: WorkOrderState.PENDING,
}


def update_state(other_runs: list[RunState], given: RunState) -> WorkOrderState:
    """The work order's state once `given` is the state of its latest-changed run.

    Lightning's rule: the other unfinished runs, started before available
    before claimed, then the given run last; the first decides. So an
    unfinished run keeps the work order pending or running whatever the
    given run did, and only when none is left does the given run's final
    state become the work order's. `rejected` is never the outcome: it is
    set when a work order is refused before any run exists."""
    decider = min(
        (state for state in other_runs if state in _STATE_OF_UNFINISHED),
        key=_UNFINISHED_PRECEDENCE.index,
        default=given,
    )
    return _STATE_OF_UNFINISHED.get(decider) or WorkOrderState(decider)


_RUN_STATE_OF_FAILURE = {
    "failed": _R.FAILED,
    "timeout": _R.KILLED,
    "crashed": _R.CRASHED,
    "exception": _R.EXCEPTION,
    "abandoned": _R.FAILED,
    "lost": _R.LOST,
}


def run_state_of_case(case_state: str, failure_kind: str | None) -> RunState | None:
    """The final state of a run whose case ended; None while the case goes on.

    A terminated case without a failure was stopped on purpose: cancelled."""
    if case_state == CaseState.FINISHED:
        return _R.SUCCESS
    if case_state == CaseState.TERMINATED:
        if failure_kind is None:
            return _R.CANCELLED
        if failure_kind not in _RUN_STATE_OF_FAILURE:
            raise Invalid(f"unknown failure kind {failure_kind!r}; known: {', '.join(_RUN_STATE_OF_FAILURE)}")
        return _RUN_STATE_OF_FAILURE[failure_kind]
    if case_state in (CaseState.CREATED, CaseState.ACTIVE):
        return None
    raise Invalid(f"unknown case state {case_state!r}")

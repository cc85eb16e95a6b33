"""How a work order's state follows its runs, after OpenFn Lightning
(docs/architecture.md, "Work orders, runs and steps").

A work order is one input (a webhook call, a cron tick, a manual
submission); each run is one case of the workflow for it, and a retry adds a
run to the same work order. The states themselves are in `engine.states`.
"""

from __future__ import annotations

from petriflow.engine.errors import Invalid
from petriflow.engine.records import RunRecord
from petriflow.engine.states import CaseState, RunState, WorkOrderState

_R = RunState

_UNFINISHED_PRECEDENCE = (_R.STARTED, _R.AVAILABLE, _R.CLAIMED)
_STATE_OF_UNFINISHED = {
    _R.STARTED: WorkOrderState.RUNNING,
    _R.AVAILABLE: WorkOrderState.PENDING,
    _R.CLAIMED: WorkOrderState.PENDING,
}


def queue(runs: list[RunRecord]) -> tuple[int, list[RunRecord]]:
    """A workflow's unfinished runs as its concurrency sees them: how many
    hold a slot (claimed or started), and the available ones in the order
    they start in (by creation)."""
    active = sum(1 for run in runs if run.state in (_R.CLAIMED, _R.STARTED))
    waiting = sorted((run for run in runs if run.state is _R.AVAILABLE), key=lambda run: (run.created_at, run.id))
    return active, waiting


def admissible(runs: list[RunRecord], limit: int) -> list[str]:
    """The ids of the available runs that may be claimed now under a
    concurrency `limit`: the first in `queue`, as many as the slots free."""
    active, waiting = queue(runs)
    return [run.id for run in waiting[: max(0, limit - active)]]


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
    "no_route": _R.FAILED,
}


def run_state_of_case(case_state: str, failure_kind: str | None) -> RunState | None:
    """The final state of a run whose case ended; None while the case goes on.

    A terminated case without a failure was stopped on purpose: cancelled."""
    if case_state == CaseState.FINISHED:
        return _R.SUCCESS
    if case_state == CaseState.TERMINATED:
        return run_state_of_termination(failure_kind)
    if case_state in (CaseState.CREATED, CaseState.ACTIVE):
        return None
    raise Invalid(f"unknown case state {case_state!r}")


def run_state_of_termination(failure_kind: str | None) -> RunState:
    """The final state of a run whose case was terminated: by its failure's
    kind, or `cancelled` when it was stopped on purpose (no failure)."""
    if failure_kind is None:
        return _R.CANCELLED
    if failure_kind not in _RUN_STATE_OF_FAILURE:
        raise Invalid(f"unknown failure kind {failure_kind!r}; known: {', '.join(_RUN_STATE_OF_FAILURE)}")
    return _RUN_STATE_OF_FAILURE[failure_kind]

"""Every state machine of petriflow: Case, Token, Task and Workitem (after
WorkflowMetal), and Run and WorkOrder (after OpenFn Lightning).

Each machine is an enum and one table of allowed transitions in
`TRANSITIONS`; terminal states are those with no way out. `advance` checks
every machine the same way and refuses anything else with
`IllegalTransition`. Storage applies the same tables as compare-and-set
conditions, so a state can never move backwards, even when two
incarnations of an actor race.
"""

from __future__ import annotations

import re
from enum import StrEnum

from petriflow.engine.errors import IllegalTransition


class CaseState(StrEnum):
    CREATED = "created"
    ACTIVE = "active"
    FINISHED = "finished"
    TERMINATED = "terminated"


class TokenState(StrEnum):
    FREE = "free"
    LOCKED = "locked"
    CONSUMED = "consumed"


class TaskState(StrEnum):
    STARTED = "started"
    ALLOCATED = "allocated"
    EXECUTING = "executing"
    COMPLETED = "completed"
    ABANDONED = "abandoned"


class WorkitemState(StrEnum):
    CREATED = "created"
    STARTED = "started"
    COMPLETED = "completed"
    ABANDONED = "abandoned"
    FAILED = "failed"


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


_C, _T, _K, _W, _R, _O = CaseState, TaskState, TokenState, WorkitemState, RunState, WorkOrderState

_RUN_ENDINGS = frozenset({_R.SUCCESS, _R.FAILED, _R.CRASHED, _R.CANCELLED, _R.KILLED, _R.EXCEPTION, _R.LOST})
_RUN_ENDINGS_BEFORE_START = frozenset({_R.CANCELLED, _R.LOST, _R.EXCEPTION})
"""A run that never started can be cancelled, lost or fail in the engine;
it cannot succeed, fail, crash or time out, since none of its steps ran."""

_ORDER_ENDINGS = frozenset(_O(state.value) for state in _RUN_ENDINGS)
"""A work order ends as its deciding run did (Lightning's `update_state`)."""

TRANSITIONS: dict[type[StrEnum], dict[StrEnum, frozenset[StrEnum]]] = {
    CaseState: {
        _C.CREATED: frozenset({_C.ACTIVE, _C.TERMINATED}),
        _C.ACTIVE: frozenset({_C.FINISHED, _C.TERMINATED}),
        _C.FINISHED: frozenset(),
        _C.TERMINATED: frozenset(),
    },
    TokenState: {
        _K.FREE: frozenset({_K.LOCKED}),
        _K.LOCKED: frozenset({_K.CONSUMED}),
        _K.CONSUMED: frozenset(),
    },
    TaskState: {
        _T.STARTED: frozenset({_T.ALLOCATED, _T.ABANDONED}),
        _T.ALLOCATED: frozenset({_T.EXECUTING, _T.ABANDONED}),
        _T.EXECUTING: frozenset({_T.COMPLETED, _T.ABANDONED}),
        _T.COMPLETED: frozenset(),
        _T.ABANDONED: frozenset(),
    },
    WorkitemState: {
        _W.CREATED: frozenset({_W.STARTED, _W.ABANDONED, _W.FAILED}),
        _W.STARTED: frozenset({_W.COMPLETED, _W.ABANDONED, _W.FAILED}),
        _W.COMPLETED: frozenset(),
        _W.ABANDONED: frozenset(),
        _W.FAILED: frozenset(),
    },
    RunState: {
        _R.AVAILABLE: frozenset({_R.CLAIMED}) | _RUN_ENDINGS_BEFORE_START,
        _R.CLAIMED: frozenset({_R.STARTED}) | _RUN_ENDINGS_BEFORE_START,
        _R.STARTED: _RUN_ENDINGS,
        **{ending: frozenset() for ending in _RUN_ENDINGS},
    },
    # A work order follows its runs: a retry adds a run, so an ended work
    # order becomes pending again; only a rejected one never moves.
    WorkOrderState: {
        _O.REJECTED: frozenset(),
        _O.PENDING: frozenset({_O.RUNNING}) | _ORDER_ENDINGS,
        _O.RUNNING: frozenset({_O.PENDING}) | _ORDER_ENDINGS,
        **{ending: frozenset({_O.PENDING}) for ending in _ORDER_ENDINGS},
    },
}


def can_advance(current: StrEnum, target: StrEnum) -> bool:
    return target in TRANSITIONS[type(current)][current]


def predecessors(target: StrEnum) -> frozenset[StrEnum]:
    """States from which `target` may be entered: the CAS condition storage uses."""
    table = TRANSITIONS[type(target)]
    return frozenset(state for state, nexts in table.items() if target in nexts)


def machine_name(machine: type[StrEnum]) -> str:
    """`WorkOrderState` -> "work order": how errors name a machine."""
    return re.sub(r"(?<!^)(?=[A-Z])", " ", machine.__name__.removesuffix("State")).lower()


def advance(current: StrEnum, target: StrEnum, *, entity: str = "") -> StrEnum:
    """Return `target` if the machine allows `current -> target`, else raise
    `IllegalTransition` naming the entity (or the machine) and both states."""
    who = entity or machine_name(type(current))
    if type(current) is not type(target):
        raise IllegalTransition(f"{who}: cannot mix {current!r} and {target!r}")
    if not can_advance(current, target):
        raise IllegalTransition(f"{who}: illegal transition {current.value} -> {target.value}")
    return target


def is_terminal(state: StrEnum) -> bool:
    return not TRANSITIONS[type(state)][state]


FINAL_RUN_STATES: frozenset[RunState] = frozenset(s for s in RunState if is_terminal(s))
UNFINISHED_WORK_ORDER_STATES: frozenset[WorkOrderState] = frozenset({_O.PENDING, _O.RUNNING})
"""A work order with a run still to end; every other state is settled until a retry."""

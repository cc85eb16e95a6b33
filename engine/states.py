"""The state machines of Case, Token, Task and Workitem.

Each machine is a table of allowed transitions; `advance` refuses anything
else with `IllegalTransition`. Storage applies the same tables as
compare-and-set conditions, so a state can never move backwards, even when
two incarnations of an actor race.
"""

from __future__ import annotations

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


_C, _T, _K, _W = CaseState, TaskState, TokenState, WorkitemState

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
}


def can_advance(current: StrEnum, target: StrEnum) -> bool:
    return target in TRANSITIONS[type(current)][current]


def predecessors(target: StrEnum) -> frozenset[StrEnum]:
    """States from which `target` may be entered: the CAS condition storage uses."""
    table = TRANSITIONS[type(target)]
    return frozenset(state for state, nexts in table.items() if target in nexts)


def advance(current: StrEnum, target: StrEnum, *, entity: str = "") -> StrEnum:
    """Return `target` if the machine allows `current -> target`, else raise."""
    if type(current) is not type(target):
        raise IllegalTransition(f"{entity or type(current).__name__}: cannot mix {current!r} and {target!r}")
    if not can_advance(current, target):
        raise IllegalTransition(
            f"{entity or type(current).__name__}: illegal transition {current.value} -> {target.value}"
        )
    return target


def is_terminal(state: StrEnum) -> bool:
    return not TRANSITIONS[type(state)][state]

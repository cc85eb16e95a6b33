"""Runtime entities as stored: Case, Token, Task, Workitem.

Ids are UUID strings and every row carries `workflow_id` and `case_id`, so
any entity can be traced to its case without a join. `incarnation` is bumped
each time an actor takes the entity on; storage refuses writes from older
incarnations (docs/architecture.md, "Restore and fencing"). `pid` is the OS process of the
incarnation that claimed it last: what a person needs to kill it on purpose.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from petriflow.engine.states import CaseState, RunState, TaskState, TokenState, WorkitemState, WorkOrderState

GENESIS = "genesis"
"""`produced_by_task_id` of the token a case starts with."""

FINISHER = "case"
"""`consumed_by_task_id` of the end token, consumed when its case finishes."""


def new_id() -> str:
    return str(uuid.uuid4())


def now() -> float:
    return time.time()


@dataclass(frozen=True)
class Failure:
    """Why a case stopped without finishing.

    `kind` is `failed` (executor failed past its retry policy), `timeout`
    (a step outlived its `timeout_s`), `crashed` (past the restart intensity)
    or `exception` (an engine error)."""

    kind: str
    reason: str
    transition_id: str | None = None
    task_id: str | None = None
    workitem_id: str | None = None


@dataclass(frozen=True)
class CaseRecord:
    id: str
    workflow_id: str
    workflow_version: int
    state: CaseState = CaseState.CREATED
    input: dict[str, Any] = field(default_factory=dict)
    failure: Failure | None = None
    incarnation: int = 0
    pid: int | None = None
    created_at: float = field(default_factory=now)
    updated_at: float = field(default_factory=now)
    work_order_id: str | None = None
    run_id: str | None = None
    node_id: str | None = None  # the node a case without a work order is placed on


@dataclass(frozen=True)
class TokenRecord:
    id: str
    case_id: str
    workflow_id: str
    place_id: str
    payload: dict[str, Any] = field(default_factory=dict)
    state: TokenState = TokenState.FREE
    produced_by_task_id: str = GENESIS
    locked_by_task_id: str | None = None
    consumed_by_task_id: str | None = None
    created_at: float = field(default_factory=now)


@dataclass(frozen=True)
class TaskRecord:
    id: str
    case_id: str
    workflow_id: str
    transition_id: str
    state: TaskState = TaskState.STARTED
    token_payload: dict[str, Any] | None = None
    incarnation: int = 0
    pid: int | None = None
    created_at: float = field(default_factory=now)
    updated_at: float = field(default_factory=now)
    wake_at: float | None = None  # a timer's task: when it fires (epoch seconds)


@dataclass(frozen=True)
class WorkitemRecord:
    """One execution of a transition's executor: a step, in Lightning's words.

    `awaiting` is set once the executor answered `Started`: the work was handed
    off and only `CompleteWorkitem` finishes it, so a restore must not run the
    executor again."""

    id: str
    task_id: str
    case_id: str
    workflow_id: str
    transition_id: str
    state: WorkitemState = WorkitemState.CREATED
    input: dict[str, Any] = field(default_factory=dict)
    output: dict[str, Any] | None = None
    failure: Failure | None = None
    attempt: int = 0
    awaiting: bool = False
    incarnation: int = 0
    pid: int | None = None
    created_at: float = field(default_factory=now)
    started_at: float | None = None
    finished_at: float | None = None
    interrupted_at: list[list[float]] | None = None  # [when, by which restarter]: attempts lost with their node


@dataclass(frozen=True)
class WorkOrderRecord:
    """One input (a webhook call, a cron tick, a manual submission) and the
    runs started for it; its state aggregates theirs (Lightning)."""

    id: str
    workflow_id: str
    trigger_type: str = "manual"
    trigger_id: str | None = None
    state: WorkOrderState = WorkOrderState.PENDING
    input: dict[str, Any] | None = field(default_factory=dict)
    incarnation: int = 0
    pid: int | None = None
    created_at: float = field(default_factory=now)
    updated_at: float = field(default_factory=now)
    node_id: str | None = None  # placement: the node that hosts it and everything under it
    node_incarnation: int | None = None  # the incarnation of that node which took it on last


@dataclass(frozen=True)
class RunRecord:
    """One invocation of the workflow for a work order: exactly one case.

    A retried run names the run and step it was retried from, and the steps
    it took over from earlier runs without executing them again."""

    id: str
    work_order_id: str
    workflow_id: str
    workflow_version: int
    case_id: str
    state: RunState = RunState.AVAILABLE
    retried_from_run_id: str | None = None
    retried_from_step_id: str | None = None
    kept_step_ids: list[str] = field(default_factory=list)
    failure: Failure | None = None
    created_at: float = field(default_factory=now)
    claimed_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None

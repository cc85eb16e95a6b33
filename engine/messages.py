"""The messages petriflow's actors and clients exchange.

Requests carry the id of the entity they are for, so any actor on the path
(Engine -> Case -> Task -> Workitem) can route them. Every request from a
client gets a reply: the result, or `Error(code, message)`. All of these
round-trip through `engine.codec`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.records import CaseRecord, Failure, TaskRecord, TokenRecord, WorkitemRecord
from engine.states import WorkitemState

# -- replies ----------------------------------------------------------------


@dataclass(frozen=True)
class Error:
    code: str
    message: str


@dataclass(frozen=True)
class Ok:
    pass


@dataclass(frozen=True)
class WorkflowStored:
    workflow_id: str
    version: int


@dataclass(frozen=True)
class WorkflowView:
    document: dict[str, Any]


@dataclass(frozen=True)
class CaseStarted:
    case_id: str


@dataclass(frozen=True)
class CaseView:
    case: CaseRecord
    tokens: list[TokenRecord] = field(default_factory=list)
    tasks: list[TaskRecord] = field(default_factory=list)
    workitems: list[WorkitemRecord] = field(default_factory=list)


@dataclass(frozen=True)
class CaseList:
    cases: list[CaseRecord] = field(default_factory=list)


@dataclass(frozen=True)
class LockedTokens:
    tokens: list[TokenRecord] = field(default_factory=list)


@dataclass(frozen=True)
class EngineInfo:
    pid: int
    sid: int
    storage: str
    live_cases: int


# -- client requests to the Engine --------------------------------------------


@dataclass(frozen=True)
class Ping:
    pass


@dataclass(frozen=True)
class PutWorkflow:
    document: dict[str, Any]


@dataclass(frozen=True)
class GetWorkflow:
    workflow_id: str
    version: int | None = None


@dataclass(frozen=True)
class DiscardWorkflow:
    workflow_id: str


@dataclass(frozen=True)
class StartCase:
    workflow_id: str
    input: dict[str, Any] = field(default_factory=dict)
    version: int | None = None


@dataclass(frozen=True)
class GetCase:
    case_id: str


@dataclass(frozen=True)
class GetTask:
    task_id: str


@dataclass(frozen=True)
class GetWorkitem:
    workitem_id: str


@dataclass(frozen=True)
class WaitCase:
    """Answered with the CaseView once the case is finished or terminated."""

    case_id: str


@dataclass(frozen=True)
class ListCases:
    states: list[str] | None = None


@dataclass(frozen=True)
class TerminateCase:
    case_id: str


@dataclass(frozen=True)
class CompleteWorkitem:
    workitem_id: str
    output: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AbandonWorkitem:
    workitem_id: str


# -- the Task's interface (WorkflowMetal's Task), addressed by task id ------


@dataclass(frozen=True)
class ReceiveTokens:
    task_id: str
    tokens: list[TokenRecord]


@dataclass(frozen=True)
class Preexecute:
    """Lock the tokens that enable the task; answered with `LockedTokens` or
    `Error(task_not_enabled | tokens_not_available)`."""

    task_id: str


@dataclass(frozen=True)
class DiscardTokens:
    task_id: str
    tokens: list[TokenRecord]


@dataclass(frozen=True)
class ForceAbandon:
    task_id: str


@dataclass(frozen=True)
class UpdateWorkitem:
    task_id: str
    workitem_id: str
    state: WorkitemState
    output: dict[str, Any] | None = None
    failure: Failure | None = None


# -- between the entity actors ------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """What every entity actor needs to find its storage and behave alike."""

    storage_url: str
    idle_timeout_s: float | None = None
    die_with_parent: bool = False
    log_path: str | None = None


@dataclass(frozen=True)
class InitCase:
    case_id: str
    settings: Settings


@dataclass(frozen=True)
class InitTask:
    task_id: str
    case_id: str
    settings: Settings


@dataclass(frozen=True)
class InitWorkitem:
    workitem_id: str
    task_id: str
    settings: Settings


@dataclass(frozen=True)
class TokensLocked:
    task_id: str
    token_ids: list[str]


@dataclass(frozen=True)
class CompleteTask:
    """Task -> Case: consume my locked tokens and issue new ones with this payload."""

    task_id: str
    token_payload: dict[str, Any]


@dataclass(frozen=True)
class TaskCompleted:
    task_id: str


@dataclass(frozen=True)
class TaskAbandoned:
    task_id: str


@dataclass(frozen=True)
class TaskFailed:
    task_id: str
    failure: Failure


@dataclass(frozen=True)
class BootEngine:
    """The first message to the Engine: where its storage is; it then restores
    every unfinished case."""

    settings: Settings


@dataclass(frozen=True)
class CaseEnded:
    case_id: str
    state: str

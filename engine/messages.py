"""The messages petriflow's actors and clients exchange.

Requests carry the id of the entity they are for, so any actor on the path
(Engine -> Case -> Task -> Workitem) can route them. Every request from a
client gets a reply: the result, or `Error(code, message)`. All of these
round-trip through `engine.codec`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from petriflow.engine.records import (
    CaseRecord,
    Failure,
    RunRecord,
    TaskRecord,
    TokenRecord,
    WorkitemRecord,
    WorkOrderRecord,
)
from petriflow.engine.states import WorkitemState

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
    live_work_orders: int = 0
    booted_at: float = 0.0
    work_orders: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkflowList:
    documents: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class WorkOrderSubmitted:
    work_order_id: str
    run_id: str


@dataclass(frozen=True)
class StepView:
    """One workitem execution of a run; `kept` when a retry took it over
    from an earlier run without executing it again."""

    step_id: str
    workitem_id: str
    transition_id: str
    state: str
    attempt: int
    input: dict[str, Any] | None
    output: dict[str, Any] | None
    started_at: float | None
    finished_at: float | None
    kept: bool = False
    failure: Failure | None = None


@dataclass(frozen=True)
class RunView:
    run: RunRecord
    steps: list[StepView] = field(default_factory=list)


@dataclass(frozen=True)
class WorkOrderView:
    work_order: WorkOrderRecord
    runs: list[RunView] = field(default_factory=list)


@dataclass(frozen=True)
class WorkOrderList:
    work_orders: list[WorkOrderRecord] = field(default_factory=list)


@dataclass(frozen=True)
class RunEnqueued:
    run_id: str
    work_order_id: str


@dataclass(frozen=True)
class RetryManyResult:
    enqueued: int
    discarded: int


@dataclass(frozen=True)
class ActorInfo:
    kind: str
    entity_id: str
    state: str
    pid: int | None


@dataclass(frozen=True)
class ActorList:
    actors: list[ActorInfo] = field(default_factory=list)


@dataclass(frozen=True)
class Event:
    """A change clients can subscribe to: `work_order_created`,
    `work_order_updated`, `run_created` or `run_updated`."""

    kind: str
    work_order: WorkOrderRecord
    run: RunRecord | None = None


@dataclass(frozen=True)
class CronFired:
    work_order_ids: list[str] = field(default_factory=list)


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


@dataclass(frozen=True)
class ListWorkflows:
    pass


@dataclass(frozen=True)
class SubmitWorkOrder:
    """A manual submission: a work order with its first run."""

    workflow_id: str
    input: dict[str, Any] = field(default_factory=dict)
    version: int | None = None


@dataclass(frozen=True)
class SubmitWebhook:
    trigger_id: str
    body: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CronTick:
    """Fire the cron triggers due at `now` (seconds since the epoch): the
    daemon's clock, or a test's."""

    now: float


@dataclass(frozen=True)
class GetWorkOrder:
    work_order_id: str


@dataclass(frozen=True)
class WaitWorkOrder:
    """Answered with the WorkOrderView once no run of it is unfinished."""

    work_order_id: str


@dataclass(frozen=True)
class ListWorkOrders:
    states: list[str] | None = None
    workflow_id: str | None = None
    since: float | None = None


@dataclass(frozen=True)
class RetryRun:
    run_id: str
    step_id: str


@dataclass(frozen=True)
class RunStep:
    run_id: str
    step_id: str


@dataclass(frozen=True)
class RetryMany:
    """Retry work orders from their first step, or runs from given steps,
    in one storage transaction."""

    work_order_ids: list[str] = field(default_factory=list)
    steps: list[RunStep] = field(default_factory=list)


@dataclass(frozen=True)
class CancelWorkOrder:
    work_order_id: str


@dataclass(frozen=True)
class Subscribe:
    pass


@dataclass(frozen=True)
class Unsubscribe:
    pass


@dataclass(frozen=True)
class ListActors:
    pass


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
    cron: bool = False


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
class InitWorkOrder:
    work_order_id: str
    settings: Settings


@dataclass(frozen=True)
class StartRun:
    run_id: str


@dataclass(frozen=True)
class CaseActivated:
    case_id: str


@dataclass(frozen=True)
class BootEngine:
    """The first message to the Engine: where its storage is; it then restores
    every unfinished case."""

    settings: Settings


@dataclass(frozen=True)
class CaseEnded:
    case_id: str
    state: str

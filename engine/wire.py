"""The wire protocol: what a client may send the Engine, and what it gets back.

Every type here is registered with `engine.codec`, and only these are: a
client's request is decoded against this list, so a message meant for the
actors inside (`engine.messages`) can never arrive from outside. Every
request gets exactly one reply: its result, or `Error(code, message)`.
Requests carry the id of the entity they are for, so the actors on the path
(Engine -> WorkOrder -> Case -> Task -> Workitem) can route them.
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
    storage: str
    live_cases: int
    live_work_orders: int = 0
    booted_at: float = 0.0
    work_orders: dict[str, int] = field(default_factory=dict)
    nodes: dict[str, int] = field(default_factory=dict)  # node id -> pid, of the nodes that answered
    waiting_for_slot: dict[str, int] = field(default_factory=dict)  # workflow id -> runs its concurrency holds back
    timers: int = 0  # timers waiting for their deadline


@dataclass(frozen=True)
class TriggerAuth:
    auth: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeLiveness:
    node_id: str
    pid: int | None  # None until the node first answered
    silent_s: float  # since its last answer to a heartbeat
    answering: bool


@dataclass(frozen=True)
class StorageOutageView:
    """A part of the daemon waiting out a storage outage (`engine.outage`)."""

    part: str  # "engine" or a node id
    since: float  # wall-clock seconds
    code: str  # storage_unavailable or storage_full
    reason: str


@dataclass(frozen=True)
class Liveness:
    """The answer to `Heartbeat`: the Engine is alive, how its nodes are,
    and which parts wait for storage to take writes again."""

    pid: int
    nodes: list[NodeLiveness] = field(default_factory=list)
    outages: list[StorageOutageView] = field(default_factory=list)


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
    awaiting: bool = False  # it waits to be completed from outside (`complete`): a person, an outside system


@dataclass(frozen=True)
class TimerView:
    """A timer of a run still waiting for its deadline (epoch seconds)."""

    task_id: str
    transition_id: str
    due_at: float


@dataclass(frozen=True)
class ChoiceView:
    """A manual step of a run waiting in a deferred choice for a person to
    take it (`preexecute`, or `petriflow complete TASK`)."""

    task_id: str
    transition_id: str


@dataclass(frozen=True)
class QueueView:
    """Why an available run waits: its workflow's `concurrency` is taken
    (`started` counts claimed runs too); `position` 1 is the next to start."""

    concurrency: int
    started: int
    position: int


@dataclass(frozen=True)
class RunView:
    run: RunRecord
    steps: list[StepView] = field(default_factory=list)
    timers: list[TimerView] = field(default_factory=list)
    choices: list[ChoiceView] = field(default_factory=list)
    queue: QueueView | None = None


@dataclass(frozen=True)
class WorkOrderView:
    work_order: WorkOrderRecord
    runs: list[RunView] = field(default_factory=list)


@dataclass(frozen=True)
class WorkOrderList:
    work_orders: list[WorkOrderRecord] = field(default_factory=list)


@dataclass(frozen=True)
class WorkOrderPage:
    """One page of the work-order history (`PageWorkOrders`)."""

    work_orders: list[WorkOrderRecord]
    total: int  # how many match the filter, all pages together


@dataclass(frozen=True)
class RunEnqueued:
    run_id: str
    work_order_id: str


@dataclass(frozen=True)
class Discard:
    """A retry `RetryMany` did not enqueue, and why. `work_order_id` is None
    only for a step whose run is unknown; `run_id` is set for a step's retry."""

    work_order_id: str | None
    reason: str
    run_id: str | None = None


@dataclass(frozen=True)
class RetryManyResult:
    """Lightning's counts of a `RetryMany`, and each discarded retry with its reason."""

    enqueued: int
    discarded: int
    discards: list[Discard] = field(default_factory=list)


@dataclass(frozen=True)
class ActorInfo:
    """A live actor: the Engine, a node, or an entity actor with the node
    that hosts it (`pid` is that node's process)."""

    kind: str
    entity_id: str
    state: str
    pid: int | None
    node: str | None = None


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
class Heartbeat:
    """The keeper's beat: answered at once with `Liveness`, never after a
    survey of the nodes, so only a stopped or wedged Engine misses it."""


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
    """`auth` is the trigger's auth as the HTTP server checked the request
    against it (its document form); when the trigger's auth differs now, the
    request is refused `trigger_changed`. None: not checked (a trusted caller)."""

    trigger_id: str
    body: dict[str, Any] = field(default_factory=dict)
    auth: dict[str, Any] | None = None


@dataclass(frozen=True)
class GetTriggerAuth:
    """The `auth` of an active webhook trigger, for the HTTP server to check
    requests with; answered with `TriggerAuth` or `not_found`."""

    trigger_id: str


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
class PageWorkOrders:
    """One page of the work-order history, newest first: what a console's
    history lists, each filter served from an index (`WorkOrderPage`)."""

    states: list[str] | None = None
    workflow_id: str | None = None
    trigger_id: str | None = None
    since: float | None = None  # created_at >= since
    until: float | None = None  # created_at < until
    search: str | None = None  # a substring of the input's compact JSON, ASCII case ignored
    limit: int = 50  # 1..500
    offset: int = 0


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
    """Retry work orders, and runs from given steps, in one storage
    transaction. A work order is retried from its first step, or with
    `from_transition` from the last step of that transition in its latest
    run (Lightning's `retry_many(workorders, job_id)`). What cannot be
    retried is discarded, never an error of the whole request."""

    work_order_ids: list[str] = field(default_factory=list)
    steps: list[RunStep] = field(default_factory=list)
    from_transition: str | None = None


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


@dataclass(frozen=True)
class KillEntity:
    """Crash one live work order, case, task or workitem on purpose, as
    Erlang's `exit(Pid, kill)`: its supervisor restores it from storage."""

    entity_id: str


@dataclass(frozen=True)
class EntityKilled:
    entity_id: str
    kind: str  # work_order | case | task | workitem


# -- the one Task request a client may make (WorkflowMetal's Task.preexecute) --------------


@dataclass(frozen=True)
class Preexecute:
    """Lock the tokens that enable the task; answered with `LockedTokens` or
    `Error(task_not_enabled | tokens_not_available)`."""

    task_id: str

"""The messages between petriflow's actors, never accepted from a client.

They stay Python objects (some carry Thespian addresses) and are not
registered with the codec; the Engine refuses any of them from outside
with `invalid` (see `engine.wire` for what a client may send). Their flow
is in docs/architecture.md, "The actor tree".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from petriflow.engine.records import Failure, TaskRecord, TokenRecord, WorkitemRecord
from petriflow.engine.settings import Settings
from petriflow.engine.states import WorkitemState


@dataclass(frozen=True)
class Routed:
    """A client's request on its way down the tree. `body` is a wire request,
    routed Engine -> WorkOrder -> Case -> Task -> Workitem by the entity ids
    it carries; whichever actor owns the entity answers `reply_to` with the
    encoded result, so the client's `ask` gets exactly one reply."""

    body: Any
    reply_to: Any


# -- the Task's interface (WorkflowMetal's Task) for its case and workitems -------------


@dataclass(frozen=True)
class ReceiveTokens:
    task_id: str
    tokens: list[TokenRecord]


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
class InitCase:
    case_id: str
    settings: Settings


@dataclass(frozen=True)
class InitTask:
    task_id: str
    case_id: str
    settings: Settings
    workflow_version: int  # the case's: the task need not read its case
    created: TaskRecord | None = None  # as its case just created it, tokens on their way: read nothing


@dataclass(frozen=True)
class InitWorkitem:
    workitem_id: str
    task_id: str
    settings: Settings
    workflow_version: int
    created: WorkitemRecord | None = None  # as its task just created it: claimed and begun without a read


@dataclass(frozen=True)
class TokensLocked:
    task_id: str
    token_ids: list[str]


@dataclass(frozen=True)
class CompleteTask:
    """Task -> Case: consume my locked tokens and issue new ones with this payload."""

    task_id: str
    token_payload: dict[str, Any]
    transition_id: str
    token_ids: list[str]  # the tokens it holds, which the completion consumes
    input: dict[str, Any] = field(default_factory=dict)  # its workitem's: arc conditions may read it
    failed: bool = False  # its step failed and the payload is the error: take the failure arcs


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
    node_incarnation: int | None = None  # of the node hosting it, recorded when it claims the work order


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


@dataclass(frozen=True)
class Crash:
    """`KillEntity` on its way down the tree, with the path the Engine looked
    up: each actor on it forwards, and the entity itself crashes."""

    entity_id: str
    kind: str  # work_order | case | task | workitem
    case_id: str | None = None
    task_id: str | None = None


# -- between the Engine and its nodes ------------------------------------------


@dataclass(frozen=True)
class InitNode:
    """A node's first message: which node it is. It restores the unfinished
    work placed on it."""

    node_id: str
    settings: Settings


@dataclass(frozen=True)
class BootNode:
    """A node to the root of its hosted tree: restore the work placed on
    `node_id`, which this incarnation of the node now owns."""

    node_id: str
    node_incarnation: int
    settings: Settings


@dataclass(frozen=True)
class ForWorkOrder:
    """Engine -> node: start or restore the work order's actor (placed on
    that node) and hand it `message`, if any."""

    work_order_id: str
    message: Any = None


@dataclass(frozen=True)
class ForCase:
    """Engine -> node: the same for a case started without a work order."""

    case_id: str
    message: Any = None


@dataclass(frozen=True)
class Survey:
    """Engine -> every node: report your live actors (`petriflow actors`,
    `ping`). `number` pairs the answers with the request."""

    number: int


@dataclass(frozen=True)
class NodeHeartbeat:
    """Engine -> every node, each `Settings.heartbeat_s`: a node that stops
    answering (stopped, wedged) is killed and started again, as OTP's
    `heart` does to a node that stops answering."""


@dataclass(frozen=True)
class NodeAlive:
    """Node -> Engine: the answer to a `NodeHeartbeat`, also sent once at
    start, so the Engine knows the pid to kill."""

    node_id: str
    pid: int


@dataclass(frozen=True)
class StorageDown:
    """Node -> Engine: the node began waiting out a storage outage; it
    answers its clients `code` until `StorageUp`."""

    node_id: str
    since: float
    code: str
    reason: str


@dataclass(frozen=True)
class StorageUp:
    """Node -> Engine: the node's storage takes writes again; its work resumes."""

    node_id: str


@dataclass(frozen=True)
class NodeRestored:
    """Node -> Engine: a node's new incarnation has restored its work. What
    its previous one committed but died before announcing (a work order's
    end) is in storage: the Engine answers its waiters from there."""

    node_id: str
    incarnation: int


@dataclass(frozen=True)
class NodeReport:
    """A node's answer to a `Survey`: its pid and each live entity actor it
    hosts as `(kind, entity_id, state)`."""

    number: int
    node_id: str
    pid: int
    actors: list[tuple[str, str, str]]

"""petriflow's storage operations, written once over any `Backend`.

Each public method is one transaction. Writes by entity actors carry a
`Fence` (the writer's entity and incarnation) and are refused with
`StaleIncarnation` when a newer incarnation has claimed the entity. State
changes are compare-and-set against the state machines of `engine.states`,
so a state never moves backwards and two competing tasks can never both
lock a token.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any, TypeVar

from petriflow.engine.errors import (
    AlreadyCompleted,
    IllegalTransition,
    Invalid,
    NotFound,
    PetriflowError,
    StaleIncarnation,
    TaskNotAvailable,
    TokensNotAvailable,
)
from petriflow.engine.records import (
    FINISHER,
    CaseRecord,
    Failure,
    RunRecord,
    TaskRecord,
    TokenRecord,
    WorkitemRecord,
    WorkOrderRecord,
    new_id,
    now,
)
from petriflow.engine.states import (
    FINAL_RUN_STATES,
    UNFINISHED_WORK_ORDER_STATES,
    CaseState,
    RunState,
    TaskState,
    TokenState,
    WorkitemState,
    WorkOrderState,
    advance,
    can_advance,
    is_terminal,
)
from petriflow.engine.workflow import Workflow, WorkflowState
from petriflow.engine.workorders import admissible
from petriflow.storage.backend import AtMost, Backend, Between, Contains, Row, Tx
from petriflow.storage.schema import input_text

R = TypeVar("R", CaseRecord, TaskRecord, WorkitemRecord, TokenRecord, RunRecord, WorkOrderRecord)
Claimed = TypeVar("Claimed", CaseRecord, TaskRecord, WorkitemRecord, WorkOrderRecord)  # entities an actor takes on

_TABLE_OF: dict[type, str] = {
    CaseRecord: "cases",
    TaskRecord: "tasks",
    WorkitemRecord: "workitems",
    TokenRecord: "tokens",
    WorkOrderRecord: "work_orders",
    RunRecord: "runs",
}
_STATE_OF: dict[type, type[Enum]] = {
    CaseRecord: CaseState,
    TaskRecord: TaskState,
    WorkitemRecord: WorkitemState,
    TokenRecord: TokenState,
    WorkOrderRecord: WorkOrderState,
    RunRecord: RunState,
}


@dataclass(frozen=True)
class Fence:
    """Who writes: an entity (`cases`, `tasks` or `workitems`) and the
    incarnation the writing actor claimed."""

    table: str
    id: str
    incarnation: int


_FIELDS: dict[type, tuple[str, ...]] = {cls: tuple(f.name for f in dataclasses.fields(cls)) for cls in _TABLE_OF}


def _to_row_value(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Failure):
        return dataclasses.asdict(value)
    return value


def _to_row(record: Any) -> Row:
    return {name: _to_row_value(getattr(record, name)) for name in _FIELDS[type(record)]}


def work_order_row(order: WorkOrderRecord) -> Row:
    """A work order as its table stores it: its record and its input's text, which the history's search reads."""
    return {**_to_row(order), "input_text": input_text(order.input)}


def _definition(document: dict[str, Any]) -> dict[str, Any]:
    """A workflow document without its lifecycle `state`: what must not change under one version."""
    return {k: v for k, v in document.items() if k != "state"}


def _from_row(cls: type[R], row: Row) -> R:
    names = _FIELDS[cls]
    values = {k: v for k, v in row.items() if k in names}
    values["state"] = _STATE_OF[cls](values["state"])
    if values.get("failure") is not None:
        values["failure"] = Failure(**values["failure"])
    return cls(**values)


class Storage:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    @property
    def url(self) -> str:
        return self.backend.url

    def close(self) -> None:
        self.backend.close()

    # -- helpers -----------------------------------------------------------

    @staticmethod
    def _check_fence(tx: Tx, fence: Fence | None) -> None:
        if fence is None:
            return
        row = tx.get(fence.table, fence.id)
        if row is None:
            raise NotFound(f"{fence.table[:-1]} {fence.id} not found")
        Storage._still_current(fence, row["incarnation"])

    @staticmethod
    def _still_current(fence: Fence, incarnation: int) -> None:
        """Refuse the write if a newer incarnation has claimed the entity."""
        if incarnation != fence.incarnation:
            raise StaleIncarnation(
                f"{fence.table[:-1]} {fence.id}: incarnation {fence.incarnation} was replaced by {incarnation}"
            )

    @staticmethod
    def _fenced(tx: Tx, fence: Fence, cls: type[Claimed], id: str | None = None) -> Claimed:
        """The record `id` (by default the fence's own entity) once the fence
        holds: one read when the fence is the record's own."""
        if id is not None and (_TABLE_OF[cls], id) != (fence.table, fence.id):
            Storage._check_fence(tx, fence)
            return Storage._get(tx, cls, id)
        record = Storage._get(tx, cls, fence.id)
        Storage._still_current(fence, record.incarnation)
        return record

    @staticmethod
    def _get(tx: Tx, cls: type[R], id: str) -> R:
        row = tx.get(_TABLE_OF[cls], id)
        if row is None:
            raise NotFound(f"{_TABLE_OF[cls][:-1]} {id!r} not found")
        return _from_row(cls, row)

    @staticmethod
    def _advance(tx: Tx, record: Any, *path: StrEnum, **changes: Any) -> Any:
        """Move the record's state along `path` (each step legal), written
        once; returns the updated record."""
        changes = Storage._moved(record, path, changes)
        tx.update(_TABLE_OF[type(record)], record.id, {k: _to_row_value(v) for k, v in changes.items()})
        return dataclasses.replace(record, **changes)

    @staticmethod
    def _advance_held(tx: Tx, fence: Fence, held: Any, *path: StrEnum, **changes: Any) -> Any:
        """`_advance` for a record an actor holds, without reading it: one
        conditional UPDATE, applied only if storage still has the entity in
        the held state under the fence's incarnation. None if it did not
        apply or the move is illegal from the held state (the caller then
        reads the row and decides)."""
        if (_TABLE_OF[type(held)], held.id, held.incarnation) != (fence.table, fence.id, fence.incarnation):
            return None
        try:
            changes = Storage._moved(held, path, changes)
        except IllegalTransition:
            return None
        return Storage._update_held(tx, held, changes)

    @staticmethod
    def _update_held(tx: Tx, held: Any, changes: dict[str, Any]) -> Any:
        """Write `changes` to a record the caller holds, if storage still has
        it at the held incarnation and state: the updated record, else None."""
        encoded = {k: _to_row_value(v) for k, v in changes.items()}
        expect = {"incarnation": held.incarnation, "state": held.state.value}
        if not tx.update_if(_TABLE_OF[type(held)], held.id, encoded, expect):
            return None
        return dataclasses.replace(held, **changes)

    @staticmethod
    def _moved(record: Any, path: tuple[StrEnum, ...], changes: dict[str, Any]) -> dict[str, Any]:
        """The changes that move `record` along `path`, each step checked."""
        state = record.state
        for target in path:
            if not can_advance(state, target):
                raise IllegalTransition(
                    f"{_TABLE_OF[type(record)][:-1]} {record.id}: illegal transition {state.value} -> {target.value}"
                )
            state = target
        changes = {"state": state, **changes}
        if "updated_at" in _FIELDS[type(record)]:
            changes["updated_at"] = now()
        return changes

    def _find(self, cls: type[R], where: dict[str, Any], states: Iterable[StrEnum | str] | None = None) -> list[R]:
        with self.backend.transaction(write=False) as tx:
            rows = tx.find(_TABLE_OF[cls], _filter(where, states), order_by="created_at")
        return [_from_row(cls, row) for row in rows]

    def _read(self, cls: type[R], id: str) -> R:
        with self.backend.transaction(write=False) as tx:
            return self._get(tx, cls, id)

    def _claim(
        self, cls: type[Claimed], id: str, pid: int | None, tx: Tx | None = None, record: Any = None, **also: Any
    ) -> Claimed:
        """Take an entity on: bump its incarnation so older actors are fenced
        off; `also` are further columns written in the same update. `record`
        is the entity as the caller just read it in `tx`."""
        if tx is None:
            with self.backend.transaction() as tx:
                return self._claim(cls, id, pid, tx, record, **also)
        if record is None:
            record = self._get(tx, cls, id)
        changes = {"incarnation": record.incarnation + 1, "pid": pid, **also}
        tx.update(_TABLE_OF[cls], id, changes)
        return dataclasses.replace(record, **changes)

    @staticmethod
    def _claim_held(tx: Tx, held: Any, pid: int | None, **also: Any) -> Any:
        """`_claim` of a record the caller was handed (its parent just made
        it), without reading it: applied only if storage still has it at
        that incarnation and state; None otherwise (then claim as usual)."""
        return Storage._update_held(tx, held, {"incarnation": held.incarnation + 1, "pid": pid, **also})

    # -- workflows ---------------------------------------------------------

    def put_workflow(self, workflow: Workflow) -> Workflow:
        """Store a validated workflow. Storing the same version again is a
        no-op; a different document under a stored version is refused."""
        from petriflow.engine.document import workflow_to_document

        document = workflow_to_document(workflow)
        key = f"{workflow.id}@{workflow.version}"
        with self.backend.transaction() as tx:
            existing = tx.get("workflows", key)
            if existing is not None:
                if _definition(existing["document"]) != _definition(document):
                    raise Invalid(
                        f"workflow {workflow.id!r} version {workflow.version} is already stored "
                        f"with a different definition: store it as a new version"
                    )
                return workflow
            tx.insert(
                "workflows",
                {
                    "id": key,
                    "workflow_id": workflow.id,
                    "version": workflow.version,
                    "state": workflow.state.value,
                    "document": document,
                    "created_at": now(),
                },
            )
        return workflow

    def get_workflow(self, workflow_id: str, version: int | None = None) -> Workflow:
        from petriflow.engine.document import workflow_from_document

        with self.backend.transaction(write=False) as tx:
            rows = tx.find("workflows", {"workflow_id": workflow_id}, order_by="version")
        if version is not None:
            rows = [r for r in rows if r["version"] == version]
        if not rows:
            suffix = f" version {version}" if version is not None else ""
            raise NotFound(f"workflow {workflow_id!r}{suffix} not found")
        row = rows[-1]
        workflow = workflow_from_document(row["document"])
        return dataclasses.replace(workflow, state=WorkflowState(row["state"]))

    def list_workflows(self) -> list[Workflow]:
        with self.backend.transaction(write=False) as tx:
            rows = tx.find("workflows", {}, order_by="version")
        latest = {row["workflow_id"]: row for row in rows}
        return [self.get_workflow(wid) for wid in sorted(latest)]

    def discard_workflow(self, workflow_id: str) -> None:
        """Every version is discarded: no new case starts on it; running ones go on."""
        with self.backend.transaction() as tx:
            rows = tx.find("workflows", {"workflow_id": workflow_id})
            if not rows:
                raise NotFound(f"workflow {workflow_id!r} not found")
            for row in rows:
                tx.update("workflows", row["id"], {"state": WorkflowState.DISCARDED.value})

    # -- cases -------------------------------------------------------------

    def create_case(self, case: CaseRecord, tokens: list[TokenRecord]) -> CaseRecord:
        """A case with the tokens it begins with: its genesis token, or the
        tokens a retry carries over."""
        with self.backend.transaction() as tx:
            self._insert_case(tx, case, tokens)
        return case

    @staticmethod
    def _insert_case(tx: Tx, case: CaseRecord, tokens: list[TokenRecord]) -> None:
        tx.insert("cases", _to_row(case))
        for token in tokens:
            tx.insert("tokens", _to_row(token))

    def get_case(self, case_id: str) -> CaseRecord:
        return self._read(CaseRecord, case_id)

    def list_cases(
        self, states: Iterable[CaseState | str] | None = None, node_id: str | None = None
    ) -> list[CaseRecord]:
        """With `node_id`: the cases without a work order placed on that node."""
        return self._find(CaseRecord, {"node_id": node_id}, states)

    def claim_case(self, case_id: str, pid: int | None = None, *, activate: bool = False) -> CaseRecord:
        """Claim the case; with `activate`, a created case becomes active in
        the same transaction (one commit for a case actor's start)."""
        with self.backend.transaction() as tx:
            case = self._claim(CaseRecord, case_id, pid, tx)
            if activate and case.state is CaseState.CREATED:
                case = self._advance(tx, case, CaseState.ACTIVE)
            return case

    def finish_case(self, fence: Fence, end_place_id: str) -> CaseRecord:
        """The case is done: its end token is consumed so no live token remains."""
        with self.backend.transaction() as tx:
            self._check_fence(tx, fence)
            case = self._get(tx, CaseRecord, fence.id)
            if case.state is CaseState.FINISHED:
                raise AlreadyCompleted(f"case {case.id} is already finished")
            for row in tx.find(
                "tokens", {"case_id": case.id, "place_id": end_place_id, "state": TokenState.FREE.value}
            ):
                tx.update("tokens", row["id"], {"state": TokenState.CONSUMED.value, "consumed_by_task_id": FINISHER})
            for row in tx.find("tasks", {"case_id": case.id, "state": TaskState.STARTED.value}):
                self._abandon_task(tx, _from_row(TaskRecord, row))  # waiting tasks that lost their tokens
            return self._advance(tx, case, CaseState.FINISHED)

    def take_over_and_terminate(self, case_id: str, failure: Failure | None) -> CaseRecord:
        """What a supervisor does with a case it gave up on: claim it (fencing
        off any incarnation still alive) and terminate it with `failure`
        unless it already ended, in one transaction. Without a failure it is
        cancelled: a run that never started (waiting for a slot) has no case actor to ask."""
        with self.backend.transaction() as tx:
            case = self._claim(CaseRecord, case_id, None, tx)
            if is_terminal(case.state):
                return case
            return self._terminate(tx, case, failure)

    def terminate_case(self, fence: Fence, failure: Failure | None = None) -> CaseRecord:
        """Terminate the case and abandon all its unfinished tasks and workitems,
        in one transaction: nothing of it comes back on restore."""
        with self.backend.transaction() as tx:
            self._check_fence(tx, fence)
            case = self._get(tx, CaseRecord, fence.id)
            if case.state is CaseState.TERMINATED:
                raise AlreadyCompleted(f"case {case.id} is already terminated")
            return self._terminate(tx, case, failure)

    def _terminate(self, tx: Tx, case: CaseRecord, failure: Failure | None) -> CaseRecord:
        case = self._advance(tx, case, CaseState.TERMINATED, failure=failure)
        for row in tx.find("tasks", {"case_id": case.id}):
            task = _from_row(TaskRecord, row)
            if not is_terminal(task.state):
                self._abandon_task(tx, task)
        return case

    def case_needs_actor(self, case_id: str) -> bool:
        """Whether the case's actor has something to do now, rather than only
        waiting for a client to complete its manual steps: a parked case needs
        no process until a message for it arrives (passivation at restore).
        An ended case's actor still has to report the end to its run."""
        with self.backend.transaction(write=False) as tx:
            case = self._get(tx, CaseRecord, case_id)
            if is_terminal(case.state):
                return True
            if tx.find("tokens", {"case_id": case_id, "state": TokenState.FREE.value}):
                return True
            live_tasks = tx.find(
                "tasks",
                {
                    "case_id": case_id,
                    "state": [TaskState.STARTED.value, TaskState.ALLOCATED.value, TaskState.EXECUTING.value],
                },
            )
            if any(row["state"] != TaskState.EXECUTING.value for row in live_tasks):
                return True
            for task in live_tasks:
                workitems = tx.find("workitems", {"task_id": task["id"]})
                if all(w["state"] == WorkitemState.COMPLETED.value for w in workitems):
                    return True  # to be completed
                if any(not is_terminal(WorkitemState(w["state"])) and not w["awaiting"] for w in workitems):
                    return True
                if any(w["state"] in (WorkitemState.FAILED.value, WorkitemState.ABANDONED.value) for w in workitems):
                    return True  # its failure is to be reported
            return False

    # -- tokens ------------------------------------------------------------

    def tokens(self, case_id: str, states: Iterable[TokenState] | None = None) -> list[TokenRecord]:
        return self._find(TokenRecord, {"case_id": case_id}, states)

    def allocate(
        self, fence: Fence, token_ids: list[str], input: dict[str, Any], held: TaskRecord | None = None
    ) -> WorkitemRecord:
        """Compare-and-set every token free -> locked by the task, all or
        none, and create the task's workitem, in one transaction: the task
        passes through `allocated` to `executing`. Idempotent (a task that
        already holds exactly these tokens gets its workitem back), and
        refused as a whole when any token is not free. Every check comes
        before the first write. `held`: the task as its actor holds it,
        which spares reading it when storage agrees."""
        with self.backend.transaction() as tx:
            rows = {row["id"]: row for row in tx.find("tokens", {"id": token_ids})}
            if held is not None and held.state is TaskState.STARTED and self._tokens_free(held, token_ids, rows):
                task = self._advance_held(tx, fence, held, TaskState.ALLOCATED, TaskState.EXECUTING)
                if task is not None:
                    self._lock_tokens(tx, task, token_ids)
                    return self._insert_workitem(tx, task, input)
            task = self._fenced(tx, fence, TaskRecord)
            if task.state is not TaskState.STARTED:
                holding = {id for id, row in rows.items() if row["locked_by_task_id"] == task.id}
                if not holding or holding != set(token_ids):
                    raise TaskNotAvailable(f"task {task.id} is {task.state.value}, not started")
                return self._create_workitem(tx, fence, input)  # it holds them already
            self._tokens_free(task, token_ids, rows, refuse=True)
            self._lock_tokens(tx, task, token_ids)
            return self._new_workitem(tx, task, input, TaskState.ALLOCATED, TaskState.EXECUTING)

    @staticmethod
    def _tokens_free(task: TaskRecord, token_ids: list[str], rows: dict[str, Row], refuse: bool = False) -> bool:
        """Whether every token is free in the task's case; with `refuse`, say which is not."""
        for token_id in token_ids:
            row = rows.get(token_id)
            problem: PetriflowError | None = None
            if row is None:
                problem = NotFound(f"token {token_id!r} not found")
            elif row["case_id"] != task.case_id:
                problem = TokensNotAvailable(f"token {token_id} belongs to another case")
            elif row["state"] != TokenState.FREE.value:
                problem = TokensNotAvailable(
                    f"token {token_id} is {row['state']}"
                    + (f" by task {row['locked_by_task_id']}" if row["locked_by_task_id"] else "")
                )
            if problem is not None:
                if refuse:
                    raise problem
                return False
        return True

    @staticmethod
    def _lock_tokens(tx: Tx, task: TaskRecord, token_ids: list[str]) -> None:
        tx.update_where(
            "tokens",
            {"id": token_ids, "state": TokenState.FREE.value},
            {"state": TokenState.LOCKED.value, "locked_by_task_id": task.id},
        )
        _timer_done(tx, task)

    # -- tasks -------------------------------------------------------------

    def create_task(self, fence: Fence, transition_id: str, wake_at: float | None = None) -> TaskRecord:
        """The case's `started` task for the transition, created if it has
        none: tokens are offered to at most one waiting task per transition.
        `wake_at`: a timer's deadline, kept by a task created now."""
        deadlines = {transition_id: wake_at} if wake_at is not None else {}
        with self.backend.transaction() as tx:
            case = self._fenced(tx, fence, CaseRecord)
            return self._waiting_tasks(tx, case, [transition_id], deadlines)[transition_id]

    @staticmethod
    def _waiting_tasks(
        tx: Tx, case: CaseRecord, transition_ids: list[str], deadlines: Mapping[str, float] | None = None
    ) -> dict[str, TaskRecord]:
        """The waiting task of each transition, those missing created: one read,
        one write (two when a new task is a timer's: its deadline is listed)."""
        if not transition_ids:
            return {}
        deadlines = deadlines or {}
        waiting = {
            row["transition_id"]: _from_row(TaskRecord, row)
            for row in tx.find(
                "tasks", {"case_id": case.id, "transition_id": transition_ids, "state": TaskState.STARTED.value}
            )
        }
        missing = [
            TaskRecord(
                id=new_id(),
                case_id=case.id,
                workflow_id=case.workflow_id,
                transition_id=transition_id,
                wake_at=deadlines.get(transition_id),
            )
            for transition_id in transition_ids
            if transition_id not in waiting
        ]
        tx.insert_many("tasks", [_to_row(task) for task in missing])
        timers = [
            {"id": t.id, "case_id": case.id, "due_at": t.wake_at, "waiting": True}
            for t in missing
            if t.wake_at is not None
        ]
        if timers:
            tx.insert_many("timers", timers)
        return {**waiting, **{task.transition_id: task for task in missing}}

    def waiting_timers(self) -> int:
        """How many timers wait for their deadline (their task `started`)."""
        with self.backend.transaction(write=False) as tx:
            ids = [row["id"] for row in tx.find("timers", {"waiting": True})]
            return len(tx.find("tasks", {"id": ids, "state": TaskState.STARTED.value})) if ids else 0

    def due_timers(self, now: float) -> list[TaskRecord]:
        """The tasks whose timer is due by `now` and still waits (`started`),
        oldest deadline first; a timer whose task moved on stops waiting.
        One indexed range read (`timers (waiting, due_at)`): timers not yet
        due are not read at all."""
        with self.backend.transaction(write=False) as tx:  # a write only when a timer stops waiting
            due = [row["id"] for row in tx.find("timers", {"waiting": True, "due_at": AtMost(now)})]
            tasks = [_from_row(TaskRecord, row) for row in tx.find("tasks", {"id": due})] if due else []
        moved_on = [task.id for task in tasks if task.state is not TaskState.STARTED]
        if moved_on:
            with self.backend.transaction() as tx:
                tx.update_where("timers", {"id": moved_on}, {"waiting": False})
        return sorted((t for t in tasks if t.state is TaskState.STARTED), key=lambda task: task.wake_at or 0)

    def get_task(self, task_id: str) -> TaskRecord:
        return self._read(TaskRecord, task_id)

    def tasks(self, case_id: str, states: Iterable[TaskState] | None = None) -> list[TaskRecord]:
        return self._find(TaskRecord, {"case_id": case_id}, states)

    def claim_task(self, task_id: str, pid: int | None = None, held: TaskRecord | None = None) -> TaskRecord:
        """`held`: the task as its case created it, if it has it (one UPDATE when storage agrees)."""
        with self.backend.transaction() as tx:
            claimed = None if held is None or held.id != task_id else self._claim_held(tx, held, pid)
            return claimed or self._claim(TaskRecord, task_id, pid, tx)

    def create_workitem(self, fence: Fence, input: dict[str, Any]) -> WorkitemRecord:
        """Allocated -> executing with its workitem; idempotent for a task
        already executing."""
        with self.backend.transaction() as tx:
            return self._create_workitem(tx, fence, input)

    def _create_workitem(self, tx: Tx, fence: Fence, input: dict[str, Any]) -> WorkitemRecord:
        task = self._fenced(tx, fence, TaskRecord)
        if task.state is TaskState.EXECUTING:
            existing = tx.find("workitems", {"task_id": task.id}, order_by="created_at")
            if existing:
                return _from_row(WorkitemRecord, existing[0])
        return self._new_workitem(tx, task, input, TaskState.EXECUTING)

    def _new_workitem(self, tx: Tx, task: TaskRecord, input: dict[str, Any], *path: TaskState) -> WorkitemRecord:
        """The task moves along `path` to `executing`, with its new workitem."""
        return self._insert_workitem(tx, self._advance(tx, task, *path), input)

    @staticmethod
    def _insert_workitem(tx: Tx, task: TaskRecord, input: dict[str, Any]) -> WorkitemRecord:
        """A timer's step began when its task did (the deadline was set then):
        its wait is the step's duration, and it finishes when it fires."""
        workitem = WorkitemRecord(
            id=new_id(),
            task_id=task.id,
            case_id=task.case_id,
            workflow_id=task.workflow_id,
            transition_id=task.transition_id,
            input=input,
            started_at=task.created_at if task.wake_at is not None else None,
        )
        tx.insert("workitems", _to_row(workitem))
        return workitem

    def complete_task(
        self,
        fence: Fence,
        task_id: str,
        token_payload: dict[str, Any],
        new_tokens: list[TokenRecord],
        offer_to: Iterable[str] = (),
        *,
        failed: bool = False,
        deadlines: Mapping[str, float] | None = None,
    ) -> dict[str, TaskRecord]:
        """Consume the task's locked tokens, issue the new ones and record the
        task completed, atomically; a second call changes nothing. The
        transitions in `offer_to` (those the new tokens enable) get their
        waiting task in the same transaction, returned by transition id, so
        the case need not read them back (`deadlines`: of those that are
        timers, as in `create_task`). `failed`: the step failed and its
        failure is routed on, so a failed workitem completes the task too.
        Every check comes before the first write."""
        ended = (
            {WorkitemState.COMPLETED.value, WorkitemState.FAILED.value} if failed else {WorkitemState.COMPLETED.value}
        )
        with self.backend.transaction() as tx:
            case = self._fenced(tx, fence, CaseRecord)
            for row in tx.find("workitems", {"task_id": task_id}):
                if row["state"] not in ended:
                    raise TaskNotAvailable(f"task {task_id}: workitem {row['id']} is {row['state']}")
            completed = {"state": TaskState.COMPLETED.value, "token_payload": token_payload, "updated_at": now()}
            if not tx.update_if("tasks", task_id, completed, {"state": TaskState.EXECUTING.value, "case_id": case.id}):
                task = self._get(tx, TaskRecord, task_id)  # nothing written yet: say why
                if task.state is TaskState.COMPLETED:
                    raise AlreadyCompleted(f"task {task_id} is already completed")
                raise TaskNotAvailable(f"task {task_id} is {task.state.value}, not executing")
            tx.update_where(
                "tokens",
                {"case_id": case.id, "locked_by_task_id": task_id, "state": TokenState.LOCKED.value},
                {"state": TokenState.CONSUMED.value, "consumed_by_task_id": task_id},
            )
            tx.insert_many("tokens", [_to_row(token) for token in new_tokens])
            return self._waiting_tasks(tx, case, sorted(set(offer_to)), deadlines)

    def abandon_task(self, fence: Fence, task_id: str) -> TaskRecord:
        with self.backend.transaction() as tx:
            self._check_fence(tx, fence)
            task = self._get(tx, TaskRecord, task_id)
            if task.state is TaskState.ABANDONED:
                return task
            return self._abandon_task(tx, task)

    def _abandon_task(self, tx: Tx, task: TaskRecord) -> TaskRecord:
        for row in tx.find("workitems", {"task_id": task.id}):
            workitem = _from_row(WorkitemRecord, row)
            if not is_terminal(workitem.state):
                self._advance(tx, workitem, WorkitemState.ABANDONED, finished_at=now())
        _timer_done(tx, task)
        return self._advance(tx, task, TaskState.ABANDONED)

    # -- workitems ---------------------------------------------------------

    def get_workitem(self, workitem_id: str) -> WorkitemRecord:
        return self._read(WorkitemRecord, workitem_id)

    def workitems(
        self, *, case_id: str | None = None, task_id: str | None = None, states: Iterable[WorkitemState] | None = None
    ) -> list[WorkitemRecord]:
        return self._find(WorkitemRecord, {"case_id": case_id, "task_id": task_id}, states)

    def claim_workitem(
        self,
        workitem_id: str,
        pid: int | None = None,
        *,
        begin: bool = False,
        intensity: tuple[int, float, int] | None = None,
        held: WorkitemRecord | None = None,
    ) -> WorkitemRecord:
        """Claim the workitem; with `begin`, one that is to run its executor
        (not ended, not awaiting) also begins its next attempt, in the same
        transaction.

        A workitem claimed while `started` by another process than the one
        that claimed it before lost its attempt with that process: its node
        died, and no supervisor outlived it to count the restart. So storage
        counts it, in `interrupted_at`, as `intensity = (max_restarts,
        max_seconds, restarter)` says: only restarts by the same `restarter`
        (the process that restarts nodes) within `max_seconds`. Past
        `max_restarts` no attempt begins, and the caller gives up on the
        workitem as a supervisor would.

        `held`: the workitem as its task just created it, if it has it: a
        new workitem is claimed and begun in one UPDATE when storage agrees."""
        with self.backend.transaction() as tx:
            if held is not None and held.id == workitem_id and held.state is WorkitemState.CREATED and begin:
                claimed = self._claim_held(tx, held, pid, **self._begun(held))
                if claimed is not None:
                    return claimed
            before = self._get(tx, WorkitemRecord, workitem_id)
            if not begin or is_terminal(before.state) or before.awaiting:
                return self._claim(WorkitemRecord, workitem_id, pid, tx, before)
            also: dict[str, Any] = {}
            if intensity is not None and before.state is WorkitemState.STARTED and before.pid not in (None, pid):
                max_restarts, max_seconds, restarter = intensity
                moment = now()
                recent = [
                    [t, r] for t, r in before.interrupted_at or [] if r == restarter and moment - t <= max_seconds
                ] + [[moment, restarter]]
                also["interrupted_at"] = recent
                if len(recent) > max_restarts:
                    return self._claim(WorkitemRecord, workitem_id, pid, tx, before, **also)
            return self._claim(WorkitemRecord, workitem_id, pid, tx, before, **also, **self._begun(before))

    def begin_attempt(self, fence: Fence) -> WorkitemRecord:
        """Record that the executor runs (again): `started`, attempt + 1."""
        with self.backend.transaction() as tx:
            self._check_fence(tx, fence)
            return self._begin(tx, self._get(tx, WorkitemRecord, fence.id))

    def _begin(self, tx: Tx, workitem: WorkitemRecord) -> WorkitemRecord:
        changes = self._begun(workitem)
        tx.update("workitems", workitem.id, {k: _to_row_value(v) for k, v in changes.items()})
        return dataclasses.replace(workitem, **changes)

    def _begun(self, workitem: WorkitemRecord) -> dict[str, Any]:
        """The changes that begin the workitem's next attempt (`started`, attempt + 1)."""
        changes: dict[str, Any] = {
            "attempt": workitem.attempt + 1,
            "awaiting": False,
            "started_at": workitem.started_at or now(),
        }
        if workitem.state is WorkitemState.STARTED:
            return changes
        return self._moved(workitem, (WorkitemState.STARTED,), changes)

    def mark_awaiting(self, fence: Fence) -> WorkitemRecord:
        with self.backend.transaction() as tx:
            self._check_fence(tx, fence)
            workitem = self._get(tx, WorkitemRecord, fence.id)
            if workitem.state is not WorkitemState.STARTED:
                raise IllegalTransition(f"workitem {workitem.id} is {workitem.state.value}, not started")
            tx.update("workitems", workitem.id, {"awaiting": True})
            return dataclasses.replace(workitem, awaiting=True)

    def finish_workitem(
        self,
        fence: Fence,
        state: WorkitemState,
        *,
        output: dict[str, Any] | None = None,
        failure: Failure | None = None,
        held: WorkitemRecord | None = None,
    ) -> WorkitemRecord:
        """Move a workitem to a terminal state. Finishing it again in the same
        state raises `AlreadyCompleted` and changes nothing. `held` is the
        workitem as its actor holds it: if storage agrees, one UPDATE."""
        with self.backend.transaction() as tx:
            if held is not None:
                done = self._advance_held(tx, fence, held, state, output=output, failure=failure, finished_at=now())
                if done is not None:
                    return done
            workitem = self._fenced(tx, fence, WorkitemRecord)
            if workitem.state is state:
                raise AlreadyCompleted(f"workitem {workitem.id} is already {state.value}")
            return self._advance(tx, workitem, state, output=output, failure=failure, finished_at=now())


class WorkOrderStorage(Storage):
    """Work orders and their runs, on top of the Petri-net entities."""

    def create_work_order(
        self, work_order: WorkOrderRecord, run: RunRecord, case: CaseRecord, tokens: list[TokenRecord]
    ) -> WorkOrderRecord:
        """The work order, its first run and that run's case, in one transaction."""
        with self.backend.transaction() as tx:
            tx.insert("work_orders", work_order_row(work_order))
            tx.insert("runs", _to_row(run))
            self._insert_case(tx, case, tokens)
        return work_order

    def enqueue_runs(
        self, runs: list[tuple[RunRecord, CaseRecord, list[TokenRecord]]], work_order_states: dict[str, WorkOrderState]
    ) -> None:
        """Retried runs with their cases, and the work orders' new states, all
        in one transaction (Lightning's `enqueue_many_for_retry`)."""
        with self.backend.transaction() as tx:
            for run, case, tokens in runs:
                if tx.get("work_orders", run.work_order_id) is None:
                    raise NotFound(f"work order {run.work_order_id!r} not found")
                tx.insert("runs", _to_row(run))
                self._insert_case(tx, case, tokens)
            for work_order_id, state in work_order_states.items():
                self._move_work_order(tx, self._get(tx, WorkOrderRecord, work_order_id), state)

    def get_work_order(self, work_order_id: str) -> WorkOrderRecord:
        return self._read(WorkOrderRecord, work_order_id)

    def list_work_orders(
        self,
        states: Iterable[WorkOrderState | str] | None = None,
        workflow_id: str | None = None,
        since: float | None = None,
        node_id: str | None = None,
    ) -> list[WorkOrderRecord]:
        created = None if since is None else Between(since)
        where = {"workflow_id": workflow_id, "node_id": node_id, "created_at": created}
        return self._find(WorkOrderRecord, where, states)

    def count_work_orders(self) -> dict[str, int]:
        """How many work orders are in each state (none: left out): one
        indexed count per state, never a read of every row."""
        with self.backend.transaction(write=False) as tx:
            counts = {state.value: tx.count("work_orders", {"state": state.value}) for state in WorkOrderState}
        return {state: n for state, n in counts.items() if n}

    def page_work_orders(
        self,
        states: Iterable[WorkOrderState] | None = None,
        workflow_id: str | None = None,
        trigger_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        search: str | None = None,
        *,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[WorkOrderRecord], int]:
        """One page of the work-order history, newest first (ties: the last
        stored first), and how many work orders match in all: created in
        `[since, until)`, with `search` in their input's JSON text (ASCII
        case ignored; an empty search filters nothing). Each filter alone is
        served from an index in creation order. A page short of `limit` is
        the last one, so its total needs no count; otherwise the count is a
        second SELECT, on SQLite its own snapshot, so a work order stored in
        between may be counted and not yet shown."""
        _check_page(since, until, search, limit, offset)
        created = None if since is None and until is None else Between(since, until)
        filters = {"workflow_id": workflow_id, "trigger_id": trigger_id, "created_at": created}
        where = _filter({**filters, "input_text": Contains(search) if search else None}, states)
        with self.backend.transaction(write=False) as tx:
            rows = tx.find("work_orders", where, "created_at", descending=True, limit=limit, offset=offset)
            last_page = len(rows) < limit and (bool(rows) or offset == 0)
            total = offset + len(rows) if last_page else tx.count("work_orders", where)
        return [_from_row(WorkOrderRecord, row) for row in rows], total

    def claim_work_order(
        self, work_order_id: str, pid: int | None = None, node_incarnation: int | None = None
    ) -> WorkOrderRecord:
        """Claimed by the actor of the work order, on the incarnation of the
        node it is placed on: who owns it now is in storage."""
        if node_incarnation is None:
            return self._claim(WorkOrderRecord, work_order_id, pid)
        return self._claim(WorkOrderRecord, work_order_id, pid, node_incarnation=node_incarnation)

    # -- nodes and placement ----------------------------------------------------

    def place_work_order(self, work_order_id: str, node_id: str) -> None:
        """Place a work order on another node (its own is gone)."""
        with self.backend.transaction() as tx:
            self._get(tx, WorkOrderRecord, work_order_id)
            tx.update("work_orders", work_order_id, {"node_id": node_id})

    def claim_node(self, node_id: str, pid: int | None) -> int:
        """A node (re)starts: its incarnation is bumped and returned. What it
        restores is the unfinished work placed on it."""
        with self.backend.transaction() as tx:
            row = tx.get("nodes", node_id)
            incarnation = 1 if row is None else row["incarnation"] + 1
            values = {"incarnation": incarnation, "pid": pid, "started_at": now()}
            if row is None:
                tx.insert("nodes", {"id": node_id, **values})
            else:
                tx.update("nodes", node_id, values)
            return incarnation

    def probe(self, part: str, pid: int | None) -> None:
        """Write one row of `part`'s: whether storage takes writes again
        (a read succeeds on a full disk; only a write can tell)."""
        with self.backend.transaction() as tx:
            row = {"pid": pid, "at": now()}
            if tx.get("storage_probes", part) is None:
                tx.insert("storage_probes", {"id": part, **row})
            else:
                tx.update("storage_probes", part, row)

    def place_orphans(self, node_ids: list[str]) -> list[tuple[str, str, str]]:
        """Adopt unfinished work placed on no node, or on a node that is not
        among `node_ids` (the daemon restarted with fewer nodes): each is
        placed on one of `node_ids` in turn, in one transaction. Returns what
        was adopted: `(table, id, node_id)`, table `work_orders` or `cases`."""
        if not node_ids:
            raise ValueError("work can only be placed on at least one node")
        live = set(node_ids)
        adopted: list[tuple[str, str, str]] = []
        with self.backend.transaction() as tx:
            orders = tx.find("work_orders", {"state": [s.value for s in UNFINISHED_WORK_ORDER_STATES]})
            cases = tx.find("cases", {"state": [CaseState.CREATED.value, CaseState.ACTIVE.value]})
            strays = [("work_orders", row) for row in orders] + [
                ("cases", row) for row in cases if row["work_order_id"] is None
            ]
            for table_name, row in strays:
                if row["node_id"] not in live:
                    node_id = node_ids[len(adopted) % len(node_ids)]
                    tx.update(table_name, row["id"], {"node_id": node_id})
                    adopted.append((table_name, row["id"], node_id))
        return adopted

    def set_work_order_state(self, work_order_id: str, state: WorkOrderState) -> WorkOrderRecord:
        with self.backend.transaction() as tx:
            return self._move_work_order(tx, self._get(tx, WorkOrderRecord, work_order_id), state)

    @staticmethod
    def _move_work_order(tx: Tx, order: WorkOrderRecord, state: WorkOrderState) -> WorkOrderRecord:
        """Along the work-order machine; reaching the state it is in changes nothing."""
        if order.state is state:
            return order
        advance(order.state, state, entity=f"work order {order.id}")
        tx.update("work_orders", order.id, {"state": state.value, "updated_at": now()})
        return dataclasses.replace(order, state=state)

    def runs(self, work_order_id: str) -> list[RunRecord]:
        return self._find(RunRecord, {"work_order_id": work_order_id})

    def get_run(self, run_id: str) -> RunRecord:
        return self._read(RunRecord, run_id)

    def advance_run(
        self,
        run_id: str,
        target: RunState,
        failure: Failure | None = None,
        order_state: WorkOrderState | None = None,
        *,
        limit: int | None = None,
    ) -> RunRecord:
        """Move a run along its state machine, and its work order to
        `order_state` in the same transaction; reaching the state it is in
        changes nothing. `limit`: its workflow's concurrency; an available
        run is then claimed only if `admissible` (else it comes back as it was)."""
        with self.backend.transaction() as tx:
            run = self._get(tx, RunRecord, run_id)
            if limit is not None and run.state is RunState.AVAILABLE and target is RunState.CLAIMED:
                if run_id not in admissible(self._unfinished_runs(tx, run.workflow_id), limit):
                    return run
            if order_state is not None:
                self._move_work_order(tx, self._get(tx, WorkOrderRecord, run.work_order_id), order_state)
            if run.state is target:
                return run
            advance(run.state, target, entity=f"run {run_id}")
            stamp = {RunState.CLAIMED: "claimed_at", RunState.STARTED: "started_at"}.get(
                target, "finished_at" if target in FINAL_RUN_STATES else None
            )
            changes: dict[str, Any] = {"state": target.value, "failure": _to_row_value(failure)}
            if stamp:
                changes[stamp] = now()
            tx.update("runs", run_id, changes)
            return _from_row(RunRecord, {**_to_row(run), **changes})

    @staticmethod
    def _unfinished_runs(tx: Tx, workflow_id: str) -> list[RunRecord]:
        unfinished = [RunState.AVAILABLE.value, RunState.CLAIMED.value, RunState.STARTED.value]
        return [_from_row(RunRecord, row) for row in tx.find("runs", {"workflow_id": workflow_id, "state": unfinished})]

    def unfinished_runs(self, workflow_id: str) -> list[RunRecord]:
        """The runs of a workflow (any version) not yet ended: what its concurrency limit counts and queues."""
        with self.backend.transaction(write=False) as tx:
            return self._unfinished_runs(tx, workflow_id)

    def last_tick(self, trigger_key: str) -> float | None:
        with self.backend.transaction(write=False) as tx:
            row = tx.get("trigger_ticks", trigger_key)
        return None if row is None else row["last_tick"]

    def set_last_tick(self, trigger_key: str, tick: float) -> None:
        with self.backend.transaction() as tx:
            if tx.get("trigger_ticks", trigger_key) is None:
                tx.insert("trigger_ticks", {"id": trigger_key, "last_tick": tick})
            else:
                tx.update("trigger_ticks", trigger_key, {"last_tick": tick})


MAX_PAGE = 500
"""Work orders in one page at most: what a console shows, not an export."""
MAX_SEARCH = 200
"""Characters of a history search at most."""
MAX_OFFSET = 2**53
"""Beyond any history, and within what msgpack and SQLite carry as an integer."""


def _filter(where: dict[str, Any], states: Iterable[StrEnum | str] | None) -> dict[str, Any]:
    """A `where` of the columns given (None: any value), and of `states` when given."""
    where = {k: v for k, v in where.items() if v is not None}
    if states is not None:
        where["state"] = [s.value if isinstance(s, Enum) else s for s in states]
    return where


def _check_page(since: float | None, until: float | None, search: str | None, limit: int, offset: int) -> None:
    """Refuse a page no console should ask for, naming what is wrong."""
    if not 1 <= limit <= MAX_PAGE:
        raise Invalid(f"limit must be 1..{MAX_PAGE}, got {limit}")
    if not 0 <= offset <= MAX_OFFSET:
        raise Invalid(f"offset must be 0..{MAX_OFFSET}, got {offset}")
    if since is not None and until is not None and since > until:
        raise Invalid(f"since ({since}) is after until ({until})")
    if search is not None and len(search) > MAX_SEARCH:
        raise Invalid(f"search must be at most {MAX_SEARCH} characters, got {len(search)}")
    if search is not None and "\x00" in search:
        raise Invalid("search cannot hold a NUL character")


def _timer_done(tx: Tx, task: TaskRecord) -> None:
    """A timer's task took its tokens or was abandoned: its timer stops
    waiting in the same transaction, so the Engine's scan reads only
    timers that still wait (`due_timers` drops any it finds moved on)."""
    if task.wake_at is not None:
        tx.update_where("timers", {"id": task.id}, {"waiting": False})


def open_storage(url: str) -> WorkOrderStorage:
    from petriflow.storage import open_backend

    return WorkOrderStorage(open_backend(url))

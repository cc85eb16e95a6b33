"""Creating runs: the first run of a new work order, and retried runs.

Everything here reads and writes storage only; the Engine calls it and then
starts the actors. A retried run is planned by `engine.retry` and written,
with its case and the tokens it begins with, in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from petriflow.engine.errors import Invalid, NotFound, PetriflowError, StorageFailure, WorkflowDiscarded
from petriflow.engine.records import CaseRecord, RunRecord, TokenRecord, WorkOrderRecord, new_id
from petriflow.engine.retry import plan_retry
from petriflow.engine.routing import genesis_token
from petriflow.engine.states import FINAL_RUN_STATES, RunState, WorkitemState
from petriflow.engine.wire import Discard
from petriflow.engine.workflow import Workflow, WorkflowState
from petriflow.engine.workorders import update_state
from petriflow.storage.store import WorkOrderStorage


@dataclass(frozen=True)
class NewRun:
    run: RunRecord
    case: CaseRecord
    tokens: list[TokenRecord]


TokensOf = Callable[[CaseRecord], list[TokenRecord]]


def _new_run(order: WorkOrderRecord, workflow: Workflow, tokens_of: TokensOf, **run_fields: Any) -> NewRun:
    run_id, case_id = new_id(), new_id()
    case = CaseRecord(
        id=case_id,
        workflow_id=workflow.id,
        workflow_version=workflow.version,
        input=dict(order.input or {}),
        work_order_id=order.id,
        run_id=run_id,
    )
    run = RunRecord(
        id=run_id,
        work_order_id=order.id,
        workflow_id=workflow.id,
        workflow_version=workflow.version,
        case_id=case_id,
        **run_fields,
    )
    return NewRun(run=run, case=case, tokens=tokens_of(case))


def _genesis(workflow: Workflow, order: WorkOrderRecord) -> TokensOf:
    def tokens_of(case: CaseRecord) -> list[TokenRecord]:
        return [genesis_token(workflow, case.id, order.input or {})]

    return tokens_of


def submit(
    storage: WorkOrderStorage,
    workflow: Workflow,
    input: dict,
    *,
    trigger_type: str = "manual",
    trigger_id: str | None = None,
    node_id: str | None = None,
) -> NewRun:
    """A new work order with its first run, placed on `node_id`, stored in one transaction."""
    if workflow.state is WorkflowState.DISCARDED:
        raise WorkflowDiscarded(f"workflow {workflow.id!r} is discarded: no work order can start on it")
    order = WorkOrderRecord(
        id=new_id(),
        workflow_id=workflow.id,
        trigger_type=trigger_type,
        trigger_id=trigger_id,
        input=dict(input),
        node_id=node_id,
    )
    first = _new_run(order, workflow, _genesis(workflow, order))
    storage.create_work_order(order, first.run, first.case, first.tokens)
    return first


def _retryable(storage: WorkOrderStorage, order: WorkOrderRecord) -> Workflow:
    """Why a work order cannot take a new run, as an error; else its workflow."""
    busy = [r for r in storage.runs(order.id) if r.state not in FINAL_RUN_STATES]
    if busy:
        raise Invalid(
            f"work order {order.id} has a run in progress ({busy[0].id}, {busy[0].state.value}): "
            f"wait for it to end or cancel it"
        )
    if order.input is None:
        raise Invalid(f"the input of work order {order.id} was wiped: it cannot be retried")
    latest = storage.get_workflow(order.workflow_id)
    if latest.state is WorkflowState.DISCARDED:
        raise WorkflowDiscarded(f"workflow {order.workflow_id!r} is discarded: work order {order.id} cannot be retried")
    return latest


def retry_from_step(storage: WorkOrderStorage, run_id: str, step_id: str) -> NewRun:
    """A new run of the same work order that takes over the steps neither
    chosen nor downstream of `step_id`, and begins with the tokens that
    crossed from them into the part to execute again."""
    retried = planned_retry(storage, run_id, step_id)
    storage.enqueue_runs(
        [(retried.run, retried.case, retried.tokens)], {retried.run.work_order_id: update_state([], RunState.AVAILABLE)}
    )
    return retried


def planned_retry(storage: WorkOrderStorage, run_id: str, step_id: str) -> NewRun:
    """The retried run of `retry_from_step`, not yet stored."""
    run = storage.get_run(run_id)
    order = storage.get_work_order(run.work_order_id)
    _retryable(storage, order)
    return _planned(storage, order, run, step_id)


def _planned(storage: WorkOrderStorage, order: WorkOrderRecord, run: RunRecord, step_id: str) -> NewRun:
    """`planned_retry` of a work order already found retryable."""
    workflow = storage.get_workflow(run.workflow_id, run.workflow_version)
    kept_items = [storage.get_workitem(step) for step in run.kept_step_ids]
    own_items = storage.workitems(case_id=run.case_id)
    chosen = next((w for w in kept_items + own_items if w.id == step_id), None)
    if chosen is None:
        raise NotFound(f"step {step_id!r} is not a step of run {run.id}")
    kept_tasks = [storage.get_task(w.task_id) for w in kept_items]
    kept_task_ids = {t.id for t in kept_tasks}
    consumed_by_kept = {
        t.id: t for w in kept_items for t in storage.tokens(w.case_id) if t.consumed_by_task_id in kept_task_ids
    }
    plan = plan_retry(
        storage.tasks(run.case_id) + kept_tasks,
        storage.tokens(run.case_id) + list(consumed_by_kept.values()),
        chosen.task_id,
    )

    def carried_over(case: CaseRecord) -> list[TokenRecord]:
        return [
            TokenRecord(
                id=new_id(),
                case_id=case.id,
                workflow_id=workflow.id,
                place_id=t.place_id,
                payload=dict(t.payload),
                produced_by_task_id=t.produced_by_task_id,
            )
            for t in plan.seed_tokens
        ]

    kept_steps = [
        w.id for w in kept_items + own_items if w.task_id in plan.kept_task_ids and w.state is WorkitemState.COMPLETED
    ]
    return _new_run(
        order,
        workflow,
        carried_over,
        retried_from_run_id=run.id,
        retried_from_step_id=step_id,
        kept_step_ids=kept_steps,
    )


def retry_many(
    storage: WorkOrderStorage,
    work_order_ids: list[str],
    steps: list[tuple[str, str]],
    from_transition: str | None = None,
) -> tuple[list[NewRun], list[Discard]]:
    """Work orders retried from their first step (a fresh run on their
    input), or with `from_transition` from the last step of that transition
    in their latest run, and runs retried from a step; all enqueued in one
    transaction. Returns the new runs and the requests discarded, each with
    its reason: unknown, in progress, wiped input, discarded workflow, a work
    order named again (the later one is discarded), no such transition or no
    step of it in the latest run. A storage failure fails the whole request."""
    planned: list[NewRun] = []
    discards: list[Discard] = []
    named: set[str] = set()

    def first_time(work_order_id: str, run_id: str | None = None) -> bool:
        if work_order_id in named:
            discards.append(Discard(work_order_id, f"work order {work_order_id} is named more than once", run_id))
            return False
        named.add(work_order_id)
        return True

    for work_order_id in work_order_ids:
        if not first_time(work_order_id):
            continue
        try:
            order = _work_order(storage, work_order_id)
            if from_transition is None:
                workflow = _retryable(storage, order)
                planned.append(_new_run(order, workflow, _genesis(workflow, order)))
            else:
                planned.append(_planned_from_transition(storage, order, from_transition))
        except StorageFailure:
            raise
        except PetriflowError as exc:
            discards.append(Discard(work_order_id, exc.message))
    for run_id, step_id in steps:
        try:
            work_order_id = storage.get_run(run_id).work_order_id
        except NotFound:
            discards.append(Discard(None, f"run {run_id!r} not found", run_id))
            continue
        if not first_time(work_order_id, run_id):
            continue
        try:
            planned.append(planned_retry(storage, run_id, step_id))
        except StorageFailure:
            raise
        except PetriflowError as exc:
            discards.append(Discard(work_order_id, exc.message, run_id))
    storage.enqueue_runs(
        [(n.run, n.case, n.tokens) for n in planned],
        {n.run.work_order_id: update_state([], RunState.AVAILABLE) for n in planned},
    )
    return planned, discards


def _work_order(storage: WorkOrderStorage, work_order_id: str) -> WorkOrderRecord:
    try:
        return storage.get_work_order(work_order_id)
    except NotFound:
        raise NotFound(f"work order {work_order_id!r} not found") from None


def _planned_from_transition(storage: WorkOrderStorage, order: WorkOrderRecord, transition_id: str) -> NewRun:
    """The retry of the work order's latest run from its last step of
    `transition_id` (a loop runs a transition several times; a step kept from
    an earlier run counts), planned as `retry_from_step` plans it."""
    _retryable(storage, order)
    runs = storage.runs(order.id)
    if not runs:
        raise NotFound(f"work order {order.id} has no run")
    run = runs[-1]
    workflow = storage.get_workflow(run.workflow_id, run.workflow_version)
    if not any(t.id == transition_id for t in workflow.transitions):
        raise NotFound(f"workflow {workflow.id!r} has no transition {transition_id!r}")
    steps = [storage.get_workitem(step) for step in run.kept_step_ids] + storage.workitems(case_id=run.case_id)
    of_transition = [w for w in steps if w.transition_id == transition_id]
    if not of_transition:
        raise NotFound(f"the latest run {run.id} of work order {order.id} has no step of transition {transition_id!r}")
    last = max(enumerate(of_transition), key=lambda item: (item[1].created_at, item[0]))[1]
    return _planned(storage, order, run, last.id)


def needs_actor(storage: WorkOrderStorage, run: RunRecord) -> bool:
    """Whether an unfinished run's case must be started now: it has work to
    do, it has to report its end, or it cannot be restored and must be
    marked lost. A run whose case only waits on people is started when a
    message for it arrives."""
    if run.state is not RunState.STARTED:
        return True
    try:
        case = storage.get_case(run.case_id)
        storage.get_workflow(case.workflow_id, case.workflow_version)
    except PetriflowError:
        return True
    return storage.case_needs_actor(run.case_id)

"""What clients see of work orders: views assembled from records, and their
JSON shape (the README's "--json output"), which `--json` output and the webhook
endpoint print."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from petriflow.engine.records import RunRecord, TaskRecord, WorkitemRecord, WorkOrderRecord
from petriflow.engine.states import FINAL_RUN_STATES, RunState, TaskState, WorkitemState, WorkOrderState
from petriflow.engine.wire import ChoiceView, QueueView, RunView, StepView, TimerView, WorkOrderView
from petriflow.engine.workflow import Workflow
from petriflow.engine.workorders import queue

FINAL_WORK_ORDER_STATES = frozenset(WorkOrderState) - {WorkOrderState.PENDING, WorkOrderState.RUNNING}


def step_view(workitem: WorkitemRecord, kept: bool = False) -> StepView:
    """A step is a workitem: its id is the step id, so a step a retry takes
    over keeps its id and a step executed again gets a new one."""
    return StepView(
        step_id=workitem.id,
        workitem_id=workitem.id,
        transition_id=workitem.transition_id,
        state=workitem.state.value,
        attempt=workitem.attempt,
        input=workitem.input,
        output=workitem.output,
        started_at=workitem.started_at,
        finished_at=workitem.finished_at,
        kept=kept,
        failure=workitem.failure,
        awaiting=workitem.awaiting and workitem.state is WorkitemState.STARTED,
    )


def run_view(
    run: RunRecord,
    kept: list[WorkitemRecord],
    own: list[WorkitemRecord],
    tasks: Sequence[TaskRecord] = (),
    workflow: Workflow | None = None,
    queue: QueueView | None = None,
) -> RunView:
    """`tasks`: the case's, of which the view lists those waiting for their
    event (a timer's deadline; a person, for a manual step in a deferred
    choice of `workflow`); `queue`: where an available run waits."""
    steps = [step_view(w, kept=True) for w in kept] + [step_view(w) for w in own]
    waiting = [task for task in tasks if task.state is TaskState.STARTED]
    return RunView(
        run=run,
        steps=sorted(steps, key=lambda s: (s.started_at or float("inf"), s.step_id)),
        timers=[TimerView(t.id, t.transition_id, t.wake_at) for t in waiting if t.wake_at is not None],
        choices=[
            ChoiceView(t.id, t.transition_id)
            for t in waiting
            if workflow is not None and workflow.waits_for_person(t.transition_id)
        ],
        queue=queue,
    )


def queue_view(run: RunRecord, unfinished: list[RunRecord], concurrency: int | None) -> QueueView | None:
    """Where an available run stands in its workflow's queue; None when it does not wait for a slot."""
    if concurrency is None or run.state is not RunState.AVAILABLE:
        return None
    started, waiting = queue(unfinished)
    position = next((i for i, r in enumerate(waiting, 1) if r.id == run.id), len(waiting) + 1)
    return QueueView(concurrency=concurrency, started=started, position=position)


def is_settled(view: WorkOrderView) -> bool:
    """A work order is settled when its state is final and no run of it is
    unfinished (a retry adds an unfinished run to a final work order)."""
    return view.work_order.state in FINAL_WORK_ORDER_STATES and all(r.run.state in FINAL_RUN_STATES for r in view.runs)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if hasattr(value, "value") and isinstance(value.value, str):
        return value.value
    return value


def work_order_summary(order: WorkOrderRecord) -> dict[str, Any]:
    return {
        "work_order_id": order.id,
        "workflow_id": order.workflow_id,
        "state": order.state.value,
        "trigger_type": order.trigger_type,
        "trigger_id": order.trigger_id,
        "created_at": order.created_at,
        "updated_at": order.updated_at,
    }


def run_json(view: RunView) -> dict[str, Any]:
    run = view.run
    return {
        "run_id": run.id,
        "case_id": run.case_id,
        "state": run.state.value,
        "workflow_version": run.workflow_version,
        "retried_from_run_id": run.retried_from_run_id,
        "retried_from_step_id": run.retried_from_step_id,
        "failure": _plain(run.failure),
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "steps": [_plain(step) for step in view.steps],
        "timers": [_plain(timer) for timer in view.timers],
        "choices": [_plain(choice) for choice in view.choices],
        "queue": _plain(view.queue),
    }


def work_order_json(view: WorkOrderView) -> dict[str, Any]:
    return {
        **work_order_summary(view.work_order),
        "input": view.work_order.input,
        "runs": [run_json(run) for run in view.runs],
    }

"""The command line's tables and one-line summaries of work orders, runs, steps and events."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from petriflow.engine.records import WorkOrderRecord
from petriflow.engine.states import WorkitemState
from petriflow.engine.wire import Event, RetryManyResult, RunView, StepView, WorkOrderView

CELL_WIDTH = 40


def when(timestamp: float | None, form: str = "%Y-%m-%d %H:%M:%S") -> str:
    return datetime.fromtimestamp(timestamp).strftime(form) if timestamp else "-"


def clock(timestamp: float | None) -> str:
    """A step's time of day to the millisecond: its run's line gives the date."""
    return when(timestamp, "%H:%M:%S.%f")[:12]


def took(started: float | None, finished: float | None) -> str:
    return f"{finished - started:.3f}s" if started and finished else "-"


def clip(value: Any) -> str:
    text = "-" if value is None else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= CELL_WIDTH else text[: CELL_WIDTH - 1] + "…"


def table(headers: list[str], rows: list[list[Any]], empty: str) -> str:
    """Left-aligned columns two spaces apart; `empty` when there is no row."""
    if not rows:
        return empty
    cells = [headers] + [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in cells)


def progress(view: WorkOrderView) -> str:
    steps = view.runs[-1].steps if view.runs else []
    done = sum(step.state == WorkitemState.COMPLETED.value for step in steps)
    return f"work order {view.work_order.id} {view.work_order.state.value}: {done}/{len(steps)} steps completed"


def orders_table(orders: list[WorkOrderRecord]) -> str:
    rows = [
        [
            o.id,
            o.workflow_id,
            o.state.value,
            f"{o.trigger_type}:{o.trigger_id}" if o.trigger_id else o.trigger_type,
            when(o.created_at),
        ]
        for o in orders
    ]
    return table(["ID", "WORKFLOW", "STATE", "TRIGGER", "CREATED"], rows, "no work orders")


def step_row(step: StepView) -> list[Any]:
    outcome = f"! {step.failure.kind}: {step.failure.reason}" if step.failure else clip(step.output)
    return [
        step.step_id,
        step.transition_id,
        step.state,
        step.attempt,
        "yes" if step.kept else "no",
        clock(step.started_at),
        clock(step.finished_at),
        took(step.started_at, step.finished_at),
        clip(step.input),
        outcome,
    ]


def describe_run(view: RunView) -> str:
    run = view.run
    lines = [
        f"run {run.id}  {run.state.value}  workflow v{run.workflow_version}  "
        f"started {when(run.started_at)}  took {took(run.started_at, run.finished_at)}"
    ]
    if run.retried_from_run_id:
        lines.append(f"  retried from run {run.retried_from_run_id} at step {run.retried_from_step_id}")
    if run.failure:
        lines.append(f"  failure {run.failure.kind}: {run.failure.reason}")
    if view.queue is not None:
        queue = view.queue
        lines.append(
            f"  waiting  for a slot: concurrency {queue.concurrency}, {queue.started} started, "
            f"number {queue.position} in line"
        )
    for timer in view.timers:
        lines.append(f"  timer    {timer.transition_id} (task {timer.task_id}) due {when(timer.due_at)}")
    for choice in view.choices:
        lines.append(
            f"  choice   {choice.transition_id} (task {choice.task_id}) waits for a person: "
            f"petriflow complete {choice.task_id} --output JSON"
        )
    lines.append(
        table(
            ["STEP", "TRANSITION", "STATE", "ATTEMPT", "KEPT", "STARTED", "FINISHED", "TOOK", "INPUT", "OUTPUT"],
            [step_row(step) for step in view.steps],
            "  no steps yet",
        )
    )
    return "\n".join(lines)


def describe_order(view: WorkOrderView) -> str:
    order = view.work_order
    head = [
        f"work order {order.id}",
        f"  workflow {order.workflow_id}",
        f"  state    {order.state.value}",
        f"  trigger  {order.trigger_type}" + (f" {order.trigger_id}" if order.trigger_id else ""),
        f"  created  {when(order.created_at)}",
        f"  input    {clip(order.input)}",
    ]
    return "\n\n".join(["\n".join(head)] + [describe_run(run) for run in view.runs])


def event_json(event: Event) -> dict[str, Any]:
    run = event.run
    return {
        "kind": event.kind,
        "work_order_id": event.work_order.id,
        "workflow_id": event.work_order.workflow_id,
        "state": event.work_order.state.value,
        "run_id": run.id if run else None,
        "run_state": run.state.value if run else None,
    }


def retry_many_json(result: RetryManyResult) -> dict[str, Any]:
    return {
        "enqueued": result.enqueued,
        "discarded": result.discarded,
        "discards": [{"work_order_id": d.work_order_id, "reason": d.reason} for d in result.discards],
    }


def retry_many_text(result: RetryManyResult) -> str:
    """The counts, then one line per discard with its reason."""
    lines = [f"enqueued {result.enqueued}, discarded {result.discarded}"]
    lines += [f"discarded {d.work_order_id or d.run_id}: {d.reason}" for d in result.discards]
    return "\n".join(lines)

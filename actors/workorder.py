"""The WorkOrder actor: one per unfinished work order, supervising the case
of each of its runs and aggregating their states into its own (Lightning's
`update_state`). It reports every change to the Engine as an `Event`, and
exits once no run of it is unfinished; a retry brings it back."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import structlog

from petriflow import metrics
from petriflow.actors import outbox
from petriflow.actors.case import CaseActor
from petriflow.actors.entity import EntityActor, gave_up_failure, workflow_for
from petriflow.engine.errors import AlreadyCompleted, Invalid, PetriflowError, StorageFailure
from petriflow.engine.messages import CaseActivated, CaseEnded, Crash, InitCase, InitWorkOrder, Routed, StartRun
from petriflow.engine.records import Failure, RunRecord, WorkOrderRecord
from petriflow.engine.states import FINAL_RUN_STATES, UNFINISHED_WORK_ORDER_STATES, RunState
from petriflow.engine.wire import (
    AbandonWorkitem,
    CancelWorkOrder,
    CompleteWorkitem,
    Event,
    Ok,
    Preexecute,
    TerminateCase,
)
from petriflow.engine.workorders import run_state_of_case, run_state_of_termination, update_state
from petriflow.supervision.childspec import ChildSpec
from petriflow.workorders.runs import needs_actor

log = structlog.get_logger("petriflow.work_order")


def count_end(order: WorkOrderRecord) -> None:
    """Count a work order that reached a final state, once the turn that
    recorded it is committed (a turn rolled back counts nothing)."""
    workflow, state = order.workflow_id, order.state.value
    outbox.after_commit(lambda: metrics.work_order_finished(workflow, state))


class WorkOrderActor(EntityActor):
    order: WorkOrderRecord

    kind, holds = "work_order", "order"

    def log_context(self) -> dict[str, Any]:
        order = getattr(self, "order", None)
        return {"work_order_id": order.id, "workflow_id": order.workflow_id} if order else {}

    def on_start(self, init: InitWorkOrder) -> None:
        self.open(init.settings)
        self.order = self.storage.claim_work_order(init.work_order_id, os.getpid(), init.node_incarnation)
        self.children = self.supervise(self._case_gave_up)
        self.runs = {run.id: run for run in self.storage.runs(self.order.id)}  # held: this actor moves them
        unfinished = self._unfinished()
        if not unfinished:
            self._settle()
            return
        for run in unfinished:
            if needs_actor(self.storage, run):
                self._start(run)  # a parked run's case starts when a message for it comes

    def _settle(self) -> None:
        """Every run is final: make sure the work order says so (an older
        petriflow, or a crash, may have recorded the run but not the order),
        then exit."""
        runs = list(self.runs.values())
        state = update_state([], runs[-1].state) if runs else self.order.state
        if state is not self.order.state:
            self.order = self.storage.set_work_order_state(self.order.id, state)
            if state not in UNFINISHED_WORK_ORDER_STATES:
                count_end(self.order)
            log.info("work_order_updated", state=state.value, **self.log_context())
            self._event("work_order_updated", runs[-1])
        self.stop_normally(self.order.state.value)

    def may_passivate(self) -> bool:
        """Idle with every case passivated: waiting work orders cost rows, not processes."""
        return not any(self.children.is_live(k) for k in self.children.keys())

    def _unfinished(self) -> list[RunRecord]:
        return [r for r in self.runs.values() if r.state not in FINAL_RUN_STATES]

    def _start(self, run: RunRecord) -> None:
        """Claim the run and start (or restore) its case; a run whose case
        cannot be restored is lost."""
        try:
            case = self.storage.get_case(run.case_id)
            workflow = workflow_for(self.storage, case.workflow_id, case.workflow_version)
        except PetriflowError as exc:
            self._ended(run, RunState.LOST, Failure(kind="lost", reason=f"the run cannot be restored: {exc}"))
            return
        if run.state is RunState.AVAILABLE:
            limit = workflow.concurrency  # its own version's: cached, where the latest would be read each time
            if not self._advance(run, RunState.CLAIMED, limit=limit):
                log.info("run_waiting", run_id=run.id, concurrency=limit, **self.log_context())
                return  # the Engine hands it back (`StartRun`) once a slot is free
        if run.case_id not in self.children.keys():
            self.children.start(
                ChildSpec(
                    key=run.case_id, actor_class=CaseActor, init=InitCase(case_id=run.case_id, settings=self.settings)
                )
            )

    def _advance(
        self, run: RunRecord, target: RunState, failure: Failure | None = None, *, limit: int | None = None
    ) -> bool:
        """Move the run, and the work order to the state its runs now give it
        (Lightning's update_state), in one transaction; tell the Engine.
        False when the workflow's concurrency `limit` keeps it waiting."""
        others = [r.state for r in self.runs.values() if r.id != run.id and r.state not in FINAL_RUN_STATES]
        state = update_state(others, target)
        changed = state is not self.order.state
        order_state = state if changed else None  # unchanged: the order's row is not even read
        run = self.runs[run.id] = self.storage.advance_run(
            run.id, target, failure, order_state=order_state, limit=limit
        )
        if run.state is not target:
            return False
        if changed:
            self.order = self.storage.get_work_order(self.order.id)
            if state not in UNFINISHED_WORK_ORDER_STATES:
                count_end(self.order)
            log.info("work_order_updated", state=state.value, run_id=run.id, **self.log_context())
        self._event("run_updated", run)
        if changed:
            self._event("work_order_updated", run)
        if not self._unfinished() and not any(self.children.is_live(k) for k in self.children.keys()):
            self.stop_normally(self.order.state.value)
        return True

    def _event(self, kind: str, run: RunRecord | None) -> None:
        if self.parent is not None:
            self.send(self.parent, Event(kind=kind, work_order=self.order, run=run))

    def _ended(self, run: RunRecord, state: RunState, failure: Failure | None) -> None:
        log.info(
            "run_ended",
            run_id=run.id,
            case_id=run.case_id,
            state=state.value,
            reason=failure.reason if failure else None,
            **self.log_context(),
        )
        self._advance(run, state, failure)

    def _case_gave_up(self, spec: ChildSpec, reason: str) -> None:
        """The run ends with the case's failure. If the case's own rows cannot
        be written (a failing disk), the run still records it."""
        failure = gave_up_failure("case", reason)
        try:
            self.storage.take_over_and_terminate(spec.key, failure)
        except StorageFailure as exc:
            log.error("case_not_terminated", case_id=spec.key, error=exc.message, **self.log_context())
        log.error("case_gave_up", case_id=spec.key, reason=reason, **self.log_context())
        run = next(r for r in self.runs.values() if r.case_id == spec.key)
        if run.state not in FINAL_RUN_STATES:
            case = self.storage.get_case(spec.key)
            self._ended(run, run_state_of_termination((case.failure or failure).kind), case.failure or failure)

    def _run_of(self, case_id: str) -> RunRecord:
        run = next((r for r in self.runs.values() if r.case_id == case_id), None)
        if run is None:
            raise Invalid(f"case {case_id} is not a run of work order {self.order.id}")
        return run

    def _case_ended(self, case_id: str) -> None:
        run = self._run_of(case_id)
        if run.state in FINAL_RUN_STATES:
            return
        case = self.storage.get_case(case_id)
        state = run_state_of_case(case.state.value, case.failure.kind if case.failure else None)
        if state is not None:
            self._ended(run, state, case.failure)

    # -- messages ---------------------------------------------------------------

    def on_message(self, message: Any, sender: Any) -> None:
        if self.children.handle(message, sender):
            if not self._unfinished() and not any(self.children.is_live(k) for k in self.children.keys()):
                self.stop_normally(self.order.state.value)
            return
        self.dispatch(message, sender)

    def handlers(self) -> dict[type, Callable[[Any, Any], object]]:
        return {
            CaseActivated: lambda message, _: self._case_activated(message.case_id),
            CaseEnded: lambda message, _: self._case_ended(message.case_id),
            StartRun: lambda message, _: self._start_new(message.run_id),
            Routed: self.serve,
        }

    def _start_new(self, run_id: str) -> None:
        """A run the Engine added (a retry, which also moved the order): read once, then held."""
        self.order = self.storage.get_work_order(self.order.id)
        run = self.runs[run_id] = self.storage.get_run(run_id)
        self._start(run)

    def _case_activated(self, case_id: str) -> None:
        run = self._run_of(case_id)
        if run.state is RunState.CLAIMED:
            self._advance(run, RunState.STARTED)

    def requests(self) -> dict[type, Callable[[Routed], Any]]:
        """Cancel is the work order's own; the rest go to the case they are for."""

        def to_case_of_workitem(routed: Routed) -> None:
            self._to_case(self.storage.get_workitem(routed.body.workitem_id).case_id, routed)

        return {
            CancelWorkOrder: lambda routed: self._cancel(),
            Crash: lambda routed: (
                self.killed(routed) if routed.body.kind == "work_order" else self._to_case(routed.body.case_id, routed)
            ),
            TerminateCase: lambda routed: self._to_case(routed.body.case_id, routed),
            Preexecute: lambda routed: self._to_case(self.storage.get_task(routed.body.task_id).case_id, routed),
            CompleteWorkitem: to_case_of_workitem,
            AbandonWorkitem: to_case_of_workitem,
        }

    def _to_case(self, case_id: str, routed: Routed) -> None:
        if case_id not in self.children.keys():
            run = next((r for r in self._unfinished() if r.case_id == case_id), None)
            if run is None:
                raise Invalid(f"case {case_id} is not a running case of work order {self.order.id}")
            self._start(run)
        self.children.send(case_id, routed)

    def _cancel(self) -> Ok:
        unfinished = self._unfinished()
        if not unfinished:
            raise AlreadyCompleted(f"work order {self.order.id} is already {self.order.state.value}")
        for run in unfinished:
            log.info("run_cancelling", run_id=run.id, case_id=run.case_id, **self.log_context())
            if run.case_id in self.children.keys():
                self.children.send(run.case_id, Routed(TerminateCase(run.case_id), None))
            else:  # waiting for a concurrency slot: its case never started
                self.storage.take_over_and_terminate(run.case_id, None)
                self._ended(run, RunState.CANCELLED, None)
        return Ok()

"""The client library: how user code talks to a running engine.

Every call is one `ask` of the Engine with an encoded request; an `Error`
reply is raised as the petriflow exception of its code.
"""

from __future__ import annotations

import json
import os
from collections.abc import Generator
from typing import Any

from thespian.actors import ActorSystem

from petriflow.actors.engine import ENGINE_NAME, EngineActor
from petriflow.engine import codec
from petriflow.engine.document import workflow_to_document
from petriflow.engine.errors import NotFound, error_for
from petriflow.engine.messages import BootEngine
from petriflow.engine.records import TaskRecord, TokenRecord, WorkitemRecord, WorkOrderRecord
from petriflow.engine.settings import Settings
from petriflow.engine.wire import (
    AbandonWorkitem,
    ActorInfo,
    CancelWorkOrder,
    CaseList,
    CaseView,
    CompleteWorkitem,
    CronTick,
    DiscardWorkflow,
    EngineInfo,
    Error,
    Event,
    GetCase,
    GetTask,
    GetTriggerAuth,
    GetWorkflow,
    GetWorkitem,
    GetWorkOrder,
    Heartbeat,
    KillEntity,
    ListActors,
    ListCases,
    ListWorkflows,
    ListWorkOrders,
    Liveness,
    PageWorkOrders,
    Ping,
    Preexecute,
    PutWorkflow,
    RetryMany,
    RetryManyResult,
    RetryRun,
    RunStep,
    StartCase,
    SubmitWebhook,
    SubmitWorkOrder,
    Subscribe,
    TerminateCase,
    Unsubscribe,
    WaitCase,
    WaitWorkOrder,
    WorkOrderPage,
    WorkOrderSubmitted,
    WorkOrderView,
)
from petriflow.engine.workflow import Workflow
from petriflow.system import connect_actor_system


class EngineTimeout(TimeoutError):
    """The engine did not answer in time; the request may still take effect."""


def boot_engine(asys: ActorSystem, settings: Settings, timeout_s: float = 30.0) -> EngineInfo:
    """Create (or find) the Engine in `asys` and have it restore its storage."""
    engine = asys.createActor(EngineActor, globalName=ENGINE_NAME)
    reply = asys.ask(engine, BootEngine(settings), timeout_s)
    if reply is None:
        raise EngineTimeout(f"the engine did not boot within {timeout_s}s")
    result = codec.decode(reply)
    if isinstance(result, Error):
        raise error_for(result.code, result.message)
    return result


class Client:
    def __init__(self, asys: ActorSystem, timeout_s: float = 30.0) -> None:
        self.asys = asys
        self.timeout_s = timeout_s
        self.engine = asys.createActor(EngineActor, globalName=ENGINE_NAME)

    @classmethod
    def connect(cls, port: int, timeout_s: float = 30.0) -> Client:
        """Connect to a daemon's multiprocTCPBase actor system on loopback."""
        return cls(connect_actor_system(port), timeout_s)

    def request(self, message: Any, timeout_s: float | None = None) -> Any:
        timeout = self.timeout_s if timeout_s is None else timeout_s
        reply = self.asys.ask(self.engine, codec.encode(message), timeout)
        if reply is None:
            raise EngineTimeout(f"no answer to {type(message).__name__} within {timeout}s")
        result = codec.decode(reply)
        if isinstance(result, Error):
            raise error_for(result.code, result.message)
        return result

    # -- workflows ---------------------------------------------------------------

    def put_workflow(self, workflow: Workflow | dict[str, Any] | str | os.PathLike) -> tuple[str, int]:
        """Store a workflow given as a `Workflow`, a document or a JSON file path."""
        if isinstance(workflow, Workflow):
            document = workflow_to_document(workflow)
        elif isinstance(workflow, dict):
            document = workflow
        else:
            with open(workflow, encoding="utf-8") as f:
                document = json.load(f)
        stored = self.request(PutWorkflow(document))
        return stored.workflow_id, stored.version

    def get_workflow(self, workflow_id: str, version: int | None = None) -> dict[str, Any]:
        return self.request(GetWorkflow(workflow_id, version)).document

    def discard_workflow(self, workflow_id: str) -> None:
        self.request(DiscardWorkflow(workflow_id))

    # -- cases ---------------------------------------------------------------------

    def start_case(self, workflow_id: str, input: dict[str, Any] | None = None, version: int | None = None) -> str:
        return self.request(StartCase(workflow_id, dict(input or {}), version)).case_id

    def get_case(self, case_id: str) -> CaseView:
        return self.request(GetCase(case_id))

    def get_task(self, task_id: str) -> TaskRecord:
        return self.request(GetTask(task_id))

    def get_workitem(self, workitem_id: str) -> WorkitemRecord:
        return self.request(GetWorkitem(workitem_id))

    def wait_case(self, case_id: str, timeout_s: float = 60.0) -> CaseView:
        """Block until the case is finished or terminated."""
        return self.request(WaitCase(case_id), timeout_s)

    def list_cases(self, states: list[str] | None = None) -> CaseList:
        return self.request(ListCases(states))

    def terminate_case(self, case_id: str) -> None:
        self.request(TerminateCase(case_id))

    def complete_workitem(self, workitem_id: str, output: dict[str, Any] | None = None) -> None:
        self.request(CompleteWorkitem(workitem_id, dict(output or {})))

    def abandon_workitem(self, workitem_id: str) -> None:
        self.request(AbandonWorkitem(workitem_id))

    def preexecute(self, task_id: str) -> list[TokenRecord]:
        """WorkflowMetal's preexecute: the task takes the tokens that enable it
        and creates its workitem. How a person makes a deferred choice: a
        manual step competing for its token waits for this."""
        return self.request(Preexecute(task_id)).tokens

    def complete_task(self, task_id: str, output: dict[str, Any] | None = None) -> str:
        """Take a waiting manual task's tokens (`preexecute`) and complete the
        workitem that creates; returns that workitem's id."""
        self.preexecute(task_id)
        task = self.get_task(task_id)
        workitem = next(w for w in self.get_case(task.case_id).workitems if w.task_id == task_id)
        self.complete_workitem(workitem.id, output)
        return workitem.id

    def complete(self, step_or_task_id: str, output: dict[str, Any] | None = None) -> str:
        """Complete a waiting workitem, or a manual task in a deferred choice
        (`complete_task`), by its id; returns the workitem's id."""
        try:
            self.complete_workitem(step_or_task_id, output)
            return step_or_task_id
        except NotFound:
            try:
                self.get_task(step_or_task_id)
            except NotFound:
                raise NotFound(f"{step_or_task_id!r} is neither a workitem nor a task") from None
            return self.complete_task(step_or_task_id, output)

    def ping(self) -> EngineInfo:
        return self.request(Ping())

    def list_workflows(self) -> list[dict[str, Any]]:
        return self.request(ListWorkflows()).documents

    def list_actors(self) -> list[ActorInfo]:
        return self.request(ListActors()).actors

    # -- work orders -----------------------------------------------------------------

    def submit(
        self, workflow_id: str, input: dict[str, Any] | None = None, version: int | None = None
    ) -> WorkOrderSubmitted:
        """A manual submission: a work order with its first run."""
        return self.request(SubmitWorkOrder(workflow_id, dict(input or {}), version))

    def submit_webhook(
        self, trigger_id: str, body: dict[str, Any], auth: dict[str, Any] | None = None
    ) -> WorkOrderSubmitted:
        """What a webhook call does, without its HTTP; `auth` is for the HTTP
        server (`SubmitWebhook`)."""
        return self.request(SubmitWebhook(trigger_id, body, auth))

    def trigger_auth(self, trigger_id: str) -> dict[str, Any]:
        """The `auth` of an active webhook trigger (no secret: only where it is)."""
        return self.request(GetTriggerAuth(trigger_id)).auth

    def heartbeat(self, timeout_s: float | None = None) -> Liveness:
        """The Engine's answer at once, and how its nodes answer its own beats."""
        return self.request(Heartbeat(), timeout_s)

    def fire_cron(self, now: float) -> list[str]:
        """Fire the cron triggers due at `now`: the daemon does this each minute."""
        return self.request(CronTick(now)).work_order_ids

    def get_work_order(self, work_order_id: str) -> WorkOrderView:
        return self.request(GetWorkOrder(work_order_id))

    def wait_work_order(self, work_order_id: str, timeout_s: float = 60.0) -> WorkOrderView:
        """Block until no run of the work order is unfinished."""
        return self.request(WaitWorkOrder(work_order_id), timeout_s)

    def list_work_orders(
        self, states: list[str] | None = None, workflow_id: str | None = None, since: float | None = None
    ) -> list[WorkOrderRecord]:
        return self.request(ListWorkOrders(states, workflow_id, since)).work_orders

    def page_work_orders(
        self,
        states: list[str] | None = None,
        workflow_id: str | None = None,
        trigger_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        search: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> WorkOrderPage:
        """One page of the work-order history, newest first, and how many match in all (`PageWorkOrders`)."""
        return self.request(PageWorkOrders(states, workflow_id, trigger_id, since, until, search, limit, offset))

    def retry(self, run_id: str, step_id: str) -> str:
        """Retry a run from a step; returns the new run's id."""
        return self.request(RetryRun(run_id, step_id)).run_id

    def retry_many(
        self,
        work_order_ids: list[str] | None = None,
        steps: list[tuple[str, str]] | None = None,
        from_transition: str | None = None,
    ) -> tuple[int, int]:
        """(enqueued, discarded): see `retry_many_detailed`."""
        result = self.retry_many_detailed(work_order_ids, steps, from_transition)
        return result.enqueued, result.discarded

    def retry_many_detailed(
        self,
        work_order_ids: list[str] | None = None,
        steps: list[tuple[str, str]] | None = None,
        from_transition: str | None = None,
    ) -> RetryManyResult:
        """Retry work orders from their first step, or with `from_transition`
        from the last step of that transition in their latest run, and runs
        (run_id, step_id) from a step; every new run is enqueued in one
        storage transaction. What cannot be retried is discarded, never
        raised: the result counts both and gives each discard's reason."""
        return self.request(
            RetryMany(list(work_order_ids or []), [RunStep(r, s) for r, s in steps or []], from_transition)
        )

    def kill(self, entity_id: str) -> str:
        """Crash one live work order, case, task or workitem on purpose, as
        Erlang's `exit(Pid, kill)`; its supervisor restores it from storage.
        Returns the entity's kind."""
        return self.request(KillEntity(entity_id)).kind

    def cancel(self, work_order_id: str) -> None:
        self.request(CancelWorkOrder(work_order_id))

    def events(self, timeout_s: float | None = None) -> Generator[Event, None, None]:
        """Subscribe now, then iterate over work-order and run events as they
        happen; the iteration ends after `timeout_s` without an event (None:
        never). Use a client for nothing else while it is subscribed: its
        replies would mingle with the events."""
        self.request(Subscribe())
        return self._listen(timeout_s)

    def _listen(self, timeout_s: float | None) -> Generator[Event, None, None]:
        try:
            while True:
                message = self.asys.listen(timeout_s)
                if message is None:
                    return
                event = codec.decode(message)
                if isinstance(event, Event):
                    yield event
        finally:
            self.asys.tell(self.engine, codec.encode(Unsubscribe()))

"""The Engine actor: the root of the tree and the door for clients.

A Thespian `globalName` actor. Clients send it msgpack-encoded requests
(`engine.codec`) and get one encoded reply each. At boot it restores every
unfinished case from storage; each case restores its tasks, each task its
workitems.
"""
from __future__ import annotations

import os
from typing import Any, Callable

import structlog

from actors.case import TASK_REQUESTS, WORKITEM_REQUESTS, CaseActor
from actors.entity import EntityActor
from actors.envelope import Routed
from engine import codec
from engine.document import workflow_from_document, workflow_to_document
from engine.errors import AlreadyCompleted, Invalid, PetriflowError, WorkflowDiscarded
from engine.messages import (BootEngine, CaseEnded, CaseList, CaseStarted, CaseView,
                             DiscardWorkflow, EngineInfo, Error, GetCase, GetTask, GetWorkflow,
                             GetWorkitem, InitCase,
                             ListCases, Ok, Ping, PutWorkflow, StartCase, TerminateCase, WaitCase,
                             WorkflowStored, WorkflowView)
from engine.records import CaseRecord, Failure, TokenRecord, new_id
from engine.states import CaseState, is_terminal
from engine.validation import validate
from engine.workflow import WorkflowState
from storage.store import Fence
from supervision.childspec import ChildSpec

log = structlog.get_logger("petriflow.engine")

ENGINE_NAME = "petriflow-engine"


class EngineActor(EntityActor):
    booted = False

    def on_message(self, message: Any, sender: Any) -> None:
        if isinstance(message, BootEngine):
            self._boot(message, sender)
            return
        if not self.booted:
            if isinstance(message, (bytes, bytearray)):
                self.answer(sender, Error("unavailable", "the engine has not booted yet"))
            return
        if self.children.handle(message, sender):
            return
        if isinstance(message, (bytes, bytearray, memoryview)):
            self._client(message, sender)
        elif isinstance(message, CaseEnded):
            self._case_ended(message.case_id)

    # -- boot and restore -----------------------------------------------------------

    def _boot(self, message: BootEngine, sender: Any) -> None:
        if not self.booted:
            self.open(message.settings)
            self.children = self.supervise(self._case_gave_up)
            self.waiters: dict[str, list[Any]] = {}
            self.booted = True
            restored = self.storage.list_cases([CaseState.CREATED, CaseState.ACTIVE])
            for case in restored:
                self._ensure_case(case.id)
            log.info("engine_booted", storage=self.storage.url, restored_cases=len(restored), pid=os.getpid())
        self.answer(sender, self._info())

    def _info(self) -> EngineInfo:
        return EngineInfo(pid=os.getpid(), sid=os.getsid(0), storage=self.storage.url,
                          live_cases=sum(1 for k in self.children.keys() if self.children.is_live(k)))

    def _ensure_case(self, case_id: str) -> None:
        if case_id not in self.children.keys():
            self.children.start(ChildSpec(key=case_id, actor_class=CaseActor,
                                          init=InitCase(case_id=case_id, settings=self.settings)))

    def _case_gave_up(self, spec: ChildSpec, reason: str) -> None:
        case = self.storage.claim_case(spec.key)
        if not is_terminal(case.state):
            failure = Failure(kind="crashed", reason=f"case crashed past the restart intensity: {reason}")
            self.storage.terminate_case(Fence("cases", case.id, case.incarnation), failure)
            log.error("case_crashed", case_id=case.id, workflow_id=case.workflow_id, reason=reason)
        self._case_ended(case.id)

    def _case_ended(self, case_id: str) -> None:
        waiters = self.waiters.pop(case_id, [])
        if waiters:
            view = self._view(case_id)
            for reply_to in waiters:
                self.answer(reply_to, view)

    # -- client requests ----------------------------------------------------------------

    def _client(self, data: Any, sender: Any) -> None:
        try:
            request = codec.decode(data)
            handler = self._handlers().get(type(request))
            if handler is None:
                raise Invalid(f"the engine does not accept {type(request).__name__} requests")
            result = handler(request, sender)
        except PetriflowError as exc:
            self.answer(sender, Error(exc.code, exc.message))
            return
        except Exception as exc:
            self.answer(sender, Error("exception", f"{type(exc).__name__}: {exc}"))
            raise
        if result is not None:
            self.answer(sender, result)

    def _handlers(self) -> dict[type, Callable[[Any, Any], Any]]:
        handlers: dict[type, Callable[[Any, Any], Any]] = {
            Ping: lambda r, s: self._info(),
            PutWorkflow: self._put_workflow,
            GetWorkflow: lambda r, s: self._workflow_view(r),
            DiscardWorkflow: self._discard_workflow,
            StartCase: self._start_case,
            GetCase: lambda r, s: self._view(r.case_id),
            GetTask: lambda r, s: self.storage.get_task(r.task_id),
            GetWorkitem: lambda r, s: self.storage.get_workitem(r.workitem_id),
            WaitCase: self._wait_case,
            ListCases: lambda r, s: CaseList(self.storage.list_cases(r.states)),
            TerminateCase: lambda r, s: self._route(self._live_case(r.case_id).id, r, s),
        }
        for kind in WORKITEM_REQUESTS:
            handlers[kind] = self._workitem_request
        for kind in TASK_REQUESTS:
            handlers[kind] = self._task_request
        return handlers

    def _put_workflow(self, request: PutWorkflow, sender: Any) -> WorkflowStored:
        workflow = validate(workflow_from_document(request.document))
        self.storage.put_workflow(workflow)
        log.info("workflow_stored", workflow_id=workflow.id, version=workflow.version)
        return WorkflowStored(workflow_id=workflow.id, version=workflow.version)

    def _workflow_view(self, request: GetWorkflow) -> WorkflowView:
        workflow = self.storage.get_workflow(request.workflow_id, request.version)
        return WorkflowView(document=workflow_to_document(workflow))

    def _discard_workflow(self, request: DiscardWorkflow, sender: Any) -> Ok:
        self.storage.discard_workflow(request.workflow_id)
        return Ok()

    def _start_case(self, request: StartCase, sender: Any) -> CaseStarted:
        workflow = self.storage.get_workflow(request.workflow_id, request.version)
        if workflow.state is WorkflowState.DISCARDED:
            raise WorkflowDiscarded(f"workflow {workflow.id!r} is discarded: no new case can start on it")
        case = CaseRecord(id=new_id(), workflow_id=workflow.id, workflow_version=workflow.version,
                          input=dict(request.input))
        genesis = TokenRecord(id=new_id(), case_id=case.id, workflow_id=workflow.id,
                              place_id=workflow.start_place.id, payload=dict(request.input))
        self.storage.create_case(case, genesis)
        log.info("case_created", case_id=case.id, workflow_id=workflow.id, version=workflow.version)
        self._ensure_case(case.id)
        return CaseStarted(case_id=case.id)

    def _view(self, case_id: str) -> CaseView:
        case = self.storage.get_case(case_id)
        return CaseView(case=case, tokens=self.storage.tokens(case_id), tasks=self.storage.tasks(case_id),
                        workitems=self.storage.workitems(case_id=case_id))

    def _wait_case(self, request: WaitCase, sender: Any) -> CaseView | None:
        case = self.storage.get_case(request.case_id)
        if is_terminal(case.state):
            return self._view(case.id)
        self.waiters.setdefault(case.id, []).append(sender)
        return None

    def _live_case(self, case_id: str) -> CaseRecord:
        case = self.storage.get_case(case_id)
        if is_terminal(case.state):
            raise Invalid(f"case {case_id} is already {case.state.value}")
        return case

    def _workitem_request(self, request: Any, sender: Any) -> None:
        workitem = self.storage.get_workitem(request.workitem_id)
        if is_terminal(workitem.state):
            raise AlreadyCompleted(f"workitem {workitem.id} is already {workitem.state.value}")
        return self._route(self._live_case(workitem.case_id).id, request, sender)

    def _task_request(self, request: Any, sender: Any) -> None:
        task = self.storage.get_task(request.task_id)
        return self._route(self._live_case(task.case_id).id, request, sender)

    def _route(self, case_id: str, request: Any, sender: Any) -> None:
        """The owner of the entity answers the client."""
        self._ensure_case(case_id)
        self.children.send(case_id, Routed(request, sender))
        return None

"""The Case actor: one running instance of a workflow.

It offers every free token to a waiting task of each transition its place
feeds (starting task actors as needed), withdraws tokens that a competing
task locked, consumes and issues tokens when a task completes, and finishes
when a token lies in the end place and nowhere else. Everything it decides
is read back from storage, so a restored case simply offers again.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from typing import Any

import structlog

from petriflow.actors.entity import EntityActor, gave_up_failure, workflow_for
from petriflow.actors.task import TaskActor
from petriflow.engine import routing, timers
from petriflow.engine.errors import AlreadyCompleted, Invalid, NoRoute, NotFound
from petriflow.engine.messages import (
    CaseActivated,
    CaseEnded,
    CompleteTask,
    Crash,
    DiscardTokens,
    ForceAbandon,
    InitCase,
    InitTask,
    ReceiveTokens,
    Routed,
    TaskAbandoned,
    TaskCompleted,
    TaskFailed,
    TokensLocked,
)
from petriflow.engine.records import CaseRecord, Failure, TaskRecord, TokenRecord
from petriflow.engine.states import TaskState, TokenState, is_terminal
from petriflow.engine.wire import AbandonWorkitem, CompleteWorkitem, Error, Ok, Preexecute, TerminateCase
from petriflow.storage.store import Fence
from petriflow.supervision.childspec import ChildSpec

log = structlog.get_logger("petriflow.case")

# The client requests a case routes down to one of its tasks (wire types only).
TASK_REQUESTS = (Preexecute,)
WORKITEM_REQUESTS = (CompleteWorkitem, AbandonWorkitem)


class CaseActor(EntityActor):
    case: CaseRecord

    kind, holds = "case", "case"

    def log_context(self) -> dict[str, Any]:
        case = getattr(self, "case", None)
        if case is None:
            return {}
        ids = {"case_id": case.id, "workflow_id": case.workflow_id}
        if case.run_id:
            ids.update(run_id=case.run_id, work_order_id=case.work_order_id)
        return ids

    def on_start(self, init: InitCase) -> None:
        self.open(init.settings)
        self.case = self.storage.claim_case(init.case_id, os.getpid(), activate=True)
        self.fence = Fence("cases", self.case.id, self.case.incarnation)
        self.ending = False
        if is_terminal(self.case.state):
            self._ended()
            return
        self.workflow = workflow_for(self.storage, self.case.workflow_id, self.case.workflow_version)
        self.children = self.supervise(self._task_gave_up)
        self.offered: dict[str, set[str]] = {}
        self.waiting: dict[str, TaskRecord] = {}  # by transition: tasks waiting for tokens, as far as it knows
        self._read_tokens()
        log.info("case_active", incarnation=self.case.incarnation, **self.log_context())
        self.send(self.parent, CaseActivated(case_id=self.case.id))
        for task in self.storage.tasks(self.case.id, [TaskState.STARTED, TaskState.ALLOCATED, TaskState.EXECUTING]):
            if task.state is TaskState.STARTED:
                self.waiting[task.transition_id] = task
            self._ensure_task(task.id)  # a waiting task that lost its tokens meanwhile abandons itself
        self._offer()

    def may_passivate(self) -> bool:
        return not self.ending and not any(self.children.is_live(k) for k in self.children.keys())

    # -- tokens -----------------------------------------------------------------

    def _read_tokens(self) -> None:
        """The case's live tokens, which it then keeps: it issues them, and
        its tasks tell it what they lock (`TokensLocked`) and consume
        (`CompleteTask`)."""
        self.tokens = {t.id: t for t in self.storage.tokens(self.case.id, [TokenState.FREE, TokenState.LOCKED])}

    def _offer(self, waiting: dict[str, TaskRecord] | None = None) -> None:
        """Offer every free token to a waiting task of each transition its
        place feeds. `waiting` are waiting tasks storage just returned, by
        transition; a transition with none known gets one from storage. A
        task stays known as waiting until it says it locked its tokens or
        gave up, so a token its case believes free (its lock not yet
        reported) is not offered to a task created for it anew."""
        live = list(self.tokens.values())
        if routing.is_finished(self.workflow, live):
            self._finish()
            return
        if not live:
            self.terminate(Failure(kind="lost", reason="no token is left anywhere: the case cannot progress"))
            return
        end = self.workflow.end_place.id
        self.waiting.update(waiting or {})
        waiting = self.waiting
        batches: dict[str, list[TokenRecord]] = {}  # by transition: what its waiting task is offered now
        for token in live:
            if token.state is not TokenState.FREE or token.place_id == end:
                continue
            for transition_id in self.workflow.transitions_fed_by(token.place_id):
                if transition_id not in waiting:
                    wake_at = self._deadline(transition_id)
                    waiting[transition_id] = self.storage.create_task(self.fence, transition_id, wake_at)
                if token.id not in self.offered.setdefault(waiting[transition_id].id, set()):
                    batches.setdefault(transition_id, []).append(token)
        for transition_id, tokens in batches.items():
            task = waiting[transition_id]
            self.offered[task.id].update(t.id for t in tokens)
            self._ensure_task(task.id, created=task)
            self.children.send(task.id, ReceiveTokens(task_id=task.id, tokens=tokens))

    def _deadline(self, transition_id: str) -> float | None:
        """When a task of the transition created now fires: a timer's, else None."""
        return timers.deadline(self.workflow.transition(transition_id), time.time())

    def _ensure_task(self, task_id: str, created: TaskRecord | None = None) -> None:
        """Start the task's actor if it has none; `created`: the task as
        storage just returned it waiting, with tokens on their way to it."""
        if task_id not in self.children.keys():
            self.children.start(
                ChildSpec(
                    key=task_id,
                    actor_class=TaskActor,
                    init=InitTask(
                        task_id=task_id,
                        case_id=self.case.id,
                        settings=self.settings,
                        workflow_version=self.case.workflow_version,
                        created=created,
                    ),
                )
            )

    def _withdraw(self, message: TokensLocked) -> None:
        """The first task to lock a token wins; the others lose it."""
        won = set(message.token_ids)
        self._not_waiting(message.task_id)
        for token_id in won & self.tokens.keys():
            self.tokens[token_id] = dataclasses.replace(
                self.tokens[token_id], state=TokenState.LOCKED, locked_by_task_id=message.task_id
            )
        self.offered.pop(message.task_id, None)
        for task_id, offered in self.offered.items():
            lost = offered & won
            if lost:
                offered -= lost
                self.children.send(
                    task_id,
                    DiscardTokens(
                        task_id=task_id,
                        tokens=[
                            TokenRecord(
                                id=t,
                                case_id=self.case.id,
                                workflow_id=self.case.workflow_id,
                                place_id="",
                                state=TokenState.LOCKED,
                                locked_by_task_id=message.task_id,
                            )
                            for t in lost
                        ],
                    ),
                )
        self._offer()

    def _complete_task(self, message: CompleteTask) -> None:
        task_id = message.task_id
        try:
            tokens = routing.issue_tokens(
                self.workflow,
                message.transition_id,
                case_id=self.case.id,
                task_id=task_id,
                payload=message.token_payload,
                input=message.input,
                failed=message.failed,
            )
        except NoRoute as exc:
            self.terminate(
                Failure(kind=exc.code, reason=exc.message, transition_id=message.transition_id, task_id=task_id)
            )
            return
        enabled = {t for token in tokens for t in self.workflow.transitions_fed_by(token.place_id)}
        waiting: dict[str, TaskRecord] = {}
        try:
            deadlines = {t: at for t in enabled if (at := self._deadline(t)) is not None}
            waiting = self.storage.complete_task(
                self.fence,
                task_id,
                message.token_payload,
                tokens,
                sorted(enabled),
                failed=message.failed,
                deadlines=deadlines,
            )
            for token_id in message.token_ids:
                self.tokens.pop(token_id, None)
            self.tokens.update((t.id, t) for t in tokens)
            log.info(
                "task_completed",
                task_id=task_id,
                transition_id=message.transition_id,
                issued=[t.place_id for t in tokens],
                failure_routed=message.failed,
                **self.log_context(),
            )
        except AlreadyCompleted:
            self._read_tokens()  # completed by an earlier incarnation: what it issued is in storage
        self._not_waiting(task_id)  # had its lock gone unreported, it is known now
        self.offered.pop(task_id, None)
        self.children.send(task_id, TaskCompleted(task_id=task_id))
        self._offer(waiting)

    # -- ending -------------------------------------------------------------------

    def _finish(self) -> None:
        self.case = self.storage.finish_case(self.fence, self.workflow.end_place.id)
        log.info("case_finished", **self.log_context())
        self._wind_down()

    def terminate(self, failure: Failure | None) -> None:
        try:
            self.case = self.storage.terminate_case(self.fence, failure)
        except AlreadyCompleted:
            self.case = self.storage.get_case(self.case.id)
        if failure is not None:
            log.error(
                "case_failed",
                kind=failure.kind,
                reason=failure.reason,
                failed_task_id=failure.task_id,
                failed_workitem_id=failure.workitem_id,
                **self.log_context(),
            )
        else:
            log.info("case_terminated", **self.log_context())
        self._wind_down()

    def _wind_down(self) -> None:
        """Abandon live tasks, then stop once they are gone."""
        self.ending = True
        for task_id in filter(self.children.is_running, self.children.keys()):
            if self.storage.get_task(task_id).state is not TaskState.COMPLETED:  # that one is on its way out
                self.children.send(task_id, ForceAbandon(task_id=task_id))
        if not any(self.children.is_live(k) for k in self.children.keys()):
            self._ended()

    def _ended(self) -> None:
        if self.parent is not None:
            self.send(self.parent, CaseEnded(case_id=self.case.id, state=self.case.state.value))
        self.stop_normally(self.case.state.value)

    def _task_gave_up(self, spec: ChildSpec, reason: str) -> None:
        task = self.storage.claim_task(spec.key)
        self.terminate(gave_up_failure("task", reason, transition_id=task.transition_id, task_id=task.id))

    # -- messages -------------------------------------------------------------------

    def on_message(self, message: Any, sender: Any) -> None:
        if self.children.handle(message, sender):
            if self.ending and not any(self.children.is_live(k) for k in self.children.keys()):
                self._ended()
            return
        if self.ending:
            if isinstance(message, Routed):
                self.answer(message.reply_to, Error("invalid", f"case {self.case.id} is {self.case.state.value}"))
            return
        self.dispatch(message, sender)

    def handlers(self) -> dict[type, Callable[[Any, Any], object]]:
        return {
            Routed: self.serve,
            TokensLocked: lambda message, _: self._withdraw(message),
            CompleteTask: lambda message, _: self._complete_task(message),
            TaskAbandoned: lambda message, _: self._task_abandoned(message.task_id),
            TaskFailed: lambda message, _: self.terminate(message.failure),
        }

    def _not_waiting(self, task_id: str) -> None:
        for transition_id, task in list(self.waiting.items()):
            if task.id == task_id:
                del self.waiting[transition_id]

    def _task_abandoned(self, task_id: str) -> None:
        self._not_waiting(task_id)
        self.offered.pop(task_id, None)
        self._offer()

    def requests(self) -> dict[type, Callable[[Routed], Any]]:
        def to_task_of_workitem(routed: Routed) -> None:
            self._to_task(self.storage.get_workitem(routed.body.workitem_id).task_id, routed)

        return {
            TerminateCase: lambda routed: self._terminate_request(),
            Crash: lambda routed: (
                self.killed(routed) if routed.body.kind == "case" else self._to_task(routed.body.task_id, routed)
            ),
            Preexecute: lambda routed: self._to_task(routed.body.task_id, routed),
            CompleteWorkitem: to_task_of_workitem,
            AbandonWorkitem: to_task_of_workitem,
        }

    def _terminate_request(self) -> Ok:
        self.terminate(None)
        return Ok()

    def _to_task(self, task_id: str, routed: Routed) -> None:
        """The task, or its workitem, answers the client itself."""
        task = self.storage.get_task(task_id)
        if task.case_id != self.case.id:
            raise NotFound(f"task {task_id} does not belong to case {self.case.id}")
        if is_terminal(task.state):
            raise Invalid(f"task {task_id} is {task.state.value}")
        self._ensure_task(task_id)
        self.children.send(task_id, routed)
        return None

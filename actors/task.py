"""The Task actor: WorkflowMetal's Task on Thespian.

One task per enabled transition in a case. It keeps a token table (tokens
offered to it or locked by it) and a workitem table, locks the tokens that
enable it (`preexecute`), creates its workitem, and when the workitems are
done asks its case to consume the locked tokens and issue new ones. On
restore it rebuilds both tables from storage and restarts its unfinished
workitems.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import structlog
from thespian.actors import WakeupMessage

from petriflow.actors.entity import EntityActor, gave_up_failure, workflow_for
from petriflow.actors.workitem import WorkitemActor
from petriflow.engine import routing
from petriflow.engine.errors import IllegalTransition, Invalid, TaskNotEnabled, TokensNotAvailable
from petriflow.engine.executors import merge_payloads, resolve_executor
from petriflow.engine.messages import (
    CompleteTask,
    Crash,
    DiscardTokens,
    ForceAbandon,
    InitTask,
    InitWorkitem,
    ReceiveTokens,
    Routed,
    TaskAbandoned,
    TaskCompleted,
    TaskFailed,
    TokensLocked,
    UpdateWorkitem,
)
from petriflow.engine.outage import iso_utc
from petriflow.engine.records import Failure, TaskRecord, TokenRecord, WorkitemRecord
from petriflow.engine.states import TaskState, TokenState, WorkitemState, is_terminal
from petriflow.engine.wire import AbandonWorkitem, CompleteWorkitem, LockedTokens, Preexecute
from petriflow.storage.store import Fence
from petriflow.supervision.childspec import ChildSpec

log = structlog.get_logger("petriflow.task")


class _TimerDue:
    """Wakeup payload: the task's timer is due."""


ROUTED_FAILURES = frozenset({"failed", "timeout", "crashed"})
"""The failures a `failure` arc takes on: the step's own, not an abandon or an engine error."""


class TaskActor(EntityActor):
    task: TaskRecord

    kind, holds = "task", "task"

    def log_context(self) -> dict[str, Any]:
        task = getattr(self, "task", None)
        if task is None:
            return {}
        return {"case_id": task.case_id, "task_id": task.id, "transition_id": task.transition_id}

    def on_start(self, init: InitTask) -> None:
        self.open(init.settings)
        self.task = self.storage.claim_task(init.task_id, os.getpid(), held=init.created)
        self.fence = Fence("tasks", self.task.id, self.task.incarnation)
        if is_terminal(self.task.state):
            self.stop_normally(f"restored {self.task.state.value}")
            return
        self.workflow = workflow_for(self.storage, self.task.workflow_id, init.workflow_version)
        self.transition = self.workflow.transition(self.task.transition_id)
        self.executor = resolve_executor(self.transition.executor)
        self.children = self.supervise(self._workitem_gave_up)
        self.completing = False
        self.ending = False
        self.timer_set = False  # a wakeup for its timer's deadline is pending
        self.tokens: dict[str, TokenRecord] = {}
        self.workitems: dict[str, WorkitemState] = {}
        self.outputs: dict[str, dict[str, Any]] = {}  # of the completed workitems
        if init.created is not None and self.task.incarnation == 1 and self.task.state is TaskState.STARTED:
            return  # a new waiting task holds no tokens, and its case is sending it those it may take
        self._rebuild_tokens()
        if self.task.state is TaskState.STARTED:
            self._try_preexecute()
        elif self.task.state is TaskState.ALLOCATED:
            self._allocate()
        else:
            workitems = self.storage.workitems(task_id=self.task.id)
            self.workitems = {w.id: w.state for w in workitems}
            self.outputs = {w.id: w.output or {} for w in workitems if w.state is WorkitemState.COMPLETED}
            for workitem in workitems:
                if not is_terminal(workitem.state):
                    self._ensure_workitem(workitem.id)
            ended = [w for w in workitems if w.state in (WorkitemState.FAILED, WorkitemState.ABANDONED)]
            if ended:
                self._update(UpdateWorkitem(self.task.id, ended[0].id, ended[0].state, None, ended[0].failure))
            else:
                self._check_workitems()

    def may_passivate(self) -> bool:
        """Idle, and no timer due within two idle timeouts: a far one is the
        Engine's to wake (`due_timers`), a near one the task fires itself."""
        keep_s = 2 * (self.settings.idle_timeout_s or 0)
        timer_soon = self.timer_set and (self.task.wake_at or 0) - time.time() < keep_s
        return (
            not self.completing
            and not self.ending
            and not timer_soon
            and not any(self.children.is_live(key) for key in self.children.keys())
        )

    # -- the token table ------------------------------------------------------

    def _rebuild_tokens(self) -> None:
        """Tokens locked by this task, and free tokens in its in-places: exactly
        what the case has offered it or would offer it again."""
        in_places = set(self.workflow.in_places(self.task.transition_id))
        for token in self.storage.tokens(self.task.case_id, [TokenState.FREE, TokenState.LOCKED]):
            mine = token.locked_by_task_id == self.task.id
            offered = token.state is TokenState.FREE and token.place_id in in_places
            if mine or offered:
                self.tokens[token.id] = token

    def _locked(self) -> list[TokenRecord]:
        return [t for t in self.tokens.values() if t.state is TokenState.LOCKED and t.locked_by_task_id == self.task.id]

    def preexecute(self) -> list[TokenRecord]:
        """Lock the tokens that enable this task; idempotent once they are held."""
        if self.task.state in (TaskState.ALLOCATED, TaskState.EXECUTING):
            return self._locked()
        if self.task.state is not TaskState.STARTED:
            raise TaskNotEnabled(f"task {self.task.id} is {self.task.state.value}")
        if self.task.wake_at is not None and time.time() < self.task.wake_at:
            raise TaskNotEnabled(
                f"task {self.task.id} ({self.task.transition_id}) is a timer due at {iso_utc(self.task.wake_at)}"
            )
        chosen = routing.tokens_to_lock(self.workflow, self.task.transition_id, self.tokens.values())
        if chosen is None:
            raise TaskNotEnabled(
                f"task {self.task.id} ({self.task.transition_id}) is not enabled: "
                f"it holds no tokens that satisfy its '{self.transition.join.value}' join"
            )
        chosen = routing.in_order(self.workflow, self.task.transition_id, chosen)
        try:
            workitem = self.storage.allocate(
                self.fence, [t.id for t in chosen], merge_payloads([t.payload for t in chosen]), held=self.task
            )
        except TokensNotAvailable:
            self._drop_unavailable([t.id for t in chosen])
            raise
        locked = [dataclasses.replace(t, state=TokenState.LOCKED, locked_by_task_id=self.task.id) for t in chosen]
        self.tokens.update((t.id, t) for t in locked)
        self.task = dataclasses.replace(self.task, state=TaskState.EXECUTING)
        log.info("task_allocated", tokens=[t.id for t in locked], **self.log_context())
        self.send(self.parent, TokensLocked(task_id=self.task.id, token_ids=[t.id for t in locked]))
        self._execute(workitem)
        return locked

    def _drop_unavailable(self, token_ids: list[str]) -> None:
        """Another task won these tokens: forget the ones no longer free."""
        current = {t.id: t for t in self.storage.tokens(self.task.case_id, [TokenState.FREE])}
        for token_id in token_ids:
            if token_id not in current:
                self.tokens.pop(token_id, None)

    def _try_preexecute(self) -> None:
        """Take the tokens as soon as they enable the task, unless it waits
        for its event: a timer for its deadline, a manual step in a deferred
        choice for a person's `preexecute` (else it would always win)."""
        waits_for_person = self.workflow.waits_for_person(self.task.transition_id)
        while self.task.state is TaskState.STARTED and not waits_for_person:
            try:
                self.preexecute()
            except TaskNotEnabled:
                break
            except TokensNotAvailable:
                continue
        if self.task.state is TaskState.STARTED and not self.tokens:
            self._abandon_self()
        elif self.task.state is TaskState.STARTED and self.task.wake_at is not None and not self.timer_set:
            self.timer_set = True
            self.wakeupAfter(timedelta(seconds=max(0.0, self.task.wake_at - time.time())), payload=_TimerDue)

    def _timer_due(self) -> None:
        self.timer_set = False
        if self.task.state is TaskState.STARTED:
            self._try_preexecute()

    def _abandon_self(self) -> None:
        self.task = self.storage.abandon_task(self.fence, self.task.id)
        log.info("task_abandoned", **self.log_context())
        self.send(self.parent, TaskAbandoned(task_id=self.task.id))
        self.ending = True
        self.stop_normally("abandoned")

    # -- workitems --------------------------------------------------------------

    def _allocate(self) -> None:
        """Restored from `allocated`: create the workitem it did not get to."""
        workitem = self.storage.create_workitem(self.fence, self._input())
        self.task = dataclasses.replace(self.task, state=TaskState.EXECUTING)
        self._execute(workitem)

    def _execute(self, workitem: WorkitemRecord) -> None:
        self.workitems[workitem.id] = workitem.state
        self._ensure_workitem(workitem.id, workitem)

    def _ensure_workitem(self, workitem_id: str, created: WorkitemRecord | None = None) -> None:
        if workitem_id not in self.children.keys():
            self.children.start(
                ChildSpec(
                    key=workitem_id,
                    actor_class=WorkitemActor,
                    init=InitWorkitem(
                        workitem_id=workitem_id,
                        task_id=self.task.id,
                        settings=self.settings,
                        workflow_version=self.workflow.version,
                        created=created,
                    ),
                )
            )

    def _workitem_gave_up(self, spec: ChildSpec, reason: str) -> None:
        """Past the restart intensity the workitem has failed: it crashed."""
        workitem = self.storage.claim_workitem(spec.key)
        if is_terminal(workitem.state):
            self._update(UpdateWorkitem(self.task.id, workitem.id, workitem.state, workitem.output, workitem.failure))
            return
        failure = gave_up_failure(
            "workitem", reason, transition_id=self.task.transition_id, task_id=self.task.id, workitem_id=workitem.id
        )
        workitem = self.storage.finish_workitem(
            Fence("workitems", workitem.id, workitem.incarnation), WorkitemState.FAILED, failure=failure
        )
        log.error("workitem_crashed", reason=reason, workitem_id=workitem.id, **self.log_context())
        self._update(UpdateWorkitem(self.task.id, workitem.id, workitem.state, None, failure))

    def _update(self, message: UpdateWorkitem) -> None:
        self.workitems[message.workitem_id] = message.state
        if message.state is WorkitemState.COMPLETED:
            self.outputs[message.workitem_id] = message.output or {}
        if message.state is WorkitemState.FAILED or message.state is WorkitemState.ABANDONED:
            failure = message.failure or Failure(
                kind=message.state.value,
                reason=f"workitem {message.state.value}",
                transition_id=self.task.transition_id,
                task_id=self.task.id,
                workitem_id=message.workitem_id,
            )
            if failure.kind in ROUTED_FAILURES and self.workflow.handles_failure(self.task.transition_id):
                self._complete(failure=failure)
                return
            self.send(self.parent, TaskFailed(task_id=self.task.id, failure=failure))
            return
        self._check_workitems()

    def _input(self) -> dict[str, Any]:
        """The workitem's input: the merge of the locked tokens' payloads."""
        return routing.workitem_input(self.workflow, self.task.transition_id, self._locked())

    def _complete(self, payload: dict[str, Any] | None = None, failure: Failure | None = None) -> None:
        """Ask the case to consume the locked tokens and route `payload` on,
        or, for a `failure` its arcs handle, the error and the input."""
        if self.task.state is not TaskState.EXECUTING or self.completing:
            return
        self.completing = True
        input = self._input()
        if failure is not None:
            payload = routing.failure_payload(failure.kind, failure.reason, input)
        self.send(
            self.parent,
            CompleteTask(
                task_id=self.task.id,
                token_payload=payload or {},
                transition_id=self.task.transition_id,
                token_ids=[t.id for t in self._locked()],
                input=input,
                failed=failure is not None,
            ),
        )

    def _check_workitems(self) -> None:
        if self.task.state is not TaskState.EXECUTING or self.completing or not self.workitems:
            return
        if all(state is WorkitemState.COMPLETED for state in self.workitems.values()):
            outputs = [self.outputs[id] for id in self.workitems]
            try:
                payload = self.executor.build_token_payload(outputs, dict(self.transition.params))
            except Exception as exc:
                log.error("token_payload_failed", error=repr(exc), **self.log_context())
                self.send(
                    self.parent,
                    TaskFailed(
                        task_id=self.task.id,
                        failure=Failure(
                            kind="exception",
                            reason=f"engine error: build_token_payload raised {exc!r}",
                            transition_id=self.task.transition_id,
                            task_id=self.task.id,
                        ),
                    ),
                )
                return
            self._complete(payload)

    # -- messages ---------------------------------------------------------------

    def on_message(self, message: Any, sender: Any) -> None:
        if self.children.handle(message, sender):
            if self.ending and not any(self.children.is_live(k) for k in self.children.keys()):
                self.stop_normally("abandoned")
            return
        self.dispatch(message, sender)

    def handlers(self) -> dict[type, Callable[[Any, Any], object]]:
        return {
            Routed: self.serve,
            WakeupMessage: lambda wakeup, _: self._timer_due() if wakeup.payload is _TimerDue else None,
            ReceiveTokens: lambda message, _: self._take_tokens(message.tokens),
            DiscardTokens: lambda message, _: self._discard(message.tokens),
            UpdateWorkitem: lambda message, _: self._update(message),
            TaskCompleted: lambda message, _: self._completed(),
            ForceAbandon: lambda message, _: self._force_abandon(),
        }

    def _completed(self) -> None:
        self.task = dataclasses.replace(self.task, state=TaskState.COMPLETED)  # its case completed it in storage
        log.info("task_completed", **self.log_context())
        self.stop_normally("completed")

    def _forward(self, routed: Routed) -> None:
        self._to_workitem(routed.body.workitem_id, routed)

    def _to_workitem(self, workitem_id: str, routed: Routed) -> None:
        """The workitem answers the client itself."""
        if workitem_id not in self.workitems:
            raise Invalid(f"workitem {workitem_id} does not belong to task {self.task.id}")
        self._ensure_workitem(workitem_id)
        self.children.send(workitem_id, routed)

    def requests(self) -> dict[type, Callable[[Routed], Any]]:
        """WorkflowMetal's `preexecute`, and the requests for a workitem of this task."""
        return {
            Preexecute: lambda routed: LockedTokens(self.preexecute()),
            Crash: lambda routed: (
                self.killed(routed) if routed.body.kind == "task" else self._to_workitem(routed.body.entity_id, routed)
            ),
            CompleteWorkitem: self._forward,
            AbandonWorkitem: self._forward,
        }

    def _take_tokens(self, tokens: list[TokenRecord]) -> None:
        in_places = set(self.workflow.in_places(self.task.transition_id))
        for token in tokens:
            if token.case_id != self.task.case_id or token.place_id not in in_places:
                raise Invalid(
                    f"token {token.id} in place {token.place_id!r} cannot be offered "
                    f"to task {self.task.id} ({self.task.transition_id})"
                )
            if token.state is TokenState.FREE and token.id not in self.tokens:
                self.tokens[token.id] = token
        if self.task.state is TaskState.STARTED:
            self._try_preexecute()

    def _discard(self, tokens: list[TokenRecord]) -> None:
        for token in tokens:
            if self.tokens.get(token.id) and self.tokens[token.id].locked_by_task_id != self.task.id:
                self.tokens.pop(token.id)
        if self.task.state is TaskState.STARTED and not self.tokens:
            self._abandon_self()

    def _force_abandon(self) -> None:
        if is_terminal(self.task.state):
            self.stop_normally(self.task.state.value)
            return
        try:
            self.task = self.storage.abandon_task(self.fence, self.task.id)
        except IllegalTransition:
            self.task = self.storage.get_task(self.task.id)
        log.info("task_force_abandoned", state=self.task.state.value, **self.log_context())
        self.ending = True
        for key in filter(self.children.is_running, self.children.keys()):
            self.children.send(key, AbandonWorkitem(workitem_id=key))
        if not any(self.children.is_live(k) for k in self.children.keys()):
            self.stop_normally("abandoned")

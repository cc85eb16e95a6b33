"""The Workitem actor: runs its transition's executor once per attempt.

Blocking executors run on a thread and are polled with `wakeupAfter`, so
the mailbox stays responsive (abandon, timeouts). A workitem restored from
`started` runs its executor again with the next `attempt`, unless the
executor had already handed the work off (`awaiting`), in which case it
waits for `CompleteWorkitem` as before.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import structlog
from thespian.actors import WakeupMessage

from petriflow import metrics
from petriflow.actors import outbox
from petriflow.actors.entity import EntityActor, workflow_for
from petriflow.engine.errors import AlreadyCompleted, ExecutorNotFound, IllegalTransition, Invalid
from petriflow.engine.executors import (
    Completed,
    ExecutionContext,
    Executor,
    Outcome,
    Started,
    resolve_executor,
    run_executor,
)
from petriflow.engine.messages import Crash, InitWorkitem, Routed, UpdateWorkitem
from petriflow.engine.records import Failure, WorkitemRecord
from petriflow.engine.states import WorkitemState, is_terminal
from petriflow.engine.wire import AbandonWorkitem, CompleteWorkitem, Ok
from petriflow.engine.workflow import Transition
from petriflow.storage.store import Fence
from petriflow.supervision import isolation
from petriflow.supervision.childspec import Intensity

log = structlog.get_logger("petriflow.workitem")

POLL_S = 0.005
POLL_MAX_S = 0.05


class _Poll:
    """Wakeup payload: check the executor's thread."""


class _Retry:
    """Wakeup payload: run the next attempt."""


class WorkitemActor(EntityActor):
    workitem: WorkitemRecord
    transition: Transition
    executor: Executor

    kind, holds = "workitem", "workitem"

    def log_context(self) -> dict[str, Any]:
        wi = getattr(self, "workitem", None)
        if wi is None:
            return {}
        return {"case_id": wi.case_id, "task_id": wi.task_id, "workitem_id": wi.id, "transition_id": wi.transition_id}

    def on_start(self, init: InitWorkitem) -> None:
        self.open(init.settings)
        limit = Intensity()
        self.workitem = self.storage.claim_workitem(
            init.workitem_id,
            os.getpid(),
            begin=True,
            intensity=(limit.max_restarts, limit.max_seconds, os.getppid()),  # the node's parent restarts it
            held=init.created,
        )
        self.fence = Fence("workitems", self.workitem.id, self.workitem.incarnation)
        self.outcome: list[Outcome | isolation.IsolatedCrash] = []
        self.running = False  # an attempt's executor runs: poll for its outcome
        self.isolated: isolation.Attempt | None = None
        self.isolated_deaths = 0  # in a row, of this incarnation's isolated attempts
        if is_terminal(self.workitem.state):
            self._report()
            self.stop_normally(f"restored {self.workitem.state.value}")
            return
        workflow = workflow_for(self.storage, self.workitem.workflow_id, init.workflow_version)
        self.transition = workflow.transition(self.workitem.transition_id)
        try:
            self.executor = resolve_executor(self.transition.executor)
        except ExecutorNotFound as exc:
            self._finish(
                WorkitemState.FAILED,
                failure=self._failure(
                    "exception", f"engine error: the executor cannot be resolved any more: {exc.message}"
                ),
            )
            return
        if self.workitem.awaiting:
            log.info("workitem_awaiting", **self.log_context())
            return
        interrupted = len(self.workitem.interrupted_at or [])
        if interrupted > limit.max_restarts:
            reason = f"the node hosting it died {interrupted} times within {limit.max_seconds}s while it ran"
            log.error("workitem_crashed", reason=reason, **self.log_context())
            self._finish(WorkitemState.FAILED, failure=self._failure("crashed", f"workitem crashed: {reason}"))
            return
        self._run(begun=True)

    def may_passivate(self) -> bool:
        return self.workitem.awaiting and self.workitem.state is WorkitemState.STARTED

    def _context(self) -> ExecutionContext:
        wi = self.workitem
        return ExecutionContext(
            workitem_id=wi.id,
            case_id=wi.case_id,
            task_id=wi.task_id,
            workflow_id=wi.workflow_id,
            transition_id=wi.transition_id,
            attempt=wi.attempt,
            input=dict(wi.input),
            params=dict(self.transition.params),
        )

    def _run(self, begun: bool = False) -> None:
        """Run the next attempt; `begun` when claiming already recorded it."""
        if not begun:
            self.workitem = self.storage.begin_attempt(self.fence)
        self._report()
        log.info(
            "workitem_started", attempt=self.workitem.attempt, executor=self.transition.executor, **self.log_context()
        )
        ctx = self._context()
        timeout = self.transition.timeout_s
        self.deadline = time.monotonic() + timeout if timeout else None
        if getattr(self.executor, "pure", False) and not self.transition.isolate:
            self._settle(run_executor(self.executor, ctx))  # no side effect: its outcome commits with the turn
            return
        self.outcome = []
        self.running = True
        outbox.after_commit(lambda: self._start_attempt(ctx))  # side effects never run ahead of the attempt's record
        self.poll_s = POLL_S
        self.wakeupAfter(self.poll_s, payload=_Poll)

    def _start_attempt(self, ctx: ExecutionContext) -> None:
        """Start the attempt once the turn that recorded it is committed
        (unless the turn also ended the workitem): a blocking executor or an
        isolated attempt on a thread, a non-blocking one here and now."""
        if self._done or not self.running or self.workitem.attempt != ctx.attempt:
            return
        work: Callable[[], Outcome]
        if self.transition.isolate:  # whatever the executor: its process is the point
            attempt, request = isolation.start(self.transition.executor, ctx)
            self.isolated = attempt
            work = lambda: attempt.outcome(request)  # noqa: E731
        else:
            work = lambda: run_executor(self.executor, ctx)  # noqa: E731
        if not self.executor.blocking and not self.transition.isolate:
            self.outcome.append(_caught(work))
            self.wakeupAfter(timedelta(0), payload=_Poll)  # settled in the node's next turn
            return
        threading.Thread(
            target=lambda: self.outcome.append(_caught(work)), name=f"executor-{self.workitem.id}", daemon=True
        ).start()

    def _poll(self) -> None:
        if self.outcome:
            self.running = False
            if isinstance(self.outcome[0], isolation.IsolatedCrash):
                self._isolated_death(self.outcome[0])
                return
            self._settle(self.outcome[0])
            return
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.running = False
            self._stop_executor()
            self._finish(
                WorkitemState.FAILED,
                failure=self._failure("timeout", f"step outlived its timeout of {self.transition.timeout_s}s"),
            )
            return
        self.poll_s = min(self.poll_s * 2, POLL_MAX_S)
        self.wakeupAfter(self.poll_s, payload=_Poll)

    def _isolated_death(self, death: isolation.IsolatedCrash) -> None:
        """The attempt's own process died: a crash of the attempt, restarted
        in place up to the restart intensity's count. Counted in a row, not
        within its seconds: starting a process for each attempt can take
        seconds under load, and a step that always dies must still end."""
        self.isolated_deaths += 1
        limit = Intensity().max_restarts
        log.warning("workitem_attempt_died", reason=str(death), deaths=self.isolated_deaths, **self.log_context())
        if self.isolated_deaths <= limit:
            self._run()
            return
        reason = f"its isolated attempt's process died {self.isolated_deaths} times in a row: {death}"
        log.error("workitem_crashed", reason=reason, **self.log_context())
        self._finish(WorkitemState.FAILED, failure=self._failure("crashed", f"workitem crashed: {reason}"))

    def _stop_executor(self) -> None:
        """Timeout or abandon: an isolated attempt's process is killed; a
        thread cannot be, so its executor is asked to abandon the work."""
        if self.isolated is not None:
            self.isolated.kill()
        else:
            self.executor.abandon(self._context())

    def _settle(self, outcome: Outcome) -> None:
        if isinstance(outcome, Completed):
            self._finish(WorkitemState.COMPLETED, output=outcome.output)
        elif isinstance(outcome, Started):
            self.workitem = self.storage.mark_awaiting(self.fence)
            log.info("workitem_awaiting", **self.log_context())
        elif self.workitem.attempt < self.transition.retry.max_attempts:
            log.info("workitem_retrying", reason=outcome.reason, attempt=self.workitem.attempt, **self.log_context())
            self.wakeupAfter(self.transition.retry.backoff_s, payload=_Retry)
        else:
            self._finish(WorkitemState.FAILED, failure=self._failure("failed", outcome.reason))

    def _failure(self, kind: str, reason: str) -> Failure:
        return Failure(
            kind=kind,
            reason=reason,
            transition_id=self.workitem.transition_id,
            task_id=self.workitem.task_id,
            workitem_id=self.workitem.id,
        )

    def _finish(
        self, state: WorkitemState, *, output: dict[str, Any] | None = None, failure: Failure | None = None
    ) -> None:
        try:
            self.workitem = self.storage.finish_workitem(
                self.fence, state, output=output, failure=failure, held=self.workitem
            )
        except (AlreadyCompleted, IllegalTransition):
            self.workitem = self.storage.get_workitem(self.workitem.id)
        else:
            self._count_step()
        log.info(
            "workitem_" + self.workitem.state.value, reason=failure.reason if failure else None, **self.log_context()
        )
        self._report()
        self.stop_normally(self.workitem.state.value)

    def _count_step(self) -> None:
        """The step's duration, once the turn that finished it is committed."""
        wi = self.workitem
        if wi.started_at is not None and wi.finished_at is not None:
            workflow, transition, seconds = wi.workflow_id, wi.transition_id, wi.finished_at - wi.started_at
            outbox.after_commit(lambda: metrics.step_finished(workflow, transition, seconds))

    def _report(self) -> None:
        wi = self.workitem
        if self.parent is not None:
            self.send(
                self.parent,
                UpdateWorkitem(
                    task_id=wi.task_id, workitem_id=wi.id, state=wi.state, output=wi.output, failure=wi.failure
                ),
            )

    def on_message(self, message: Any, sender: Any) -> None:
        self.dispatch(message, sender)

    def handlers(self) -> dict[type, Callable[[Any, Any], object]]:
        return {
            WakeupMessage: lambda wakeup, _: self._wake(wakeup.payload),
            Routed: self.serve,
            AbandonWorkitem: lambda message, _: self._abandon(),
        }

    def _wake(self, payload: Any) -> None:
        if payload is _Poll and self.running:
            self._poll()
        elif payload is _Retry and not is_terminal(self.workitem.state):
            self._run()

    def requests(self) -> dict[type, Callable[[Routed], Any]]:
        return {
            CompleteWorkitem: lambda routed: self._complete(routed.body.output),
            AbandonWorkitem: lambda routed: self._abandon_request(),
            Crash: self.killed,
        }

    def _unfinished_or_refuse(self) -> None:
        if is_terminal(self.workitem.state):
            raise AlreadyCompleted(f"workitem {self.workitem.id} is already {self.workitem.state.value}")

    def _complete(self, output: dict[str, Any]) -> Ok:
        self._unfinished_or_refuse()
        if not self.workitem.awaiting:
            raise Invalid(
                f"workitem {self.workitem.id} is running its executor "
                f"{self.transition.executor!r}; only a workitem waiting for completion "
                f"(such as a manual step) can be completed"
            )
        self._finish(WorkitemState.COMPLETED, output=dict(output))
        return Ok()

    def _abandon_request(self) -> Ok:
        self._unfinished_or_refuse()
        self._abandon()
        return Ok()

    def _abandon(self) -> None:
        if is_terminal(self.workitem.state):
            self.stop_normally(self.workitem.state.value)
            return
        self.running = False
        self._stop_executor()
        self._finish(WorkitemState.ABANDONED, failure=self._failure("abandoned", "the workitem was abandoned"))


def _caught(work: Callable[[], Outcome]) -> Outcome | isolation.IsolatedCrash:
    try:
        return work()
    except isolation.IsolatedCrash as crash:
        return crash

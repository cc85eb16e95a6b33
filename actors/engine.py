"""The Engine actor: the root of the tree and the door for clients.

A Thespian `globalName` actor. Clients send it msgpack-encoded requests
(`engine.codec`) and get one encoded reply each. It supervises the nodes
(`actors.node`), places each new work order (and each case started without
one) on a node, routes requests for an entity to the node it lives on,
fires cron triggers, and fans work-order events out to subscribers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

import structlog
from thespian.actors import ActorSystemMessage, PoisonMessage, WakeupMessage

from petriflow import metrics
from petriflow.actors.case import TASK_REQUESTS, WORKITEM_REQUESTS
from petriflow.actors.entity import EntityActor, workflow_for
from petriflow.actors.node import NodeActor
from petriflow.engine import codec
from petriflow.engine.cron import CronSchedule, due_ticks
from petriflow.engine.document import auth_document, workflow_from_document, workflow_to_document
from petriflow.engine.errors import (
    AlreadyCompleted,
    Invalid,
    NotFound,
    PetriflowError,
    TriggerChanged,
    WorkflowDiscarded,
)
from petriflow.engine.messages import (
    BootEngine,
    CaseEnded,
    Crash,
    ForCase,
    ForWorkOrder,
    InitNode,
    NodeAlive,
    NodeHeartbeat,
    NodeReport,
    NodeRestored,
    Routed,
    StartRun,
    StorageDown,
    StorageUp,
    Survey,
)
from petriflow.engine.outage import Outage, refusal
from petriflow.engine.records import CaseRecord, WorkOrderRecord, new_id
from petriflow.engine.routing import genesis_token
from petriflow.engine.settings import is_answering, settings_problem
from petriflow.engine.states import (
    FINAL_RUN_STATES,
    UNFINISHED_WORK_ORDER_STATES,
    CaseState,
    RunState,
    WorkOrderState,
    is_terminal,
)
from petriflow.engine.validation import validate
from petriflow.engine.views import is_settled, queue_view, run_view
from petriflow.engine.webhook_auth import trigger_auth_problems
from petriflow.engine.wire import (
    ActorInfo,
    ActorList,
    CancelWorkOrder,
    CaseList,
    CaseStarted,
    CaseView,
    CronFired,
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
    NodeLiveness,
    Ok,
    PageWorkOrders,
    Ping,
    Preexecute,
    PutWorkflow,
    RetryMany,
    RetryManyResult,
    RetryRun,
    RunEnqueued,
    StartCase,
    StorageOutageView,
    SubmitWebhook,
    SubmitWorkOrder,
    Subscribe,
    TerminateCase,
    TriggerAuth,
    Unsubscribe,
    WaitCase,
    WaitWorkOrder,
    WorkflowList,
    WorkflowStored,
    WorkflowView,
    WorkOrderList,
    WorkOrderPage,
    WorkOrderSubmitted,
    WorkOrderView,
)
from petriflow.engine.workflow import Workflow, WorkflowState
from petriflow.engine.workorders import admissible
from petriflow.storage.errors import StorageUnavailable
from petriflow.supervision import processes
from petriflow.supervision.childspec import ChildSpec, RestartType
from petriflow.supervision.supervisor import Supervisor
from petriflow.workorders import runs

log = structlog.get_logger("petriflow.engine")

ENGINE_NAME = "petriflow-engine"
SURVEY_TIMEOUT_S = 5.0  # a node that has not answered a survey by then is left out of the answer
NODE_BACKOFF_S = (1.0, 30.0)  # a node past its intensity waits this long, doubling up to the cap, and starts again
StateT = TypeVar("StateT", bound=StrEnum)


def _states(machine: type[StateT], names: list[str] | None) -> list[StateT] | None:
    """A filter's state names as states, refusing the unknown by name."""
    if names is None:
        return None
    known = [s.value for s in machine]
    for name in names:
        if name not in known:
            raise Invalid(f"unknown {machine.__name__} {name!r}: one of {', '.join(known)}")
    return [machine(name) for name in names]


class _CronWakeup:
    """Wakeup payload: time to fire the cron triggers."""


class _BeatWakeup:
    """Wakeup payload: time to beat the nodes, and to kill the silent ones."""


class _StorageRetry:
    """Wakeup payload: the back-off of the Engine's storage outage is over; try a write."""


class _Due:
    """Wakeup payload: time to wake the due timers of passivated cases, and
    to hand waiting runs the slots their workflow's concurrency left free."""


DUE_SCAN_S = 1.0  # how often the Engine looks for due timers and free slots nobody took
TIMER_GRACE_S = 0.5  # a live task fires its own timer: the Engine steps in only this much later
TIMER_REWAKE_S = 30.0  # a timer woken that still waits (its case could not take it) is woken again after this


CONFIRM_AFTER_S = 1.0  # after a write went through during an outage, when a probe confirms it is over
ENGINE_PART = "engine"  # how outages and metrics name the Engine among the nodes

WRITES = (PutWorkflow, DiscardWorkflow, StartCase, SubmitWorkOrder, SubmitWebhook, CronTick, RetryRun, RetryMany)
"""Requests the Engine itself writes for: refused at once during its storage
outage. The others read, or are the nodes' to answer (a paused node refuses
them itself)."""


@dataclass(frozen=True)
class _SurveyDue:
    """Wakeup payload: survey `number` has waited long enough for its nodes."""

    number: int


@dataclass
class _Survey:
    """A survey of the nodes under way: who has yet to answer, what came back."""

    waiting: set[str]
    done: Callable[[list[NodeReport]], None]
    reports: list[NodeReport] = field(default_factory=list)


class EngineActor(EntityActor):
    booted = False
    retry_at: float | None = None

    def on_message(self, message: Any, sender: Any) -> None:
        if isinstance(message, BootEngine):
            self._boot(message, sender)
            return
        if not self.booted:
            if isinstance(message, (bytes, bytearray)):
                self.answer(sender, Error("unavailable", "the engine has not booted yet"))
            return
        try:
            if self.nodes.handle(message, sender):
                return
            self.dispatch(message, sender)
        except StorageUnavailable as exc:  # a write (or a read) outside a client's request: waited out
            self._storage_failed(exc)

    def waited_out(self, exc: Exception) -> bool:
        return False  # the Engine waits its outages out itself (`_storage_failed`): one reaching here is a bug

    def handlers(self) -> dict[type, Callable[[Any, Any], object]]:
        """What reaches the Engine: clients' encoded wire requests, and its
        children's and Thespian's messages. Nothing else is accepted."""
        return {
            bytes: self._client,
            bytearray: self._client,
            memoryview: self._client,
            Event: lambda event, _: self._publish(event),
            CaseEnded: lambda message, _: self._case_ended(message.case_id),
            NodeReport: lambda report, _: self._reported(report),
            NodeRestored: lambda message, _: self._answer_settled_waiters(),
            NodeAlive: lambda message, _: self._node_alive(message),
            StorageDown: lambda message, _: self._node_storage_down(message),
            StorageUp: lambda message, _: self._node_storage_up(message),
            WakeupMessage: lambda wakeup, _: self._wake(wakeup.payload),
            PoisonMessage: lambda message, sender: self._unsubscribe(sender),
        }

    def unknown(self, message: Any, sender: Any) -> None:
        """A message of no known type came from outside the tree: refused."""
        super().unknown(message, sender)
        if sender is not None and not isinstance(message, ActorSystemMessage):
            self.answer(
                sender,
                Error(
                    "invalid",
                    f"the engine accepts only msgpack-encoded wire requests (petriflow.engine.wire); "
                    f"{type(message).__name__} is not one",
                ),
            )

    def _wake(self, payload: Any) -> None:
        if payload is _CronWakeup:
            self._schedule_cron()
            if not self.outage.down:  # the ticks missed meanwhile fire once it is over
                self._fire_cron(time.time())
        elif payload is _BeatWakeup:
            self._beat_nodes()
            self.wakeupAfter(self.settings.heartbeat_s, payload=_BeatWakeup)
        elif isinstance(payload, _SurveyDue):
            self._survey_done(payload.number)
        elif payload is _Due:
            self.wakeupAfter(DUE_SCAN_S, payload=_Due)
            if not self.outage.down:
                self._wake_due_timers(time.time())
                waiting = {}
                for workflow in self.storage.list_workflows():
                    self.limits[workflow.id] = workflow.concurrency
                    if workflow.concurrency is not None:
                        waiting[workflow.id] = self._admit(workflow.id)
                metrics.set_waiting(self.storage.waiting_timers(), waiting)
        elif payload is _StorageRetry and self.retry_at is not None and time.monotonic() >= self.retry_at - 0.01:
            self.retry_at = None  # an earlier or a later wakeup than the one due is stale: it does nothing
            self._try_storage()

    # -- boot and restore -----------------------------------------------------------

    def _boot(self, message: BootEngine, sender: Any) -> None:
        if self.booted:
            self._survey(lambda reports: self.answer(sender, self._info(reports)))
            return
        settings = message.settings
        refused = settings_problem(settings)
        if refused:
            self.answer(sender, Error("invalid", refused))
            return
        self.open(settings)
        # a node hosts work: past its intensity it backs off, it is never given up on
        self.nodes = Supervisor(
            self, idle_timeout_s=None, die_with_parent=settings.die_with_parent, backoff=NODE_BACKOFF_S
        )
        self.node_ids = [f"node-{n}" for n in range(settings.nodes)]
        self.placed = 0  # work placed since boot: the next goes to node_ids[placed % len]
        self.surveys: dict[int, _Survey] = {}
        self.survey_count = 0
        self.case_waiters: dict[str, list[Any]] = {}
        self.order_waiters: dict[str, list[Any]] = {}
        self.subscribers: list[Any] = []  # Thespian addresses compare but do not hash
        self.client_requests = self._client_requests()
        self.booted_at = time.time()
        self.node_seen = {node_id: time.monotonic() for node_id in self.node_ids}  # last NodeAlive
        self.node_pids: dict[str, int] = {}
        self.beaten_at = time.monotonic()  # when the Engine last beat its nodes
        self.outage = Outage()
        self.retry_at = None  # when the next try of storage is due, during an outage
        self.node_outages: dict[str, StorageDown] = {}
        self.orphans_placed = False
        self.booted = True
        adopted = len(self._place_orphans())
        for node_id in self.node_ids:
            self.nodes.start(
                ChildSpec(
                    key=node_id,
                    actor_class=NodeActor,
                    init=InitNode(node_id=node_id, settings=settings),
                    restart=RestartType.PERMANENT,
                )
            )
        log.info("engine_booted", storage=self.storage.url, nodes=len(self.node_ids), adopted=adopted, pid=os.getpid())
        if settings.cron:
            self._schedule_cron()
        if settings.heartbeat_timeout_s is not None:
            self.wakeupAfter(settings.heartbeat_s, payload=_BeatWakeup)
        self.timers_woken: dict[str, float] = {}  # task id: when the Engine last woke its timer
        self.limits: dict[str, int | None] = {}  # workflow id: its latest version's concurrency (a hint: see _admit)
        self.wakeupAfter(DUE_SCAN_S, payload=_Due)
        self._survey(lambda reports: self.answer(sender, self._info(reports)))

    def _place_orphans(self) -> list[tuple[str, str, str]]:
        """Work left on nodes that are gone goes to these: at boot, before
        the nodes restore what is placed on them, or once storage is back if
        an outage kept it from being written (then each is handed to its node)."""
        try:
            adopted = self.storage.place_orphans(self.node_ids)
        except StorageUnavailable as exc:
            self._storage_failed(exc)
            return []
        self.orphans_placed = True
        return adopted

    def _info(self, reports: list[NodeReport]) -> EngineInfo:
        kinds = [kind for report in reports for kind, _, _ in report.actors]
        waiting = {}
        for workflow in self.storage.list_workflows():
            if workflow.concurrency is not None:
                runs = self.storage.unfinished_runs(workflow.id)
                waiting[workflow.id] = sum(1 for run in runs if run.state is RunState.AVAILABLE)
        return EngineInfo(
            pid=os.getpid(),
            storage=self.storage.url,
            live_cases=kinds.count("case"),
            live_work_orders=kinds.count("work_order"),
            booted_at=self.booted_at,
            work_orders=self.storage.count_work_orders(),
            nodes={report.node_id: report.pid for report in reports},
            waiting_for_slot=waiting,
            timers=self.storage.waiting_timers(),
        )

    # -- nodes ----------------------------------------------------------------------------

    def _place(self) -> str:
        """The node for new work: each in turn."""
        node_id = self.node_ids[self.placed % len(self.node_ids)]
        self.placed += 1
        return node_id

    def _to_order(self, order: WorkOrderRecord | str, message: Any = None) -> None:
        """Hand `message` to the work order's actor on its node, which starts
        or restores it. A work order placed on no live node (it finished
        before the daemon restarted with fewer nodes) is placed anew."""
        if isinstance(order, str):
            order = self.storage.get_work_order(order)
        node_id = order.node_id
        if node_id not in self.node_ids:
            node_id = self._place()
            self.storage.place_work_order(order.id, node_id)
        self.nodes.send(node_id, ForWorkOrder(order.id, message))

    def _to_case(self, case: CaseRecord, message: Any = None) -> None:
        """The same for a live case without a work order (placed at boot)."""
        assert case.node_id is not None, f"case {case.id} without a work order is placed on no node"
        self.nodes.send(case.node_id, ForCase(case.id, message))

    def _node_alive(self, message: NodeAlive) -> None:
        self.node_seen[message.node_id] = time.monotonic()
        self.node_pids[message.node_id] = message.pid

    def _beat_nodes(self) -> None:
        """heart for the nodes: each running node is beaten; one silent past
        `heartbeat_timeout_s` is SIGKILLed, and its supervisor starts it
        again, restoring its work. A node not running yet (restarting,
        backing off) is not counted as silent. When a silent node holds the
        storage's write lock, the others silent are waiting for it: only the
        holder is killed, and they get a new timeout. When a process outside
        the daemon holds it, nobody is killed: storage is out, and the
        waiting writes end as an outage after the busy timeout."""
        timeout = self.settings.heartbeat_timeout_s
        assert timeout is not None
        now = time.monotonic()
        if now - self.beaten_at > 3 * self.settings.heartbeat_s:
            # the Engine itself was held up (waiting for storage): it sent no beats, so no node could answer
            self.node_seen = dict.fromkeys(self.node_ids, now)
        self.beaten_at = now
        silent: dict[str, tuple[int, float]] = {}  # node id -> (pid, seconds silent)
        for node_id in self.node_ids:
            pid, quiet = self.node_pids.get(node_id), now - self.node_seen[node_id]
            if not self.nodes.is_running(node_id):
                self.node_seen[node_id] = now
            elif quiet > timeout and pid is not None and pid != os.getpid():
                silent[node_id] = (pid, quiet)  # embedded, a node's pid is the caller's process: never killed
            else:
                self.nodes.send(node_id, NodeHeartbeat())
        if not silent:
            return
        holder = self.storage.backend.writer_pid()
        ours = {os.getpid(), *self.node_pids.values()}
        stopped = [n for n, (pid, _) in silent.items() if processes.is_stopped(pid)]
        if stopped:
            culprits = stopped  # a stopped process waits for nothing: it is what hangs
        elif holder is not None and holder not in ours:
            culprits = []  # another program holds the database: everyone waits for it, nobody hangs
        else:
            culprits = [n for n, (pid, _) in silent.items() if pid == holder] or list(silent)
        for node_id, (pid, quiet) in silent.items():
            self.node_seen[node_id] = now  # a killed one's restart, or a waiting one, gets a full timeout
            if node_id not in culprits:
                log.warning(
                    "node_waiting_for_storage", node_id=node_id, pid=pid, silent_s=round(quiet, 1), lock_holder=holder
                )
                continue
            log.error(
                "node_unresponsive",
                node_id=node_id,
                pid=pid,
                silent_s=round(quiet, 1),
                holds_storage_lock=pid == holder,
                action="SIGKILL",
            )
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self.node_pids.pop(node_id)

    def _liveness(self) -> Liveness:
        now = time.monotonic()
        nodes = []
        for node_id in self.node_ids:
            silent = now - self.node_seen[node_id]
            nodes.append(
                NodeLiveness(
                    node_id=node_id,
                    pid=self.node_pids.get(node_id),
                    silent_s=round(silent, 3),
                    answering=self.nodes.is_running(node_id) and is_answering(silent, self.settings),
                )
            )
        outages = [StorageOutageView(m.node_id, m.since, m.code, m.reason) for m in self.node_outages.values()]
        if self.outage.since is not None:
            outages.insert(0, StorageOutageView(ENGINE_PART, self.outage.since, self.outage.code, self.outage.reason))
        return Liveness(pid=os.getpid(), nodes=nodes, outages=outages)

    # -- storage outages ------------------------------------------------------------------

    def _storage_failed(self, exc: StorageUnavailable) -> None:
        """A write of the Engine's failed with a transient error: it stops
        writing (`WRITES` are refused at once) and tries one write after a
        back-off, doubling, until one succeeds (`engine.outage`)."""
        if self.outage_began(self.outage, exc, ENGINE_PART):  # else already waiting: the retry is due
            self._retry_storage_after(self.outage.next_pause_s())

    def _retry_storage_after(self, seconds: float) -> None:
        """One try of storage is due at a time, the earliest asked for,
        however many reasons there are to try."""
        due = time.monotonic() + seconds
        if self.retry_at is None or due < self.retry_at:
            self.retry_at = due
            self.wakeupAfter(seconds, payload=_StorageRetry)

    def _try_storage(self) -> None:
        if not self.outage.down:
            return
        try:
            self.storage.probe(ENGINE_PART, os.getpid())
        except StorageUnavailable as exc:
            self.outage.failed(exc.code, exc.message, time.time())
            self._retry_storage_after(self.outage.next_pause_s())
            return
        self._storage_took_write()

    def _storage_took_write(self) -> None:
        """A write of the Engine's went through during its outage: the first
        lets requests write again and asks for one more probe a second
        later; the next write through, a request's or that probe, ends it."""
        if not self.outage_wrote(self.outage, ENGINE_PART):
            self._retry_storage_after(CONFIRM_AFTER_S)
            return
        if not self.orphans_placed:
            for table_name, entity_id, node_id in self._place_orphans():
                found = ForWorkOrder(entity_id) if table_name == "work_orders" else ForCase(entity_id)
                self.nodes.send(node_id, found)

    def _refusal(self) -> Error:
        return refusal(self.outage)

    def _node_storage_down(self, message: StorageDown) -> None:
        self.node_outages[message.node_id] = message

    def _node_storage_up(self, message: StorageUp) -> None:
        self.node_outages.pop(message.node_id, None)
        if self.outage.refusing:  # a node's write went through: worth trying the Engine's now
            self._try_storage()

    def _survey(self, done: Callable[[list[NodeReport]], None]) -> None:
        """Ask every node for its live actors; `done` gets the reports once all
        have answered, or those in by SURVEY_TIMEOUT_S."""
        self.survey_count += 1
        number = self.survey_count
        self.surveys[number] = _Survey(waiting=set(self.node_ids), done=done)
        for node_id in self.node_ids:
            self.nodes.send(node_id, Survey(number))
        self.wakeupAfter(SURVEY_TIMEOUT_S, payload=_SurveyDue(number))

    def _reported(self, report: NodeReport) -> None:
        survey = self.surveys.get(report.number)
        if survey is None:
            return  # it came after the survey gave up waiting
        survey.reports.append(report)
        survey.waiting.discard(report.node_id)
        if not survey.waiting:
            self._survey_done(report.number)

    def _survey_done(self, number: int) -> None:
        survey = self.surveys.pop(number, None)
        if survey is not None:
            survey.done(sorted(survey.reports, key=lambda r: r.node_id))

    def _answer_settled_waiters(self) -> None:
        """Answer every waiter whose work order or case storage shows ended:
        a node killed between committing an end and sending it on lost only
        the message."""
        for work_order_id in list(self.order_waiters):
            view = self._order_view(work_order_id)
            if is_settled(view):
                for reply_to in self.order_waiters.pop(work_order_id):
                    self.answer(reply_to, view)
        for case_id in list(self.case_waiters):
            if is_terminal(self.storage.get_case(case_id).state):
                self._case_ended(case_id)

    def _case_ended(self, case_id: str) -> None:
        waiters = self.case_waiters.pop(case_id, [])
        if waiters:
            view = self._case_view(case_id)
            for reply_to in waiters:
                self.answer(reply_to, view)

    # -- events and cron ----------------------------------------------------------------

    def _publish(self, event: Event) -> None:
        for subscriber in list(self.subscribers):
            self.answer(subscriber, event)
        if event.kind == "run_updated" and event.run is not None and event.run.state in FINAL_RUN_STATES:
            self._admit(event.run.workflow_id)  # its slot is free
        order = event.work_order
        if event.kind == "work_order_updated" and order.state not in UNFINISHED_WORK_ORDER_STATES:
            waiters = self.order_waiters.pop(order.id, [])
            if waiters:
                view = self._order_view(order.id)
                if not is_settled(view):
                    self.order_waiters[order.id] = waiters
                    return
                for reply_to in waiters:
                    self.answer(reply_to, view)

    def _wake_due_timers(self, now: float) -> None:
        """A due timer whose task is passivated (or whose daemon was down)
        fires when its task is restored: a `Preexecute` routed to it does that."""
        self.timers_woken = {k: at for k, at in self.timers_woken.items() if now - at < TIMER_REWAKE_S}
        for task in self.storage.due_timers(now - TIMER_GRACE_S):
            if task.id in self.timers_woken:
                continue
            self.timers_woken[task.id] = now
            with contextlib.suppress(NotFound, Invalid):  # its case ended meanwhile
                self._route(self._live_case(task.case_id), Preexecute(task.id), None)
            log.info("timer_woken", task_id=task.id, case_id=task.case_id, late_s=round(now - (task.wake_at or now), 3))

    def _admit(self, workflow_id: str) -> int:
        """Hand each run its workflow's concurrency now lets start to its
        work order, oldest first; the work order claims it (`advance_run`
        checks its own version's limit again, in the claim's transaction).
        How many runs wait for a slot after that."""
        if workflow_id not in self.limits:
            try:
                self.limits[workflow_id] = self.storage.get_workflow(workflow_id).concurrency
            except NotFound:  # its runs are lost: none is waiting for a slot
                self.limits[workflow_id] = None
        limit = self.limits[workflow_id]
        if limit is None:
            return 0
        runs = {run.id: run for run in self.storage.unfinished_runs(workflow_id)}
        admitted = admissible(list(runs.values()), limit)
        for run_id in admitted:
            self._to_order(runs[run_id].work_order_id, StartRun(run_id))
        return sum(1 for run in runs.values() if run.state is RunState.AVAILABLE) - len(admitted)

    def _schedule_cron(self) -> None:
        now = time.time()
        self.wakeupAfter(max(0.5, 60 - now % 60 + 0.05), payload=_CronWakeup)

    def _fire_cron(self, now: float) -> list[str]:
        """Submit one work order per due tick of every cron trigger; after
        downtime, missed ticks run at most once."""
        fired = []
        moment = datetime.fromtimestamp(now, UTC)
        for workflow in self.storage.list_workflows():
            if workflow.state is WorkflowState.DISCARDED:
                continue
            for trigger in workflow.triggers:
                if trigger.type != "cron" or not trigger.cron:
                    continue
                key = f"{workflow.id}:{trigger.id}"
                last = self.storage.last_tick(key)
                if last is None:
                    self.storage.set_last_tick(key, now)
                    continue
                ticks = due_ticks(CronSchedule.parse(trigger.cron), datetime.fromtimestamp(last, UTC), moment)
                for tick in ticks:
                    fired.append(self._submit(workflow, {"tick": tick.isoformat()}, "cron", trigger.id).work_order_id)
                if ticks:
                    self.storage.set_last_tick(key, ticks[-1].timestamp())
        return fired

    # -- client requests ----------------------------------------------------------------

    def _client(self, data: Any, sender: Any) -> None:
        try:
            request = codec.decode(data)
            handler = self.client_requests.get(type(request))
            if handler is None:
                raise Invalid(f"the engine does not accept {type(request).__name__} requests")
            if self.outage.refusing and isinstance(request, WRITES):
                self.answer(sender, self._refusal())  # not raised: it is no news of storage
                return
            result = handler(request, sender)
            if self.outage.down and isinstance(request, WRITES):
                self._storage_took_write()
        except StorageUnavailable as exc:
            self.answer(sender, Error(exc.code, exc.message))
            self._storage_failed(exc)
            return
        except PetriflowError as exc:
            self.answer(sender, Error(exc.code, exc.message))
            return
        except Exception as exc:
            self.answer(sender, Error("exception", f"{type(exc).__name__}: {exc}"))
            raise
        if result is not None:
            self.answer(sender, result)

    def _client_requests(self) -> dict[type, Callable[[Any, Any], Any]]:
        handlers: dict[type, Callable[[Any, Any], Any]] = {
            Ping: lambda r, s: self._survey(lambda reports: self.answer(s, self._info(reports))),
            Heartbeat: lambda r, s: self._liveness(),
            PutWorkflow: self._put_workflow,
            GetWorkflow: lambda r, s: WorkflowView(
                workflow_to_document(self.storage.get_workflow(r.workflow_id, r.version))
            ),
            ListWorkflows: lambda r, s: WorkflowList([workflow_to_document(w) for w in self.storage.list_workflows()]),
            DiscardWorkflow: self._discard_workflow,
            StartCase: self._start_case,
            GetCase: lambda r, s: self._case_view(r.case_id),
            GetTask: lambda r, s: self.storage.get_task(r.task_id),
            GetWorkitem: lambda r, s: self.storage.get_workitem(r.workitem_id),
            WaitCase: self._wait_case,
            ListCases: lambda r, s: CaseList(self.storage.list_cases(_states(CaseState, r.states))),
            TerminateCase: lambda r, s: self._route(self._live_case(r.case_id), r, s),
            SubmitWorkOrder: lambda r, s: self._submit(
                self.storage.get_workflow(r.workflow_id, r.version), r.input, "manual", None
            ),
            SubmitWebhook: self._submit_webhook,
            GetTriggerAuth: lambda r, s: TriggerAuth(self._webhook(r.trigger_id)[1]),
            CronTick: lambda r, s: CronFired(self._fire_cron(r.now)),
            GetWorkOrder: lambda r, s: self._order_view(r.work_order_id),
            WaitWorkOrder: self._wait_order,
            ListWorkOrders: lambda r, s: WorkOrderList(
                self.storage.list_work_orders(_states(WorkOrderState, r.states), r.workflow_id, r.since)
            ),
            PageWorkOrders: lambda r, s: WorkOrderPage(
                *self.storage.page_work_orders(
                    _states(WorkOrderState, r.states),
                    r.workflow_id,
                    r.trigger_id,
                    r.since,
                    r.until,
                    r.search,
                    limit=r.limit,
                    offset=r.offset,
                )
            ),
            RetryRun: self._retry,
            RetryMany: self._retry_many,
            CancelWorkOrder: self._cancel,
            Subscribe: self._subscribe,
            Unsubscribe: lambda r, s: self._unsubscribe(s),
            ListActors: lambda r, s: self._survey(lambda reports: self.answer(s, self._actors(reports))),
            KillEntity: self._kill,
        }
        kind: type
        for kind in WORKITEM_REQUESTS:
            handlers[kind] = self._workitem_request
        for kind in TASK_REQUESTS:
            handlers[kind] = self._task_request
        return handlers

    # -- workflows ------------------------------------------------------------------------

    def _put_workflow(self, request: PutWorkflow, sender: Any) -> WorkflowStored:
        workflow = validate(workflow_from_document(request.document))
        for trigger in workflow.triggers:
            if trigger.type == "cron":
                CronSchedule.parse(trigger.cron or "")
            owner = self._trigger_owner(trigger.id)
            if owner is not None and owner.id != workflow.id:
                raise Invalid(f"trigger {trigger.id!r} already belongs to workflow {owner.id!r}")
        refused = trigger_auth_problems(
            workflow.triggers, os.environ, required=self.settings.webhook_auth_required
        )  # the secrets are read where they are used: the Engine's environment is the daemon's
        if refused:
            raise Invalid("; ".join(refused))
        self.storage.put_workflow(workflow)
        self.limits.pop(workflow.id, None)  # read again when next needed: this may not be the latest version
        log.info("workflow_stored", workflow_id=workflow.id, version=workflow.version)
        return WorkflowStored(workflow_id=workflow.id, version=workflow.version)

    def _trigger_owner(self, trigger_id: str) -> Workflow | None:
        for workflow in self.storage.list_workflows():
            if workflow.state is WorkflowState.ACTIVE and any(t.id == trigger_id for t in workflow.triggers):
                return workflow
        return None

    def _discard_workflow(self, request: DiscardWorkflow, sender: Any) -> Ok:
        self.storage.discard_workflow(request.workflow_id)
        return Ok()

    # -- cases without a work order ----------------------------------------------------

    def _start_case(self, request: StartCase, sender: Any) -> CaseStarted:
        workflow = self.storage.get_workflow(request.workflow_id, request.version)
        if workflow.state is WorkflowState.DISCARDED:
            raise WorkflowDiscarded(f"workflow {workflow.id!r} is discarded: no new case can start on it")
        case = CaseRecord(
            id=new_id(),
            workflow_id=workflow.id,
            workflow_version=workflow.version,
            input=dict(request.input),
            node_id=self._place(),
        )
        self.storage.create_case(case, [genesis_token(workflow, case.id, request.input)])
        log.info(
            "case_created", case_id=case.id, workflow_id=workflow.id, version=workflow.version, node_id=case.node_id
        )
        self._to_case(case)
        return CaseStarted(case_id=case.id)

    def _case_view(self, case_id: str) -> CaseView:
        case = self.storage.get_case(case_id)
        return CaseView(
            case=case,
            tokens=self.storage.tokens(case_id),
            tasks=self.storage.tasks(case_id),
            workitems=self.storage.workitems(case_id=case_id),
        )

    def _wait_case(self, request: WaitCase, sender: Any) -> CaseView | None:
        case = self.storage.get_case(request.case_id)
        if is_terminal(case.state):
            return self._case_view(case.id)
        self.case_waiters.setdefault(case.id, []).append(sender)
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
        return self._route(self._live_case(workitem.case_id), request, sender)

    def _task_request(self, request: Any, sender: Any) -> None:
        task = self.storage.get_task(request.task_id)
        return self._route(self._live_case(task.case_id), request, sender)

    def _kill(self, request: KillEntity, sender: Any) -> None:
        """`petriflow kill`: a `Crash` travels to the live actor of the entity
        (restored first if it was passivated), which answers and crashes."""
        crash = self._crash_path(request.entity_id)
        if crash.kind == "work_order":
            self._to_order(crash.entity_id, Routed(crash, sender))
        else:
            assert crash.case_id is not None  # every other kind lies in a case
            self._route(self._live_case(crash.case_id), crash, sender)

    def _crash_path(self, entity_id: str) -> Crash:
        """Which kind of entity `entity_id` is, and the case and task above it;
        only a live (unfinished) entity can be killed."""
        with contextlib.suppress(NotFound):
            order = self.storage.get_work_order(entity_id)
            if order.state not in UNFINISHED_WORK_ORDER_STATES:
                raise Invalid(f"work order {entity_id} is {order.state.value}: only a live entity can be killed")
            return Crash(entity_id, "work_order")
        with contextlib.suppress(NotFound):
            case = self.storage.get_case(entity_id)
            if is_terminal(case.state):
                raise Invalid(f"case {entity_id} is {case.state.value}: only a live entity can be killed")
            return Crash(entity_id, "case", case_id=case.id)
        with contextlib.suppress(NotFound):
            task = self.storage.get_task(entity_id)
            if is_terminal(task.state):
                raise Invalid(f"task {entity_id} is {task.state.value}: only a live entity can be killed")
            return Crash(entity_id, "task", case_id=task.case_id, task_id=task.id)
        workitem = self.storage.get_workitem(entity_id)  # NotFound names the id if it is nothing at all
        if is_terminal(workitem.state):
            raise Invalid(f"workitem {entity_id} is {workitem.state.value}: only a live entity can be killed")
        return Crash(entity_id, "workitem", case_id=workitem.case_id, task_id=workitem.task_id)

    def _route(self, case: CaseRecord, request: Any, sender: Any) -> None:
        """The owner of the entity answers the client; a case of a work order
        is reached through its work order."""
        if case.work_order_id is not None:
            self._to_order(case.work_order_id, Routed(request, sender))
        else:
            self._to_case(case, Routed(request, sender))
        return None

    # -- work orders ------------------------------------------------------------------------

    def _submit(self, workflow: Workflow, input: dict, trigger_type: str, trigger_id: str | None) -> WorkOrderSubmitted:
        first = runs.submit(
            self.storage, workflow, input, trigger_type=trigger_type, trigger_id=trigger_id, node_id=self._place()
        )
        metrics.work_order_created(workflow.id, trigger_type)  # committed: the Engine writes outside any turn
        order = self.storage.get_work_order(first.run.work_order_id)
        log.info(
            "work_order_created",
            work_order_id=order.id,
            run_id=first.run.id,
            workflow_id=workflow.id,
            trigger_type=trigger_type,
            trigger_id=trigger_id,
            node_id=order.node_id,
        )
        self._publish(Event(kind="work_order_created", work_order=order))
        self._publish(Event(kind="run_created", work_order=order, run=first.run))
        self._to_order(order)
        return WorkOrderSubmitted(work_order_id=order.id, run_id=first.run.id)

    def _submit_webhook(self, request: SubmitWebhook, sender: Any) -> WorkOrderSubmitted:
        workflow, auth = self._webhook(request.trigger_id)
        if request.auth is not None and request.auth != auth:
            raise TriggerChanged(f"the auth of webhook trigger {request.trigger_id!r} changed; check again")
        return self._submit(workflow, request.body, "webhook", request.trigger_id)

    def _webhook(self, trigger_id: str) -> tuple[Workflow, dict[str, Any]]:
        """The active workflow of a webhook trigger, and the trigger's auth."""
        workflow = self._trigger_owner(trigger_id)
        for trigger in workflow.triggers if workflow else ():
            if trigger.id == trigger_id and trigger.type == "webhook":
                assert workflow is not None
                return workflow, auth_document(trigger.auth)
        raise NotFound(f"no active workflow has a webhook trigger {trigger_id!r}")

    def _order_view(self, work_order_id: str) -> WorkOrderView:
        order = self.storage.get_work_order(work_order_id)
        views = []
        for run in self.storage.runs(order.id):
            kept = [self.storage.get_workitem(step) for step in run.kept_step_ids]
            workflow = queue = None
            with contextlib.suppress(NotFound):  # a run whose workflow vanished is lost: shown without either
                workflow = workflow_for(self.storage, run.workflow_id, run.workflow_version)
                if run.state is RunState.AVAILABLE and workflow.concurrency is not None:
                    unfinished = self.storage.unfinished_runs(run.workflow_id)
                    queue = queue_view(run, unfinished, workflow.concurrency)
            own = self.storage.workitems(case_id=run.case_id)
            views.append(run_view(run, kept, own, self.storage.tasks(run.case_id), workflow, queue))
        return WorkOrderView(work_order=order, runs=views)

    def _wait_order(self, request: WaitWorkOrder, sender: Any) -> WorkOrderView | None:
        view = self._order_view(request.work_order_id)
        if is_settled(view):
            return view
        self.order_waiters.setdefault(request.work_order_id, []).append(sender)
        return None

    def _enqueued(self, new_runs: list[runs.NewRun]) -> None:
        for new in new_runs:
            order = self.storage.get_work_order(new.run.work_order_id)
            log.info(
                "run_enqueued",
                work_order_id=order.id,
                run_id=new.run.id,
                retried_from_run_id=new.run.retried_from_run_id,
                kept_steps=len(new.run.kept_step_ids),
            )
            self._publish(Event(kind="run_created", work_order=order, run=new.run))
            self._publish(Event(kind="work_order_updated", work_order=order, run=new.run))
            self._to_order(order, StartRun(new.run.id))

    def _retry(self, request: RetryRun, sender: Any) -> RunEnqueued:
        retried = runs.retry_from_step(self.storage, request.run_id, request.step_id)
        self._enqueued([retried])
        return RunEnqueued(run_id=retried.run.id, work_order_id=retried.run.work_order_id)

    def _retry_many(self, request: RetryMany, sender: Any) -> RetryManyResult:
        enqueued, discards = runs.retry_many(
            self.storage,
            list(request.work_order_ids),
            [(s.run_id, s.step_id) for s in request.steps],
            request.from_transition,
        )
        self._enqueued(enqueued)
        return RetryManyResult(enqueued=len(enqueued), discarded=len(discards), discards=discards)

    def _cancel(self, request: CancelWorkOrder, sender: Any) -> None:
        order = self.storage.get_work_order(request.work_order_id)
        if all(r.state in FINAL_RUN_STATES for r in self.storage.runs(order.id)):
            raise AlreadyCompleted(f"work order {order.id} is already {order.state.value}")
        self._to_order(order, Routed(request, sender))
        return None

    def _subscribe(self, request: Subscribe, sender: Any) -> Ok:
        if sender not in self.subscribers:
            self.subscribers.append(sender)
        return Ok()

    def _unsubscribe(self, sender: Any) -> Ok:
        self.subscribers = [s for s in self.subscribers if s != sender]
        return Ok()

    def _actors(self, reports: list[NodeReport]) -> ActorList:
        """Every live actor of the tree: the Engine, each node that answered,
        and each entity actor its node hosts, with the node's pid."""
        found = [ActorInfo(kind="engine", entity_id=ENGINE_NAME, state="running", pid=os.getpid())]
        for report in reports:
            found.append(ActorInfo("node", report.node_id, "running", report.pid, node=report.node_id))
            found += [ActorInfo(kind, id, state, report.pid, node=report.node_id) for kind, id, state in report.actors]
        return ActorList(found)

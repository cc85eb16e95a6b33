"""The root of a node's hosted tree: it supervises the WorkOrder actors (and
the cases without a work order) placed on its node.

It restores the node's own unfinished work when the node starts, a batch at
a time, and decides what a give-up means for a work order or case: its
unfinished runs end `crashed` (or `exception`). Whatever the Engine must
hear (events, a case's end) leaves through the node's outbox.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import structlog

from petriflow.actors import outbox
from petriflow.actors.case import CaseActor
from petriflow.actors.entity import EntityActor, gave_up_failure
from petriflow.actors.outbox import ENGINE
from petriflow.actors.workorder import WorkOrderActor, count_end
from petriflow.engine.messages import (
    BootNode,
    CaseActivated,
    CaseEnded,
    ForCase,
    ForWorkOrder,
    InitCase,
    InitWorkOrder,
)
from petriflow.engine.states import FINAL_RUN_STATES, UNFINISHED_WORK_ORDER_STATES, CaseState, WorkOrderState
from petriflow.engine.wire import Event
from petriflow.engine.workorders import run_state_of_termination
from petriflow.supervision.childspec import ChildSpec
from petriflow.workorders import runs

log = structlog.get_logger("petriflow.node")

RESTORE_BATCH = 64  # work orders or cases of one node being restored at once


class _RestoreMore:
    """To itself: go on looking through the work left to restore."""


class NodeRootActor(EntityActor):
    node_id = ""
    node_incarnation = 0

    def log_context(self) -> dict[str, Any]:
        return {"node_id": self.node_id}

    def on_message(self, message: Any, sender: Any) -> None:
        if isinstance(message, BootNode):
            self._boot(message)
            return
        if self.children.handle(message, sender):
            self._restore_more()
            return
        self.dispatch(message, sender)

    def handlers(self) -> dict[type, Callable[[Any, Any], object]]:
        return {
            ForWorkOrder: lambda message, _: self._for(message.work_order_id, message.message, self._ensure_order),
            ForCase: lambda message, _: self._for(message.case_id, message.message, self._ensure_case),
            Event: lambda event, _: outbox.post(ENGINE, event),
            CaseEnded: lambda message, _: outbox.post(ENGINE, message),
            CaseActivated: lambda message, _: None,  # a case without a work order has no run to mark started
            _RestoreMore: lambda message, _: self._restore_more(),
        }

    # -- restore ------------------------------------------------------------------------

    def _boot(self, boot: BootNode) -> None:
        self.open(boot.settings)
        self.node_id, self.node_incarnation = boot.node_id, boot.node_incarnation
        self.children = self.supervise(self._gave_up)
        orders = self.storage.list_work_orders(UNFINISHED_WORK_ORDER_STATES, node_id=self.node_id)
        cases = [
            c
            for c in self.storage.list_cases([CaseState.CREATED, CaseState.ACTIVE], node_id=self.node_id)
            if c.work_order_id is None
        ]
        self.restoring = deque(
            [(self._ensure_order, self._order_needs_actor, o.id) for o in orders]
            + [(self._ensure_case, self.storage.case_needs_actor, c.id) for c in cases]
        )
        self._restore_more()
        log.info(
            "node_restoring",
            node_incarnation=self.node_incarnation,
            unfinished_work_orders=len(orders),
            unfinished_cases=len(cases),
            **self.log_context(),
        )

    def _restore_more(self) -> None:
        """Restore a batch at a time: a finished one makes room for the next,
        and the node keeps answering meanwhile. A message for one still
        queued restores it at once."""
        checked = 0
        while self.restoring and sum(map(self.children.is_running, self.children.keys())) < RESTORE_BATCH:
            if checked == RESTORE_BATCH:  # many need no actor (they wait on people): go on after other messages
                self.send(self.myAddress, _RestoreMore())
                return
            ensure, needed, key = self.restoring.popleft()
            checked += 1
            if needed(key):  # asked here, not at boot: a node with much to restore answers at once
                ensure(key)

    def _order_needs_actor(self, work_order_id: str) -> bool:
        """Restore at once only what has work to do; a work order whose runs
        all wait on people is restored by the next message for it."""
        unfinished = [r for r in self.storage.runs(work_order_id) if r.state not in FINAL_RUN_STATES]
        return not unfinished or any(runs.needs_actor(self.storage, r) for r in unfinished)

    # -- children -----------------------------------------------------------------------

    def _for(self, key: str, message: Any, ensure: Callable[[str], None]) -> None:
        ensure(key)
        if message is not None:
            self.children.send(key, message)

    def _ensure_order(self, work_order_id: str) -> None:
        if work_order_id not in self.children.keys():
            init = InitWorkOrder(work_order_id, self.settings, node_incarnation=self.node_incarnation)
            self.children.start(ChildSpec(key=work_order_id, actor_class=WorkOrderActor, init=init))

    def _ensure_case(self, case_id: str) -> None:
        if case_id not in self.children.keys():
            init = InitCase(case_id=case_id, settings=self.settings)
            self.children.start(ChildSpec(key=case_id, actor_class=CaseActor, init=init))

    def _gave_up(self, spec: ChildSpec, reason: str) -> None:
        if spec.actor_class is WorkOrderActor:
            self._work_order_gave_up(spec.key, reason)
            return
        case = self.storage.take_over_and_terminate(spec.key, gave_up_failure("case", reason))
        log.error("case_crashed", case_id=case.id, workflow_id=case.workflow_id, reason=reason, **self.log_context())
        outbox.post(ENGINE, CaseEnded(case_id=case.id, state=case.state.value))

    def _work_order_gave_up(self, work_order_id: str, reason: str) -> None:
        """The work order's own actor keeps crashing: its unfinished runs crashed."""
        order = self.storage.claim_work_order(work_order_id)
        failure = gave_up_failure("work order", reason)
        for run in self.storage.runs(order.id):
            if run.state not in FINAL_RUN_STATES:
                self.storage.take_over_and_terminate(run.case_id, failure)
                self.storage.advance_run(run.id, run_state_of_termination(failure.kind), failure)
        was = order.state
        order = self.storage.set_work_order_state(order.id, WorkOrderState(run_state_of_termination(failure.kind)))
        if was in UNFINISHED_WORK_ORDER_STATES:
            count_end(order)
        log.error("work_order_crashed", work_order_id=order.id, reason=reason, **self.log_context())
        outbox.post(ENGINE, Event(kind="work_order_updated", work_order=order))

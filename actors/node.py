"""The Node actor: one OS process (on multiprocTCPBase) hosting the actors of
every work order placed on it, as an Erlang node hosts many processes.

The Engine supervises its nodes (permanent children). A node owns a
`HostedSystem`, a private simpleSystemBase whose root is a `NodeRootActor`;
WorkOrder, Case, Task and Workitem actors live there, under the same
supervision as anywhere. A message from the Engine is handed in, and the
hosted actors run until they are quiet; what they sent outside (answers to
clients, events for the Engine) is then sent on. The node asks for its own
wakeup when a hosted actor's timer is next due.

Each such run is a turn (`Storage.backend.turn`): the hosted actors' writes
share one transaction, committed once when they are quiet or at the
turn's bounds (`Settings.turn_max_s`, `turn_max_writes`). Messages inside
the node are delivered at once (they share its fate); what leaves it, and
the executors to start, wait in the outbox until the commit succeeded. A
turn that cannot commit crashes the node: nothing it announced is lost.

A node's crash is the crash of everything on it: the Engine starts the node
again, and the new incarnation restores the node's work from storage.
Embedded (simpleSystemBase) the node is the same code in the caller's process.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from thespian.actors import WakeupMessage

from petriflow.actors import outbox
from petriflow.actors.entity import EntityActor
from petriflow.actors.node_root import NodeRootActor
from petriflow.actors.outbox import ENGINE, Outside
from petriflow.engine.messages import (
    BootNode,
    ForCase,
    ForWorkOrder,
    InitNode,
    NodeAlive,
    NodeHeartbeat,
    NodeReport,
    NodeRestored,
    Routed,
    StorageDown,
    StorageUp,
    Survey,
)
from petriflow.engine.outage import Outage, refusal
from petriflow.engine.wire import Error
from petriflow.storage.errors import StorageUnavailable
from petriflow.supervision.hosted import HostedSystem

log = structlog.get_logger("petriflow.node")

MAX_REPLIES = 100_000
"""Clients' reply addresses a node keeps for requests not yet answered; past
it the oldest is forgotten (its client has long timed out)."""


@dataclass(frozen=True)
class _Pump:
    """Wakeup payload: a hosted actor's timer is due at `at` (monotonic)."""

    at: float


@dataclass(frozen=True)
class _Continue:
    """Wakeup payload: the last pump's time slice ran out with messages
    queued. A wakeup a millisecond away, not a message to itself: Thespian
    delivers an actor's messages to itself before it reads its sockets
    again, and a wakeup already due before it selects on them, so either
    would starve the node's mailbox (the Engine's requests, surveys)."""


CONTINUE_AFTER = timedelta(milliseconds=1)


@dataclass(frozen=True)
class _Retry:
    """Wakeup payload: the back-off of a storage outage is over; try again."""


class NodeActor(EntityActor):
    kind = "node"  # holds no record: only metrics name it
    node_id = ""

    def log_context(self) -> dict[str, Any]:
        return {"node_id": self.node_id} if self.node_id else {}

    def on_start(self, init: InitNode) -> None:
        self.open(init.settings)
        self.node_id = init.node_id
        self.incarnation = 0
        self.outbox = outbox.Outbox()
        self.replies: OrderedDict[int, Any] = OrderedDict()
        self.numbers = 0
        self.pumps: set[float] = set()  # when the wakeups asked for are due
        self.continuing = False  # a _Continue is on its way
        self.hosted: HostedSystem | None = None  # None while storage is out (and before the first claim)
        self.outage = Outage()
        self.held: list[Any] = []  # what the Engine sent during an outage: handed in once work resumes
        self.send(self.parent, NodeAlive(self.node_id, os.getpid()))
        self._boot()

    def _boot(self) -> None:
        """Claim the node (a write: in an outage, the try that tells whether
        storage is back) and restore its work in one turn; then hand in
        what was held meanwhile."""
        try:
            self.incarnation = self.storage.claim_node(self.node_id, os.getpid())
        except StorageUnavailable as exc:
            self._pause(exc)
            return
        self.outage.succeeded(time.time())  # during an outage: the first write through, not its end yet
        self.hosted = HostedSystem(slice_s=self.settings.turn_max_s)
        self.root = self.hosted.create(NodeRootActor)
        if not self.outage.down:
            log.info("node_started", node_incarnation=self.incarnation, pid=os.getpid(), **self.log_context())
        # hosted actors share this process: no link to a parent process of their own
        hosted_settings = dataclasses.replace(self.settings, die_with_parent=False)
        if not self._hand_in(BootNode(self.node_id, self.incarnation, hosted_settings)):
            return  # the outage goes on
        if self.outage_wrote(self.outage, self.node_id):  # the restoring turn: the second write through
            self.send(self.parent, StorageUp(self.node_id))
        if self.incarnation > 1:
            self.send(self.parent, NodeRestored(self.node_id, self.incarnation))
        held, self.held = self.held, []
        for message in held:
            self._from_engine(message)

    def on_exit(self) -> None:
        """Embedded, the process lives on: stop the hosted actors with the node."""
        hosted = getattr(self, "hosted", None)
        if hosted is not None:
            hosted.stop()

    def may_passivate(self) -> bool:
        return False  # a node hosts work; it is never idle in the supervisor's sense

    def hosted_actors(self) -> Iterable[Any]:
        hosted = getattr(self, "hosted", None)
        return () if hosted is None else list(hosted.instances())

    def on_message(self, message: Any, sender: Any) -> None:
        self.dispatch(message, sender)

    def handlers(self) -> dict[type, Callable[[Any, Any], object]]:
        return {
            ForWorkOrder: lambda message, _: self._from_engine(message),
            ForCase: lambda message, _: self._from_engine(message),
            Survey: lambda survey, _: self._report(survey),
            NodeHeartbeat: lambda beat, _: self.send(self.parent, NodeAlive(self.node_id, os.getpid())),
            WakeupMessage: lambda wakeup, _: self._wake(wakeup.payload),
        }

    def waited_out(self, exc: Exception) -> bool:
        return False  # the node is what waits outages out: one reaching here is a bug

    # -- into the hosted system ---------------------------------------------------------

    def _from_engine(self, message: ForWorkOrder | ForCase) -> None:
        """Work from the Engine: handed in, or during an outage answered at
        once if a client waits for it, else held until work resumes."""
        if self.hosted is not None:
            self._hand_in(self._inward(message))
            return
        routed = message.message
        if isinstance(routed, Routed) and routed.reply_to is not None:
            self.answer(routed.reply_to, self._refusal())
        else:
            self.held.append(message)

    def _inward(self, message: ForWorkOrder | ForCase) -> ForWorkOrder | ForCase:
        """A client's reply address becomes an `Outside` token: hosted actors
        answer through the outbox."""
        routed = message.message
        if not isinstance(routed, Routed) or routed.reply_to is None:
            return message
        self.numbers += 1
        self.replies[self.numbers] = routed.reply_to
        if len(self.replies) > MAX_REPLIES:
            self.replies.popitem(last=False)
        return dataclasses.replace(message, message=Routed(routed.body, Outside(self.numbers)))

    def _hand_in(self, message: Any, to: Any = None) -> bool:
        """Give `message` to the root (or the hosted actor at `to`) and run
        the hosted actors, in one turn; False if an outage stopped it."""
        hosted, target = self.hosted, self.root if to is None else to
        assert hosted is not None
        return self._turn(lambda stop: hosted.tell(target, message, stop))

    def _wake(self, payload: Any) -> None:
        if isinstance(payload, _Retry):
            self._boot()
            return
        if isinstance(payload, _Continue):
            self.continuing = False  # it arrived, whatever happened since it was asked for
        if self.hosted is None:
            return  # a timer of hosted actors dropped in an outage: their next incarnations set their own
        if isinstance(payload, _Pump):
            self.pumps.discard(payload.at)
            self._turn(self.hosted.pump)
        elif isinstance(payload, _Continue):
            self._turn(self.hosted.pump)

    def _turn(self, run: Callable[[Callable[[], bool]], object]) -> bool:
        """Run the hosted actors in one turn, commit it, then release what
        it held back; False when a storage outage rolled it back (the node
        waits it out). Any other exception here (the turn broke, the commit
        failed for good) crashes the node with the outbox unreleased."""
        limit = self.settings.turn_max_writes
        try:
            with outbox.collecting(self.outbox), self.storage.backend.turn() as turn:
                run(lambda: turn.broken is not None or turn.writes >= limit)
        except StorageUnavailable as exc:
            self._pause(exc)
            return False
        self._after_turn()
        return True

    # -- storage outages ------------------------------------------------------------------

    def _pause(self, exc: StorageUnavailable) -> None:
        """Storage cannot take this node's writes. What the hosted actors
        hold may be ahead of storage, so they are dropped, as a crash of the
        node would drop them, but the process stays: it answers heartbeats
        and surveys, refuses clients with the outage, holds the Engine's
        work, and tries again after a back-off (`engine.outage`), never
        counted as a restart. No entity changes state: their next
        incarnations restore them from what was committed."""
        if self.hosted is not None:
            for actor in self.hosted.instances():
                if isinstance(actor, EntityActor):
                    actor.stop_counting_live()
            self.hosted.stop()
            self.hosted = None
        self.outbox.take()  # what the rolled-back turn announced never happened
        self.pumps.clear()
        if self.outage_began(self.outage, exc, self.node_id):
            assert self.outage.since is not None
            self.send(self.parent, StorageDown(self.node_id, self.outage.since, exc.code, exc.message))
        refusal = self._refusal()
        for address in self.replies.values():  # nobody is left to answer them
            self.answer(address, refusal)
        self.replies.clear()
        self.wakeupAfter(timedelta(seconds=self.outage.next_pause_s()), payload=_Retry())

    def _refusal(self) -> Error:
        return refusal(self.outage)

    def _after_turn(self) -> None:
        """Start the executors and send on what the hosted actors sent
        outside, and ask to be woken when their next timer is due. If the
        root itself crashed, the node's state is what is broken: the node
        crashes and is restored."""
        hosted = self.hosted
        assert hosted is not None, "a turn ran without hosted actors"
        if not hosted.is_live(self.root):
            raise RuntimeError(f"the root of node {self.node_id} crashed")
        held = self.outbox.take()
        for start in held.starts:
            start()
        for to, message in held.messages:
            if to == ENGINE:
                self.send(self.parent, message)
            else:
                address = self.replies.pop(to.number, None)
                if address is not None:
                    self.send(address, message)
        if hosted.busy:
            if not self.continuing:
                self.continuing = True
                self.wakeupAfter(CONTINUE_AFTER, payload=_Continue())
            return
        hosted.sweep()  # only when quiet: an exit's notice to the parent has been handled
        due = hosted.next_due_s()
        if due is not None:
            at = time.monotonic() + due
            if not any(p <= at + 0.001 for p in self.pumps):
                self.pumps.add(at)
                self.wakeupAfter(timedelta(seconds=due), payload=_Pump(at))

    # -- out of it ----------------------------------------------------------------------

    def _report(self, survey: Survey) -> None:
        rows = [row for actor in self.hosted_actors() if isinstance(actor, EntityActor) and (row := actor.entity_row())]
        self.send(self.parent, NodeReport(survey.number, self.node_id, os.getpid(), rows))

"""What every entity actor shares: its storage, its workflow, how it answers.

Storage connections and workflow definitions are cached per process and
opened after the actor's process starts, never inherited across fork.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

import structlog
from thespian.actors import ActorExitRequest

from petriflow import metrics
from petriflow.actors import outbox
from petriflow.actors.outbox import Outside
from petriflow.engine import codec
from petriflow.engine.errors import Invalid, PetriflowError, StorageFailure
from petriflow.engine.messages import Routed
from petriflow.engine.outage import Outage
from petriflow.engine.records import Failure
from petriflow.engine.settings import Settings
from petriflow.engine.wire import EntityKilled, Error
from petriflow.engine.workflow import Workflow
from petriflow.storage.errors import StorageBroken, StorageUnavailable
from petriflow.storage.store import WorkOrderStorage, open_storage
from petriflow.supervision import supervisor
from petriflow.supervision.childspec import ChildSpec, Intensity, Strategy
from petriflow.supervision.member import SupervisedActor
from petriflow.supervision.supervisor import Supervisor

log = structlog.get_logger("petriflow")

_storages: dict[tuple[int, str], WorkOrderStorage] = {}
_workflows: dict[tuple[str, str, int], Workflow] = {}


def storage_for(url: str) -> WorkOrderStorage:
    key = (os.getpid(), url)
    if key not in _storages:
        _storages[key] = open_storage(url)
    return _storages[key]


def workflow_for(storage: WorkOrderStorage, workflow_id: str, version: int) -> Workflow:
    """Workflows are immutable per version, so a process caches them forever."""
    key = (storage.url, workflow_id, version)
    if key not in _workflows:
        _workflows[key] = storage.get_workflow(workflow_id, version)
    return _workflows[key]


def gave_up_failure(what: str, reason: str, **ids: str | None) -> Failure:
    """The failure of an entity its supervisor gave up on: `exception` when it
    kept crashing on a storage error no retry fixes, else `crashed`."""
    kind = "exception" if reason.startswith((StorageFailure.code, StorageBroken.code)) else "crashed"
    return Failure(kind=kind, reason=f"{what} crashed past the restart intensity: {reason}", **ids)


def _count_supervision(event: str, spec: ChildSpec) -> None:
    """Restarts and give-ups of any supervisor in this process, by the kind
    of the child's actor class (`petriflow_actor_restarts_total{kind}`)."""
    actor_class = spec.actor_class
    kind = getattr(actor_class, "kind", "") or (actor_class if isinstance(actor_class, str) else actor_class.__name__)
    if event == "restart":
        metrics.count_restart(kind)
    elif event == "give_up":
        metrics.count_give_up(kind)


supervisor.observe(_count_supervision)


class EntityActor(SupervisedActor):
    settings: Settings
    storage: WorkOrderStorage
    kind = ""  # work_order, case, task or workitem: how `petriflow actors` names it (node: only in metrics)
    holds = ""  # the attribute holding the entity's record
    _live = ""  # the kind this actor counts in petriflow_live_actors until it exits

    def open(self, settings: Settings) -> None:
        self.settings = settings
        self.storage = storage_for(settings.storage_url)
        if self.kind and not self._live:
            self._live = self.kind
            metrics.actor_started(self.kind)

    def receiveMessage(self, message: Any, sender: Any) -> None:
        if self._live and isinstance(message, ActorExitRequest):  # every exit: normal, passivation or crash
            self.stop_counting_live()
        super().receiveMessage(message, sender)

    def stop_counting_live(self) -> None:
        """This actor no longer counts as live: it exits, or its actor system
        is closed under it (simpleSystemBase ends no actor at shutdown). The
        actors it hosts (a node's) go with it: no exit reaches them."""
        if self._live:
            metrics.actor_exited(self._live)
            self._live = ""
        for actor in self.hosted_actors():
            if isinstance(actor, EntityActor):
                actor.stop_counting_live()

    def hosted_actors(self) -> Iterable[Any]:
        """The actor objects this actor runs in a system of its own (a node's)."""
        return ()

    def handlers(self) -> dict[type, Callable[[Any, Any], object]]:
        """Each message type this actor handles, with its handler `(message, sender)`."""
        raise NotImplementedError

    def dispatch(self, message: Any, sender: Any) -> None:
        """Hand `message` to the handler of its type. The table is built once
        per actor; a message of no type in it is logged and never dropped
        silently (see `unknown`)."""
        table = self.__dict__.get("_table")
        if table is None:
            table = self._table = self.handlers()
        handler = table.get(type(message))
        if handler is None:
            self.unknown(message, sender)
        else:
            handler(message, sender)

    def unknown(self, message: Any, sender: Any) -> None:
        """A message this actor has no handler for: a warning with the entity
        ids, and an `invalid` answer if a client waits for one."""
        body = message.body if isinstance(message, Routed) else message
        log.warning(
            "unknown_message", message_type=type(body).__name__, receiver=type(self).__name__, **self.log_context()
        )
        if isinstance(message, Routed):
            self.answer(message.reply_to, Error("invalid", f"{self.entity_name()} cannot handle {type(body).__name__}"))

    def killed(self, routed: Routed) -> None:
        """`petriflow kill`: answer, then crash as a SIGKILL would."""
        self.answer(routed.reply_to, EntityKilled(self.key, routed.body.kind))
        self.crash("killed on purpose (petriflow kill)")

    def entity_name(self) -> str:
        """How errors name this actor's entity to a client."""
        return re.sub(r"(?<!^)(?=[A-Z])", " ", type(self).__name__.removesuffix("Actor")).lower()

    def supervise(self, on_give_up: Callable[[Any, str], None]) -> Supervisor:
        return Supervisor(
            self,
            strategy=Strategy.ONE_FOR_ONE,
            intensity=Intensity(),
            idle_timeout_s=self.settings.idle_timeout_s,
            die_with_parent=self.settings.die_with_parent,
            on_give_up=on_give_up,
        )

    def waited_out(self, exc: Exception) -> bool:
        """A storage outage is the node's to wait out (`actors.node`)."""
        return isinstance(exc, StorageUnavailable)

    # -- storage outages, for the parts that wait them out (the Engine, a node) --------

    def outage_began(self, outage: Outage, exc: StorageUnavailable, part: str) -> bool:
        """Note a transient storage failure of `part`'s; True when it begins
        an outage, which is then logged and counted, once."""
        if not outage.failed(exc.code, exc.message, time.time()):
            return False
        log.warning("storage_unavailable", part=part, code=exc.code, reason=exc.message, **self.log_context())
        metrics.storage_down(part, exc.code)
        return True

    def outage_wrote(self, outage: Outage, part: str) -> bool:
        """A write of `part`'s went through during `outage`; True when that
        ended it (`Outage.succeeded`): then the WAL that piled up is given
        back, and the end is logged and counted, once."""
        tries = outage.tries
        lasted = outage.succeeded(time.time())
        if lasted is None:
            return False
        checkpointed = True
        try:
            self.storage.backend.checkpoint()
        except StorageFailure:
            checkpointed = False  # the next checkpoint SQLite makes by itself does it
        log.info(
            "storage_available",
            part=part,
            down_s=round(lasted, 3),
            tries=tries,
            wal_checkpointed=checkpointed,
            **self.log_context(),
        )
        metrics.storage_up(part)
        return True

    def handles_while_stopping(self, message: Any) -> bool:
        """A client's request is answered from what this incarnation knows;
        anything else goes to the next incarnation."""
        return isinstance(message, Routed)

    def answer(self, reply_to: Any, result: Any) -> None:
        """Send `result`, encoded, to a client: directly, or through the outbox
        of this actor's node when the client is outside it."""
        if reply_to is None:
            return
        if isinstance(reply_to, Outside):
            outbox.post(reply_to, codec.encode(result))
        else:
            self.send(reply_to, codec.encode(result))

    def entity_row(self) -> tuple[str, str, str] | None:
        """`(kind, entity_id, state)` of the entity this actor holds (its record
        is the attribute named `holds`), for `petriflow actors`; None until it
        holds one, or once it is on its way out."""
        record = getattr(self, self.holds, None) if self.holds else None
        if record is None or self._done:
            return None
        return (self.kind, record.id, record.state.value)

    def requests(self) -> dict[type, Callable[[Routed], Any]]:
        """Each request type this actor serves as it travels down the tree
        `Routed` (a client's wire request, or a `Crash` from `petriflow kill`),
        with its handler; the handler's result, if any, is the answer."""
        return {}

    def serve(self, routed: Routed, sender: Any = None) -> None:
        """Run the handler of the request's type and answer its result, or the
        error it raised. A petriflow error is an answer, not a crash; anything
        else is a bug: the client hears `exception` and the actor crashes to be
        restored. The table is built once per actor."""
        table = self.__dict__.get("_request_table")
        if table is None:
            table = self._request_table = self.requests()
        try:
            handler = table.get(type(routed.body))
            if handler is None:
                raise Invalid(f"a {self.entity_name()} cannot handle {type(routed.body).__name__}")
            result = handler(routed)
        except StorageFailure as exc:
            self.answer(routed.reply_to, Error(exc.code, exc.message))
            raise  # what this actor holds may be ahead of storage: restore it from there
        except PetriflowError as exc:
            self.answer(routed.reply_to, Error(exc.code, exc.message))
            return
        except Exception as exc:
            self.answer(routed.reply_to, Error("exception", f"{type(exc).__name__}: {exc}"))
            raise
        if result is not None:
            self.answer(routed.reply_to, result)

"""OTP supervision by composition: an actor owns a `Supervisor` for the
children it creates (Thespian tells only the creator that an actor died).

Departure from OTP, on purpose: restart intensity is counted per child key,
and giving up removes only that child. One supervisor here supervises many
independent entities (a case's tasks, a task's workitems); one bad entity
must not take its siblings down. The owner's `on_give_up(spec, reason)`
marks the entity crashed; if it raises, the owner itself crashes
(escalation), because then its own state is what is broken.

A supervisor given a `backoff` never gives up: a child past its intensity
is started again after a pause that doubles from `backoff[0]` up to
`backoff[1]`, and what is sent to it meanwhile is held for it. That is for
children that host others' work (a node), which no give-up could settle.

Restarts do not wait for siblings: under one_for_all and rest_for_one the
crashed child starts again at once and each sibling starts again as soon as
its own exit arrives. A restarted child gets its spec's `init` again and
restores itself from storage; the supervisor holds no entity state.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import structlog
from thespian.actors import Actor, ActorExitRequest, ChildActorExited, WakeupMessage

from petriflow.supervision.childspec import ChildSpec, Intensity, RestartType, Strategy
from petriflow.supervision.messages import ChildCrashed, ChildStopping, IdleNotice, Returned, Supervised

log = structlog.get_logger("petriflow.supervision")

GiveUp = Callable[[ChildSpec, str], None]
Observer = Callable[[str, ChildSpec], None]

_observers: list[Observer] = []


def observe(observer: Observer) -> None:
    """Have `observer(event, spec)` called at each `"restart"` (a crashed
    child started again, by intensity, strategy or after a back-off) and
    each `"give_up"` of every supervisor in this process: for metrics. An
    observer that raises is logged, never the supervisor's problem."""
    if observer not in _observers:
        _observers.append(observer)


def _tell(event: str, spec: ChildSpec) -> None:
    for observer in _observers:
        try:
            observer(event, spec)
        except Exception:
            log.warning("supervision_observer_failed", event=event, key=spec.key, exc_info=True)


class _State(StrEnum):
    LIVE = "live"
    STOPPING = "stopping"  # exit expected: announced by the child or asked by stop()
    RESTARTING = "restarting"  # asked to exit by the strategy; starts again on exit
    PASSIVATING = "passivating"  # idle; asked to exit; restored on demand
    PASSIVATED = "passivated"  # no process; the next send restores it
    BACKING_OFF = "backing_off"  # past its intensity; started again after a pause


@dataclass(frozen=True)
class _BackedOff:
    """Wakeup payload of the owner: the pause of child `key` is over."""

    key: str


@dataclass
class _Child:
    spec: ChildSpec
    address: Any = None
    state: _State = _State.LIVE
    reason: str = ""
    final: bool = False  # stop(key): never start again
    sent: int = 0  # messages sent to this incarnation via send()
    pending: list[Any] = field(default_factory=list)  # held while it is on its way out
    returned: list[Any] = field(default_factory=list)  # handed back by an incarnation that was stopping
    redelivered: list[Any] = field(default_factory=list)  # returned messages given to the next incarnation
    crash_reason: str = "killed"  # what its last crash notice said; a SIGKILLed child sends none
    restarts: deque[float] = field(default_factory=deque)
    pause_s: float = 0.0  # the next back-off


ROUTINE = frozenset({"child_started", "child_stopping", "child_exited"})


class Supervisor:
    """Starts, watches, restarts and passivates the children of `actor`.

    The owning actor calls `handle(message, sender)` first in its
    `on_message` and stops there when it returns True."""

    def __init__(
        self,
        actor: Actor,
        *,
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        intensity: Intensity = Intensity(),
        idle_timeout_s: float | None = None,
        die_with_parent: bool = False,
        on_give_up: GiveUp | None = None,
        backoff: tuple[float, float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._actor = actor
        self._strategy = strategy
        self._intensity = intensity
        self._idle_timeout_s = idle_timeout_s
        self._die_with_parent = die_with_parent
        self._on_give_up = on_give_up
        self._backoff = backoff
        self._clock = clock
        self._children: dict[str, _Child] = {}  # insertion order is start order (rest_for_one)

    # -- the owner's API ----------------------------------------------------------

    def start(self, spec: ChildSpec) -> Any:
        """Create the child actor and send it its `Supervised` envelope."""
        if spec.key in self._children:
            raise ValueError(f"child {spec.key!r} is already supervised")
        child = self._children[spec.key] = _Child(spec)
        self._spawn(child, "child_started")
        return child.address

    def send(self, key: str, message: Any) -> None:
        """Deliver to the child, restoring it first if it was passivated; held
        and delivered to the next incarnation while the child is exiting.
        KeyError for a key not supervised (never started, or gone for good)."""
        child = self._children[key]
        if child.state is _State.LIVE:
            self._deliver(child, message)
            return
        child.pending.append(message)
        if child.state is _State.PASSIVATED:
            self._spawn(child, "child_restored")

    def stop(self, key: str) -> None:
        """Ask a child to exit normally; it is not started again."""
        child = self._children.get(key)
        if child is None:
            return
        self._log("child_stop_requested", child, dropped=len(child.pending))
        child.final = True
        child.pending.clear()
        if child.state in (_State.PASSIVATED, _State.BACKING_OFF):
            del self._children[key]
        elif child.state is _State.LIVE:
            child.state = _State.STOPPING
            self._actor.send(child.address, ActorExitRequest())

    def handle(self, message: Any, sender: Any) -> bool:
        """Consume the supervision protocol; False for anything else."""
        if isinstance(message, ChildActorExited):
            child = self._by_address(message.childAddress)
            if child is None:  # a duplicate notice (Thespian may send two) or not ours
                log.debug("child_exit_unknown", address=str(message.childAddress))
            else:
                self._exited(child)
            return True
        if isinstance(message, ChildStopping):
            self._stopping(message, sender)
            return True
        if isinstance(message, IdleNotice):
            self._idle(message, sender)
            return True
        if isinstance(message, Returned):
            self._returned(message, sender)
            return True
        if isinstance(message, WakeupMessage) and isinstance(message.payload, _BackedOff):
            child = self._children.get(message.payload.key)
            if child is not None and child.state is _State.BACKING_OFF:
                self._spawn(child, "child_restarted", reason="after a back-off")
            return True
        if isinstance(message, ChildCrashed):
            child = self._children.get(message.key)
            if child is not None:
                child.crash_reason = message.reason
            return True
        return False

    def is_live(self, key: str) -> bool:
        """Whether the child has a process (possibly on its way out)."""
        child = self._children.get(key)
        return child is not None and child.address is not None

    def is_running(self, key: str) -> bool:
        """Whether the child is live and not on its way out: worth a message
        that only matters to a running incarnation."""
        child = self._children.get(key)
        return child is not None and child.state is _State.LIVE

    def keys(self) -> list[str]:
        """Every child supervised, passivated ones included."""
        return list(self._children)

    def address(self, key: str) -> Any:
        child = self._children.get(key)
        return None if child is None else child.address

    # -- protocol -------------------------------------------------------------------

    def _stopping(self, notice: ChildStopping, sender: Any) -> None:
        child = self._children.get(notice.key)
        if child is None or child.address != sender:
            log.debug("child_stopping_unknown", key=notice.key)
            return
        if child.state not in (_State.LIVE, _State.PASSIVATING):
            return  # already asked to exit for another reason, which stands
        already_asked = child.state is _State.PASSIVATING
        child.state = _State.STOPPING
        child.reason = notice.reason
        self._log("child_stopping", child, reason=notice.reason)
        if not already_asked:
            self._actor.send(child.address, ActorExitRequest())

    def _idle(self, notice: IdleNotice, sender: Any) -> None:
        """Accept only if nothing is in flight to the child: every message sent
        has been received. Otherwise the child will see the pending message,
        reset its timer, and offer again later."""
        child = self._children.get(notice.key)
        if child is None or child.address != sender or child.state is not _State.LIVE:
            return
        if notice.received != child.sent:
            self._log("idle_notice_ignored", child, received=notice.received, sent=child.sent)
            return
        child.state = _State.PASSIVATING
        self._log("child_passivating", child)
        self._actor.send(child.address, ActorExitRequest())

    def _returned(self, notice: Returned, sender: Any) -> None:
        child = self._children.get(notice.key)
        if child is None or child.address != sender:
            log.debug("child_returned_unknown", key=notice.key)
            return
        child.returned.append(notice.message)

    def _exited(self, child: _Child) -> None:
        state, child.address = child.state, None
        if child.final:  # stop(key), whatever else was under way
            self._log("child_exited", child, reason="stopped")
            self._remove(child)
        elif state is _State.PASSIVATING:
            if child.pending:
                self._spawn(child, "child_restored")
            else:
                child.state = _State.PASSIVATED
                self._log("child_passivated", child)
        elif state is _State.RESTARTING:  # stopped by the strategy; temporary stays down, as in OTP
            if child.spec.restart is RestartType.TEMPORARY:
                self._remove(child)
            else:
                self._spawn(child, "child_restarted", reason="strategy")
        elif state is _State.STOPPING:
            self._log("child_exited", child, reason=child.reason)
            self._take_back_returned(child)
            if child.spec.restart is RestartType.PERMANENT:
                self._restart(child, child.reason)
            elif child.pending and child.spec.restart is RestartType.TRANSIENT:
                # messages arrived for it meanwhile: restore on demand, as after passivation
                self._spawn(child, "child_restored")
            else:
                self._remove(child)
        else:
            reason, child.crash_reason = child.crash_reason, "killed"
            log.warning("child_crashed", reason=reason, **self._fields(child))
            if child.spec.restart is RestartType.TEMPORARY:
                self._remove(child)
            else:
                self._restart(child, reason)

    def _take_back_returned(self, child: _Child) -> None:
        """Returned messages go to the next incarnation, once: one handed back
        again by the incarnation started for it is moot (its entity ended)."""
        returned, child.returned = child.returned, []
        again = [m for m in returned if m in child.redelivered]
        child.redelivered = [m for m in returned if m not in child.redelivered]
        if again:
            self._log("child_messages_dropped", child, dropped=len(again), reason="returned twice")
        child.pending[:0] = child.redelivered

    # -- restarts ---------------------------------------------------------------------

    def _restart(self, child: _Child, reason: str) -> None:
        """Restart per intensity (counted per key) and strategy."""
        now = self._clock()
        window = self._intensity.max_seconds
        while child.restarts and now - child.restarts[0] > window:
            child.restarts.popleft()
        if len(child.restarts) >= self._intensity.max_restarts:
            if self._backoff is None:
                self._give_up(child, reason)
            else:
                self._back_off(child, reason)
            return
        child.restarts.append(now)
        for sibling in self._siblings_to_restart(child):
            sibling.state = _State.RESTARTING
            self._log("child_restarting", sibling, because=child.spec.key)
            self._actor.send(sibling.address, ActorExitRequest())
        self._spawn(child, "child_restarted", reason=reason)

    def _siblings_to_restart(self, child: _Child) -> list[_Child]:
        if self._strategy is Strategy.ONE_FOR_ONE:
            return []
        order = list(self._children.values())
        if self._strategy is Strategy.REST_FOR_ONE:
            order = order[order.index(child) + 1 :]
        return [c for c in order if c is not child and c.state is _State.LIVE]

    def _back_off(self, child: _Child, reason: str) -> None:
        assert self._backoff is not None
        first, cap = self._backoff
        pause = child.pause_s or first
        child.pause_s = min(pause * 2, cap)
        child.state = _State.BACKING_OFF
        child.restarts.clear()
        log.error("child_backing_off", reason=reason, pause_s=pause, **self._fields(child))
        self._actor.wakeupAfter(pause, payload=_BackedOff(child.spec.key))

    def _give_up(self, child: _Child, reason: str) -> None:
        self._remove(child)
        _tell("give_up", child.spec)
        log.error(
            "supervisor_gave_up",
            reason=reason,
            restarts=len(child.restarts),
            max_restarts=self._intensity.max_restarts,
            max_seconds=self._intensity.max_seconds,
            **self._fields(child),
        )
        if self._on_give_up is not None:
            self._on_give_up(child.spec, reason)

    # -- helpers ------------------------------------------------------------------------

    def _spawn(self, child: _Child, event: str, **extra: Any) -> None:
        """A new incarnation: create, envelope, then whatever was held for it."""
        spec = child.spec
        child.address = self._actor.createActor(spec.actor_class)
        child.state = _State.LIVE
        child.sent = 0
        self._actor.send(child.address, Supervised(spec.key, self._idle_timeout_s, self._die_with_parent, spec.init))
        pending, child.pending = child.pending, []
        for message in pending:
            self._deliver(child, message)
        self._log(event, child, delivered=len(pending), **extra)
        if event == "child_restarted":
            _tell("restart", spec)

    def _deliver(self, child: _Child, message: Any) -> None:
        child.sent += 1
        self._actor.send(child.address, message)

    def _remove(self, child: _Child) -> None:
        if child.pending:
            self._log("child_messages_dropped", child, dropped=len(child.pending))
        self._children.pop(child.spec.key, None)

    def _by_address(self, address: Any) -> _Child | None:
        # Thespian addresses are unhashable and compare by their resolved
        # details, so a linear scan is the reliable lookup.
        return next((c for c in self._children.values() if c.address is not None and c.address == address), None)

    def _fields(self, child: _Child) -> dict[str, Any]:
        context: dict[str, Any] = getattr(self._actor, "log_context", dict)()
        return {**context, "key": child.spec.key, "child": _class_name(child.spec.actor_class)}

    def _log(self, event: str, child: _Child, **extra: Any) -> None:
        # a child's ordinary life is debug; restarts, passivation and drops are worth an info line
        level = log.debug if event in ROUTINE else log.info
        level(event, **extra, **self._fields(child))


def _class_name(actor_class: type | str) -> str:
    return actor_class if isinstance(actor_class, str) else actor_class.__name__

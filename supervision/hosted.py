"""An actor system hosted inside one actor: many cheap actors in one process.

As an Erlang node hosts many processes in one BEAM, a node actor owns a
Thespian `simpleSystemBase` whose actors run in the node's own thread, only
while the node pumps them. Thespian's simple base fires wakeups only while
it runs; so the owner pumps after each message it hands in, and asks
`next_due_s` when to pump again for the inner actors' timers. A pump runs
for a bounded time, as BEAM schedulers count reductions: a burst of work
(restoring hundreds of work orders) must not keep the node from answering,
so the owner is told when there is more to run and pumps again after
reading its own mailbox.

This module is the one place that reaches into the simple base's
internals (its pending sends, wakeups and registry); they are stable in
Thespian 4, and the tests of nodes exercise each of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from thespian.actors import ActorSystem


def _never() -> bool:
    return False


class HostedSystem:
    """A private `simpleSystemBase`, pumped by its owner."""

    def __init__(self, slice_s: float = 0.02) -> None:
        # logDefs=False: leave the application's logging configuration alone
        self._system = ActorSystem("simpleSystemBase", logDefs=False, transientUnique=True)
        self._base = self._system._systemBase
        self._outside = self._base.external_clone()  # queues a message without running anything
        self.slice_s = slice_s

    def create(self, actor_class: type) -> Any:
        """A root actor of the hosted system (its parent is the system itself)."""
        return self._system.createActor(actor_class)

    def tell(self, address: Any, message: Any, stop: Callable[[], bool] = _never) -> bool:
        """Hand a message in and pump; True when the hosted actors are quiet."""
        self._outside.tell(address, message)
        return self.pump(stop)

    def pump(self, stop: Callable[[], bool] = _never) -> bool:
        """Fire the wakeups that are due and run queued messages for at most
        `slice_s`, or until `stop()` says so (checked between messages, and
        never before the first: every pump makes progress); True when
        nothing is left to run (False: pump again soon)."""
        base = self._base
        end = time.monotonic() + self.slice_s
        base._realizeWakeups()  # once a slice: the simple base itself scans all wakeups at every message
        if base._pendingSends:
            base._runSingleSend(base._pendingSends.pop(0))
        while base._pendingSends and time.monotonic() <= end and not stop():
            base._runSingleSend(base._pendingSends.pop(0))
        self._forget_wakeups_of_the_dead()
        return not base._pendingSends

    def _forget_wakeups_of_the_dead(self) -> None:
        """An exited actor's wakeups would only be dropped when due (a
        passivation check: minutes away), yet every new wakeup makes the
        simple base scan them all."""
        registry = self._base.actorRegistry
        self._base._wakeUps = [
            w for w in self._base._wakeUps if getattr(registry.get(w[0].actorAddressString), "instance", None)
        ]

    @property
    def busy(self) -> bool:
        """Whether messages are queued that a pump has not run yet."""
        return bool(self._base._pendingSends)

    def sweep(self) -> None:
        """Forget actors that exited: the simple base keeps a registry entry
        (set to None) for every actor it ever created, and a node that runs
        for weeks creates millions. Only while quiet: then every exit has
        been handled by the exited actor's parent, and its children told to
        exit. What is left is what lives."""
        registry = self._base.actorRegistry
        dead = [key for key, ref in registry.items() if ref is None or ref.instance is None]
        for key in dead:
            if key not in self._base._internalAddresses:
                del registry[key]

    def next_due_s(self) -> float | None:
        """Seconds until the earliest wakeup any hosted actor asked for; None if none."""
        timer = self._base._next_wakeup()
        if timer is None:
            return None
        return max(0.0, timer.view().remainingSeconds())

    def instances(self) -> Iterator[Any]:
        """The live actor objects: what the owner reports about its actors."""
        for ref in list(self._base.actorRegistry.values()):
            actor = getattr(ref, "instance", None)
            if actor is not None:
                yield actor

    def is_live(self, address: Any) -> bool:
        ref = self._base.actorRegistry.get(address.actorAddressString)
        return getattr(ref, "instance", None) is not None

    def stop(self) -> None:
        """Stop for good, as a crash would: nothing queued is run any more, so
        no hosted actor acts after its node is gone. Executor threads are
        daemon threads and end on their own; what they return is dropped."""
        self._base._pendingSends.clear()
        self._base._wakeUps.clear()
        self._system.shutdown()

"""An actor system hosted inside one actor: many cheap actors in one process.

As an Erlang node hosts many processes in one BEAM, a node actor owns a
Thespian `simpleSystemBase` whose actors run in the node's own thread, only
while the node pumps them. Thespian's simple base runs queued sends when
told something, and fires wakeups only while it runs; so the owner pumps
after each message it hands in, and asks `next_due_s` when to pump again
for the inner actors' timers.

This module is the one place that reaches into the simple base's
internals (its pending sends, wakeups and registry); they are stable in
Thespian 4, and the tests of nodes exercise each of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from thespian.actors import ActorSystem


class HostedSystem:
    """A private `simpleSystemBase`, pumped by its owner."""

    def __init__(self) -> None:
        # logDefs=False: leave the application's logging configuration alone
        self._system = ActorSystem("simpleSystemBase", logDefs=False, transientUnique=True)
        self._base = self._system._systemBase

    def create(self, actor_class: type) -> Any:
        """A root actor of the hosted system (its parent is the system itself)."""
        return self._system.createActor(actor_class)

    def tell(self, address: Any, message: Any) -> None:
        """Hand a message in and run the hosted actors until they are quiet."""
        self._system.tell(address, message)

    def pump(self) -> None:
        """Fire the wakeups that are due and run until quiet."""
        self._base._realizeWakeups()
        self._base._runSends()

    def sweep(self) -> None:
        """Forget actors that exited. The simple base keeps a registry entry
        (set to None) for every actor it ever created, and the wakeups a dead
        actor had asked for until they expire; it scans its wakeups at every
        message. A node that runs for weeks creates millions of actors, so
        the owner sweeps after each pump: what is left is what lives."""
        registry = self._base.actorRegistry
        dead = [key for key, ref in registry.items() if ref is None or ref.instance is None]
        for key in dead:
            if key not in self._base._internalAddresses:
                del registry[key]
        if dead:
            self._base._wakeUps = [w for w in self._base._wakeUps if w[0].actorAddressString in registry]

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

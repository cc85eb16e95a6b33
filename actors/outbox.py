"""Messages from a node's hosted actors to addresses outside the node.

A hosted actor cannot send to an address of the outer actor system (the
Engine, or a client waiting on `ask`): those live in another system, on
the daemon in another process. So a node hands a request in with its reply
address swapped for an `Outside` token, and whatever a hosted actor sends
outside lands in the outbox of the node being pumped. The node sends it
on once its hosted actors are quiet.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Outside:
    """An address outside the node: a client's reply address, by the number
    the node gave it, or the Engine (`ENGINE`)."""

    number: int


ENGINE = Outside(0)


@dataclass
class Outbox:
    """What a turn holds back until its commit: messages for outside the
    node, and executors to start (an executor's side effects must not run
    ahead of the record that its attempt began)."""

    messages: list[tuple[Outside, Any]] = field(default_factory=list)
    starts: list[Callable[[], None]] = field(default_factory=list)

    def take(self) -> Outbox:
        """Empty it, returning what it held."""
        held = Outbox(self.messages, self.starts)
        self.messages, self.starts = [], []
        return held


_pumping = threading.local()  # the outbox of the node pumping in this thread


@contextlib.contextmanager
def collecting(outbox: Outbox) -> Iterator[None]:
    """While a node pumps its hosted actors, what they post lands in `outbox`."""
    previous = getattr(_pumping, "outbox", None)
    _pumping.outbox = outbox
    try:
        yield
    finally:
        _pumping.outbox = previous


def post(to: Outside, message: Any) -> None:
    """Send `message` outside the node that is running the caller."""
    outbox = getattr(_pumping, "outbox", None)
    if outbox is None:
        raise RuntimeError("a message for outside a node was sent by an actor no node is running")
    outbox.messages.append((to, message))


def after_commit(start: Callable[[], None]) -> None:
    """Run `start` once the current turn is committed; at once outside a node."""
    outbox = getattr(_pumping, "outbox", None)
    if outbox is None:
        start()
    else:
        outbox.starts.append(start)

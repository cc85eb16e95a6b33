"""The small protocol between a supervisor and its children.

Thespian pickles these between processes; they never leave the actor
system, so they need no msgpack codec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Supervised:
    """The envelope a supervisor sends as a child's first message.

    `idle_timeout_s` turns passivation on; `die_with_parent` links the
    child's process to its parent's (multiproc bases); `init` is the child's
    own first message (ChildSpec.init)."""

    key: str
    idle_timeout_s: float | None
    die_with_parent: bool
    init: Any


@dataclass(frozen=True)
class ChildStopping:
    """A child announces a normal exit; the parent answers ActorExitRequest,
    so it always knows an exit is expected before ChildActorExited arrives."""

    key: str
    reason: str


@dataclass(frozen=True)
class IdleNotice:
    """A child idle past its timeout offers to passivate. `received` counts
    the messages it has received from its parent: the parent accepts only if
    that equals what it sent, so no message in flight is ever lost."""

    key: str
    received: int


@dataclass(frozen=True)
class Returned:
    """A message from the parent that reached a child after it announced a
    normal exit: the child hands it back, and the parent delivers it to the
    next incarnation instead of letting it be lost."""

    key: str
    message: Any


@dataclass(frozen=True)
class ChildCrashed:
    """Why a child is about to exit abnormally, `<code>: <detail>`, so the
    supervisor can say why it gave up (e.g. `storage_failure: ...`)."""

    key: str
    reason: str

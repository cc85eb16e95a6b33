"""Small actors for the supervision tests.

Importable by name (`tests.toy_actors`) so multiproc actor processes, forked
from the test process, resolve the classes Thespian names them by.
A `Boss` supervises children per its `BossConfig`; a `Worker` answers
`Ping` with its pid and incarnation, raises on `Boom`, stops on `Stop`.
Every request carries `reply_to`, filled in by the first boss that sees it,
so an answer finds the test through any number of bosses.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from petriflow.supervision.childspec import ChildSpec, Intensity, Strategy
from petriflow.supervision.member import SupervisedActor
from petriflow.supervision.supervisor import Supervisor


@dataclass(frozen=True)
class Ping:
    reply_to: Any = None


@dataclass(frozen=True)
class Pong:
    key: str
    pid: int
    incarnation: str


@dataclass(frozen=True)
class Boom:
    """Make the receiver's handler raise."""

    reply_to: Any = None


@dataclass(frozen=True)
class Stop:
    """Make the receiver exit normally."""

    reply_to: Any = None


@dataclass(frozen=True)
class Forward:
    """Ask a boss to pass `message` to its child `key` (restoring it if passivated)."""

    key: str
    message: Any
    reply_to: Any = None


@dataclass(frozen=True)
class Status:
    reply_to: Any = None


@dataclass(frozen=True)
class BossStatus:
    keys: list[str]
    live: dict[str, bool]
    addresses: dict[str, Any]
    gave_up: list[tuple[str, str]]


@dataclass(frozen=True)
class BossConfig:
    children: tuple[ChildSpec, ...] = ()
    strategy: Strategy = Strategy.ONE_FOR_ONE
    intensity: Intensity = field(default_factory=Intensity)
    idle_timeout_s: float | None = None
    die_with_parent: bool = False
    escalate: bool = False  # on_give_up raises: the boss itself crashes


class Worker(SupervisedActor):
    incarnation = ""

    def log_context(self) -> dict[str, Any]:
        return {"toy_id": f"toy-{self.key}"}

    def on_start(self, init: Any) -> None:
        self.incarnation = uuid.uuid4().hex

    def on_message(self, message: Any, sender: Any) -> None:
        reply_to = getattr(message, "reply_to", None) or sender
        if isinstance(message, Ping):
            self.send(reply_to, Pong(self.key, os.getpid(), self.incarnation))
        elif isinstance(message, Boom):
            raise RuntimeError("boom")
        elif isinstance(message, Stop):
            self.stop_normally("asked")


class Boss(Worker):
    """Configured by `on_start` when supervised, or by a first BossConfig
    message when a test creates it as a root."""

    def on_start(self, init: BossConfig) -> None:
        super().on_start(init)
        self.config = init
        self.gave_up: list[tuple[str, str]] = []
        self.children = Supervisor(
            self,
            strategy=init.strategy,
            intensity=init.intensity,
            idle_timeout_s=init.idle_timeout_s,
            die_with_parent=init.die_with_parent,
            on_give_up=self._gave_up,
        )
        for spec in init.children:
            self.children.start(spec)

    def may_passivate(self) -> bool:
        return not any(self.children.is_live(key) for key in self.children.keys())

    def _gave_up(self, spec: ChildSpec, reason: str) -> None:
        self.gave_up.append((spec.key, reason))
        if self.config.escalate:
            raise RuntimeError(f"cannot do without {spec.key}")

    def on_message(self, message: Any, sender: Any) -> None:
        if isinstance(message, BossConfig):
            self.on_start(message)
            self.send(sender, self._status())
        elif self.children.handle(message, sender):
            return
        elif isinstance(message, Forward):
            reply_to = message.reply_to or sender
            self.children.send(message.key, replace(message.message, reply_to=reply_to))
        elif isinstance(message, Status):
            self.send(message.reply_to or sender, self._status())
        else:
            super().on_message(message, sender)

    def _status(self) -> BossStatus:
        keys = self.children.keys()
        return BossStatus(
            keys=keys,
            live={k: self.children.is_live(k) for k in keys},
            addresses={k: self.children.address(k) for k in keys},
            gave_up=list(self.gave_up),
        )

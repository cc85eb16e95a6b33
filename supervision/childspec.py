"""How a supervisor starts and restarts a child (OTP's child specification)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class RestartType(StrEnum):
    """When an exited child is started again.

    permanent: always; transient: only after an abnormal exit (the default for
    entities: a finished entity stays finished); temporary: never."""

    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


class Strategy(StrEnum):
    """Which children restart when one child crashes."""

    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"


@dataclass(frozen=True)
class Intensity:
    """More than `max_restarts` restarts of one child within `max_seconds`
    make the supervisor give up on that child."""

    max_restarts: int = 3
    max_seconds: float = 5.0


@dataclass(frozen=True)
class ChildSpec:
    """`init` is the child's own first message, sent again at every restart:
    the child restores itself from it (and from storage), the supervisor
    holds no entity state. `actor_class` is a class or a "module.Class"
    name, as Thespian's createActor takes it."""

    key: str
    actor_class: type | str
    init: Any
    restart: RestartType = RestartType.TRANSIENT

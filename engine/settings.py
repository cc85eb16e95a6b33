"""What every entity actor needs to find its storage and behave alike."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    """Given to `boot_engine`; the Engine hands it down to every actor it starts."""

    storage_url: str
    idle_timeout_s: float | None = None
    die_with_parent: bool = False
    cron: bool = False
    nodes: int = 1  # node processes hosting the work (the daemon's default: the core count)
    turn_max_s: float = 0.01  # a node's turn ends when its actors are quiet, or after this long ...
    turn_max_writes: int = 500  # ... or this many rows written: then it commits, once

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
    webhook_auth_required: bool = False  # refuse webhook triggers without auth (the daemon, on a public address)
    heartbeat_timeout_s: float | None = None  # a node silent this long is killed and restarted (None: never)
    heartbeat_s: float = 1.0  # how often the Engine beats its nodes; a node that missed 3 beats is not answering


def settings_problem(settings: Settings) -> str | None:
    """What is wrong with `settings`, in words; None when nothing is."""
    if settings.nodes < 1:
        return f"an engine needs at least one node, not {settings.nodes}"
    if not settings.turn_max_s > 0:
        return f"turn_max_s must be a positive number of seconds, not {settings.turn_max_s}"
    if settings.turn_max_writes < 1:
        return f"turn_max_writes must be at least 1, not {settings.turn_max_writes}"
    if settings.heartbeat_timeout_s is not None and not settings.heartbeat_timeout_s > 0:
        return f"heartbeat_timeout_s must be a positive number of seconds or None, not {settings.heartbeat_timeout_s}"
    if not settings.heartbeat_s > 0:
        return f"heartbeat_s must be a positive number of seconds, not {settings.heartbeat_s}"
    return None


def is_answering(silent_s: float, settings: Settings) -> bool:
    """A part that missed three beats in a row does not answer."""
    return silent_s <= 3 * settings.heartbeat_s

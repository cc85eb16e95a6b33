"""Durable timers: the built-in `timer` transition waits until a deadline.

The deadline is computed once, when the transition's task is created (a
token reached its in-place), and stored with the task; after any crash the
task waits for what is left of it, or fires at once if it has passed. No
thread sleeps: the task sets a wakeup, and the Engine wakes the tasks of
passivated cases that are due. The task takes its tokens only when it fires,
so a timer in a deferred choice loses to a competitor that takes them first.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from petriflow.engine.document import is_number
from petriflow.engine.workflow import Transition

EXECUTOR = "timer"


def instant(text: str) -> datetime:
    """An ISO-8601 instant; one without an offset is read as UTC, as the document says."""
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def param_problems(params: dict[str, Any]) -> list[str]:
    """What is wrong with a timer's params: exactly one of `seconds` (a number
    >= 0) and `until` (an ISO-8601 instant in UTC)."""
    given = [key for key in ("seconds", "until") if key in params]
    if len(given) != 1:
        return ["a timer takes exactly one of params.seconds (a number >= 0) or params.until (ISO-8601 UTC)"]
    if given == ["seconds"]:
        seconds = params["seconds"]
        if not (is_number(seconds) and seconds >= 0):
            return [f"timer params.seconds must be a number >= 0, got {seconds!r}"]
        return []
    until = params["until"]
    try:
        if not isinstance(until, str):
            raise ValueError("it must be a string")
        instant(until)
    except ValueError as exc:
        return [f"timer params.until must be an ISO-8601 instant (UTC unless it says otherwise), got {until!r}: {exc}"]
    return []


def deadline(transition: Transition, now: float) -> float | None:
    """When a task of the transition created at `now` fires (epoch seconds);
    None for every transition that is no timer."""
    if transition.executor != EXECUTOR:
        return None
    if "until" in transition.params:
        return instant(str(transition.params["until"])).timestamp()
    return now + float(transition.params.get("seconds", 0))

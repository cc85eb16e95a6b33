"""A storage outage as one part of the daemon lives it: when it began, why,
and how long to wait before trying again.

DBOS and Temporal treat a database that is gone as an outage to wait out:
progress stops, nothing fails. A part (a node, the Engine) that hits a
transient storage error (`storage.errors.StorageUnavailable`) keeps one
`Outage`: it stops taking work, tries again after a pause that doubles
from `first_pause_s` up to `max_pause_s`, and logs one line when the
outage begins and one when it ends, never one per try. These pauses are
not restarts: no supervisor counts them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from petriflow.engine.wire import Error

FIRST_PAUSE_S = 0.1
MAX_PAUSE_S = 30.0


@dataclass
class Outage:
    """`since` is wall-clock seconds while storage is unavailable, None
    while it works. A new outage that begins within `max_pause_s` of the
    last one's end goes on doubling its pause (storage that flaps is not
    hammered), else it starts again at `first_pause_s`."""

    first_pause_s: float = FIRST_PAUSE_S
    max_pause_s: float = MAX_PAUSE_S
    since: float | None = None
    reason: str = ""
    code: str = ""
    tries: int = 0
    pause_s: float = FIRST_PAUSE_S
    ended_at: float | None = None
    trying: bool = False  # a write went through since the outage began: writes are let through again

    @property
    def down(self) -> bool:
        return self.since is not None

    @property
    def refusing(self) -> bool:
        """Writes are refused without being tried: down, and no write has gone through since."""
        return self.since is not None and not self.trying

    def failed(self, code: str, reason: str, now: float) -> bool:
        """A write failed with a transient error; True when this begins an
        outage (the moment to log it). The reason is the latest one."""
        began = self.since is None
        if began:
            recent = self.ended_at is not None and now - self.ended_at <= self.max_pause_s
            self.pause_s = self.pause_s if recent else self.first_pause_s
            self.since, self.tries = now, 0
        self.code, self.reason, self.trying = code, reason, False
        return began

    def succeeded(self, now: float) -> float | None:
        """A write went through while down. The first lets writes through
        again without ending the outage: a full disk may take a small write
        into space it had already given and refuse the next, and that is
        the same outage, not a new one. The next ends it: how long it
        lasted (None: not over yet)."""
        if self.since is None:
            return None
        if not self.trying:
            self.trying = True
            return None
        return self.recovered(now)

    def next_pause_s(self) -> float:
        """How long to wait before the next try; each call doubles the one after."""
        pause = self.pause_s
        self.pause_s = min(pause * 2, self.max_pause_s)
        self.tries += 1
        return pause

    def recovered(self, now: float) -> float:
        """Storage took a write again: the outage is over. How long it lasted."""
        assert self.since is not None, "no outage to recover from"
        lasted = now - self.since
        self.since, self.ended_at, self.trying = None, now, False
        return lasted


def iso_utc(seconds: float) -> str:
    """Wall-clock seconds as clients read the start of an outage: `2026-12-02T08:00:00Z`."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def refusal(outage: Outage) -> Error:
    """What a client asking for a write hears while `outage` lasts."""
    since = iso_utc(outage.since or 0.0)
    return Error(outage.code, f"storage is unavailable since {since}: {outage.reason}; try again later")

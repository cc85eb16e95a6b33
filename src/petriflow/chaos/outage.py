"""The chaos run's storage outages, and its edits of the faulty storage's flag file.

A storage outage adds its line (`*`: every write fails with
`StorageUnavailable`; `full *`: with `StorageFull`) to the flag file, and a
thread takes it out again once the outage has lasted its drawn length,
whatever the run's main loop is doing meanwhile (it goes on submitting, and
sends again what is refused). While the line is in, the thread watches the
keeper's picture (`GET /health`, what `petriflow status` prints) for the
outage; once it is out, for the daemon to say storage is available again.

Every edit of the flag file, the run's as the firing node's
(`storage.faults`), holds an exclusive flock on it: lines written by
the one are never lost to a rewrite by the other.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from petriflow.daemon.control import health

RECOVER_WITHIN_S = 90.0  # once the line is out, how long the daemon may take to report storage available
WATCH_EVERY_S = 0.25


def edit_flag(path: Path, change: Callable[[list[str]], list[str]]) -> list[str]:
    """Rewrite the flag file's lines as `change` returns them, under the
    exclusive flock `storage.faults` takes when a kill line fires; the
    lines as written."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    with os.fdopen(fd, "r+", encoding="utf-8") as flag:
        fcntl.flock(flag, fcntl.LOCK_EX)  # released as the file closes
        lines = change([line.strip() for line in flag if line.strip()])
        flag.seek(0)
        flag.truncate()
        flag.write("".join(f"{line}\n" for line in lines))
        flag.flush()
        os.fsync(flag.fileno())
    return lines


def add_line(path: Path, line: str) -> None:
    edit_flag(path, lambda lines: [*lines, line])


def remove_line(path: Path, line: str) -> bool:
    """Take one `line` out of the flag file; False when it was not there."""
    found = False

    def without(lines: list[str]) -> list[str]:
        nonlocal found
        found = line in lines
        if found:
            lines.remove(line)
        return lines

    edit_flag(path, without)
    return found


class StorageOutage(threading.Thread):
    """One outage: `begin` writes its line; the thread takes it out after
    `outage_s` and waits for the daemon to be done with it. `notes` is what
    it saw; `reported_by_status` and `reported_by_engine` (filled by the
    run's main loop from the Engine's heartbeat) map each part seen waiting
    to its code."""

    def __init__(
        self, flag: Path, line: str, outage_s: float, http_url: str, recover_within_s: float = RECOVER_WITHIN_S
    ) -> None:
        super().__init__(name=f"storage-outage {line!r}", daemon=True)
        self.flag = flag
        self.line = line
        self.outage_s = outage_s
        self.http_url = http_url
        self.recover_within_s = recover_within_s
        self.notes: list[str] = []
        self.reported_by_status: dict[str, str] = {}
        self.reported_by_engine: dict[str, str] = {}
        self.refused: dict[str, int] = {}  # what the run was refused meanwhile, by code
        self.began = self.ended = self.recovered = 0.0
        self.unreported = False  # the daemon still said storage is out when the thread gave up waiting

    def begin(self) -> None:
        add_line(self.flag, self.line)
        self.began = time.monotonic()
        self.start()

    def run(self) -> None:
        try:
            while time.monotonic() - self.began < self.outage_s:
                self._watch()
                time.sleep(WATCH_EVERY_S)
        finally:
            if not remove_line(self.flag, self.line):
                self.notes.append(f"storage outage {self.line!r}: its line was gone from the flag file before its end")
            self.ended = time.monotonic()
        while time.monotonic() - self.ended < self.recover_within_s:
            if self._watch() == []:
                self.recovered = time.monotonic()
                return
            time.sleep(WATCH_EVERY_S)
        self.unreported = True

    def _watch(self) -> list[dict] | None:
        """The outages the keeper's picture reports now (None when it cannot be read)."""
        try:
            picture = health(self.http_url, timeout_s=2.0)
        except (OSError, ValueError):
            return None
        if not picture.get("engine", {}).get("answering", False):
            return None  # the keeper hides the outages while the Engine does not answer
        outages = list(picture.get("storage", {}).get("outages", []))
        for outage in outages:
            self.reported_by_status.setdefault(str(outage.get("part")), str(outage.get("code")))
        return outages

    def summary(self) -> str:
        def parts(seen: dict[str, str]) -> str:
            return ", ".join(f"{part} {code}" for part, code in sorted(seen.items())) or "nothing"

        refused = ", ".join(f"{code}: {n}" for code, n in sorted(self.refused.items())) or "nothing"
        after = (
            f"storage reported available again {self.recovered - self.ended:.1f}s after its end"
            if self.recovered
            else f"the daemon still reported an outage (or no picture) {self.recover_within_s:.0f}s after its end"
        )
        return (
            f"storage outage {self.line!r} for {self.ended - self.began:.1f}s: "
            f"the Engine's heartbeat reported {parts(self.reported_by_engine)}; "
            f"petriflow status reported {parts(self.reported_by_status)}; "
            f"refused meanwhile: {refused}; {after}"
        )

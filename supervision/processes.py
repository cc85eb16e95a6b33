"""Find and end the processes of one actor system by pid, from /proc.

Thespian's multiproc admin calls setsid(), so every process of one actor
system (admin, logger, actors, and orphans of SIGKILLed actors) shares the
admin's session id, while the caller keeps its own. Processes are never
looked up or killed by name.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    sid: int
    state: str

    @property
    def zombie(self) -> bool:
        """Dead, waiting to be reaped: nothing left to kill or wait for."""
        return self.state in ("Z", "X")


def proc_info(pid: int) -> ProcInfo | None:
    """The process's /proc/<pid>/stat fields we need, or None if it is gone."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces: split after it.
    fields = stat[stat.rindex(")") + 2 :].split()
    return ProcInfo(pid=pid, state=fields[0], ppid=int(fields[1]), sid=int(fields[3]))


def all_processes() -> list[ProcInfo]:
    infos = (proc_info(int(entry.name)) for entry in _PROC.iterdir() if entry.name.isdigit())
    return [info for info in infos if info is not None]


def is_alive(pid: int) -> bool:
    info = proc_info(pid)
    return info is not None and not info.zombie


def session_pids(sid: int) -> list[int]:
    """Live (non-zombie) processes whose session id is `sid`."""
    return sorted(p.pid for p in all_processes() if p.sid == sid and not p.zombie)


def children_of(pid: int, *, include_zombies: bool = False) -> list[int]:
    return sorted(p.pid for p in all_processes() if p.ppid == pid and (include_zombies or not p.zombie))


def kill_session(sid: int) -> list[int]:
    """SIGKILL every live process of session `sid`; returns their pids.

    Refuses the caller's own session, which would take the caller down."""
    if sid <= 1 or sid == os.getsid(0):
        raise ValueError(f"refusing to kill session {sid}: it is the caller's or the system's")
    pids = session_pids(sid)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pids


def wait_until_gone(pids: list[int], timeout_s: float = 5.0) -> list[int]:
    """Wait until none of `pids` is alive; returns those still alive at the timeout."""
    deadline = time.monotonic() + timeout_s
    alive = [pid for pid in pids if is_alive(pid)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = [pid for pid in alive if is_alive(pid)]
    return alive


def process_pss_kb(pid: int) -> int | None:
    """Proportional set size of a process in kB (memory it really costs), if known."""
    try:
        rollup = (_PROC / str(pid) / "smaps_rollup").read_text()
    except OSError:
        return None
    for line in rollup.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return None

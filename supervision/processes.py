"""Find and end the processes of one actor system by pid, with psutil.

Thespian's multiproc admin calls setsid(), so every process of one actor
system (admin, logger, actors, and orphans of SIGKILLed actors) shares the
admin's session id, while the caller keeps its own. Processes are never
looked up or killed by name: a name only tells whether a pid found by its
session or its pid file still runs petriflow (`is_petriflow_process`).
"""

from __future__ import annotations

import os
import signal
import time

import psutil

_GONE = (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied)


def _status(pid: int) -> str | None:
    try:
        return psutil.Process(pid).status()
    except _GONE:
        return None


def is_alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped (nothing left to kill or wait for)."""
    return _status(pid) not in (None, psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)


def is_stopped(pid: int) -> bool:
    """Stopped by a signal or a debugger (SIGSTOP): hung, whatever it holds
    or waits for, as opposed to one blocked waiting for a lock."""
    return _status(pid) in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP)


def session_of(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


def session_pids(sid: int) -> list[int]:
    """Live (non-zombie) processes whose session id is `sid`."""
    return sorted(pid for pid in psutil.pids() if session_of(pid) == sid and is_alive(pid))


def children_of(pid: int, *, include_zombies: bool = False) -> list[int]:
    try:
        children = psutil.Process(pid).children()
    except _GONE:
        return []
    return sorted(c.pid for c in children if include_zombies or is_alive(c.pid))


def is_petriflow_process(pid: int) -> bool:
    """Whether `pid` still runs petriflow: a pid from a stale pid file or a
    session may have been reused by an unrelated process since."""
    try:
        return any("petriflow" in part for part in psutil.Process(pid).cmdline())
    except _GONE:
        return False


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
        return int(psutil.Process(pid).memory_full_info().pss) // 1024
    except (*_GONE, AttributeError):
        return None

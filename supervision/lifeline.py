"""Tie an actor's process to its parent's: when the parent dies, so does it.

Thespian does not end the children of an actor whose process was SIGKILLed:
they are re-parented to init and keep running, so a restored parent would
start a second actor for the same entity. On Linux the kernel does the work
(`prctl(PR_SET_PDEATHSIG, SIGKILL)`); elsewhere the actor polls
`os.getppid()` (see SupervisedActor).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from typing import NoReturn

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, value: int) -> bool:
    """Linux's prctl(2); False where it is not available or refused."""
    if not sys.platform.startswith("linux"):
        return False
    return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0


def creator_pid() -> int:
    """Pid of the process that created this one.

    multiprocessing records it in the parent before forking, so it is right
    even if that parent died before this process could look at getppid()."""
    parent = multiprocessing.parent_process()
    return parent.pid if parent is not None and parent.pid is not None else os.getppid()


def arm_parent_death_signal() -> bool:
    """Ask the kernel to SIGKILL this process when its parent dies.

    Returns False where that is not available (not Linux, or prctl refused):
    the caller must then poll `orphaned`."""
    return _prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))


def orphaned(creator: int) -> bool:
    """True once the process that created this one is gone (we were
    re-parented), including before the death signal was armed."""
    return os.getppid() != creator


def die() -> NoReturn:
    """Exit the way the kernel's death signal would: at once, no cleanup."""
    os.kill(os.getpid(), signal.SIGKILL)
    raise SystemExit(1)  # not reached: SIGKILL cannot be caught


def become_subreaper() -> bool:
    """Have orphaned descendants (actors whose parent was SIGKILLed) re-parented
    to this process instead of init, so a whole daemon is one process tree."""
    return _prctl(_PR_SET_CHILD_SUBREAPER, 1)

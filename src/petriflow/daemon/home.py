"""The daemon's home: the folder that holds its storage, pid file, state file and logs, one daemon at a time."""

from __future__ import annotations

import errno
import fcntl
from pathlib import Path

from petriflow.daemon.config import DaemonConfig, DaemonError
from petriflow.engine.errors import PetriflowError
from petriflow.storage.store import open_storage
from petriflow.supervision import processes


def running_pid(config: DaemonConfig) -> int | None:
    """The pid of the daemon serving this home, or None; a pid file left by a
    killed daemon is stale and ignored."""
    try:
        pid = int(config.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if processes.is_alive(pid) and processes.is_petriflow_process(pid) else None


def _unwritable(home: Path, exc: OSError) -> DaemonError:
    return DaemonError(f"cannot write to home {home}: {exc.strerror}; choose another with --home or PETRIFLOW_HOME")


def prepare_home(home: Path) -> None:
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable(home, exc) from None


class HomeLock:
    """An exclusive lock on the home, held for the daemon's life: a second
    daemon on the same home is refused even before any pid file exists."""

    def __init__(self, home: Path) -> None:
        prepare_home(home)
        try:
            self.file = open(home / "daemon.lock", "a+")
        except OSError as exc:
            raise _unwritable(home, exc) from None
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self.file.close()
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise DaemonError(
                    f"another petriflow daemon is using home {home}; stop it first (petriflow stop --home {home})"
                ) from None
            raise

    def release(self) -> None:
        self.file.close()


def check_storage(config: DaemonConfig) -> None:
    """Open the storage once before any actor starts: a corrupted file, one
    from a newer petriflow or an unknown URL is refused here, untouched, with
    what to do, instead of crashing every actor that opens it."""
    try:
        open_storage(config.storage_url).close()
    except (PetriflowError, OSError) as exc:
        detail = exc.message if isinstance(exc, PetriflowError) else str(exc)
        raise DaemonError(f"cannot open storage {config.storage_url}: {detail}") from None

"""The daemon under test: started with `petriflow start` in the run's home, killed and restarted by the run."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from petriflow import daemon
from petriflow.supervision import processes


class Interrupted(Exception):
    pass


@dataclass
class Daemon:
    home: Path
    port: int
    http_port: int
    env: dict[str, str]
    storage: str | None = None  # its storage URL (default: the home's SQLite file)
    sessions: set[int] = field(default_factory=set)
    pids: set[int] = field(default_factory=set)

    @property
    def config(self) -> daemon.DaemonConfig:
        return daemon.resolve_config(
            home=str(self.home), port=self.port, http_port=self.http_port, storage=self.storage, env={}
        )

    def start(self) -> None:
        """As a user does: `petriflow start`."""
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "petriflow",
                "start",
                "--home",
                str(self.home),
                "--port",
                str(self.port),
                "--http-port",
                str(self.http_port),
                *(["--storage", self.storage] if self.storage else []),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env=self.env,
            stdin=subprocess.DEVNULL,
        )
        self._note()
        if done.returncode != 0:
            raise RuntimeError(f"petriflow start failed ({done.returncode}): {done.stderr.strip() or done.stdout}")

    def _note(self) -> None:
        """Remember the daemon's pid and its actor system's session, to end them by pid."""
        pid = daemon.running_pid(self.config)
        if pid:
            self.pids.add(pid)
        sid = self.actor_sid()
        if sid:
            self.sessions.add(sid)

    def actor_sid(self) -> int | None:
        return daemon.actor_sid(self.config)

    def pid(self) -> int | None:
        return daemon.running_pid(self.config)

    def members(self) -> set[int]:
        sid = self.actor_sid()
        return set(processes.session_pids(sid)) if sid else set()

    def kill_everything(self) -> list[int]:
        self._note()
        return daemon.kill_all(self.pid(), self.actor_sid())

    def stop(self) -> None:
        """Stop cleanly, then SIGKILL by pid whatever of any incarnation is left."""
        self._note()
        with contextlib.suppress(Exception):
            daemon.stop(self.config, timeout_s=20)
        leftovers = [p for p in self.pids if processes.is_alive(p) and processes.is_petriflow_process(p)]
        for sid in self.sessions:
            leftovers += [p for p in processes.session_pids(sid) if processes.is_petriflow_process(p)]
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        processes.wait_until_gone(leftovers, 10)

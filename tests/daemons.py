"""Running the real daemon from bin/ for a test, and ending every process of
it by pid afterwards, whatever the test did to it."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from petriflow import daemon
from petriflow.client import Client
from petriflow.supervision import processes
from petriflow.system import free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "bin" / "petriflow"


@dataclass
class RunningDaemon:
    home: Path
    port: int
    http_port: int
    env: dict[str, str]

    @property
    def config(self) -> daemon.DaemonConfig:
        return daemon.resolve_config(home=str(self.home), port=self.port, http_port=self.http_port, env={})

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(BIN), *args, "--home", str(self.home), "--port", str(self.port)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
        )

    def start(self) -> subprocess.CompletedProcess:
        return self.cli("start", "--http-port", str(self.http_port))

    def pid(self) -> int | None:
        return daemon.running_pid(self.config)

    def client(self) -> Client:
        return daemon.connect(self.config)

    def status(self) -> dict:
        return json.loads(self.cli("status", "--json").stdout)

    def kill_everything(self) -> list[int]:
        return daemon.kill_all(self.pid(), daemon.actor_sid(self.config))


@contextlib.contextmanager
def daemon_in(home: Path, **env: str) -> Iterator[RunningDaemon]:
    """A daemon home on free loopback ports; not started. Afterwards the
    daemon is stopped and any process of it left is killed by pid."""
    running = RunningDaemon(home=home, port=free_port(), http_port=free_port(), env={**os.environ, **env})
    try:
        yield running
    finally:
        pid = running.pid()
        tree = [pid] + daemon.processes_of(pid) if pid else []
        running.cli("stop", timeout=60)
        for member in processes.wait_until_gone(tree, 10):
            with contextlib.suppress(ProcessLookupError):
                os.kill(member, signal.SIGKILL)
        shutil.rmtree(running.config.metrics_dir, ignore_errors=True)  # a SIGKILLed daemon leaves it

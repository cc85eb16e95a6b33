"""The two bases measured: the embedded engine in this process, and the real daemon as a child process."""

from __future__ import annotations

import contextlib
import cProfile
import dataclasses
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from petriflow.bench.environment import BENCH
from petriflow.system import free_port

live_daemons: list[DaemonProcess] = []


class Embedded:
    """simpleSystemBase: every actor runs in this process, inside the client's asks."""

    base = "embedded"

    def __init__(self, home: Path, idle_timeout_s: float | None = None) -> None:
        from petriflow import logs
        from petriflow.client import Client, boot_engine
        from petriflow.engine.settings import Settings
        from petriflow.system import open_actor_system

        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.storage_path = home / "petriflow.db"
        self.asys = open_actor_system("simpleSystemBase")
        logs.configure(str(home / "petriflow.log"))  # the bench is the application here
        boot_engine(self.asys, Settings(storage_url=f"sqlite:///{self.storage_path}", idle_timeout_s=idle_timeout_s))
        self.client = Client(self.asys, timeout_s=600)

    def close(self) -> None:
        from petriflow.system import close_actor_system

        close_actor_system(self.asys)


class DaemonProcess:
    """The real daemon (`petriflow.daemon.Daemon.serve`) as a child process of the bench."""

    base = "daemon"

    def __init__(
        self,
        home: Path,
        idle_timeout_s: float = 300.0,
        profile_dir: Path | None = None,
        nodes: int | None = None,
        ingress_queue: int | None = None,  # None: the daemon's default
    ) -> None:
        from petriflow import daemon

        home.mkdir(parents=True, exist_ok=True)
        self.home = home
        self.storage_path = home / "petriflow.db"
        port = free_port()
        self.config = daemon.DaemonConfig(
            home=str(home),
            port=port,
            http_port=next(p for p in iter(free_port, None) if p != port),
            storage_url=f"sqlite:///{self.storage_path}",
            idle_timeout_s=idle_timeout_s,
            nodes=nodes or os.cpu_count() or 1,  # as `petriflow start` runs it
        )
        if ingress_queue:
            self.config = dataclasses.replace(self.config, ingress_queue=ingress_queue)
        self.profile_dir = profile_dir
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self, timeout_s: float = 60.0) -> float:
        """Launch and wait until the Engine answers; returns the seconds it took."""
        from petriflow import daemon
        from petriflow.client import Client
        from petriflow.engine.errors import PetriflowError

        spec = {
            "home": self.config.home,
            "port": self.config.port,
            "http_port": self.config.http_port,
            "storage_url": self.config.storage_url,
            "idle_timeout_s": self.config.idle_timeout_s,
            "nodes": self.config.nodes,
            "ingress_queue": self.config.ingress_queue,
            "profile_dir": str(self.profile_dir) if self.profile_dir else None,
        }
        out = open(self.home / "daemon.out", "ab")
        began = time.perf_counter()
        self.proc = subprocess.Popen(
            [*BENCH, "--_serve-daemon", json.dumps(spec)], stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
        out.close()
        live_daemons.append(self)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = (self.home / "daemon.out").read_text(errors="replace").strip().splitlines()[-3:]
                raise RuntimeError(f"the daemon exited at start: {' / '.join(tail)}")
            if daemon.running_pid(self.config) == self.proc.pid and self.config.state_file.exists():
                try:
                    client = Client.connect(self.config.port, timeout_s=600)
                    client.ping()
                    self.client = client
                    return time.perf_counter() - began
                except (OSError, PetriflowError, TimeoutError):
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"the daemon did not answer within {timeout_s}s; see {self.home / 'daemon.out'}")

    @property
    def actor_sid(self) -> int | None:
        from petriflow import daemon

        return daemon.actor_sid(self.config)

    def pids(self) -> list[int]:
        """The daemon's own process and every process of its actor system."""
        from petriflow.supervision import processes

        sid = self.actor_sid
        own = [self.proc.pid] if self.proc and processes.is_alive(self.proc.pid) else []
        return own + (processes.session_pids(sid) if sid else [])

    def kill_everything(self) -> list[int]:
        """SIGKILL the daemon and every process of its actor system until none is left."""
        from petriflow import daemon

        killed = daemon.kill_all(self.proc.pid if self.proc else None, self.actor_sid)
        if self.proc:
            self.proc.wait(10)
        return sorted(set(killed))

    def close(self) -> None:
        from petriflow import daemon

        if self in live_daemons:
            live_daemons.remove(self)
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            daemon.stop(self.config, timeout_s=60)
        finally:
            if self.proc.poll() is None:
                self.kill_everything()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)


def open_engine(base: str, home: Path, **kwargs: Any) -> Embedded | DaemonProcess:
    return Embedded(home) if base == "embedded" else DaemonProcess(home, **kwargs)


def serve_daemon(spec_json: str) -> int:
    """Hidden mode `--_serve-daemon SPEC`: run the real daemon in the foreground.

    With `profile_dir`, every actor process (forked from this one through
    Thespian's admin, so it inherits the patch) runs under cProfile and
    writes `<pid>.prof` there when its actor exits."""
    from petriflow import daemon

    spec = json.loads(spec_json)
    if spec.get("profile_dir"):
        _profile_actor_processes(Path(spec["profile_dir"]))
    config = daemon.DaemonConfig(
        home=spec["home"],
        port=spec["port"],
        http_port=spec["http_port"],
        storage_url=spec["storage_url"],
        idle_timeout_s=spec["idle_timeout_s"],
        nodes=spec["nodes"],
        ingress_queue=spec["ingress_queue"],
    )
    return daemon.Daemon(config).serve()


def _profile_actor_processes(directory: Path) -> None:
    from thespian.system import multiprocCommon

    directory.mkdir(parents=True, exist_ok=True)
    original = multiprocCommon.startChild

    def startChild(*args: Any) -> None:
        profiler = cProfile.Profile()
        profiler.enable()
        try:
            original(*args)
        finally:
            profiler.disable()
            kind = str(args[0]).rpartition(".")[-1]
            profiler.dump_stats(str(directory / f"{kind}-{os.getpid()}.prof"))

    multiprocCommon.startChild = startChild

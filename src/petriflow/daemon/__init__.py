"""The petriflow daemon: the long-running process that hosts an actor system.

`serve` runs in the foreground (what systemd or a container runs); `start`
launches it in the background and returns once it answers. The daemon's
process is the actor system's keeper, as OTP has `heart`: it is a child
subreaper, so every actor process descends from it, it restarts the Engine
if the Engine's process dies (the new Engine restores everything from
storage), it fires cron triggers through the Engine, and it serves the
webhook endpoint.

Settings come from flags, then the environment (`PETRIFLOW_HOME`,
`PETRIFLOW_PORT`, `PETRIFLOW_HTTP_PORT`, `PETRIFLOW_STORAGE`), then the
defaults: home `./.petriflow`, admin port 19470, HTTP port 19471, storage
`sqlite:///<home>/petriflow.db`.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import structlog

from petriflow import logs
from petriflow.client import Client, boot_engine
from petriflow.engine.errors import PetriflowError
from petriflow.engine.settings import Settings
from petriflow.engine.views import work_order_json
from petriflow.engine.wire import EngineInfo
from petriflow.ingress.webhook import WebhookServer
from petriflow.storage.store import open_storage
from petriflow.supervision import lifeline, processes
from petriflow.system import MULTIPROC, close_actor_system, open_actor_system, system_session

log = structlog.get_logger("petriflow.daemon")

DEFAULT_PORT = 19470
DEFAULT_HTTP_PORT = 19471


class DaemonError(PetriflowError):
    """The daemon cannot start, stop or be reached; the message says what to do."""

    code = "daemon"


@dataclass(frozen=True)
class DaemonConfig:
    home: str
    port: int
    http_port: int
    storage_url: str
    idle_timeout_s: float = 300.0

    @property
    def pid_file(self) -> Path:
        return Path(self.home) / "daemon.pid"

    @property
    def state_file(self) -> Path:
        return Path(self.home) / "daemon.json"

    @property
    def log_path(self) -> Path:
        return Path(self.home) / "petriflow.log"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


def resolve_config(
    *,
    home: str | None = None,
    port: int | None = None,
    http_port: int | None = None,
    storage: str | None = None,
    env: Mapping[str, str] = os.environ,
) -> DaemonConfig:
    """Flags first, then the environment, then the defaults."""
    home_path = Path(home or env.get("PETRIFLOW_HOME") or ".petriflow").resolve()

    def number(value: int | None, name: str, default: int) -> int:
        raw = value if value is not None else env.get(name)
        try:
            return int(raw) if raw is not None else default
        except ValueError:
            raise DaemonError(f"{name} must be a port number, got {raw!r}") from None

    return DaemonConfig(
        home=str(home_path),
        port=number(port, "PETRIFLOW_PORT", DEFAULT_PORT),
        http_port=number(http_port, "PETRIFLOW_HTTP_PORT", DEFAULT_HTTP_PORT),
        storage_url=storage or env.get("PETRIFLOW_STORAGE") or f"sqlite:///{home_path / 'petriflow.db'}",
    )


def running_pid(config: DaemonConfig) -> int | None:
    """The pid of the daemon serving this home, or None; a pid file left by a
    killed daemon is stale and ignored."""
    try:
        pid = int(config.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if processes.is_alive(pid) and processes.is_petriflow_process(pid) else None


# -- the foreground daemon ------------------------------------------------------------


def _unwritable(home: Path, exc: OSError) -> DaemonError:
    return DaemonError(f"cannot write to home {home}: {exc.strerror}; choose another with --home or PETRIFLOW_HOME")


def prepare_home(home: Path) -> None:
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable(home, exc) from None


class _HomeLock:
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


def _check_storage(config: DaemonConfig) -> None:
    """Open the storage once before any actor starts: a corrupted file, one
    from a newer petriflow or an unknown URL is refused here, untouched, with
    what to do, instead of crashing every actor that opens it."""
    try:
        open_storage(config.storage_url).close()
    except (PetriflowError, OSError) as exc:
        detail = exc.message if isinstance(exc, PetriflowError) else str(exc)
        raise DaemonError(f"cannot open storage {config.storage_url}: {detail}") from None


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


class Daemon:
    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.settings = Settings(
            storage_url=config.storage_url,
            idle_timeout_s=config.idle_timeout_s,
            die_with_parent=True,
            cron=True,
        )

    def serve(self) -> int:
        """Run until SIGTERM or SIGINT; returns the exit status.

        The directory the daemon was started from is put on the import path,
        so executors named `module:attribute` resolve there, as a celery or
        dramatiq worker does; set PYTHONPATH for code elsewhere."""
        config = self.config
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        home_lock = _HomeLock(Path(config.home))
        try:
            if running_pid(config):
                raise DaemonError(f"a petriflow daemon already runs for home {config.home}")
            _check_storage(config)
            logs.configure(str(config.log_path))
            lifeline.become_subreaper()
            try:
                self.asys = open_actor_system(MULTIPROC, admin_port=config.port)
            except RuntimeError as exc:
                raise DaemonError(
                    f"cannot start on port {config.port}: {exc}; choose another with --port or PETRIFLOW_PORT"
                ) from None
            try:
                return self._run()
            finally:
                close_actor_system(self.asys)
                for path in (config.pid_file, config.state_file):
                    path.unlink(missing_ok=True)
        finally:
            home_lock.release()

    def _run(self) -> int:
        self.info = boot_engine(self.asys, self.settings)
        self.client = Client(self.asys)
        webhook = WebhookServer(
            submit=self._locked(lambda trigger, body: self.client.submit_webhook(trigger, body).work_order_id),
            work_order=self._locked(lambda wid: work_order_json(self.client.get_work_order(wid))),
            port=self.config.http_port,
        )
        try:
            webhook.start()
        except OSError as exc:
            raise DaemonError(
                f"cannot serve webhooks on port {self.config.http_port}: {exc.strerror}; "
                f"choose another with --http-port or PETRIFLOW_HTTP_PORT"
            ) from None
        try:
            self._announce()
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.stopping.set())
            log.info(
                "daemon_started",
                pid=os.getpid(),
                port=self.config.port,
                http_url=self.config.http_url,
                storage=self.config.storage_url,
                engine_pid=self.info.pid,
            )
            while not self.stopping.wait(0.5):
                _reap()
                self._keep_engine()
            log.info("daemon_stopping", pid=os.getpid())
            return 0
        finally:
            webhook.stop()

    def _locked(self, call: Callable[..., Any]) -> Callable[..., Any]:
        def locked(*args: Any) -> Any:
            with self.lock:
                return call(*args)

        return locked

    def _announce(self) -> None:
        config = self.config
        session = system_session(self.asys)
        state = {
            **asdict(config),
            "pid": os.getpid(),
            "http_url": config.http_url,
            "started_at": time.time(),
            "actor_sid": session.sid if session else None,
        }
        config.state_file.write_text(json.dumps(state, indent=2))
        config.pid_file.write_text(str(os.getpid()))

    def _keep_engine(self) -> None:
        """heart: a dead Engine is started again and restores everything."""
        if processes.is_alive(self.info.pid):
            return
        log.error("engine_died", pid=self.info.pid)
        with self.lock:
            self.info = boot_engine(self.asys, self.settings)
            self.client = Client(self.asys)  # the old one still addresses the dead Engine
        log.info("engine_restarted", pid=self.info.pid)


# -- controlling a daemon from the command line ---------------------------------------------


def start_background(config: DaemonConfig, timeout_s: float = 30.0) -> int:
    """Launch `petriflow start --foreground` detached and wait until it answers."""
    pid = running_pid(config)
    if pid:
        raise DaemonError(f"a petriflow daemon already runs for home {config.home} (pid {pid})")
    prepare_home(Path(config.home))
    end_orphans(config)
    out = open(Path(config.home) / "daemon.out", "ab")
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "petriflow",
            "start",
            "--foreground",
            "--home",
            config.home,
            "--port",
            str(config.port),
            "--http-port",
            str(config.http_port),
            "--storage",
            config.storage_url,
        ],
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=out,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.poll() is not None:
            tail = (Path(config.home) / "daemon.out").read_text(errors="replace").strip().splitlines()[-3:]
            raise DaemonError(f"the daemon exited at start: {' / '.join(tail) or 'no output'}")
        if running_pid(config) == child.pid and config.state_file.exists():
            try:
                connect(config).ping()
                return child.pid
            except (OSError, PetriflowError, TimeoutError):
                pass
        time.sleep(0.1)
    child.kill()
    raise DaemonError(f"the daemon did not answer within {timeout_s}s; see {Path(config.home) / 'daemon.out'}")


def actor_sid(config: DaemonConfig) -> int | None:
    """The session id of the actor system the daemon of this home announced."""
    try:
        return json.loads(config.state_file.read_text()).get("actor_sid")
    except (OSError, ValueError):
        return None


def kill_all(daemon_pid: int | None, sid: int | None) -> list[int]:
    """SIGKILL the daemon's process and every process of its actor system's
    session, by pid, until none is left (a parent may fork meanwhile): what
    a crash test or a chaos run does to a whole daemon."""
    killed: list[int] = []
    while True:
        victims = ([daemon_pid] if daemon_pid and processes.is_alive(daemon_pid) else []) + (
            processes.session_pids(sid) if sid else []
        )
        if not victims:
            return killed
        for victim in victims:
            try:
                os.kill(victim, signal.SIGKILL)
            except ProcessLookupError:
                pass
        killed += victims
        processes.wait_until_gone(victims, 10.0)


def end_orphans(config: DaemonConfig) -> list[int]:
    """After a daemon was killed, its pid file is stale and its actor system
    may live on without a keeper, holding the port and the home: end every
    process of that system's session by pid."""
    if running_pid(config):
        return []
    sid = actor_sid(config)
    members = processes.session_pids(sid) if sid else []
    # a session id is a pid, and pids are reused: end it only if it is still ours
    killed = processes.kill_session(sid) if members and all(map(processes.is_petriflow_process, members)) else []
    processes.wait_until_gone(killed, 5.0)
    if config.pid_file.exists() or killed:
        log.info("stale_daemon_cleared", pid_file=str(config.pid_file), killed=killed)
    for path in (config.pid_file, config.state_file):
        path.unlink(missing_ok=True)
    return killed


def connect(config: DaemonConfig, timeout_s: float = 30.0) -> Client:
    """A client of the daemon of `config.home`, on the port it recorded when
    it started (so `--home` alone is enough)."""
    if not running_pid(config):
        raise DaemonError(f"no petriflow daemon runs for home {config.home}; start one with petriflow start")
    try:
        port = int(json.loads(config.state_file.read_text())["port"])
    except (OSError, ValueError, KeyError):
        port = config.port
    try:
        return Client.connect(port, timeout_s)
    except ConnectionRefusedError:
        raise DaemonError(
            f"the daemon of home {config.home} does not answer on port {port}; see {config.log_path}"
        ) from None


def stop(config: DaemonConfig, timeout_s: float = 20.0) -> bool:
    """Stop the daemon cleanly; any process of it left after the timeout is
    SIGKILLed by pid. Returns False when none was running."""
    pid = running_pid(config)
    if not pid:
        return bool(end_orphans(config))
    tree = [pid] + processes_of(pid)
    os.kill(pid, signal.SIGTERM)
    leftovers = processes.wait_until_gone(tree, timeout_s)
    for straggler in leftovers:
        try:
            os.kill(straggler, signal.SIGKILL)
        except ProcessLookupError:
            pass
    processes.wait_until_gone(leftovers, 5.0)
    return True


def processes_of(pid: int) -> list[int]:
    """Every descendant of the daemon's process."""
    found, pending = [], [pid]
    while pending:
        for child in processes.children_of(pending.pop()):
            found.append(child)
            pending.append(child)
    return found


def status(config: DaemonConfig) -> dict[str, Any]:
    pid = running_pid(config)
    result: dict[str, Any] = {
        "running": bool(pid),
        "pid": pid,
        "port": config.port,
        "home": config.home,
        "storage": config.storage_url,
        "http_url": config.http_url,
        "work_orders": {},
    }
    if not pid:
        return result
    try:
        state = json.loads(config.state_file.read_text())
        result.update(
            port=state["port"],
            storage=state["storage_url"],
            http_url=state["http_url"],
            uptime_s=round(time.time() - state["started_at"], 1),
        )
        info: EngineInfo = connect(config).ping()
        result.update(work_orders=info.work_orders, engine_pid=info.pid, live_work_orders=info.live_work_orders)
    except (OSError, ValueError, KeyError, PetriflowError, TimeoutError) as exc:
        result["error"] = str(exc)
    return result

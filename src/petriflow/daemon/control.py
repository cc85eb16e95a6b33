"""Controlling a daemon from outside: start it in the background, stop it,
ask its status, and clear what a killed one left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import structlog

from petriflow.client import Client
from petriflow.console.access import login_url, read_token
from petriflow.daemon.config import DaemonConfig, DaemonError
from petriflow.daemon.home import prepare_home, running_pid
from petriflow.engine.errors import PetriflowError
from petriflow.engine.wire import EngineInfo
from petriflow.supervision import processes

log = structlog.get_logger("petriflow.daemon")


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
            "--nodes",
            str(config.nodes),
            "--http-host",
            config.http_host,
            "--ingress-queue",
            str(config.ingress_queue),
            "--heartbeat-timeout",
            str(config.heartbeat_timeout_s),
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
    ours = sid is not None and members and all(map(processes.is_petriflow_process, members))
    killed = processes.kill_session(sid) if ours and sid is not None else []
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


STATUS_TIMEOUT_S = 10.0  # a ping surveys the nodes, which may take up to 5 s for one that does not answer


def health(http_url: str, timeout_s: float = 3.0) -> dict[str, Any]:
    """The keeper's picture of its parts (`GET /health`); the keeper answers
    it alone, so it answers while the Engine does not."""
    try:
        with urllib.request.urlopen(f"{http_url}/health", timeout=timeout_s) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as refused:  # 503: a part does not answer
        with refused:
            return json.loads(refused.read())


def problems_in(picture: dict[str, Any]) -> list[str]:
    """Each part that does not answer, and a storage outage, in words."""
    found = []
    engine = picture.get("engine", {})
    if not engine.get("answering", True):
        found.append(f"the engine (pid {engine.get('pid')}) has not answered for {engine.get('silent_s', 0):.0f}s")
    for node_id, node in sorted(picture.get("nodes", {}).items()):
        if not node.get("answering", True) and engine.get("answering", True):
            found.append(f"node {node_id} (pid {node.get('pid')}) has not answered for {node.get('silent_s', 0):.0f}s")
    outages = sorted(picture.get("storage", {}).get("outages", []), key=lambda o: o["since"])
    if outages:
        first = outages[0]
        parts = ", ".join(o["part"] for o in outages)
        found.append(f"storage unavailable since {first['since']}: {first['reason']} (waiting: {parts})")
    return found


def status(config: DaemonConfig) -> dict[str, Any]:
    """What `petriflow status` prints: `problems` names each part that does
    not answer (then `healthy` is false)."""
    pid = running_pid(config)
    result: dict[str, Any] = {
        "running": bool(pid),
        "pid": pid,
        "port": config.port,
        "home": config.home,
        "storage": config.storage_url,
        "http_url": config.http_url,
        "work_orders": {},
        "healthy": False,
        "problems": [],
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
    except (OSError, ValueError, KeyError) as exc:
        result["problems"] = [f"the daemon's state file cannot be read: {exc}"]
        return result
    try:
        picture = health(result["http_url"])
    except (OSError, ValueError) as exc:
        result["problems"] = [f"the HTTP server at {result['http_url']} does not answer: {exc}"]
        return result
    result["health"] = picture
    result["problems"] = problems_in(picture)
    result["healthy"] = not result["problems"]
    if not picture.get("engine", {}).get("answering", True):
        return result
    try:
        info: EngineInfo = connect(config, STATUS_TIMEOUT_S).ping()
        result.update(
            work_orders=info.work_orders,
            engine_pid=info.pid,
            live_work_orders=info.live_work_orders,
            nodes=info.nodes,
            waiting_for_slot=info.waiting_for_slot,
            timers=info.timers,
        )
    except (OSError, PetriflowError, TimeoutError) as exc:
        result["problems"].append(f"the engine does not answer: {exc}")
        result["healthy"] = False
    return result


def console_url(config: DaemonConfig) -> str:
    """The console's sign-in URL: where the running daemon serves HTTP, with
    the home's token; raises DaemonError when no daemon runs for the home."""
    if not running_pid(config):
        raise DaemonError(f"no petriflow daemon runs for home {config.home}; start it first (petriflow start)")
    try:
        http_url = json.loads(config.state_file.read_text())["http_url"]
        token = read_token(config.home)
    except (OSError, ValueError, KeyError) as exc:
        raise DaemonError(f"cannot read the console's address or token in {config.home}: {exc}") from None
    return login_url(http_url, token)

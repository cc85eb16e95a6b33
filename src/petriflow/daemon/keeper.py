"""The foreground daemon: the keeper of its actor system, as OTP has `heart`.

It is a child subreaper, so every actor process descends from it; it
restarts the Engine if the Engine's process dies or stops answering its
heartbeats (the new Engine restores everything from storage), and serves
HTTP: webhooks, work orders, health, metrics and the console. The Engine fires cron
triggers itself and beats its own nodes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import structlog

from petriflow import logs, metrics
from petriflow.client import Client, boot_engine
from petriflow.console.access import Access, ensure_token
from petriflow.daemon.config import DaemonConfig, DaemonError
from petriflow.daemon.heart import Heart
from petriflow.daemon.home import HomeLock, check_storage, running_pid
from petriflow.engine.document import workflow_from_document
from petriflow.engine.outage import iso_utc
from petriflow.engine.settings import Settings, is_answering
from petriflow.engine.webhook_auth import unauthenticated_webhooks
from petriflow.ingress.gate import EngineGate
from petriflow.ingress.link import EngineLink
from petriflow.ingress.server import IngressServer
from petriflow.storage import open_backend
from petriflow.supervision import lifeline, processes
from petriflow.system import MULTIPROC, close_actor_system, open_actor_system, system_session

log = structlog.get_logger("petriflow.daemon")

ANSWER_TIMEOUT_S = 5.0
"""How long an HTTP request waits for the Engine, in the queue or asked, before it is answered 503."""
INGRESS_WORKERS = 4


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
        self.settings = Settings(
            storage_url=config.storage_url,
            idle_timeout_s=config.idle_timeout_s,
            die_with_parent=True,
            cron=True,
            nodes=config.nodes,
            heartbeat_timeout_s=config.heartbeat_timeout_s,
            webhook_auth_required=not config.http_is_loopback,
        )

    def serve(self) -> int:
        """Run until SIGTERM or SIGINT; returns the exit status.

        The directory the daemon was started from is put on the import path,
        so executors named `module:attribute` resolve there, as a celery or
        dramatiq worker does; set PYTHONPATH for code elsewhere."""
        config = self.config
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        home_lock = HomeLock(Path(config.home))
        try:
            if running_pid(config):
                raise DaemonError(f"a petriflow daemon already runs for home {config.home}")
            # before anything records a metric: every process of the daemon then counts into it
            metrics.use_directory(config.metrics_dir)
            check_storage(config)
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
                shutil.rmtree(config.metrics_dir, ignore_errors=True)
        finally:
            home_lock.release()

    def _run(self) -> int:
        self.info = boot_engine(self.asys, self.settings)
        self.storage = open_backend(self.config.storage_url)  # only to ask who holds its write lock
        self._refuse_open_webhooks()
        self.heart = Heart(lambda: EngineLink(self.asys, self.settings.heartbeat_s), self.settings.heartbeat_s)
        self.gate = EngineGate(
            lambda: EngineLink(self.asys, ANSWER_TIMEOUT_S),
            size=self.config.ingress_queue,
            workers=INGRESS_WORKERS,
            answer_timeout_s=ANSWER_TIMEOUT_S,
        )
        console = Access(ensure_token(self.config.home), public=not self.config.http_is_loopback)
        server = IngressServer(
            self.gate, host=self.config.http_host, port=self.config.http_port, health=self._health, console=console
        )
        try:
            server.start()
        except OSError as exc:
            raise DaemonError(
                f"cannot serve HTTP on {self.config.http_host} port {self.config.http_port}: "
                f"{os.strerror(exc.errno) if exc.errno else exc}; "
                f"choose another with --http-host/--http-port or PETRIFLOW_HTTP_HOST/PETRIFLOW_HTTP_PORT"
            ) from None
        self.gate.start()
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
                self._beat()
            log.info("daemon_stopping", pid=os.getpid())
            return 0
        finally:
            server.stop()
            self.gate.stop()
            self.heart.reset_link()
            self.storage.close()

    def _refuse_open_webhooks(self) -> None:
        """On a public address, every webhook trigger must ask for auth."""
        if self.config.http_is_loopback:
            return
        documents = Client(self.asys).list_workflows()
        open_triggers = unauthenticated_webhooks([workflow_from_document(d) for d in documents])
        if open_triggers:
            raise DaemonError(
                f"refusing to serve HTTP on {self.config.http_host}, which is not loopback, while webhook "
                f"triggers {', '.join(map(repr, open_triggers))} have no auth: give them auth api_key or "
                "hmac_sha256, or bind 127.0.0.1"
            )

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
        """heart: a dead Engine is started again and restores everything;
        meanwhile HTTP requests for it are answered 503."""
        if processes.is_alive(self.info.pid):
            return
        log.error("engine_died", pid=self.info.pid)
        self.gate.engine_down("it died and is being restarted")
        self.info = boot_engine(self.asys, self.settings)
        metrics.count_restart("engine")
        self.gate.engine_replaced()  # the old links still address the dead Engine
        self.heart.restarted()
        self.gate.engine_up()  # it booted: it answered
        log.info("engine_restarted", pid=self.info.pid)

    def _beat(self) -> None:
        """An Engine that misses its heartbeats is first refused work, then
        past `heartbeat_timeout_s` SIGKILLed, and `_keep_engine` starts a new one."""
        silent = self.heart.beat()
        if is_answering(silent, self.settings):
            self.gate.engine_up()
            return
        self.gate.engine_down(f"it has not answered its heartbeat for {silent:.0f}s")
        if silent <= self.config.heartbeat_timeout_s:
            return
        holder = self.storage.writer_pid()
        nodes = {node.pid: node.node_id for node in self.heart.liveness.nodes} if self.heart.liveness else {}
        waiting = holder is not None and holder != self.info.pid and not processes.is_stopped(self.info.pid)
        if waiting and holder not in nodes and holder != os.getpid():
            # another program holds the database: the Engine waits for it, an outage, not a hang
            log.warning("engine_waiting_for_storage", pid=self.info.pid, silent_s=round(silent, 1), lock_holder=holder)
            self.heart.forgive()
            return
        if waiting and holder is not None and holder in nodes:
            # the Engine waits for the write lock a hung node holds: the node is what hangs
            # (a stopped Engine waits for nothing: then the node holding the lock is only busy)
            log.error(
                "node_unresponsive",
                node_id=nodes[holder],
                pid=holder,
                holds_storage_lock=True,
                silent_engine_s=round(silent, 1),
                action="SIGKILL",
            )
            victim = holder
            self.heart.forgive()  # the Engine gets a full timeout once the lock is free
        else:
            log.error("engine_unresponsive", pid=self.info.pid, silent_s=round(silent, 1), action="SIGKILL")
            victim = self.info.pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
        processes.wait_until_gone([victim], 5.0)

    def _health(self) -> dict[str, Any]:
        """The keeper's picture, for `GET /health` and `petriflow status`."""
        silent = self.heart.silent_s
        engine_ok = is_answering(silent, self.settings) and self.gate.down is None
        liveness = self.heart.liveness
        nodes = {
            node.node_id: {"pid": node.pid, "answering": node.answering and engine_ok, "silent_s": node.silent_s}
            for node in (liveness.nodes if liveness else [])
        }
        outages = [
            {"part": o.part, "since": iso_utc(o.since), "code": o.code, "reason": o.reason}
            for o in (liveness.outages if liveness and engine_ok else [])
        ]
        return {
            "ok": engine_ok and all(node["answering"] for node in nodes.values()) and not outages,
            "engine": {"pid": self.info.pid, "answering": engine_ok, "silent_s": round(silent, 1)},
            "nodes": nodes,
            "storage": {"available": not outages, "outages": outages},
            "ingress": {"queue_depth": self.gate.depth, "queue_size": self.gate.size},
        }

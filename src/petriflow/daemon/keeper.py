"""The foreground daemon: the keeper of its actor system, as OTP has `heart`.

It is a child subreaper, so every actor process descends from it; it
restarts the Engine if the Engine's process dies (the new Engine restores
everything from storage), fires cron triggers through the Engine, and
serves the webhook endpoint."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import structlog

from petriflow import logs
from petriflow.client import Client, boot_engine
from petriflow.daemon.config import DaemonConfig, DaemonError
from petriflow.daemon.home import HomeLock, check_storage, running_pid
from petriflow.engine.settings import Settings
from petriflow.engine.views import work_order_json
from petriflow.ingress.webhook import WebhookServer
from petriflow.supervision import lifeline, processes
from petriflow.system import MULTIPROC, close_actor_system, open_actor_system, system_session

log = structlog.get_logger("petriflow.daemon")


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
            nodes=config.nodes,
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

"""The daemon's settings: flags, then PETRIFLOW_* environment variables, then the defaults."""

from __future__ import annotations

import hashlib
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from petriflow.engine.errors import PetriflowError

DEFAULT_PORT = 19470
DEFAULT_HTTP_PORT = 19471
DEFAULT_HTTP_HOST = "127.0.0.1"
DEFAULT_INGRESS_QUEUE = 1024
DEFAULT_HEARTBEAT_TIMEOUT_S = 10.0


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
    nodes: int = 1  # node processes hosting the work; resolve_config defaults to the core count
    http_host: str = DEFAULT_HTTP_HOST  # a non-loopback address needs auth on every webhook trigger
    ingress_queue: int = DEFAULT_INGRESS_QUEUE  # HTTP requests that may wait for the Engine; more get 503
    heartbeat_timeout_s: float = DEFAULT_HEARTBEAT_TIMEOUT_S  # an Engine or node silent this long is replaced

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
    def metrics_dir(self) -> Path:
        """Where the daemon's processes write their metrics: in memory
        (/dev/shm) where the machine has it, since every count is a write to
        a memory-mapped file that would otherwise be flushed to disk beside
        SQLite's fsyncs; else `<home>/metrics`. One per home."""
        shm = Path("/dev/shm")
        if shm.is_dir() and os.access(shm, os.W_OK):
            return shm / f"petriflow-metrics-{hashlib.sha256(self.home.encode()).hexdigest()[:16]}"
        return Path(self.home) / "metrics"

    @property
    def http_url(self) -> str:
        """Where this machine reaches the HTTP server."""
        host = "127.0.0.1" if self.http_host in ("0.0.0.0", "::", "") else self.http_host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.http_port}"

    @property
    def http_is_loopback(self) -> bool:
        if self.http_host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.http_host).is_loopback
        except ValueError:
            return False  # a host name: it may resolve to anything


def resolve_config(
    *,
    home: str | None = None,
    port: int | None = None,
    http_port: int | None = None,
    storage: str | None = None,
    nodes: int | None = None,
    http_host: str | None = None,
    ingress_queue: int | None = None,
    heartbeat_timeout_s: float | None = None,
    env: Mapping[str, str] = os.environ,
) -> DaemonConfig:
    """Flags first, then the environment, then the defaults."""
    home_path = Path(home or env.get("PETRIFLOW_HOME") or ".petriflow").resolve()

    def number(value: int | None, name: str, default: int, what: str = "a port number") -> int:
        raw = value if value is not None else env.get(name)
        try:
            return int(raw) if raw is not None else default
        except ValueError:
            raise DaemonError(f"{name} must be {what}, got {raw!r}") from None

    node_count = number(nodes, "PETRIFLOW_NODES", os.cpu_count() or 1, "a whole number of nodes")
    if node_count < 1:
        raise DaemonError(f"--nodes (or PETRIFLOW_NODES) must be at least 1, got {node_count}")
    queue = number(ingress_queue, "PETRIFLOW_INGRESS_QUEUE", DEFAULT_INGRESS_QUEUE, "a whole number of requests")
    if queue < 1:
        raise DaemonError(f"--ingress-queue (or PETRIFLOW_INGRESS_QUEUE) must be at least 1, got {queue}")
    raw_timeout = heartbeat_timeout_s if heartbeat_timeout_s is not None else env.get("PETRIFLOW_HEARTBEAT_TIMEOUT")
    try:
        timeout = float(raw_timeout) if raw_timeout is not None else DEFAULT_HEARTBEAT_TIMEOUT_S
    except ValueError:
        raise DaemonError(f"PETRIFLOW_HEARTBEAT_TIMEOUT must be a number of seconds, got {raw_timeout!r}") from None
    if not timeout >= 2:  # NaN too; under 2 s a busy but healthy process would be killed
        raise DaemonError(f"--heartbeat-timeout (or PETRIFLOW_HEARTBEAT_TIMEOUT) must be at least 2 s, got {timeout}")
    return DaemonConfig(
        home=str(home_path),
        port=number(port, "PETRIFLOW_PORT", DEFAULT_PORT),
        http_port=number(http_port, "PETRIFLOW_HTTP_PORT", DEFAULT_HTTP_PORT),
        storage_url=storage or env.get("PETRIFLOW_STORAGE") or f"sqlite:///{home_path / 'petriflow.db'}",
        nodes=node_count,
        http_host=http_host or env.get("PETRIFLOW_HTTP_HOST") or DEFAULT_HTTP_HOST,
        ingress_queue=queue,
        heartbeat_timeout_s=timeout,
    )

"""The daemon's settings: flags, then PETRIFLOW_* environment variables, then the defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from petriflow.engine.errors import PetriflowError

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
    nodes: int = 1  # node processes hosting the work; resolve_config defaults to the core count

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
    nodes: int | None = None,
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
    return DaemonConfig(
        home=str(home_path),
        port=number(port, "PETRIFLOW_PORT", DEFAULT_PORT),
        http_port=number(http_port, "PETRIFLOW_HTTP_PORT", DEFAULT_HTTP_PORT),
        storage_url=storage or env.get("PETRIFLOW_STORAGE") or f"sqlite:///{home_path / 'petriflow.db'}",
        nodes=node_count,
    )

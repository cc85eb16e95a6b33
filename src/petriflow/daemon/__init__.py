"""The petriflow daemon: the long-running process that hosts an actor system.

`Daemon.serve` (keeper) runs in the foreground, what systemd or a container
runs; `start_background` (control) launches it and returns once it
answers. Settings come from flags, then the environment (`PETRIFLOW_HOME`,
`PETRIFLOW_PORT`, `PETRIFLOW_HTTP_PORT`, `PETRIFLOW_STORAGE`), then the
defaults: home `./.petriflow`, admin port 19470, HTTP port 19471, storage
`sqlite:///<home>/petriflow.db` (config).
"""

from typing import TYPE_CHECKING, Any

from petriflow.daemon.config import DEFAULT_HTTP_PORT, DEFAULT_PORT, DaemonConfig, DaemonError, resolve_config
from petriflow.daemon.control import (
    actor_sid,
    connect,
    console_url,
    end_orphans,
    kill_all,
    processes_of,
    start_background,
    status,
    stop,
)
from petriflow.daemon.home import prepare_home, running_pid

if TYPE_CHECKING:
    from petriflow.daemon.keeper import Daemon


def __getattr__(name: str) -> Any:
    """`Daemon` on first use: the keeper brings the HTTP server, the console
    and the metrics (aiohttp, Jinja2, prometheus-client), about 0.5 s of a
    CLI call's 1.2 s, and only `start` needs them."""
    if name == "Daemon":
        from petriflow.daemon.keeper import Daemon

        return Daemon
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_HTTP_PORT",
    "DEFAULT_PORT",
    "Daemon",
    "DaemonConfig",
    "DaemonError",
    "actor_sid",
    "connect",
    "console_url",
    "end_orphans",
    "kill_all",
    "prepare_home",
    "processes_of",
    "resolve_config",
    "running_pid",
    "start_background",
    "status",
    "stop",
]

"""petriflow: an actor-based Petri-net workflow engine on Thespian, modelled on Erlang/OTP.

The public Python API. Embedded, in your own process::

    from petriflow import Client, Settings, Workflow, boot_engine, open_actor_system, close_actor_system

    asys = open_actor_system()                       # simpleSystemBase: every actor in this process
    boot_engine(asys, Settings(storage_url="sqlite:///flows.db"))
    client = Client(asys)

Against a running daemon: ``Client.connect(port)``. Everything else in the
package is its machinery; docs/architecture.md maps it.
"""

from __future__ import annotations

from petriflow.client import Client, EngineTimeout, boot_engine
from petriflow.engine.errors import PetriflowError
from petriflow.engine.settings import Settings
from petriflow.engine.workflow import Workflow
from petriflow.system import close_actor_system, open_actor_system

__all__ = [
    "Client",
    "EngineTimeout",
    "PetriflowError",
    "Settings",
    "Workflow",
    "boot_engine",
    "close_actor_system",
    "open_actor_system",
]

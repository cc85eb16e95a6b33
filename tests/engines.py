"""Running an engine for a test: an actor system on its own loopback port,
the Engine booted on the given storage, everything ended by pid afterwards."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import Any

import structlog

from petriflow import logs
from petriflow.actors.node import NodeActor
from petriflow.client import Client, boot_engine
from petriflow.engine.document import compact_document
from petriflow.engine.settings import Settings
from petriflow.engine.states import WorkitemState
from petriflow.engine.wire import CaseView
from petriflow.system import close_actor_system, free_port, open_actor_system

BASES = ["simpleSystemBase", "multiprocTCPBase"]
workflow = compact_document  # the tests write many workflow documents in the compact notation

# A sequence whose middle step waits for a person: everything above it stays live.
APPROVAL = workflow(
    "approval",
    ["start", "p1", "p2", "end"],
    [
        {"id": "fetch", "executor": "echo", "params": {"fetched": True}},
        {"id": "approve", "executor": "manual"},
        {"id": "post", "executor": "echo", "params": {"posted": True}},
    ],
    ["start -> fetch", "fetch -> p1", "p1 -> approve", "approve -> p2", "p2 -> post", "post -> end"],
)


@contextlib.contextmanager
def running_engine(
    base: str,
    storage_url: str,
    *,
    idle_timeout_s: float | None = None,
    log_path: str | None = None,
    port: int | None = None,
    nodes: int = 1,
    **settings: Any,
) -> Iterator[Client]:
    """With `log_path`, the test is the application that configures logging,
    as the daemon does: JSON lines to that file, from this process and every
    actor process it forks; the previous configuration comes back after.
    Further `settings` are fields of `Settings` (`turn_max_s=...`)."""
    multiproc = base != "simpleSystemBase"
    previous = structlog.get_config()
    if log_path:
        logs.configure(log_path)
    asys = open_actor_system(base, admin_port=(port or free_port()) if multiproc else None)
    try:
        boot_engine(
            asys,
            Settings(
                storage_url=storage_url,
                idle_timeout_s=idle_timeout_s,
                die_with_parent=multiproc,
                nodes=nodes,
                **settings,
            ),
        )
        yield Client(asys, timeout_s=30)
    finally:
        close_actor_system(asys)
        structlog.configure(**previous)


def wait_for(check: Callable[[], Any], timeout_s: float = 20.0, interval_s: float = 0.02) -> Any:
    """Poll `check` until it returns something truthy. On simpleSystemBase the
    actors only run inside the client's `ask`, so `check` must ask."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        time.sleep(interval_s)


def awaiting_workitem(client: Client, case_id: str, transition_id: str) -> str:
    """The id of the case's workitem of `transition_id` once it waits for completion."""

    def check() -> str | None:
        view: CaseView = client.get_case(case_id)
        for workitem in view.workitems:
            if (
                workitem.transition_id == transition_id
                and workitem.awaiting
                and workitem.state is WorkitemState.STARTED
            ):
                return workitem.id
        return None

    return wait_for(check)


def storage_dump(path: Any) -> list:
    """Every row of every table of a SQLite file: what "nothing stored changed" compares."""
    with sqlite3.connect(path) as db:
        tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return [(t, sorted(map(repr, db.execute(f'SELECT * FROM "{t}"').fetchall()))) for t in sorted(tables)]


def tell_entity(client: Client, actor_class: type, entity_id: str, message: Any) -> None:
    """Send an internal message straight to the live actor of an entity, as
    its parent or child would. On simpleSystemBase only: the test looks the
    actor up among those its node hosts, which no client can reach."""
    for ref in list(client.asys._systemBase.actorRegistry.values()):
        node = getattr(ref, "instance", None)
        if not isinstance(node, NodeActor):
            continue
        for actor in node.hosted.instances():
            if isinstance(actor, actor_class) and actor.key == entity_id:
                node._hand_in(message, to=actor.myAddress)
                client.ping()  # run what the node sent outside
                return
    raise LookupError(f"no live {actor_class.__name__} for {entity_id}")

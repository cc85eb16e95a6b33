"""Shared fixtures. Actor systems are always shut down and every process
they leave behind is killed by pid, whatever the test did to them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from thespian.actors import ActorSystem

from petriflow.engine.records import new_id
from petriflow.storage.memory import MemoryBackend
from petriflow.system import close_actor_system, free_port, open_actor_system


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that runs on multiprocTCPBase (its fixture, or a base parameter)
    is marked `multiproc` and `slow`: `pytest -m "not slow"` is the quick loop."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "multiproc_system" in getattr(item, "fixturenames", ()) or "multiprocTCPBase" in params.values():
            item.add_marker(pytest.mark.multiproc)
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def simple_system() -> Iterator[ActorSystem]:
    """All actors in the test's own thread: they run only inside ask/tell/listen."""
    asys = open_actor_system("simpleSystemBase")
    try:
        yield asys
    finally:
        close_actor_system(asys)


@pytest.fixture
def multiproc_system() -> Iterator[ActorSystem]:
    """One process per actor, on a fresh loopback admin port."""
    asys = open_actor_system("multiprocTCPBase", admin_port=free_port())
    try:
        yield asys
    finally:
        close_actor_system(asys)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A test's home, with the side-effect journal of tests.executors in it."""
    monkeypatch.setenv("PETRIFLOW_TEST_JOURNAL", str(tmp_path / "journal.jsonl"))
    return tmp_path


@pytest.fixture(params=["memory", "sqlite"])
def url(request, tmp_path: Path) -> Iterator[str]:
    """A new, empty store's URL on each adapter: a named in-memory one, forgotten after, and a SQLite file."""
    if request.param == "memory":
        name = f"test-{new_id()}"
        yield f"memory://{name}"
        MemoryBackend.forget(name)
    else:
        yield f"sqlite://{tmp_path}/petriflow.db"

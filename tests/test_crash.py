"""Crash and restore on multiprocTCPBase, killing real actor processes with SIGKILL.

Each disturbed case must finish with the same final payload as an
undisturbed one, and storage must show every transition completed exactly
once: executor side effects are at-least-once, engine state exactly-once.
"""

from __future__ import annotations

import json
import os
import signal
from collections import Counter

import pytest

from petriflow.client import Client, boot_engine
from petriflow.engine.settings import Settings
from petriflow.engine.states import CaseState, TaskState, TokenState, WorkitemState
from petriflow.supervision import processes
from petriflow.system import close_actor_system, free_port, open_actor_system, system_session
from tests.engines import running_engine, wait_for, workflow

pytestmark = [pytest.mark.slow, pytest.mark.multiproc, pytest.mark.timeout(120)]

MULTIPROC = "multiprocTCPBase"

STEPS = workflow(
    "steps",
    ["start", "p1", "p2", "end"],
    [
        {"id": "a", "executor": "tests.executors:Journal", "params": {"seconds": 0.2}},
        {"id": "b", "executor": "tests.executors:Journal", "params": {"seconds": 1.0}},
        {"id": "c", "executor": "tests.executors:Journal", "params": {"seconds": 0.2}},
    ],
    ["start -> a", "a -> p1", "p1 -> b", "b -> p2", "p2 -> c", "c -> end"],
)

KILLS_ITSELF = workflow(
    "kills-itself",
    ["start", "end"],
    [
        {"id": "doomed", "executor": "tests.executors:KillSelf"},
    ],
    ["start -> doomed", "doomed -> end"],
)


@pytest.fixture
def client(home):
    with running_engine(MULTIPROC, f"sqlite:///{home}/petriflow.db", log_path=str(home / "log.jsonl")) as client:
        client.put_workflow(STEPS)
        client.put_workflow(KILLS_ITSELF)
        yield client


def _end_payload(view) -> dict:
    return next(t.payload for t in view.tokens if t.place_id == "end")


def _completed_once(view) -> None:
    completed = Counter(t.transition_id for t in view.tasks if t.state is TaskState.COMPLETED)
    assert completed == {"a": 1, "b": 1, "c": 1}
    assert all(t.state is TokenState.CONSUMED for t in view.tokens)
    assert Counter(w.transition_id for w in view.workitems if w.state is WorkitemState.COMPLETED) == completed


def _running(client, case_id, transition_id, table):
    """The live record of the case's `table` entity of `transition_id`, once its actor has claimed it."""

    def check():
        view = client.get_case(case_id)
        for record in getattr(view, table):
            if (
                record.transition_id == transition_id
                and record.pid
                and processes.is_alive(record.pid)
                and record.state.value in ("started", "allocated", "executing")
            ):
                return record
        return None

    return wait_for(check)


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    assert processes.wait_until_gone([pid], 5) == []


@pytest.mark.parametrize("victim", ["workitem", "task", "case"])
def test_killing_an_entity_actor_mid_step_loses_and_repeats_nothing(client, victim):
    undisturbed = client.wait_case(client.start_case("steps", {"order": 1}))
    case_id = client.start_case("steps", {"order": 1})
    workitem = _running(client, case_id, "b", "workitems")
    view = client.get_case(case_id)
    pid = {
        "workitem": workitem.pid,
        "case": view.case.pid,
        "task": next(t.pid for t in view.tasks if t.id == workitem.task_id),
    }[victim]
    _kill(pid)
    assert processes.wait_until_gone([workitem.pid], 5) == [], "the step's process dies with its ancestors"
    view = client.wait_case(case_id, timeout_s=60)
    assert view.case.state is CaseState.FINISHED
    assert _end_payload(view) == _end_payload(undisturbed)
    _completed_once(view)
    restarted = next(w for w in view.workitems if w.transition_id == "b")
    assert restarted.attempt >= 2, "the killed step ran again from storage"
    assert view.case.incarnation >= (2 if victim == "case" else 1)


def test_an_executor_that_kills_its_actor_every_time_crashes_the_case_only(client, home):
    case_id = client.start_case("kills-itself", {})
    view = client.wait_case(case_id, timeout_s=60)
    assert view.case.state is CaseState.TERMINATED
    assert view.case.failure.kind == "crashed"
    (workitem,) = view.workitems
    assert workitem.state is WorkitemState.FAILED and workitem.attempt == 4
    events = [json.loads(line) for line in (home / "log.jsonl").read_text().splitlines()]
    crashed = [e for e in events if e.get("event") == "workitem_crashed"]
    assert crashed and crashed[0]["case_id"] == case_id and crashed[0]["workitem_id"] == workitem.id
    assert any(e.get("event") == "case_failed" and e.get("case_id") == case_id for e in events)
    other = client.wait_case(client.start_case("steps", {"after": "crash"}))
    assert other.case.state is CaseState.FINISHED


@pytest.mark.timeout(240)
def test_killing_the_whole_system_mid_run_then_restarting_finishes_every_case_once(home):
    url = f"sqlite:///{home}/petriflow.db"
    asys = open_actor_system(MULTIPROC, admin_port=free_port())
    try:
        boot_engine(asys, Settings(storage_url=url, die_with_parent=True))
        client = Client(asys)
        client.put_workflow(STEPS)
        case_ids = [client.start_case("steps", {"n": n}) for n in range(20)]
        wait_for(
            lambda: (
                sum(1 for c in client.list_cases(["finished"]).cases) >= 1
                or any(w.transition_id == "b" for w in client.get_case(case_ids[-1]).workitems)
            ),
            60,
        )
        killed = processes.kill_session(system_session(asys).sid)
        assert len(killed) >= 4, "the admin, the Engine and its nodes"
    finally:
        close_actor_system(asys)
    unfinished = [c for c in case_ids if open_storage_state(url, c) is not CaseState.FINISHED]
    assert unfinished, "the kill landed after every case had finished"
    with running_engine(MULTIPROC, url) as client:
        views = [client.wait_case(case_id, timeout_s=120) for case_id in case_ids]
    for n, view in enumerate(views):
        assert view.case.state is CaseState.FINISHED
        assert _end_payload(view) == {"n": n, "a": True, "b": True, "c": True}
        _completed_once(view)


def open_storage_state(url: str, case_id: str) -> CaseState:
    from petriflow.storage.store import open_storage

    store = open_storage(url)
    try:
        return store.get_case(case_id).state
    finally:
        store.close()

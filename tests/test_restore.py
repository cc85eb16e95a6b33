"""Restore after a restart: each entity, from each state, as WorkflowMetal tests it.

Each test writes a case into storage in a given state, as a crashed engine
would have left it, then boots an engine on that storage and checks what the
restored actors do: finish the work exactly once, or stay down.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from petriflow.engine.document import workflow_from_document
from petriflow.engine.records import CaseRecord, TokenRecord, new_id
from petriflow.engine.states import CaseState, TaskState, WorkitemState
from petriflow.engine.validation import validate
from petriflow.storage.store import Fence, Storage, open_storage
from tests.engines import running_engine, wait_for, workflow

pytestmark = pytest.mark.timeout(60)

FLOW = workflow(
    "restore",
    ["start", "p", "end"],
    [
        {"id": "a", "executor": "tests.executors:Journal"},
        {"id": "b", "executor": "tests.executors:Journal"},
    ],
    ["start -> a", "a -> p", "p -> b", "b -> end"],
)


@pytest.fixture
def setup(tmp_path, monkeypatch):
    journal = tmp_path / "journal.jsonl"
    monkeypatch.setenv("PETRIFLOW_TEST_JOURNAL", str(journal))
    url = f"sqlite:///{tmp_path}/petriflow.db"
    store = open_storage(url)
    store.put_workflow(validate(workflow_from_document(FLOW)))
    yield url, store, journal
    store.close()


def _new_case(store: Storage, state: CaseState = CaseState.ACTIVE) -> tuple[CaseRecord, TokenRecord]:
    case = CaseRecord(id=new_id(), workflow_id="restore", workflow_version=1)
    genesis = TokenRecord(id=new_id(), case_id=case.id, workflow_id="restore", place_id="start")
    store.create_case(case, [genesis])
    case = store.claim_case(case.id)
    if state is not CaseState.CREATED:
        case = store.claim_case(case.id, activate=True)
    return case, genesis


def _fence(record, table: str) -> Fence:
    return Fence(table, record.id, record.incarnation)


def _executions(journal) -> Counter:
    if not journal.exists():
        return Counter()
    return Counter(json.loads(line)["transition"] for line in journal.read_text().splitlines())


def _restore_and_wait(url, case_id):
    with running_engine("simpleSystemBase", url) as client:
        return client.wait_case(case_id, timeout_s=30)


def _completed_tasks(store, case_id) -> Counter:
    return Counter(t.transition_id for t in store.tasks(case_id) if t.state is TaskState.COMPLETED)


# -- Case ------------------------------------------------------------------------------


def test_case_restored_from_active_offers_its_free_tokens_again(setup):
    url, store, journal = setup
    case, _ = _new_case(store)
    view = _restore_and_wait(url, case.id)
    assert view.case.state is CaseState.FINISHED
    assert _executions(journal) == {"a": 1, "b": 1}


def test_case_restored_from_created_is_activated_and_runs(setup):
    url, store, journal = setup
    case, _ = _new_case(store, CaseState.CREATED)
    assert _restore_and_wait(url, case.id).case.state is CaseState.FINISHED


@pytest.mark.parametrize("end", ["terminated", "finished"])
def test_case_restored_from_a_terminal_state_stays_down(setup, end):
    url, store, journal = setup
    case, genesis = _new_case(store)
    if end == "terminated":
        store.terminate_case(_fence(case, "cases"))
    else:
        store.finish_case(_fence(case, "cases"), "end")
    with running_engine("simpleSystemBase", url) as client:
        assert client.ping().live_cases == 0
        view = client.wait_case(case.id)
    assert view.case.state.value == end
    assert view.tasks == [] and _executions(journal) == {}


# -- Task ------------------------------------------------------------------------------


def test_task_restored_from_started_locks_and_runs_once(setup):
    url, store, journal = setup
    case, _ = _new_case(store)
    task = store.create_task(_fence(case, "cases"), "a")
    _restore_and_wait(url, case.id)
    assert store.get_task(task.id).state is TaskState.COMPLETED
    assert _completed_tasks(store, case.id) == {"a": 1, "b": 1}
    assert _executions(journal) == {"a": 1, "b": 1}


def test_task_restored_from_allocated_keeps_its_locked_tokens(setup):
    url, store, journal = setup
    case, genesis = _new_case(store)
    task = store.claim_task(store.create_task(_fence(case, "cases"), "a").id)
    with store.backend.transaction() as tx:  # written by an older petriflow, which locked before creating the workitem
        tx.update("tokens", genesis.id, {"state": "locked", "locked_by_task_id": task.id})
        tx.update("tasks", task.id, {"state": "allocated"})
    _restore_and_wait(url, case.id)
    assert store.get_task(task.id).state is TaskState.COMPLETED
    assert [t.consumed_by_task_id for t in store.tokens(case.id) if t.id == genesis.id] == [task.id]
    assert len(store.workitems(task_id=task.id)) == 1
    assert _executions(journal) == {"a": 1, "b": 1}


def _executing(store, case, genesis):
    task = store.claim_task(store.create_task(_fence(case, "cases"), "a").id)
    workitem = store.allocate(_fence(task, "tasks"), [genesis.id], {"from": "storage"})
    return task, store.claim_workitem(workitem.id)


def test_task_restored_from_executing_restarts_its_created_workitem(setup):
    url, store, journal = setup
    case, genesis = _new_case(store)
    task, workitem = _executing(store, case, genesis)
    _restore_and_wait(url, case.id)
    assert store.get_workitem(workitem.id).state is WorkitemState.COMPLETED
    assert store.get_workitem(workitem.id).attempt == 1
    assert len(store.workitems(task_id=task.id)) == 1
    assert _executions(journal) == {"a": 1, "b": 1}


def test_task_restored_from_completed_stays_down_and_its_tokens_go_on(setup):
    url, store, journal = setup
    case, genesis = _new_case(store)
    task, workitem = _executing(store, case, genesis)
    store.begin_attempt(_fence(workitem, "workitems"))
    store.finish_workitem(_fence(workitem, "workitems"), WorkitemState.COMPLETED, output={"done": "a"})
    store.complete_task(
        _fence(case, "cases"),
        task.id,
        {"done": "a"},
        [
            TokenRecord(
                id=new_id(),
                case_id=case.id,
                workflow_id="restore",
                place_id="p",
                payload={"done": "a"},
                produced_by_task_id=task.id,
            )
        ],
    )
    view = _restore_and_wait(url, case.id)
    assert view.case.state is CaseState.FINISHED
    assert _executions(journal) == {"b": 1}
    assert _completed_tasks(store, case.id) == {"a": 1, "b": 1}


def test_task_restored_from_abandoned_stays_down(setup):
    url, store, journal = setup
    case, _ = _new_case(store)
    task = store.claim_task(store.create_task(_fence(case, "cases"), "a").id)
    store.abandon_task(_fence(task, "tasks"), task.id)
    _restore_and_wait(url, case.id)
    assert store.get_task(task.id).state is TaskState.ABANDONED
    assert _completed_tasks(store, case.id) == {"a": 1, "b": 1}
    assert _executions(journal) == {"a": 1, "b": 1}


# -- Workitem ----------------------------------------------------------------------------


def test_workitem_restored_from_started_runs_again_with_the_next_attempt(setup):
    url, store, journal = setup
    case, genesis = _new_case(store)
    _, workitem = _executing(store, case, genesis)
    store.begin_attempt(_fence(workitem, "workitems"))
    _restore_and_wait(url, case.id)
    restored = store.get_workitem(workitem.id)
    assert (restored.state, restored.attempt) == (WorkitemState.COMPLETED, 2)
    entries = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [(e["key"], e["attempt"]) for e in entries if e["transition"] == "a"] == [(workitem.id, 2)]


def test_workitem_restored_from_completed_is_not_run_again(setup):
    url, store, journal = setup
    case, genesis = _new_case(store)
    task, workitem = _executing(store, case, genesis)
    store.begin_attempt(_fence(workitem, "workitems"))
    store.finish_workitem(_fence(workitem, "workitems"), WorkitemState.COMPLETED, output={"kept": True})
    view = _restore_and_wait(url, case.id)
    assert view.case.state is CaseState.FINISHED
    assert _executions(journal) == {"b": 1}
    assert store.get_task(task.id).token_payload == {"kept": True}


def test_workitem_restored_from_abandoned_stays_down_and_stops_the_case(setup):
    url, store, journal = setup
    case, genesis = _new_case(store)
    _, workitem = _executing(store, case, genesis)
    store.finish_workitem(_fence(workitem, "workitems"), WorkitemState.ABANDONED)
    view = _restore_and_wait(url, case.id)
    assert view.case.state is CaseState.TERMINATED
    assert store.get_workitem(workitem.id).state is WorkitemState.ABANDONED
    assert _executions(journal) == {}


def test_an_awaiting_manual_workitem_is_not_executed_again_on_restore(tmp_path):
    url = f"sqlite:///{tmp_path}/petriflow.db"
    manual = workflow(
        "waits", ["start", "end"], [{"id": "approve", "executor": "manual"}], ["start -> approve", "approve -> end"]
    )
    with running_engine("simpleSystemBase", url) as client:
        client.put_workflow(manual)
        case_id = client.start_case("waits", {})
        wait_for(lambda: any(w.awaiting for w in client.get_case(case_id).workitems))
    with running_engine("simpleSystemBase", url) as client:
        (workitem,) = client.get_case(case_id).workitems
        client.complete_workitem(workitem.id, {"ok": 1})
        view = client.wait_case(case_id)
    assert view.case.state is CaseState.FINISHED
    assert view.workitems[0].attempt == 1


def test_a_waiting_task_without_tokens_abandons_itself_on_restore(setup):
    """As a deferred-choice loser is left `started` when everything is killed
    before the case withdrew its token."""
    url, store, journal = setup
    case, genesis = _new_case(store)
    winner = store.claim_task(store.create_task(_fence(case, "cases"), "a").id)
    waiting = store.create_task(_fence(case, "cases"), "b")
    store.allocate(_fence(winner, "tasks"), [genesis.id], {})
    view = _restore_and_wait(url, case.id)
    assert view.case.state is CaseState.FINISHED
    assert store.get_task(waiting.id).state is TaskState.ABANDONED

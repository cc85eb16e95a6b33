"""Workflow patterns end to end through the Engine, on both actor system bases."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from petriflow.engine.errors import AlreadyCompleted, Invalid
from petriflow.engine.states import CaseState, TaskState, TokenState, WorkitemState
from tests.engines import BASES, awaiting_workitem, running_engine, workflow

pytestmark = pytest.mark.timeout(90)

SEQUENCE = workflow(
    "sequence",
    ["start", "p1", "p2", "end"],
    [
        {"id": "a", "executor": "echo", "params": {"a": 1}},
        {"id": "b", "executor": "echo", "params": {"b": 2}},
        {"id": "c", "executor": "noop"},
    ],
    ["start -> a", "a -> p1", "p1 -> b", "b -> p2", "p2 -> c", "c -> end"],
)

PARALLEL = workflow(
    "parallel",
    ["start", "p1", "p2", "p3", "q1", "q2", "q3", "end"],
    [
        {"id": "split", "executor": "noop", "split": "and"},
        {"id": "b1", "executor": "echo", "params": {"b1": 1}},
        {"id": "b2", "executor": "sleep", "params": {"seconds": 0.05}},
        {"id": "b3", "executor": "echo", "params": {"b3": 3}},
        {"id": "join", "executor": "noop", "join": "and"},
    ],
    [
        "start -> split",
        "split -> p1",
        "split -> p2",
        "split -> p3",
        "p1 -> b1",
        "p2 -> b2",
        "p3 -> b3",
        "b1 -> q1",
        "b2 -> q2",
        "b3 -> q3",
        "q1 -> join",
        "q2 -> join",
        "q3 -> join",
        "join -> end",
    ],
)

CHOICE_MERGE = workflow(
    "choice",
    ["start", "m", "end"],
    [
        {"id": "left", "executor": "echo", "params": {"went": "left"}},
        {"id": "right", "executor": "echo", "params": {"went": "right"}},
        {"id": "merge", "executor": "noop"},
    ],
    ["start -> left", "start -> right", "left -> m", "right -> m", "m -> merge", "merge -> end"],
)

MANUAL = workflow(
    "manual",
    ["start", "p", "q", "end"],
    [
        {"id": "prepare", "executor": "echo", "params": {"prepared": True}},
        {"id": "approve", "executor": "manual"},
        {"id": "post", "executor": "noop"},
    ],
    ["start -> prepare", "prepare -> p", "p -> approve", "approve -> q", "q -> post", "post -> end"],
)

FAILING = workflow(
    "failing",
    ["start", "p", "end"],
    [
        {"id": "a", "executor": "echo"},
        {"id": "b", "executor": "fail", "params": {"reason": "the ledger is closed"}},
    ],
    ["start -> a", "a -> p", "p -> b", "b -> end"],
)

FLAKY = workflow(
    "flaky",
    ["start", "end"],
    [
        {"id": "flaky", "executor": "fail", "params": {"times": 1}, "retry": {"max_attempts": 2}},
    ],
    ["start -> flaky", "flaky -> end"],
)

SLOW = workflow(
    "slow",
    ["start", "end"],
    [
        {"id": "slow", "executor": "sleep", "params": {"seconds": 30}, "timeout_s": 0.3},
    ],
    ["start -> slow", "slow -> end"],
)


@pytest.fixture(params=BASES)
def client(request, tmp_path):
    with running_engine(request.param, f"sqlite:///{tmp_path}/petriflow.db") as client:
        for document in (SEQUENCE, PARALLEL, CHOICE_MERGE, MANUAL, FAILING, FLAKY, SLOW):
            client.put_workflow(document)
        yield client


def _end_payload(view):
    (token,) = [t for t in view.tokens if t.place_id == "end"]
    assert token.state is TokenState.CONSUMED
    return token.payload


def _completed(view):
    return Counter(t.transition_id for t in view.tasks if t.state is TaskState.COMPLETED)


def test_sequence(client):
    view = client.wait_case(client.start_case("sequence", {"x": 0}))
    assert view.case.state is CaseState.FINISHED
    assert _end_payload(view) == {"x": 0, "a": 1, "b": 2}
    assert _completed(view) == {"a": 1, "b": 1, "c": 1}
    assert all(w.state is WorkitemState.COMPLETED and w.attempt == 1 for w in view.workitems)
    assert all(t.state is TokenState.CONSUMED for t in view.tokens)


def test_parallel_split_and_synchronisation(client):
    view = client.wait_case(client.start_case("parallel", {"x": 0}))
    assert view.case.state is CaseState.FINISHED
    assert _end_payload(view) == {"x": 0, "b1": 1, "b3": 3}
    assert _completed(view) == {"split": 1, "b1": 1, "b2": 1, "b3": 1, "join": 1}
    join = next(t for t in view.tasks if t.transition_id == "join")
    consumed = [t for t in view.tokens if t.consumed_by_task_id == join.id]
    assert sorted(t.place_id for t in consumed) == ["q1", "q2", "q3"]


def test_deferred_choice_one_wins_and_the_competitor_is_abandoned(client):
    for _ in range(3):
        view = client.wait_case(client.start_case("choice", {}))
        assert view.case.state is CaseState.FINISHED
        states = {t.transition_id: t.state for t in view.tasks if t.transition_id in ("left", "right")}
        assert sorted(states.values()) == [TaskState.ABANDONED, TaskState.COMPLETED]
        winner = next(k for k, v in states.items() if v is TaskState.COMPLETED)
        assert _end_payload(view) == {"went": winner}
        assert len([w for w in view.workitems if w.transition_id in ("left", "right")]) == 1


def test_simple_merge_runs_the_merge_once_for_the_one_chosen_branch(client):
    view = client.wait_case(client.start_case("choice", {"n": 1}))
    assert _completed(view)["merge"] == 1
    (m_token,) = [t for t in view.tokens if t.place_id == "m"]
    assert m_token.consumed_by_task_id == next(t.id for t in view.tasks if t.transition_id == "merge")


def test_a_manual_step_waits_for_the_client(client):
    case_id = client.start_case("manual", {"order": 7})
    workitem_id = awaiting_workitem(client, case_id, "approve")
    assert client.get_case(case_id).case.state is CaseState.ACTIVE
    client.complete_workitem(workitem_id, {"approved": True})
    view = client.wait_case(case_id)
    assert view.case.state is CaseState.FINISHED
    assert _end_payload(view) == {"approved": True}
    approve = next(w for w in view.workitems if w.transition_id == "approve")
    assert approve.input == {"order": 7, "prepared": True} and approve.output == {"approved": True}
    with pytest.raises(AlreadyCompleted, match=workitem_id):
        client.complete_workitem(workitem_id, {"approved": False})


def test_a_failing_step_stops_the_case_with_its_reason(client):
    view = client.wait_case(client.start_case("failing", {}))
    assert view.case.state is CaseState.TERMINATED
    assert view.case.failure.kind == "failed"
    assert view.case.failure.reason == "the ledger is closed"
    assert view.case.failure.transition_id == "b"
    failed = next(w for w in view.workitems if w.transition_id == "b")
    assert failed.state is WorkitemState.FAILED and failed.failure.reason == "the ledger is closed"
    assert _completed(view) == {"a": 1}


def test_a_step_that_fails_once_succeeds_on_its_retry(client):
    view = client.wait_case(client.start_case("flaky", {"k": 1}))
    assert view.case.state is CaseState.FINISHED
    (workitem,) = view.workitems
    assert workitem.attempt == 2 and workitem.state is WorkitemState.COMPLETED


def test_terminating_a_running_case_abandons_its_tasks_and_workitems(client):
    case_id = client.start_case("manual", {})
    workitem_id = awaiting_workitem(client, case_id, "approve")
    client.terminate_case(case_id)
    view = client.wait_case(case_id)
    assert view.case.state is CaseState.TERMINATED and view.case.failure is None
    approve = next(t for t in view.tasks if t.transition_id == "approve")
    assert approve.state is TaskState.ABANDONED
    assert next(w for w in view.workitems if w.id == workitem_id).state is WorkitemState.ABANDONED
    with pytest.raises(AlreadyCompleted):
        client.complete_workitem(workitem_id, {})
    with pytest.raises(Invalid, match="already terminated"):
        client.terminate_case(case_id)


def test_a_step_that_outlives_its_timeout_is_stopped(client):
    started = time.monotonic()
    view = client.wait_case(client.start_case("slow", {}))
    assert time.monotonic() - started < 20
    assert view.case.state is CaseState.TERMINATED
    assert view.case.failure.kind == "timeout"
    assert "timeout of 0.3s" in view.case.failure.reason
    (workitem,) = view.workitems
    assert workitem.state is WorkitemState.FAILED

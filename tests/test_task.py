"""The Task's interface, as WorkflowMetal's Task has it: receive_tokens,
preexecute, discard_tokens, force_abandon and update_workitem, sent by a
client through the Engine to a task of a running case."""

from __future__ import annotations

from collections import Counter

import pytest

from petriflow.engine.errors import Invalid, TaskNotEnabled
from petriflow.engine.messages import DiscardTokens, ForceAbandon, ReceiveTokens, UpdateWorkitem
from petriflow.engine.states import CaseState, TaskState, TokenState, WorkitemState
from tests.engines import awaiting_workitem, running_engine, wait_for, workflow

pytestmark = pytest.mark.timeout(60)

# An AND split into a manual branch and an automatic one, joined again:
# the join task waits holding one token until the manual step is completed.
JOIN = workflow(
    "join",
    ["start", "p1", "p2", "q1", "q2", "end"],
    [
        {"id": "split", "executor": "noop", "split": "and"},
        {"id": "manual", "executor": "manual"},
        {"id": "auto", "executor": "echo", "params": {"auto": 1}},
        {"id": "join", "executor": "noop", "join": "and"},
    ],
    [
        "start -> split",
        "split -> p1",
        "split -> p2",
        "p1 -> manual",
        "p2 -> auto",
        "manual -> q1",
        "auto -> q2",
        "q1 -> join",
        "q2 -> join",
        "join -> end",
    ],
)


@pytest.fixture
def running(tmp_path):
    with running_engine("simpleSystemBase", f"sqlite:///{tmp_path}/petriflow.db") as client:
        client.put_workflow(JOIN)
        case_id = client.start_case("join", {"x": 1})
        workitem_id = awaiting_workitem(client, case_id, "manual")
        join = wait_for(
            lambda: next(
                (
                    t
                    for t in client.get_case(case_id).tasks
                    if t.transition_id == "join" and t.state is TaskState.STARTED
                ),
                None,
            )
        )
        yield client, case_id, workitem_id, join


def _task(client, case_id, transition_id, state=None):
    return [
        t
        for t in client.get_case(case_id).tasks
        if t.transition_id == transition_id and (state is None or t.state is state)
    ]


def test_preexecute_of_a_task_holding_its_tokens_returns_them_again(running):
    client, case_id, _, _ = running
    (manual,) = _task(client, case_id, "manual")
    first = client.preexecute(manual.id)
    assert [t.place_id for t in first] == ["p1"]
    assert all(t.state is TokenState.LOCKED and t.locked_by_task_id == manual.id for t in first)
    assert client.preexecute(manual.id) == first


def test_preexecute_of_a_task_that_is_not_enabled_says_so(running):
    client, case_id, _, join = running
    with pytest.raises(TaskNotEnabled, match="not enabled.*'and' join"):
        client.preexecute(join.id)
    assert _task(client, case_id, "join")[0].state is TaskState.STARTED


def test_receive_tokens_refuses_a_token_of_a_place_the_task_is_not_fed_by(running):
    client, case_id, _, join = running
    stray = next(t for t in client.get_case(case_id).tokens if t.place_id == "p1")
    with pytest.raises(Invalid, match="cannot be offered"):
        client.request(ReceiveTokens(join.id, [stray]))


def test_discarding_a_task_s_last_token_abandons_it_and_the_case_offers_the_token_again(running):
    client, case_id, workitem_id, join = running
    held = next(t for t in client.get_case(case_id).tokens if t.place_id == "q2")
    client.request(DiscardTokens(join.id, [held]))
    assert client.get_case(case_id).tasks and _task(client, case_id, "join", TaskState.ABANDONED)[0].id == join.id
    client.complete_workitem(workitem_id, {"manual": 1})
    view = client.wait_case(case_id)
    assert view.case.state is CaseState.FINISHED
    joins = Counter(t.state for t in view.tasks if t.transition_id == "join")
    assert joins == {TaskState.ABANDONED: 1, TaskState.COMPLETED: 1}


def test_force_abandon_abandons_the_task_and_its_workitems(running):
    client, case_id, workitem_id, _ = running
    (manual,) = _task(client, case_id, "manual")
    client.request(ForceAbandon(manual.id))
    view = client.wait_case(case_id)
    assert next(t for t in view.tasks if t.id == manual.id).state is TaskState.ABANDONED
    assert next(w for w in view.workitems if w.id == workitem_id).state is WorkitemState.ABANDONED
    assert view.case.state is CaseState.TERMINATED
    assert view.case.failure.kind == "abandoned"


def test_update_workitem_accepts_the_truth_and_refuses_anything_else(running):
    client, case_id, workitem_id, _ = running
    (manual,) = _task(client, case_id, "manual")
    client.request(UpdateWorkitem(manual.id, workitem_id, WorkitemState.STARTED))
    with pytest.raises(Invalid, match="is started, not completed"):
        client.request(UpdateWorkitem(manual.id, workitem_id, WorkitemState.COMPLETED))
    assert client.get_case(case_id).case.state is CaseState.ACTIVE
    client.complete_workitem(workitem_id, {})
    assert client.wait_case(case_id).case.state is CaseState.FINISHED

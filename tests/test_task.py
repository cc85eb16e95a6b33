"""The Task's interface, as WorkflowMetal's Task has it. `preexecute` is the
one a client may call, through the Engine; receive_tokens, discard_tokens,
force_abandon and update_workitem come from the task's case and workitems
only, so these tests send them to the live task actor as its case would, and
check that a client sending them is refused."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import msgpack
import pytest
import structlog

from petriflow.actors.case import CaseActor
from petriflow.actors.task import TaskActor
from petriflow.engine import codec
from petriflow.engine.errors import TaskNotEnabled
from petriflow.engine.messages import DiscardTokens, ForceAbandon, ReceiveTokens, UpdateWorkitem
from petriflow.engine.states import CaseState, TaskState, TokenState, WorkitemState
from petriflow.engine.wire import Error
from tests.engines import awaiting_workitem, running_engine, storage_dump, tell_entity, wait_for, workflow

pytestmark = pytest.mark.timeout(60)


@dataclass(frozen=True)
class Stray:
    """A message no actor of petriflow handles."""

    text: str


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
def db(tmp_path):
    return tmp_path / "petriflow.db"


@pytest.fixture
def running(db):
    with running_engine("simpleSystemBase", f"sqlite:///{db}") as client:
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


def test_a_token_of_a_place_the_task_is_not_fed_by_crashes_the_task_and_it_is_restored_without_it(running):
    client, case_id, workitem_id, join = running
    stray = next(t for t in client.get_case(case_id).tokens if t.place_id == "p1")
    tell_entity(client, TaskActor, join.id, ReceiveTokens(join.id, [stray]))
    client.complete_workitem(workitem_id, {"manual": 1})
    view = client.wait_case(case_id)
    assert view.case.state is CaseState.FINISHED
    assert [t.state for t in view.tasks if t.transition_id == "join"] == [TaskState.COMPLETED]


def test_discarding_a_task_s_last_token_abandons_it_and_the_case_offers_the_token_again(running):
    client, case_id, workitem_id, join = running
    held = next(t for t in client.get_case(case_id).tokens if t.place_id == "q2")
    tell_entity(client, TaskActor, join.id, DiscardTokens(join.id, [held]))
    assert client.get_case(case_id).tasks and _task(client, case_id, "join", TaskState.ABANDONED)[0].id == join.id
    client.complete_workitem(workitem_id, {"manual": 1})
    view = client.wait_case(case_id)
    assert view.case.state is CaseState.FINISHED
    joins = Counter(t.state for t in view.tasks if t.transition_id == "join")
    assert joins == {TaskState.ABANDONED: 1, TaskState.COMPLETED: 1}


def test_force_abandon_abandons_the_task_and_its_workitems(running):
    client, case_id, workitem_id, _ = running
    (manual,) = _task(client, case_id, "manual")
    tell_entity(client, TaskActor, manual.id, ForceAbandon(manual.id))
    view = client.wait_case(case_id)
    assert next(t for t in view.tasks if t.id == manual.id).state is TaskState.ABANDONED
    assert next(w for w in view.workitems if w.id == workitem_id).state is WorkitemState.ABANDONED
    assert view.case.state is CaseState.TERMINATED
    assert view.case.failure.kind == "abandoned"


def test_a_client_sending_the_task_s_internal_messages_is_refused_and_nothing_changes(running, db):
    client, case_id, workitem_id, join = running
    (manual,) = _task(client, case_id, "manual")
    held = next(t for t in client.get_case(case_id).tokens if t.place_id == "q2")
    internal = [
        ReceiveTokens(join.id, [held]),
        DiscardTokens(join.id, [held]),
        ForceAbandon(manual.id),
        UpdateWorkitem(manual.id, workitem_id, WorkitemState.COMPLETED, {"forged": True}),
    ]
    before = storage_dump(db)
    for message in internal:
        name = type(message).__name__
        plain = {"~": name, **{k: v for k, v in vars(message).items() if k in ("task_id", "workitem_id")}}
        encoded = client.asys.ask(client.engine, msgpack.packb(plain), 10)
        assert codec.decode(encoded) == Error("invalid", f"message: unknown message type {name!r}")
        as_object = codec.decode(client.asys.ask(client.engine, message, 10))
        assert isinstance(as_object, Error) and as_object.code == "invalid" and name in as_object.message
    assert storage_dump(db) == before
    client.complete_workitem(workitem_id, {"manual": 1})
    assert client.wait_case(case_id).case.state is CaseState.FINISHED


def test_a_message_an_actor_has_no_handler_for_is_logged_with_its_ids_and_changes_nothing(running, db):
    client, case_id, workitem_id, join = running
    before = storage_dump(db)
    with structlog.testing.capture_logs() as logs:
        tell_entity(client, TaskActor, join.id, Stray("hello"))
        tell_entity(client, CaseActor, case_id, Stray("hello"))
    unknown = [e for e in logs if e["event"] == "unknown_message"]
    assert [(e["receiver"], e["message_type"], e["case_id"]) for e in unknown] == [
        ("TaskActor", "Stray", case_id),
        ("CaseActor", "Stray", case_id),
    ]
    assert unknown[0]["task_id"] == join.id and unknown[0]["log_level"] == "warning"
    assert storage_dump(db) == before
    client.complete_workitem(workitem_id, {"manual": 1})
    assert client.wait_case(case_id).case.state is CaseState.FINISHED

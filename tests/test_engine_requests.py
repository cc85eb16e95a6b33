"""What a client gets from the Engine for good and bad requests.

Bad input gets an error with a stable code and a message naming the
problem; the engine keeps serving and nothing stored changes."""

from __future__ import annotations

import msgpack
import pytest

from petriflow.engine import codec
from petriflow.engine.errors import (
    AlreadyCompleted,
    Invalid,
    InvalidWorkflow,
    NotFound,
    PetriflowError,
    WorkflowDiscarded,
)
from petriflow.engine.states import CaseState, WorkitemState
from petriflow.engine.wire import StartCase
from tests.engines import BASES, awaiting_workitem, running_engine, workflow

pytestmark = pytest.mark.timeout(60)

MANUAL = workflow(
    "approve", ["start", "end"], [{"id": "approve", "executor": "manual"}], ["start -> approve", "approve -> end"]
)


@pytest.fixture(params=BASES)
def client(request, tmp_path):
    with running_engine(request.param, f"sqlite:///{tmp_path}/petriflow.db") as client:
        client.put_workflow(MANUAL)
        yield client


def _raw(client, data: bytes):
    return codec.decode(client.asys.ask(client.engine, data, 10))


def test_workflows_are_stored_listed_and_versioned(client):
    assert client.get_workflow("approve")["version"] == 1
    assert client.put_workflow(MANUAL) == ("approve", 1), "storing the same version again is a no-op"
    changed = dict(MANUAL, transitions=[{"id": "approve", "executor": "noop"}])
    with pytest.raises(Invalid, match="already stored with a different definition"):
        client.put_workflow(changed)
    assert client.put_workflow(dict(changed, version=2)) == ("approve", 2)
    assert client.get_workflow("approve")["transitions"][0]["executor"] == "noop"
    assert client.get_workflow("approve", 1)["transitions"][0]["executor"] == "manual"


def test_a_running_case_keeps_the_version_it_started_with(client):
    case_id = client.start_case("approve", {})
    client.put_workflow(dict(MANUAL, version=2, transitions=[{"id": "approve", "executor": "noop"}]))
    workitem_id = awaiting_workitem(client, case_id, "approve")
    client.complete_workitem(workitem_id, {"v": 1})
    assert client.wait_case(case_id).case.workflow_version == 1
    assert client.wait_case(client.start_case("approve", {})).case.workflow_version == 2


def test_entities_can_be_queried_by_id(client):
    case_id = client.start_case("approve", {"q": 1})
    workitem_id = awaiting_workitem(client, case_id, "approve")
    workitem = client.get_workitem(workitem_id)
    assert workitem.state is WorkitemState.STARTED and workitem.input == {"q": 1}
    assert client.get_task(workitem.task_id).transition_id == "approve"
    assert [c.id for c in client.list_cases(["active"]).cases] == [case_id]


def test_an_invalid_workflow_is_refused_naming_the_offender(client):
    broken = workflow("broken", ["start", "p", "end"], [{"id": "a", "executor": "nope"}], ["start -> a", "a -> end"])
    with pytest.raises(InvalidWorkflow) as error:
        client.put_workflow(broken)
    assert "place 'p'" in str(error.value) and "executor 'nope'" in str(error.value)
    with pytest.raises(NotFound):
        client.get_workflow("broken")


@pytest.mark.parametrize(
    "call,error,fragment",
    [
        (lambda c: c.start_case("no-such-flow"), NotFound, "workflow 'no-such-flow' not found"),
        (lambda c: c.get_case("no-such-case"), NotFound, "case 'no-such-case' not found"),
        (lambda c: c.wait_case("no-such-case"), NotFound, "not found"),
        (lambda c: c.terminate_case("no-such-case"), NotFound, "not found"),
        (lambda c: c.complete_workitem("no-such-workitem", {}), NotFound, "workitem 'no-such-workitem' not found"),
        (lambda c: c.preexecute("no-such-task"), NotFound, "task 'no-such-task' not found"),
        (lambda c: c.discard_workflow("no-such-flow"), NotFound, "not found"),
    ],
)
def test_unknown_ids_are_not_found(client, call, error, fragment):
    with pytest.raises(error, match=fragment):
        call(client)
    assert client.ping().pid > 0


@pytest.mark.parametrize(
    "data,fragment",
    [
        (b"\x00\xff garbage", "malformed message"),
        (b"", "malformed message"),
        (msgpack.packb({"~": "StartCase", "workflow_id": ["x"]}), "StartCase.workflow_id: expected a string"),
        (msgpack.packb({"~": "CaseEnded", "case_id": "x", "state": "finished"}), "unknown message type 'CaseEnded'"),
        (msgpack.packb({"~": "Failure", "kind": "failed", "reason": "x"}), "does not accept Failure"),
        (msgpack.packb({"~": "Nope"}), "unknown message type 'Nope'"),
    ],
)
def test_malformed_requests_get_an_invalid_error_and_the_engine_keeps_serving(client, data, fragment):
    reply = _raw(client, data)
    assert reply.code == "invalid" and fragment in reply.message
    assert client.get_workflow("approve")["id"] == "approve"
    assert client.list_cases().cases == []


def test_requests_in_the_wrong_state_are_refused_and_change_nothing(client):
    case_id = client.start_case("approve", {})
    workitem_id = awaiting_workitem(client, case_id, "approve")
    client.complete_workitem(workitem_id, {"ok": True})
    view = client.wait_case(case_id)
    with pytest.raises(AlreadyCompleted, match="already completed"):
        client.complete_workitem(workitem_id, {"ok": False})
    with pytest.raises(Invalid, match="already finished"):
        client.terminate_case(case_id)
    assert client.get_case(case_id) == view
    client.discard_workflow("approve")
    with pytest.raises(WorkflowDiscarded, match="discarded"):
        client.start_case("approve", {})
    assert len(client.list_cases().cases) == 1


def test_errors_carry_stable_codes(client):
    with pytest.raises(PetriflowError) as error:
        client.request(StartCase("missing"))
    assert error.value.code == "not_found"
    assert client.get_case(client.start_case("approve", {})).case.state in (CaseState.CREATED, CaseState.ACTIVE)

"""`kill`: crash one live entity on purpose, as Erlang's `exit(Pid, kill)`.
Its supervisor restores it from storage, and the work order ends as its
workflow says, with every step completed once."""

from __future__ import annotations

import pytest

from petriflow.engine.errors import Invalid, NotFound
from petriflow.engine.states import WorkitemState
from tests.engines import APPROVAL, BASES, awaiting_workitem, running_engine, wait_for

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(params=BASES)
def client(request, tmp_path):
    with running_engine(request.param, f"sqlite:///{tmp_path}/petriflow.db") as client:
        client.put_workflow(APPROVAL)
        yield client


def _waiting(client):
    submitted = client.submit("approval", {"n": 1})
    case_id = client.get_work_order(submitted.work_order_id).runs[0].run.case_id
    workitem_id = awaiting_workitem(client, case_id, "approve")
    return submitted.work_order_id, case_id, client.get_workitem(workitem_id)


def _incarnation(client, kind: str, entity_id: str) -> int:
    read = {
        "work_order": lambda: client.get_work_order(entity_id).work_order,
        "case": lambda: client.get_case(entity_id).case,
        "task": lambda: client.get_task(entity_id),
        "workitem": lambda: client.get_workitem(entity_id),
    }[kind]
    return read().incarnation


@pytest.mark.parametrize("kind", ["work_order", "case", "task", "workitem"])
def test_a_killed_entity_is_restored_and_its_work_order_still_succeeds_once(client, kind):
    order_id, case_id, workitem = _waiting(client)
    target = {"work_order": order_id, "case": case_id, "task": workitem.task_id, "workitem": workitem.id}[kind]
    before = _incarnation(client, kind, target)
    assert client.kill(target) == kind
    # restored from storage: a new incarnation claimed the entity
    wait_for(lambda: _incarnation(client, kind, target) > before)
    wait_for(lambda: (w := client.get_workitem(workitem.id)).awaiting and w.state is WorkitemState.STARTED)
    client.complete_workitem(workitem.id, {"approved": True})
    view = client.wait_work_order(order_id)
    assert view.work_order.state.value == "success"
    [run] = view.runs
    assert sorted(step.transition_id for step in run.steps if step.state == "completed") == ["approve", "fetch", "post"]


def test_only_a_live_entity_can_be_killed_and_an_unknown_id_is_not_found(client):
    order_id, case_id, workitem = _waiting(client)
    with pytest.raises(NotFound, match="no-such-entity"):
        client.kill("no-such-entity")
    client.complete_workitem(workitem.id, {})
    client.wait_work_order(order_id)
    for entity_id in (order_id, case_id, workitem.task_id, workitem.id):
        with pytest.raises(Invalid, match="only a live entity can be killed"):
            client.kill(entity_id)


def _kill_past_the_intensity(client, kind: str, entity_id: str) -> None:
    """Four kills within 5 s: three restarts, then its supervisor gives up."""
    for _ in range(4):
        before = _incarnation(client, kind, entity_id)
        client.kill(entity_id)
        wait_for(lambda: _incarnation(client, kind, entity_id) > before)


def test_a_work_order_killed_past_the_intensity_is_given_up_on_and_its_run_ends_crashed(client):
    order_id, _, _ = _waiting(client)
    _kill_past_the_intensity(client, "work_order", order_id)
    view = wait_for(lambda: (v := client.get_work_order(order_id)).work_order.state.value != "running" and v)
    assert view.work_order.state.value == "crashed"
    [run] = view.runs
    assert run.run.state.value == "crashed"
    assert "work order crashed past the restart intensity" in run.run.failure.reason
    with pytest.raises(Invalid, match="only a live entity can be killed"):
        client.kill(order_id)


def test_a_case_without_a_work_order_killed_past_the_intensity_is_terminated_crashed(client):
    case_id = client.start_case("approval", {"n": 2})
    awaiting_workitem(client, case_id, "approve")
    _kill_past_the_intensity(client, "case", case_id)
    view = client.wait_case(case_id)
    assert view.case.state.value == "terminated"
    assert view.case.failure.kind == "crashed"
    assert "case crashed past the restart intensity" in view.case.failure.reason

"""Passivation: idle entity actors exit and come back from storage on demand,
so waiting cases cost storage rows, not actors (nor, on the daemon, memory
in its node processes)."""

from __future__ import annotations

import pytest

from petriflow.engine.states import CaseState
from petriflow.supervision import processes
from petriflow.system import system_session
from tests.engines import BASES, awaiting_workitem, running_engine, wait_for, workflow

pytestmark = pytest.mark.timeout(90)

WAITS = workflow(
    "waits",
    ["start", "p", "q", "end"],
    [
        {"id": "slow", "executor": "sleep", "params": {"seconds": 0.8}},
        {"id": "approve", "executor": "manual"},
        {"id": "after", "executor": "echo", "params": {"after": True}},
    ],
    ["start -> slow", "slow -> p", "p -> approve", "approve -> q", "q -> after", "after -> end"],
)


@pytest.mark.parametrize("base", BASES)
def test_waiting_cases_passivate_and_are_restored_by_the_next_message(base, tmp_path):
    with running_engine(base, f"sqlite:///{tmp_path}/petriflow.db", idle_timeout_s=0.2) as client:
        client.put_workflow(WAITS)
        case_ids = [client.start_case("waits", {"n": n}) for n in range(5)]
        workitems = {case_id: awaiting_workitem(client, case_id, "approve") for case_id in case_ids}
        wait_for(lambda: client.ping().live_cases == 0)
        assert [a.kind for a in client.list_actors()] == ["engine", "node"], "passivated actors are gone"
        if base == "multiprocTCPBase":
            session = system_session(client.asys)
            assert len(processes.session_pids(session.sid)) <= 4, "only the admin, logger, engine and node remain"
        for case_id, workitem_id in workitems.items():
            client.complete_workitem(workitem_id, {"ok": case_id})
        views = [client.wait_case(case_id) for case_id in case_ids]
    for case_id, view in zip(case_ids, views):
        assert view.case.state is CaseState.FINISHED
        approve = next(w for w in view.workitems if w.transition_id == "approve")
        assert approve.attempt == 1, "a restored waiting step is not executed again"
        assert next(t.payload for t in view.tokens if t.place_id == "end") == {"ok": case_id, "after": True}


@pytest.mark.parametrize("base", BASES)
def test_parked_work_orders_passivate_and_are_not_restored_until_needed(base, tmp_path):
    url = f"sqlite:///{tmp_path}/petriflow.db"
    with running_engine(base, url, idle_timeout_s=0.2) as client:
        client.put_workflow(WAITS)
        orders = [client.submit("waits", {"n": n}).work_order_id for n in range(4)]
        cases = {o: client.get_work_order(o).runs[0].run.case_id for o in orders}
        workitems = {o: awaiting_workitem(client, cases[o], "approve") for o in orders}
        wait_for(lambda: (info := client.ping()).live_work_orders == 0 and info.live_cases == 0)
    with running_engine(base, url, idle_timeout_s=0.2) as client:
        booted = client.ping()
        assert booted.live_work_orders == 0, "work orders waiting on people are not restored at boot"
        for order, workitem_id in workitems.items():
            client.complete_workitem(workitem_id, {"ok": order})
        views = [client.wait_work_order(o) for o in orders]
    assert all(v.work_order.state.value == "success" for v in views)
    assert all(v.runs[0].steps[-1].output == {"ok": o, "after": True} for o, v in zip(orders, views))

"""A node's turn bounds (`Settings.turn_max_s`, `turn_max_writes`): however
small, every workflow still runs to its end, each step once; bounds that
could never let a turn end are refused at boot, naming the setting."""

from __future__ import annotations

import pytest

from petriflow.client import boot_engine
from petriflow.engine.errors import Invalid
from petriflow.engine.settings import Settings
from petriflow.engine.states import WorkitemState, WorkOrderState
from petriflow.system import close_actor_system, open_actor_system
from tests.engines import APPROVAL, awaiting_workitem, running_engine, workflow

pytestmark = pytest.mark.timeout(60)

AND4 = workflow(
    "and4",
    ["start", "s1", "s2", "j1", "j2", "end"],
    [
        {"id": "split", "executor": "noop", "split": "and"},
        {"id": "b1", "executor": "echo", "params": {"b1": True}},
        {"id": "b2", "executor": "echo", "params": {"b2": True}},
        {"id": "join", "executor": "noop", "join": "and"},
    ],
    ["start -> split", "split -> s1", "split -> s2", "s1 -> b1", "s2 -> b2", "b1 -> j1", "b2 -> j2"]
    + ["j1 -> join", "j2 -> join", "join -> end"],
)


@pytest.mark.parametrize(
    "bounds", [{"turn_max_writes": 1}, {"turn_max_s": 1e-6}, {"turn_max_s": 5.0, "turn_max_writes": 100_000}]
)
def test_every_workflow_ends_once_per_step_whatever_the_turn_bounds(tmp_path, bounds):
    with running_engine("simpleSystemBase", f"sqlite:///{tmp_path}/petriflow.db", **bounds) as client:
        client.put_workflow(AND4)
        client.put_workflow(APPROVAL)
        orders = [client.submit("and4", {"n": n}).work_order_id for n in range(5)]
        waiting = client.submit("approval", {"n": 0}).work_order_id
        case_id = client.get_work_order(waiting).runs[0].run.case_id
        client.complete_workitem(awaiting_workitem(client, case_id, "approve"), {"approved": True})
        for order_id in [*orders, waiting]:
            view = client.wait_work_order(order_id, 30)
            assert view.work_order.state is WorkOrderState.SUCCESS
            (run,) = view.runs
            done = [s.transition_id for s in run.steps if s.state is WorkitemState.COMPLETED]
            assert sorted(done) == sorted(set(done)), "no step completed twice"
        joined = client.get_case(client.get_work_order(orders[0]).runs[0].run.case_id)
        end = next(t for t in joined.tokens if t.place_id == "end")
        assert end.payload["b1"] is True and end.payload["b2"] is True


@pytest.mark.parametrize(
    ("bounds", "named"), [({"turn_max_s": 0}, "turn_max_s"), ({"turn_max_writes": 0}, "turn_max_writes")]
)
def test_turn_bounds_that_never_end_a_turn_are_refused_at_boot(tmp_path, bounds, named):
    asys = open_actor_system()
    try:
        with pytest.raises(Invalid, match=named):
            boot_engine(asys, Settings(storage_url=f"sqlite:///{tmp_path}/petriflow.db", **bounds))
    finally:
        close_actor_system(asys)

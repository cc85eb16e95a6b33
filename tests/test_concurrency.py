"""A workflow's `concurrency`, end to end on both bases: at most K runs
started at once, the rest available in order of creation, started as others
finish, and the same after the engine restarts on its storage."""

from __future__ import annotations

import pytest

from petriflow.engine.errors import InvalidWorkflow
from tests.engines import BASES, awaiting_workitem, running_engine, wait_for, workflow

pytestmark = pytest.mark.timeout(120)

LIMITED = {
    **workflow(
        "limited",
        ["start", "held", "end"],
        [{"id": "take", "executor": "echo", "params": {"taken": True}}, {"id": "hold", "executor": "manual"}],
        ["start -> take", "take -> held", "held -> hold", "hold -> end"],
    ),
    "concurrency": 2,
}


def states(client, order_ids: list[str]) -> list[str]:
    return [client.get_work_order(o).runs[-1].run.state.value for o in order_ids]


def release(client, order_id: str) -> None:
    """Complete the run's manual step: its run ends and frees its slot."""
    case_id = client.get_work_order(order_id).runs[-1].run.case_id
    client.complete_workitem(awaiting_workitem(client, case_id, "hold"), {})
    client.wait_work_order(order_id)


def settle(client, order_ids: list[str], expected: list[str]) -> None:
    wait_for(lambda: states(client, order_ids) == expected, timeout_s=30)


@pytest.mark.parametrize("base", BASES)
def test_at_most_k_runs_start_and_the_rest_wait_in_order_across_a_restart(base, tmp_path):
    url = f"sqlite:///{tmp_path}/petriflow.db"
    with running_engine(base, url) as client:
        client.put_workflow(LIMITED)
        orders = [client.submit("limited", {"n": n}).work_order_id for n in range(5)]
        settle(client, orders, ["started", "started", "available", "available", "available"])
        queues = [client.get_work_order(o).runs[-1].queue for o in orders]
        assert queues[:2] == [None, None]
        assert [(q.concurrency, q.started, q.position) for q in queues[2:]] == [(2, 2, 1), (2, 2, 2), (2, 2, 3)]
        assert client.ping().waiting_for_slot == {"limited": 3}
        release(client, orders[0])
        settle(client, orders, ["success", "started", "started", "available", "available"])
    with running_engine(base, url) as client:  # a new engine on the same storage
        settle(client, orders, ["success", "started", "started", "available", "available"])
        release(client, orders[2])
        settle(client, orders, ["success", "started", "success", "started", "available"])
        release(client, orders[1])
        release(client, orders[3])
        release(client, orders[4])
        assert states(client, orders) == ["success"] * 5
        started = [client.get_work_order(o).runs[-1].run.started_at for o in orders]
        assert started == sorted(started), "runs started in the order they were created"


@pytest.mark.parametrize("base", BASES)
def test_a_run_waiting_for_a_slot_can_be_cancelled(base, tmp_path):
    with running_engine(base, f"sqlite:///{tmp_path}/petriflow.db") as client:
        client.put_workflow({**LIMITED, "concurrency": 1})
        first, second, third = (client.submit("limited", {}).work_order_id for _ in range(3))
        settle(client, [first, second, third], ["started", "available", "available"])
        client.cancel(second)
        settle(client, [first, second, third], ["started", "cancelled", "available"])
        release(client, first)
        settle(client, [first, second, third], ["success", "cancelled", "started"])


@pytest.mark.parametrize("limit", [0, -1, 1.5, "2", True])
def test_a_bad_concurrency_is_refused(tmp_path, limit):
    with running_engine("simpleSystemBase", f"sqlite:///{tmp_path}/petriflow.db") as client:
        with pytest.raises(InvalidWorkflow, match="concurrency must be"):
            client.put_workflow({**LIMITED, "id": "bad", "concurrency": limit})


def test_workflow_show_gives_the_concurrency_back(tmp_path):
    with running_engine("simpleSystemBase", f"sqlite:///{tmp_path}/petriflow.db") as client:
        client.put_workflow(LIMITED)
        assert client.get_workflow("limited")["concurrency"] == 2

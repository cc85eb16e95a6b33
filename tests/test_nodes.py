"""Nodes: many supervised actors per process.

Each work order, with everything under it, lives on one node, recorded in
storage as owner node and incarnation. A node is one OS process on
multiprocTCPBase (the embedded base runs the same node in the caller's
process); SIGKILL of a node is the crash of every entity on it, and the
restarted node restores exactly its own work. Work placed on a node that
no longer exists is adopted by a live one.
"""

from __future__ import annotations

import os
import signal
import sqlite3
from collections import Counter

import pytest

from petriflow.client import Client, boot_engine
from petriflow.engine.errors import Invalid
from petriflow.engine.settings import Settings
from petriflow.engine.states import TaskState, WorkitemState
from petriflow.supervision import processes
from petriflow.system import close_actor_system, open_actor_system
from tests.engines import APPROVAL, BASES, awaiting_workitem, running_engine, wait_for, workflow

pytestmark = pytest.mark.timeout(120)

MULTIPROC = "multiprocTCPBase"

STEPS = workflow(
    "steps",
    ["start", "p1", "end"],
    [
        {"id": "a", "executor": "tests.executors:Journal", "params": {"seconds": 0.1}},
        {"id": "b", "executor": "tests.executors:Journal", "params": {"seconds": 1.5}},
    ],
    ["start -> a", "a -> p1", "p1 -> b", "b -> end"],
)

KILLS_ITS_NODE = workflow(
    "kills-its-node",
    ["start", "end"],
    [{"id": "doomed", "executor": "tests.executors:KillSelf"}],
    ["start -> doomed", "doomed -> end"],
)


def _placement(db: str) -> dict[str, tuple[str, int]]:
    """work order id -> (node id, node incarnation), as storage records it."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT id, node_id, node_incarnation FROM work_orders").fetchall()
    return {id: (node, incarnation) for id, node, incarnation in rows}


def _node_incarnations(db: str) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT id, incarnation FROM nodes").fetchall())


def _waiting(client: Client, n: int) -> list[str]:
    """`n` work orders, each waiting on its manual step."""
    orders = [client.submit("approval", {"n": i}).work_order_id for i in range(n)]
    for order_id in orders:
        awaiting_workitem(client, client.get_work_order(order_id).runs[0].run.case_id, "approve")
    return orders


@pytest.mark.parametrize("base", BASES)
def test_actors_lists_the_nodes_and_each_entity_with_its_node_and_the_nodes_pid(tmp_path, base):
    db = f"{tmp_path}/petriflow.db"
    nodes = 2 if base == MULTIPROC else 1
    with running_engine(base, f"sqlite:///{db}", nodes=nodes) as client:
        client.put_workflow(APPROVAL)
        orders = _waiting(client, 4)
        actors = client.list_actors()
        node_pids = {a.entity_id: a.pid for a in actors if a.kind == "node"}
        assert sorted(node_pids) == [f"node-{n}" for n in range(nodes)]
        if base == MULTIPROC:
            engine_pid = next(a.pid for a in actors if a.kind == "engine")
            assert len(set(node_pids.values()) | {engine_pid}) == nodes + 1, "each node is a process of its own"
        else:
            assert set(node_pids.values()) == {os.getpid()}, "embedded, the node runs in the caller's process"
        entities = [a for a in actors if a.kind not in ("engine", "node")]
        assert Counter(a.kind for a in entities) == {"work_order": 4, "case": 4, "task": 4, "workitem": 4}
        assert all(a.pid == node_pids[a.node] for a in entities)
        placement = _placement(db)
        incarnations = _node_incarnations(db)
        for order_id in orders:
            listed = next(a for a in entities if a.entity_id == order_id)
            assert listed.state == "running"
            assert placement[order_id] == (listed.node, incarnations[listed.node])
        if base == MULTIPROC:
            assert {node for node, _ in placement.values()} == set(node_pids), "work is spread over the nodes"
        assert client.ping().nodes == node_pids


@pytest.mark.slow
@pytest.mark.multiproc
def test_a_sigkilled_node_is_restarted_and_restores_its_own_work_with_nothing_done_twice(home):
    db = f"{home}/petriflow.db"
    with running_engine(MULTIPROC, f"sqlite:///{db}", nodes=2) as client:
        client.put_workflow(STEPS)
        orders = [client.submit("steps", {"n": n}).work_order_id for n in range(6)]

        def running_b() -> str | None:
            for actor in client.list_actors():
                if actor.kind == "workitem" and client.get_workitem(actor.entity_id).transition_id == "b":
                    return actor.node
            return None

        victim = wait_for(running_b)
        before = {a.entity_id: a.pid for a in client.list_actors() if a.kind == "node"}
        placed_on_victim = [o for o, (node, _) in _placement(db).items() if node == victim]
        os.kill(before[victim], signal.SIGKILL)
        assert processes.wait_until_gone([before[victim]], 5) == []
        views = [client.wait_work_order(order_id, 60) for order_id in orders]
        after = {a.entity_id: a.pid for a in client.list_actors() if a.kind == "node"}
    assert after[victim] != before[victim], "the Engine started the node again"
    other = next(n for n in before if n != victim)
    assert after[other] == before[other], "the other node was not disturbed"
    assert _node_incarnations(db)[victim] == 2
    for view in views:
        assert view.work_order.state.value == "success"
        (run,) = view.runs
        assert Counter(s.transition_id for s in run.steps if s.state == "completed") == {"a": 1, "b": 1}
    rerun = [v.work_order.id for v in views if any(s.attempt > 1 for s in v.runs[0].steps)]
    assert rerun and set(rerun) <= set(placed_on_victim), "only the killed node's steps ran again, from storage"
    assert all(_placement(db)[o][1] == 2 for o in rerun), "the node's second incarnation took them on"


@pytest.mark.slow
@pytest.mark.multiproc
def test_work_on_a_node_that_no_longer_exists_is_adopted_after_a_restart_with_fewer_nodes(home):
    db = f"{home}/petriflow.db"
    with running_engine(MULTIPROC, f"sqlite:///{db}", nodes=3) as client:
        client.put_workflow(APPROVAL)
        orders = _waiting(client, 6)
    assert {node for node, _ in _placement(db).values()} == {"node-0", "node-1", "node-2"}
    with running_engine(MULTIPROC, f"sqlite:///{db}", nodes=2) as client:
        for order_id in orders:
            case_id = client.get_work_order(order_id).runs[0].run.case_id
            client.complete_workitem(awaiting_workitem(client, case_id, "approve"), {"approved": True})
        views = [client.wait_work_order(order_id, 60) for order_id in orders]
    assert all(v.work_order.state.value == "success" for v in views)
    assert {node for node, _ in _placement(db).values()} == {"node-0", "node-1"}, "node-2's work was adopted"


@pytest.mark.slow
@pytest.mark.multiproc
def test_a_restarted_daemon_restores_each_work_order_on_the_node_it_was_placed_on(home):
    db = f"{home}/petriflow.db"
    with running_engine(MULTIPROC, f"sqlite:///{db}", nodes=2) as client:
        client.put_workflow(APPROVAL)
        _waiting(client, 4)
    placed = _placement(db)
    with running_engine(MULTIPROC, f"sqlite:///{db}", idle_timeout_s=None, nodes=2) as client:
        # a waiting work order is restored by the next message for it: ask each for its live actors
        for order_id in placed:
            client.kill(order_id)
        wait_for(lambda: sum(1 for a in client.list_actors() if a.kind == "work_order") == len(placed))
        listed = {a.entity_id: a.node for a in client.list_actors() if a.kind == "work_order"}
    assert listed == {order_id: node for order_id, (node, _) in placed.items()}
    after = _placement(db)
    assert all(after[o][1] == 2 for o in placed), "each was claimed by the second incarnation of its node"


@pytest.mark.slow
@pytest.mark.multiproc
def test_a_step_that_kills_its_node_every_time_crashes_its_case_and_the_engine_serves_on(home):
    with running_engine(MULTIPROC, f"sqlite:///{home}/petriflow.db", nodes=2) as client:
        client.put_workflow(KILLS_ITS_NODE)
        client.put_workflow(APPROVAL)
        case_id = client.start_case("kills-its-node", {})
        view = client.wait_case(case_id, timeout_s=90)
        assert view.case.state.value == "terminated"
        assert view.case.failure.kind == "crashed"
        assert "node hosting it died 4 times" in view.case.failure.reason
        (workitem,) = view.workitems
        assert workitem.state is WorkitemState.FAILED and workitem.attempt == 4
        assert [t.state for t in view.tasks] == [TaskState.ABANDONED]
        order_id = _waiting(client, 1)[0]
        assert client.get_work_order(order_id).work_order.state.value == "running"


def test_an_engine_needs_at_least_one_node(tmp_path):
    asys = open_actor_system()
    try:
        with pytest.raises(Invalid, match="at least one node, not 0"):
            boot_engine(asys, Settings(storage_url=f"sqlite:///{tmp_path}/petriflow.db", nodes=0))
    finally:
        close_actor_system(asys)

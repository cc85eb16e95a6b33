"""A disk that fails under a running engine, through the `faulty+sqlite`
backend's flag file.

A transient failure (an I/O error, a full disk) is an outage: the node and
the Engine stop taking writes, refuse clients with `storage_unavailable`
or `storage_full`, try again after a back-off, and resume by themselves
once storage takes writes; no run fails because of it, no supervisor
counts it, and it is logged once when it begins and once when it ends.
A permanent failure (`broken`) is a real error: the run ends `exception`.
"""

from __future__ import annotations

import json
import time

import pytest

from petriflow.engine.states import RunState, WorkOrderState
from petriflow.storage import open_backend
from petriflow.storage.errors import StorageFull, StorageUnavailable
from petriflow.storage.store import WorkOrderStorage
from tests.engines import awaiting_workitem, running_engine, workflow

pytestmark = pytest.mark.timeout(90)

WAITS = workflow(
    "waits",
    ["start", "p", "end"],
    [
        {"id": "prepare", "executor": "echo", "params": {"prepared": True}},
        {"id": "approve", "executor": "manual"},
    ],
    ["start -> prepare", "prepare -> p", "p -> approve", "approve -> end"],
)


def _events(log_path) -> list[dict]:
    return [json.loads(line) for line in log_path.read_text().splitlines()]


def _two_waiting(client):
    """Two work orders of WAITS, each at its manual step: one to fail, one healthy."""
    client.put_workflow(WAITS)
    orders = client.submit("waits", {"n": 1}), client.submit("waits", {"n": 2})
    items = [
        awaiting_workitem(client, client.get_work_order(o.work_order_id).runs[0].run.case_id, "approve") for o in orders
    ]
    return (*orders, *items)


def _retrying(call, seconds: float = 30.0):
    """What a client does with a refusal during an outage: send it again later."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return call()
        except StorageUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_a_failing_disk_pauses_the_work_and_it_resumes_without_a_failed_run(tmp_path):
    flag = tmp_path / "disk-fails-for"
    url = f"faulty+sqlite:///{tmp_path}/petriflow.db#{flag}"
    log_path = tmp_path / "log.jsonl"
    with running_engine("simpleSystemBase", url, log_path=str(log_path)) as client:
        doomed, healthy, doomed_item, healthy_item = _two_waiting(client)
        doomed_case = client.get_workitem(doomed_item).case_id
        committed = client.get_case(doomed_case)

        flag.write_text(doomed_case + "\n")
        with pytest.raises(StorageUnavailable, match="storage is unavailable since .*simulated disk I/O error"):
            client.complete_workitem(doomed_item, {"approved": True})
        time.sleep(0.5)  # a back-off or more: each try fails again, and none is a crash or a state change
        during = client.get_case(doomed_case)
        assert during.case == committed.case and during.workitems == committed.workitems
        for order in (doomed, healthy):
            assert client.get_work_order(order.work_order_id).work_order.state is WorkOrderState.RUNNING

        flag.unlink()  # room again: nobody restarts anything
        _retrying(lambda: client.complete_workitem(doomed_item, {"approved": True}))
        _retrying(lambda: client.complete_workitem(healthy_item, {"approved": True}))
        for order in (doomed, healthy):
            done = client.wait_work_order(order.work_order_id, 30)
            assert done.work_order.state is WorkOrderState.SUCCESS
            assert [view.run.state for view in done.runs] == [RunState.SUCCESS]

    events = _events(log_path)
    began = [e for e in events if e.get("event") == "storage_unavailable"]
    ended = [e for e in events if e.get("event") == "storage_available"]
    assert [e["node_id"] for e in began] == ["node-0"] and "simulated disk I/O error" in began[0]["reason"]
    assert [e["node_id"] for e in ended] == ["node-0"] and ended[0]["tries"] >= 1 and ended[0]["wal_checkpointed"]
    names = {e.get("event") for e in events}
    assert not names & {"actor_crashed", "child_crashed", "supervisor_gave_up", "case_gave_up"}


def test_while_storage_takes_no_writes_the_engine_refuses_new_work_and_takes_it_again_after(tmp_path):
    flag = tmp_path / "flag"
    url = f"faulty+sqlite:///{tmp_path}/petriflow.db#{flag}"
    log_path = tmp_path / "log.jsonl"
    with running_engine("simpleSystemBase", url, log_path=str(log_path)) as client:
        client.put_workflow(WAITS)
        flag.write_text("full *\n")
        with pytest.raises(StorageFull, match="simulated full disk"):
            client.submit("waits", {"n": 1})
        with pytest.raises(StorageFull, match="storage is unavailable since"):  # refused at once, not tried
            client.submit("waits", {"n": 2})
        view = client.heartbeat(5)
        assert [(o.part, o.code) for o in view.outages] == [("engine", "storage_full")]
        flag.unlink()
        accepted = _retrying(lambda: client.submit("waits", {"n": 3}))
        assert client.get_work_order(accepted.work_order_id).work_order.state in (
            WorkOrderState.PENDING,
            WorkOrderState.RUNNING,
        )
        assert client.heartbeat(5).outages == []
    events = _events(log_path)
    assert [e.get("part") for e in events if e.get("event") == "storage_unavailable"] == ["engine"]
    assert [e.get("part") for e in events if e.get("event") == "storage_available"] == ["engine"]


def test_a_broken_storage_is_a_real_error_the_run_ends_as_exception_and_the_engine_goes_on(tmp_path):
    flag = tmp_path / "disk-fails-for"
    url = f"faulty+sqlite:///{tmp_path}/petriflow.db#{flag}"
    log_path = tmp_path / "log.jsonl"
    with running_engine("simpleSystemBase", url, log_path=str(log_path), nodes=2) as client:
        doomed, healthy, doomed_item, healthy_item = _two_waiting(client)
        doomed_case = client.get_workitem(doomed_item).case_id
        committed = client.get_case(doomed_case)

        flag.write_text(f"broken {doomed_case}\n")
        with pytest.raises(Exception, match="simulated broken storage"):
            client.complete_workitem(doomed_item, {"approved": True})
        failed = client.wait_work_order(doomed.work_order_id, 30)
        assert failed.work_order.state is WorkOrderState.EXCEPTION
        assert failed.runs[0].run.state is RunState.EXCEPTION
        assert "storage_broken" in failed.runs[0].run.failure.reason

        client.complete_workitem(healthy_item, {"approved": True})
        assert client.wait_work_order(healthy.work_order_id, 30).work_order.state is WorkOrderState.SUCCESS

    flag.unlink()
    store = WorkOrderStorage(open_backend(f"sqlite:///{tmp_path}/petriflow.db"))
    kept = {w.transition_id: w for w in store.workitems(case_id=doomed_case)}
    assert kept["prepare"] == next(w for w in committed.workitems if w.transition_id == "prepare")
    assert kept["approve"].state.value == "started" and kept["approve"].output is None
    events = _events(log_path)
    crashes = [e for e in events if e.get("event") == "actor_crashed" and e.get("case_id") == doomed_case]
    assert crashes and "simulated broken storage" in crashes[0]["exception"]
    assert any(e.get("event") == "case_gave_up" and e.get("work_order_id") == doomed.work_order_id for e in events)
    assert not any(e.get("event") == "storage_unavailable" for e in events)

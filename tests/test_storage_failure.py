"""A disk that fails under a running engine: the affected run ends as
`exception`, the failure is logged with its ids, nothing committed is lost,
and the engine goes on serving other work."""

from __future__ import annotations

import json

import pytest

from petriflow.engine.errors import StorageFailure
from petriflow.engine.states import RunState, WorkOrderState
from petriflow.storage import open_backend
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


def test_a_failing_disk_ends_the_affected_run_as_exception_and_the_engine_goes_on(tmp_path):
    flag = tmp_path / "disk-fails-for"
    url = f"faulty+sqlite:///{tmp_path}/petriflow.db#{flag}"
    log_path = tmp_path / "log.jsonl"
    with running_engine("simpleSystemBase", url, log_path=str(log_path)) as client:
        client.put_workflow(WAITS)
        doomed, healthy = client.submit("waits", {"n": 1}), client.submit("waits", {"n": 2})
        doomed_case = client.get_work_order(doomed.work_order_id).runs[0].run.case_id
        doomed_item = awaiting_workitem(client, doomed_case, "approve")
        healthy_case = client.get_work_order(healthy.work_order_id).runs[0].run.case_id
        healthy_item = awaiting_workitem(client, healthy_case, "approve")
        committed = client.get_case(doomed_case)

        flag.write_text(doomed_case + "\n")
        with pytest.raises(StorageFailure, match="simulated disk write failure"):
            client.complete_workitem(doomed_item, {"approved": True})
        failed = client.wait_work_order(doomed.work_order_id, 30)
        assert failed.work_order.state is WorkOrderState.EXCEPTION
        assert failed.runs[0].run.state is RunState.EXCEPTION
        assert "storage_failure" in failed.runs[0].run.failure.reason

        client.complete_workitem(healthy_item, {"approved": True})
        assert client.wait_work_order(healthy.work_order_id, 30).work_order.state is WorkOrderState.SUCCESS

    flag.unlink()
    store = WorkOrderStorage(open_backend(f"sqlite:///{tmp_path}/petriflow.db"))
    kept = {w.transition_id: w for w in store.workitems(case_id=doomed_case)}
    assert kept["prepare"] == next(w for w in committed.workitems if w.transition_id == "prepare")
    assert kept["approve"].state.value == "started" and kept["approve"].output is None
    events = [json.loads(line) for line in log_path.read_text().splitlines()]
    crashes = [e for e in events if e.get("event") == "actor_crashed" and e.get("case_id") == doomed_case]
    assert crashes and "simulated disk write failure" in crashes[0]["exception"]
    assert any(e.get("event") == "case_gave_up" and e.get("work_order_id") == doomed.work_order_id for e in events)

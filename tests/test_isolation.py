"""`"isolate": true`: the executor runs in a process of its own, so that
`os._exit`, a segfault or a runaway allocation ends only that attempt (the
next starts, up to the restart intensity's count in a row) and never the
host, here the test process itself (the embedded base)."""

from __future__ import annotations

import os
import signal

import pytest

from petriflow.engine.document import workflow_from_document, workflow_to_document
from petriflow.engine.errors import InvalidWorkflow
from petriflow.engine.validation import validate
from petriflow.supervision import processes
from tests.engines import running_engine, wait_for, workflow

pytestmark = [pytest.mark.timeout(120)]


def _one_step(workflow_id: str, executor: str, **more) -> dict:
    return workflow(
        workflow_id,
        ["start", "end"],
        [{"id": "step", "executor": executor, "isolate": True, **more}],
        ["start -> step", "step -> end"],
    )


@pytest.fixture
def client(tmp_path):
    with running_engine("simpleSystemBase", f"sqlite:///{tmp_path}/petriflow.db") as client:
        yield client


def test_an_isolated_step_runs_in_another_process_and_completes(client):
    client.put_workflow(_one_step("where", "tests.executors:WhereAmI", params={"p": 1}))
    view = client.wait_work_order(client.submit("where", {"n": 2}).work_order_id)
    assert view.work_order.state.value == "success"
    [step] = view.runs[0].steps
    assert step.output["pid"] != os.getpid()
    assert (step.output["input"], step.output["params"]) == ({"n": 2}, {"p": 1})


def test_an_isolated_executor_that_raises_is_a_failed_step_not_a_crash(client):
    client.put_workflow(_one_step("raises", "fail", params={"reason": "no stock"}))
    view = client.wait_work_order(client.submit("raises", {}).work_order_id)
    assert view.work_order.state.value == "failed"
    assert "no stock" in view.runs[0].run.failure.reason


@pytest.mark.parametrize(
    "executor, death",
    [
        ("tests.executors:ExitAbruptly", "exited with status 7"),
        ("tests.executors:Segfault", "died of SIGSEGV"),
        ("tests.executors:RunawayAllocation", "ran out of its 2048 MB of memory"),
    ],
)
def test_a_dying_isolated_executor_crashes_only_its_workitem_and_the_host_serves_on(client, executor, death):
    client.put_workflow(_one_step("dies", executor))
    client.put_workflow(_one_step("fine", "tests.executors:WhereAmI"))
    view = client.wait_work_order(client.submit("dies", {}).work_order_id, timeout_s=90)
    # three more attempts after the first death, then given up on
    assert view.work_order.state.value == "crashed"
    assert death in view.runs[0].run.failure.reason
    assert "died 4 times in a row" in view.runs[0].run.failure.reason
    [step] = view.runs[0].steps
    assert step.attempt == 4
    # the host process (this test) is alive and serves other work
    assert client.wait_work_order(client.submit("fine", {}).work_order_id).work_order.state.value == "success"


def test_isolate_must_be_a_boolean():
    document = _one_step("bad", "noop")
    document["transitions"][0]["isolate"] = "yes"
    with pytest.raises(InvalidWorkflow, match="transition 'step': isolate must be a boolean, got string"):
        validate(workflow_from_document(document))


def test_isolate_is_kept_in_the_stored_document_and_left_out_when_false():
    isolated = workflow_to_document(workflow_from_document(_one_step("kept", "noop")))
    assert isolated["transitions"][0]["isolate"] is True
    plain = _one_step("plain", "noop")
    del plain["transitions"][0]["isolate"]
    assert "isolate" not in workflow_to_document(workflow_from_document(plain))["transitions"][0]


@pytest.mark.slow
@pytest.mark.multiproc
def test_an_isolated_attempt_dies_with_its_sigkilled_workitem_which_is_restored(home):
    slow = _one_step("slow", "tests.executors:Journal", params={"seconds": 3})
    with running_engine("multiprocTCPBase", f"sqlite:///{home}/petriflow.db") as client:
        client.put_workflow(slow)
        order_id = client.submit("slow", {}).work_order_id

        def attempt() -> tuple[int, int] | None:
            for actor in client.list_actors():
                if actor.kind == "workitem" and actor.pid and (children := processes.children_of(actor.pid)):
                    return actor.pid, children[0]
            return None

        workitem_pid, attempt_pid = wait_for(attempt)
        os.kill(workitem_pid, signal.SIGKILL)
        assert processes.wait_until_gone([attempt_pid], 5) == [], "the attempt outlived its workitem"
        view = client.wait_work_order(order_id, 60)
        assert view.work_order.state.value == "success"
        assert view.runs[0].steps[0].attempt == 2
